"""gpu-check's first look at the device, straight through torch, before any stop: is the arithmetic right, how fast
is it, does the compiler work?

    python -m tour.tools.gpu_check.sanity --device cuda --json sanity.json [--quick]

Parts, each recorded in the JSON as soon as it ends (a part that hangs and is killed leaves the ones before it):
  facts      the device, its memory and capability, torch / CUDA / Triton versions, TF32 settings
  matmul     fp32, bf16 and fp16 products checked against a float64 reference on the CPU (relative error)
  roofs      the machine's roof from the core: each dtype's matmul rate at sizes that reach the peak, copy bandwidth
  compile    torch.compile of a small fused function on the device (Triton on a GPU, C++ on the CPU) vs eager
  sdpa       which scaled_dot_product_attention backends run here (flash, memory-efficient, math) and agree
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Relative error of an n x n product against float64 that a correct kernel stays under: fp32 (TF32 may be on for
# matmuls on Ampere and later: 10 mantissa bits), bf16 (8 bits), fp16 (11 bits), all with fp32 accumulation.
MATMUL_TOLERANCE = {"float32": 5e-3, "bfloat16": 2e-2, "float16": 5e-3}


def facts(device) -> dict:
    import torch

    from tour.core import device as dev
    from tour.core import dtypes

    found = {"device": str(device), "name": dev.device_name(device), "torch": torch.__version__,
             "cuda_build": torch.version.cuda, "memory_gib": round((dev.memory_bytes(device) or 0) / 2**30, 1),
             "tf32": dtypes.tf32_enabled()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        found.update(capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                     cudnn=torch.backends.cudnn.version(), devices=torch.cuda.device_count())
    try:
        import triton

        found["triton"] = triton.__version__
    except ImportError:
        found["triton"] = None
    return found


def matmul(device, n: int = 1024) -> dict:
    """Each float dtype's product against float64 on the CPU: a wrong kernel, a broken cuBLAS or a card that
    computes garbage shows here before any model does."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen, dtype=torch.float64), torch.randn(n, n, generator=gen, dtype=torch.float64)
    ref = a @ b
    rows = {}
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        name = str(dtype).removeprefix("torch.")
        got = (a.to(device, dtype) @ b.to(device, dtype)).double().cpu()
        err = float((got - ref).norm() / ref.norm())
        rows[name] = {"relative_error": err, "ok": err < MATMUL_TOLERANCE[name], "tolerance": MATMUL_TOLERANCE[name]}
    return rows


def roofs(device, quick: bool) -> dict:
    """The core's roof: what every '% of the roof' figure in the tour is measured against."""
    from tour.core import roofs as core_roofs

    roof = core_roofs.measure(device, quick=quick)
    for line in core_roofs.describe(roof):
        print(f"  {line}", flush=True)
    return {"rates": roof.rates, "sizes": roof.n, "ms": roof.ms, "bandwidth_gb_s": roof.bandwidth_gb_s,
            "copy_mib": roof.copy_mib, "skipped": roof.skipped}


def compiled(device) -> dict:
    import torch

    def block(x):
        return torch.nn.functional.gelu(x * 1.5 + 0.5) * torch.sigmoid(x)

    x = torch.randn(4096, 1024, device=device)
    start = time.perf_counter()
    fast = torch.compile(block)
    got = fast(x)
    cold = time.perf_counter() - start
    err = float((got - block(x)).abs().max())
    return {"cold_compile_s": round(cold, 2), "max_abs_error": err, "ok": err < 1e-4}


def sdpa(device) -> dict:
    """Each backend alone on a causal bf16 (fp32 on the CPU) problem; which ran and whether it agrees with math."""
    import torch
    import torch.nn.functional as F

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return {"error": "this torch has no torch.nn.attention.sdpa_kernel"}
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (torch.randn(2, 8, 512, 64, device=device, dtype=dtype) for _ in range(3))
    with sdpa_kernel(SDPBackend.MATH):
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True).float()
    found = {}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
        backend = getattr(SDPBackend, name, None)
        if backend is None:
            continue
        try:
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True).float()
        except RuntimeError as e:  # "No available kernel": this backend does not run here
            found[name.lower()] = {"ran": False, "why": str(e).splitlines()[0][:160]}
            continue
        # atol + rtol * |ref|: one bf16 ulp at |o| ~ 4 is 0.031
        ok = bool(((out - ref).abs() <= 2e-2 + 2e-2 * ref.abs()).all())
        found[name.lower()] = {"ran": True, "agrees_with_math": ok}
    return found


PARTS = {"facts": lambda d, q: facts(d), "matmul": lambda d, q: matmul(d), "roofs": roofs,
         "compile": lambda d, q: compiled(d), "sdpa": lambda d, q: sdpa(d)}


def failed(parts: dict) -> list[str]:
    """What the recorded parts say is wrong, one line each."""
    found = [f"{name}: {part['error']}" for name, part in parts.items() if isinstance(part, dict) and "error" in part]
    found += [f"matmul {k}: relative error {v['relative_error']:.1e} over {v['tolerance']:g}"
              for k, v in parts.get("matmul", {}).items() if isinstance(v, dict) and v.get("ok") is False]
    if parts.get("compile", {}).get("ok") is False:
        found.append(f"compile: max |compiled - eager| {parts['compile']['max_abs_error']:.1e}")
    found += [f"sdpa {k}: disagrees with math" for k, v in parts.get("sdpa", {}).items()
              if isinstance(v, dict) and v.get("agrees_with_math") is False]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tour.tools.gpu_check.sanity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", required=True, help="where to write the parts as they end")
    parser.add_argument("--quick", action="store_true", help="fewer repeats for the roofs")
    args = parser.parse_args(argv)
    from tour.core import device as dev
    from tour.core import timing
    from tour.core.errors import TourError

    try:
        device = dev.get_device(args.device)
    except TourError as e:
        print(f"gpu-check sanity: error: {e}", file=sys.stderr)
        return 2
    timing.warm_up(device)
    path, parts = Path(args.json), {}
    for name, part in PARTS.items():
        start = time.perf_counter()
        try:
            parts[name] = part(device, args.quick)
        except Exception as e:  # noqa: BLE001 - one broken part must not hide the others
            parts[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
        print(f"{name} ({time.perf_counter() - start:.1f} s): {json.dumps(parts[name])}", flush=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(parts, indent=1))
        tmp.replace(path)  # a reader never sees half a file
    bad = failed(parts)
    for line in bad:
        print(f"FAILED {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
