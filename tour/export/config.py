"""The export stop's settings: its name and Config, which the parts import."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.config import BaseConfig, arg
from tour.core.errors import TourError

NAME = "export"
MAX_BATCH = 4096  # upper bound of the exported dynamic batch dimension


@dataclass
class Config(BaseConfig):
    arch: str = arg("cnn", "the architecture to export: cnn (the vision stop's MNIST CNN) or mlp (the basics digits MLP)",
                     choices=["cnn", "mlp"])
    epochs: int = arg(2, "training epochs before export (0 exports the untrained model)", min=0, quick=1)
    batch_size: int = arg(64, "batch size for the latency comparison", min=1, max=MAX_BATCH)
    batches: list[int] = arg([1, 7, 256], "batch sizes sent through the dynamic dimension in the fresh process", min=1,
                             max=MAX_BATCH)
    rebuild: bool = arg(False, "compile the .pt2 even when an earlier run built this very one (the tour keeps each "
                        "package it built, keyed by the program, its weights, torch and the device)")
    repeats: int = arg(20, "timed calls per latency measurement after one warm-up; the median is reported", min=1,
                       quick=5)

    def validate(self) -> None:
        if not self.batches:
            raise TourError("--batches needs at least one batch size, e.g. --batches 1 7 256")
