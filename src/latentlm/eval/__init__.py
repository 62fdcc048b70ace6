"""Evaluation through the variant contract only: `model.score()` and `model.generate()`."""
