"""Typed model outputs shared by every variant."""

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class LMOutput:
    loss: torch.Tensor | None = None
    """What the trainer minimises (cross-entropy plus any auxiliary term of the variant)."""
    logits: torch.Tensor | None = None
    """(B, T, V) next-token logits at the original token positions."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Detached scalars the trainer logs verbatim (ce, kl, streams_per_token, ...)."""
