"""Thoughtbubbles variant: forking and pruning residual streams under a budget."""

from latentlm.models.thoughtbubbles.config import ThoughtbubblesConfig
from latentlm.models.thoughtbubbles.model import Thoughtbubbles

Config, Model = ThoughtbubblesConfig, Thoughtbubbles
