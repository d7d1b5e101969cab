"""The compile stop's settings: its name and Config, which the parts import."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.config import BaseConfig, arg

NAME = "compile"
MODELS = ("fusion", "vision", "encoder")  # built in tour/compile/models.py, imported when the stop runs (it imports
# torch at its top, and `tour run compile --help` should not wait for torch)


@dataclass
class Config(BaseConfig):
    models: list[str] = arg(list(MODELS), "what to compile: fusion (elementwise block), vision (EfficientNet-Lite0; "
                                          "quick: the MNIST CNN), encoder (MiniLM)", choices=MODELS,
                            quick=["fusion", "vision"])
    train: bool = arg(True, "also time one training step (forward + backward) where the model has one")
    repeats: int = arg(10, "timed repetitions per side after warm-up; medians are reported", min=1, quick=5)
    batch_size: int = arg(8, "images / sentences per batch for the vision and encoder models", min=1)
    fresh_cache: bool = arg(False, "compile into an empty throwaway Inductor cache: the first compile is truly cold")
