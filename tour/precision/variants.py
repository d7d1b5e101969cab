"""The ways of running a model beside fp32 (eager, autocast to the lower precision, weights cast to it), their timing
side by side with the roofs they are held to, and the row each way makes in the stop's table; shared by the parts."""

from __future__ import annotations

import copy
import statistics
from contextlib import nullcontext

import torch

from tour.core.device import autocast, dtype_name, medians_ms
from tour.precision.config import Variant

BASE = "fp32 eager"  # every variant's baseline, the first way


def tolerance(dtype) -> float:
    """Relative error a dtype's rounding allows: its machine epsilon (bf16 2^-7, fp16 2^-10, fp32 2^-23)."""
    return torch.finfo(dtype).eps


def share(value: float, roof: float, of: str) -> str:
    """`value` as a share of the roof it is measured against: '40% of the bf16 roof'. A share above 100% never
    stands alone: it says the roof was measured under load (a neighbour slowed the roof's own timing)."""
    text = f"{value / roof:.0%} {of}"
    return text if value <= roof else f"{text}, above 100%: the roof was measured under load"


def beside_roofs(fns: dict, roofs: dict, device, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """({label: median ms}, {roof: best ms}). Each round times every roof, then every variant once (the core's
    medians_ms), and one more round of roofs follows the last: a roof is the best of its samples, taken around the
    variants it is held to, so a neighbour's load at another moment cannot put a variant above its roof."""
    rounds = [medians_ms(roofs | fns, device, 1, warmup=int(i == 0)) for i in range(repeats)]
    rounds.append(medians_ms(roofs, device, 1, warmup=0))
    ms = {label: statistics.median(r[label] for r in rounds[:-1]) for label in fns}
    return ms, {label: min(r[label] for r in rounds) for label in roofs}


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


def count_flops(fn) -> int:
    """FLOPs of one call, counted by FlopCounterMode (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()
