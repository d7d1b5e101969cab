"""The lightning stop's settings: its name, tolerances and Config, which the parts import."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.config import DigitsConfig

NAME = "lightning"
WEIGHT_TOL = 1e-4  # Trainer-trained vs hand-trained weights, max |diff| (same seed, data, order; fp32 rounding only)
ACCURACY_FLOOR = 0.93  # the digits MLP's held-out accuracy at the tour's settings (the basics stop's floor)


@dataclass
class Config(DigitsConfig):
    """The basics stop's settings, unchanged: both loops must train the same model the same way."""
