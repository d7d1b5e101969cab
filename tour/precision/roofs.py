"""1) Roofs: the lower precision this hardware has a fast path for, each dtype's matmul rate, and the memory
bandwidth (a large copy) that bounds decoding."""

from __future__ import annotations

import torch

from tour.core import device as dev
from tour.core.torch_private import int_mm
from tour.precision.config import Config, Roofs


def low_dtype(cfg: Config, device) -> tuple[torch.dtype | None, str]:
    """(the dtype compared with fp32, "") or (None, the one-line reason) where this hardware has no fast path."""
    low = dev.parse_dtype(cfg.dtype, device)
    if low != torch.float32 and dev.supports_dtype(device, low):
        return low, ""
    wanted = torch.float16 if cfg.dtype == "fp16" else torch.bfloat16
    cpu_names = [p for p in dev.FAST_PATHS_FOR[wanted] if p.startswith(("AMX", "AVX"))]
    paths = cpu_names if device.type == "cpu" else [p for p in dev.FAST_PATHS_FOR[wanted] if p not in cpu_names]
    why = "--dtype fp32" if cfg.dtype == "fp32" else (
        f"{'bf16' if cfg.dtype == 'auto' else cfg.dtype}: not on this hardware ({dev.device_name(device)} has "
        f"no {' / '.join(paths)}; it would be emulated, slower than fp32)")
    reason = f"{why}: the fp32 path only"
    print(f"  {reason}")
    return None, reason


def matmul_fn(dtype, n: int, device):
    """A call that multiplies two n x n matrices in `dtype` (2 n^3 operations); int8 through torch._int_mm (int32
    accumulators). The encoder part times it beside MiniLM, the roofs part on its own."""
    if dtype == torch.int8:
        a, b = (torch.randint(-127, 128, (n, n), dtype=torch.int8, device=device) for _ in range(2))
        return lambda: int_mm()(a, b)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return lambda: a @ b


def gflops(n: int, ms: float) -> float:
    return 2 * n**3 / ms / 1e6


def matmul_roof(dtype, n: int, device, repeats: int) -> tuple[float, float]:
    """(ms, G(FL)OP/s) of an n x n matmul in `dtype`."""
    ms = dev.median_ms(matmul_fn(dtype, n, device), device, repeats, warmup=2)
    return ms, gflops(n, ms)


def copy_fn(mb: int, device):
    """(a call that copies an `mb` MB tensor, the bytes it moves: read + written): the memory roof decoding runs
    into. The decode part times it in the same rounds as the decode itself."""
    src = torch.ones(mb * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    return (lambda: dst.copy_(src)), 2 * src.numel() * 4


def gb_s(nbytes: int, ms: float) -> float:
    return nbytes / ms / 1e6


def bandwidth_gb_s(mb: int, device, repeats: int) -> float:
    """(read + written) bytes / median time of a large tensor copy."""
    fn, nbytes = copy_fn(mb, device)
    return gb_s(nbytes, dev.median_ms(fn, device, max(3, repeats), warmup=1))


def skip_reason(dtype, low, device, paths) -> str | None:
    """Why a dtype's roof is not measured here, or None. A dtype the hardware names (AVX512-FP16) is measured even
    where torch's kernels don't use it: that shows."""
    if dtype == torch.float32:
        return None
    has = dev.supports_dtype(device, dtype) or any(dev.dtype_name(dtype).upper() in p.upper() for p in paths)
    if low is None or not has:
        return "not on this hardware" if low is not None else "fp32 only"
    if dtype == torch.int8 and int_mm() is None:
        return "this torch has no torch._int_mm"
    return None


def measure(cfg: Config, device, low) -> Roofs:
    """Each dtype's matmul roof (the ones this hardware has) and the copy bandwidth, printed against fp32's."""
    paths = dev.fast_paths(device)
    ms, rates, skipped = {}, {}, {}
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.int8):
        why, short = skip_reason(dtype, low, device, paths), dev.dtype_name(dtype)
        if why:
            skipped[f"{short} roof"] = why
            continue
        ms[short], rates[short] = matmul_roof(dtype, cfg.roof_n, device, cfg.repeats)
    bandwidth = bandwidth_gb_s(cfg.copy_mb, device, cfg.repeats)
    for k, v in rates.items():
        native = "" if dev.supports_dtype(device, dev.DTYPE_NAMES[k]) else "  (no fast path in torch's kernels)"
        unit = "GOP/s" if k == "int8" else "GFLOP/s"
        print(f"  {cfg.roof_n}² matmul {k:>4}: {v:8.0f} {unit}  ({v / rates['fp32']:.1f}x fp32){native}")
    print(f"  memory bandwidth (copy of {cfg.copy_mb} MB): {bandwidth:.1f} GB/s")
    return Roofs(gflops=rates, ms=ms, bandwidth_gb_s=bandwidth, skipped=skipped)
