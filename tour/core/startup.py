"""How a tour process starts, in one place: the `tour` command, a stop's `python -m tour.<stop>`, and the examples
(as scripts and as notebooks).

An example opens with

    from tour.core import startup
    startup.start_up()                          # before `import torch`: the threading policy (tour.core.threads)
    ...
    cfg = startup.example_config(basics.Config)  # quick mode and the output folder from the environment
    device = startup.example_device(cfg)         # chosen, seeded, described

Imports no torch.
"""

from __future__ import annotations

import os
import sys
from typing import Any

QUICK_VAR = "TOUR_QUICK"  # "1": an example's short run (examples/run_all.sh and the notebook tests set it)
OUT_VAR = "TOUR_OUT"  # the folder an example writes to
DEFAULT_OUT = "tour-output"


def start_up() -> None:
    """The tour's threading policy, applied while torch is not imported yet. A process that already runs torch
    keeps its own threading: changing it there would outlive the call."""
    if "torch" not in sys.modules:
        from tour.core import threads

        threads.configure()


def child_env() -> dict[str, str]:
    """The environment for a child `python -m tour...` (a doctor worker, a peer's process): the caller's, with
    this tour package's folder at the end of PYTHONPATH, so the child imports this same tour also where it is not
    installed. Appended, not prepended: whatever the user put first on PYTHONPATH still wins (the doctor's
    fault-injection tests rely on it, and so does a user checking a patched library)."""
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), root) if p))


def in_notebook() -> bool:
    """True on a Jupyter kernel, whose sys.argv is the kernel's own (a connection file), not the user's words."""
    return "ipykernel" in sys.modules


def script_args() -> list[str]:
    """A script's own words on its command line (flags left out); none in a notebook."""
    return [] if in_notebook() else [a for a in sys.argv[1:] if not a.startswith("-")]


def quick() -> bool:
    """An example's quick mode: TOUR_QUICK=1, or --quick on a script's command line."""
    return os.environ.get(QUICK_VAR) == "1" or (not in_notebook() and "--quick" in sys.argv[1:])


def example_config(cls: type, **settings: Any) -> Any:
    """A stop's Config as an example builds it: quick mode (`quick()`) and the output folder ($TOUR_OUT, else
    tour-output) from the environment, the rest as given."""
    return cls(**{"quick": quick(), "out": os.environ.get(OUT_VAR, DEFAULT_OUT), **settings})


def example_device(cfg: Any, seed: bool = True) -> Any:
    """The device the stop would choose for `cfg` (its --device, else TOUR_DEVICE, else the best present), its
    seed set (`seed`), and a line describing it."""
    from tour.core import device as dev

    device = dev.get_device(cfg.device)
    if seed:
        dev.seed_everything(cfg.seed)
    print(dev.describe(cfg.device))
    return device
