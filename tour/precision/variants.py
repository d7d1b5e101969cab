"""The ways of running a model beside fp32 (eager, autocast to the lower precision, weights cast to it) and the row
each way makes in the stop's table; shared by the parts."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch

from tour.core.dtypes import autocast, dtype_name
from tour.precision.config import Variant

BASE = "fp32 eager"  # every variant's baseline, the first way


def tolerance(dtype) -> float:
    """Relative error a dtype's rounding allows: its machine epsilon (bf16 2^-7, fp16 2^-10, fp32 2^-23)."""
    return torch.finfo(dtype).eps


def ways(model, low, device, weights: bool = True) -> dict:
    """label -> (model, context): fp32 eager, autocast to `low`, the weights cast to `low`; fp32 only without low."""
    found = {BASE: (model, nullcontext)}
    if low is not None:
        found[f"{dtype_name(low)} autocast"] = (model, lambda: autocast(device, low))
    if low is not None and weights:
        found[f"{dtype_name(low)} weights"] = (copy.deepcopy(model).to(low), nullcontext)
    return found


def rows(model: str, ms: dict[str, float], keeps: dict[str, bool | None], detail: dict[str, str]) -> list[Variant]:
    """One row per way, its speed-up over the first (fp32 eager), built once from the measured values."""
    base = next(iter(ms.values()))
    return [Variant(model, label, t, base / t, keeps[label], detail[label]) for label, t in ms.items()]


def show(found: list[Variant]) -> None:
    for row in found:
        print(f"  {row.model:<30} {row.variant:<44} {row.ms:9.1f} ms  {row.speedup:5.2f}x  "
              f"{'keeps' if row.keeps else 'FAILS'}: {row.detail}")
