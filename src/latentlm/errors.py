"""One exception family, so the CLI can turn any of them into one clear line and a non-zero exit."""


class LatentLMError(Exception):
    """Base class: a problem the user can fix. The message names the problem and the fix."""


class ConfigError(LatentLMError, ValueError):
    """An inconsistent or unknown configuration value. The message names the field."""


class InputError(LatentLMError, ValueError):
    """Bad runtime input: sequence too long, token id out of range, cache overflow, bad data file."""
