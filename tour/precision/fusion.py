"""6) torch.compile's fusion gain against tensor size: the same elementwise block eager and compiled from inside L2
to past the last-level cache, and the reason its ratio is what it is here (this CPU's caches, where eager's time
per MB jumps)."""

from __future__ import annotations

import torch

from tour.core.device import cache_sizes
from tour.core.timing import medians_ms, synchronize
from tour.precision.config import Config, Fusion

WIDTH = 512  # the block's last dimension (fp32): a row is 2 KB
# A size's timed rounds stop once they took this long (one round at least): past the caches one eager call takes
# seconds (256 MB: 3 s, its allocations' page faults included), and its ratio is large enough to read from one round
SIZE_BUDGET_S = 3.0


def elementwise_block(x, scale, shift):
    """Four rounds of LayerNorm, GELU, scale/shift, tanh, residual: eager makes ~8 passes over x per round,
    Inductor fuses a round into one or two loops. What fusing saves is memory traffic."""
    for i in range(scale.shape[0]):
        h = torch.nn.functional.gelu(torch.nn.functional.layer_norm(x, x.shape[-1:])) * scale[i] + shift[i]
        x = x + 0.5 * torch.tanh(h)
    return x


def fusion_sweep(sizes_mb: list[int], device, repeats: int) -> list[dict]:
    """Eager vs compiled at each tensor size (width 512 fp32); one dynamic-shape compile serves every size."""
    scale, shift = torch.ones(4, WIDTH, device=device), torch.zeros(4, WIDTH, device=device)
    compiled = torch.compile(elementwise_block, dynamic=True)
    rows = []
    for mb in sizes_mb:
        x = torch.randn(max(1, mb * 2**20 // (4 * WIDTH)), WIDTH, device=device)
        # the parity call is each side's first call at this size (the compile, or its cache load, happens there):
        # it is the warm-up, and a call past the caches costs the eager side seconds
        same = torch.allclose(compiled(x, scale, shift), elementwise_block(x, scale, shift), atol=1e-4)
        eager, comp = medians_ms({"eager": lambda x=x: elementwise_block(x, scale, shift),
                                  "compiled": lambda x=x: compiled(x, scale, shift)}, device, repeats,
                                 warmup=0, budget_s=SIZE_BUDGET_S).values()
        rows.append({"mb": mb, "eager_ms": eager, "compiled_ms": comp, "ratio": eager / comp, "parity": same})
        del x
        synchronize(device)
    return rows


NO_CACHES_MB = [1, 4, 16, 64, 256]  # where the caches are unknown (a GPU, a CPU without sysfs): past most LLCs
# Quick mode's far end at most: past a desktop's last-level cache. A server VM's sysfs reports the whole socket's
# (480 MB seen here), whose first size past it, 256 MB, cost the eager side 3 s a call (its page faults included),
# while the cache one process really gets ended far below 64 MB (the knee cache_knee finds).
QUICK_MAX_MB = 64


def sweep_mb(caches: dict[str, int], quick: bool) -> list[int]:
    """Sizes from 1 MB, x4 per step, to the first one whose input and output no longer fit the last-level cache:
    one point in DRAM is enough to show the jump, and each size past it costs the eager side seconds per call
    (256 MB took 3 s a call on a 480 MB-L3 VM). Quick mode times the two ends, the far one at most QUICK_MAX_MB."""
    last = max((v for k, v in caches.items() if k != "L1d"), default=0)
    if not last:
        sizes = list(NO_CACHES_MB)
    else:
        sizes = [1]
        while 2 * sizes[-1] * 2**20 <= last:
            sizes.append(sizes[-1] * 4)
    return [sizes[0], min(sizes[-1], QUICK_MAX_MB)] if quick else sizes


def cache_level(mb: int, caches: dict[str, int]) -> str:
    """The smallest cache that holds a tensor of `mb` MB plus its output, or "DRAM"."""
    for level in ("L2", "L3"):
        if level in caches and 2 * mb * 2**20 <= caches[level]:
            return level
    return "DRAM" if caches else "?"


def size_text(nbytes: int) -> str:
    return f"{nbytes / 2**20:g} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:g} KB"


def fusion_reason(rows: list[dict], caches: dict[str, int]) -> str:
    """Why the ratio is what it is here, from the measured rows and this CPU's caches."""
    sizes = ", ".join(f"{k} {size_text(v)}" for k, v in caches.items()) or "cache sizes unknown"
    by_level = {}
    for r in rows:
        by_level.setdefault(r.get("where") or cache_level(r["mb"], caches), []).append(r["ratio"])
    spread = "; ".join(f"in {lvl}: {min(v):.2f}-{max(v):.2f}x" for lvl, v in by_level.items())
    grows = rows[-1]["ratio"] > rows[0]["ratio"] * 1.2
    verdict = ("the gain grows as the tensors leave the caches, as the bandwidth argument predicts" if grows else
               "the gain does not grow with size here, so memory traffic is not what limits this block on this CPU; "
               "likely the maths (erf, tanh, LayerNorm's reductions) on few cores is")
    return (f"caches {sizes}. Fusing saves passes over memory: while input and output fit in a cache, eager's "
            f"extra passes are cheap; once they spill to DRAM each pass costs bandwidth. Measured {spread}: {verdict}."
            + cache_knee(rows))


def cache_knee(rows: list[dict]) -> str:
    """Where eager's time per MB jumps (at least 2x between two sizes): the cache this process really gets ends
    there, which can be far below the last-level size sysfs reports (shared by a whole socket, other tenants)."""
    per_mb = [r["eager_ms"] / r["mb"] for r in rows]
    for (a, b), (pa, pb) in zip(zip(rows, rows[1:]), zip(per_mb, per_mb[1:])):
        if pb > 2 * pa:
            return (f" Eager's time per MB jumps {pb / pa:.1f}x between {a['mb']} and {b['mb']} MB: the cache this "
                    f"process really gets ends there.")
    return ""


def measure(cfg: Config, device) -> Fusion:
    """The sweep in the tour's Inductor cache (a second run compiles from it), each size placed in its cache."""
    from tour.core.inductor import compile_problem, inductor_cache

    problem = compile_problem(device)
    if problem:
        print(f"  skipped: {problem}")
        return Fusion(rows=[], parity=None, reason="", skipped={"compile": problem})
    caches = cache_sizes() if device.type == "cpu" else {}
    with inductor_cache():
        swept = fusion_sweep(cfg.fusion_mb or sweep_mb(caches, cfg.quick), device, cfg.repeats)
    rows = [r | {"where": cache_level(r["mb"], caches)} for r in swept]
    for r in rows:
        print(f"  {r['mb']:>5} MB ({r['where']:>4}): eager {r['eager_ms']:8.2f} ms, compiled {r['compiled_ms']:8.2f} "
              f"ms: {r['ratio']:.2f}x")
    reason = fusion_reason(rows, caches)
    print(f"  why: {reason}")
    return Fusion(rows=rows, parity=all(r["parity"] for r in rows), reason=reason, skipped={})
