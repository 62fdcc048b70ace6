"""Interop with HF transformers, at the edge: a config/model wrapper and `export` to a trust_remote_code folder."""
