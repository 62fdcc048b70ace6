"""The one training loop every variant shares (trainer.py) and its parts."""
