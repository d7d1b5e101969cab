"""1) Roofs: the lower precision this hardware has a fast path for, each dtype's matmul roof, and the memory
bandwidth (a large copy) that bounds decoding; measured by the core (tour.core.roofs), printed here."""

from __future__ import annotations

import torch

from tour.core import device as dev
from tour.core.dtypes import DTYPE_NAMES, FAST_PATHS_FOR, dtype_name, parse_dtype, supports_dtype
from tour.core import roofs as core
from tour.precision.config import Config, Roofs


def low_dtype(cfg: Config, device) -> tuple[torch.dtype | None, str]:
    """(the dtype compared with fp32, "") or (None, the one-line reason) where this hardware has no fast path."""
    low = parse_dtype(cfg.dtype, device)
    if low != torch.float32 and supports_dtype(device, low):
        return low, ""
    wanted = torch.float16 if cfg.dtype == "fp16" else torch.bfloat16
    cpu_names = [p for p in FAST_PATHS_FOR[wanted] if p.startswith(("AMX", "AVX"))]
    paths = cpu_names if device.type == "cpu" else [p for p in FAST_PATHS_FOR[wanted] if p not in cpu_names]
    why = "--dtype fp32" if cfg.dtype == "fp32" else (
        f"{'bf16' if cfg.dtype == 'auto' else cfg.dtype}: not on this hardware ({dev.device_name(device)} has "
        f"no {' / '.join(paths)}; it would be emulated, slower than fp32)")
    reason = f"{why}: the fp32 path only"
    print(f"  {reason}")
    return None, reason


def peak(cfg: Config, device, name: str, at_least: float | None = None) -> float | None:
    """The core's roof for the dtype a variant runs in ("fp32", "bf16" ...), in G(FL)OP/s; None where it has none
    here. `at_least`: the rate the variant reached (a roof below it is measured again)."""
    dtype = DTYPE_NAMES.get(name)
    if dtype is None or core.skip_reason(device, dtype):
        return None
    return core.peak(device, dtype, cfg.quick, cfg.roof_n, at_least).rate


def measure(cfg: Config, device, low) -> Roofs:
    """Each dtype's matmul roof (the ones this hardware has; only fp32 when no lower precision is compared) and the
    copy bandwidth, from the core (measured once per process, shared with `tour bench` and the generate stop)."""
    dtypes = (torch.float32, torch.bfloat16, torch.float16, torch.int8) if low is not None else (torch.float32,)
    roof = core.measure(device, dtypes, cfg.quick, cfg.roof_n, cfg.copy_mb)
    for line in core.describe(roof):
        print(f"  {line}")
    skipped = {f"{k} roof": why for k, why in roof.skipped.items()}
    if low is None:
        skipped |= {f"{dtype_name(d)} roof": "fp32 only" for d in (torch.bfloat16, torch.float16, torch.int8)}
    return Roofs(gflops=roof.rates, ms=roof.ms, n=roof.n, bandwidth_gb_s=roof.bandwidth_gb_s, skipped=skipped)
