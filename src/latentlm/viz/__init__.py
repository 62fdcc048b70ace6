"""Plots: loss curves and comparison charts (plots.py), fork maps (bubbles.py), latent diagnostics (latents.py)."""
