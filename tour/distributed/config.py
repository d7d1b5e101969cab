"""The distributed stop's settings: its name and Config, which the parent and every torchrun rank (worker.py,
which rebuilds it from JSON) import."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.config import BaseConfig, arg
from tour.core.errors import TourError

NAME = "distributed"


@dataclass
class Config(BaseConfig):
    nproc: int | None = arg(None, "processes on this machine (torchrun --nproc-per-node); unset: 2 on CPU, one per "
                                  "accelerator device up to 2 (1 on one GPU or a named one, cuda:N)", min=1)
    epochs: int = arg(12, "passes over the digits training set", min=1, quick=5)
    batch_size: int = arg(64, "GLOBAL batch: each of the W ranks takes batch_size/W of it per step")
    lr: float = arg(0.1, "SGD learning rate", gt=0)
    momentum: float = arg(0.9, "SGD momentum (its buffers go into the checkpoint too)", min=0.0)
    hidden: int = arg(64, "hidden width of both MLPs (tensor parallel rounds it up to a multiple of the ranks)", min=1)
    test_fraction: float = arg(0.2, "share of the 1,797 digits held out for testing", min=0.06, max=0.9)
    resume: bool = arg(False, "continue from the checkpoint in the output folder (after a crash or kill)")
    nnodes: int = arg(1, "machines taking part (torchrun --nnodes); >1 needs --rdzv-endpoint", min=1)
    node_rank: int = arg(0, "this machine's number, 0..nnodes-1 (torchrun --node-rank; c10d may renumber)", min=0)
    rdzv_endpoint: str = arg("", "HOST:PORT where the machines meet (c10d rendezvous); empty: one machine")

    def validate(self) -> None:
        refuse_bad_flags(self)  # the flags that depend on each other; refused before any process starts


def refuse_bad_flags(cfg: Config) -> None:
    """Refuse what cannot work, in one line, before any process starts."""
    if not 0 <= cfg.node_rank < cfg.nnodes:
        raise TourError(f"--node-rank must be in 0..{cfg.nnodes - 1} for --nnodes {cfg.nnodes}, got {cfg.node_rank}")
    if cfg.nnodes > 1 and not cfg.rdzv_endpoint:
        raise TourError("several nodes need a meeting point: pass --rdzv-endpoint HOST:PORT (same on every node)")
    if cfg.rdzv_endpoint and not cfg.rdzv_endpoint.rpartition(":")[2].isdigit():
        raise TourError(f"--rdzv-endpoint must be HOST:PORT, got {cfg.rdzv_endpoint!r}")
    if cfg.nproc is None:
        return  # the split is checked again once the device has settled the process count (resolve)
    world = cfg.nproc * cfg.nnodes
    if cfg.batch_size < world or cfg.batch_size % world:
        raise TourError(f"the global batch {cfg.batch_size} must split evenly over {world} processes; "
                        f"pass --batch-size as a multiple of {world} or fewer processes")
