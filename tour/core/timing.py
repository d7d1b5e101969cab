"""The one timer every stop and `tour bench` use: the median of a call in ms (CUDA events on a GPU, host wall time
around device syncs elsewhere), several variants interleaved side by side, and the warm-up before a timed region.
"""

from __future__ import annotations

import math
import statistics
import time

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on this device (its index honoured: cuda:1, not the current GPU)."""
    mod = getattr(torch, device.type, None)
    if device.type == "cpu" or mod is None or not hasattr(mod, "synchronize"):
        return
    if device.type in ("cuda", "xpu"):
        mod.synchronize(device)
    else:  # mps: one device, no argument
        mod.synchronize()


# A CUDA sample spans at least this long (k calls back to back between two events): a kernel of a few microseconds
# is then timed by the GPU's clock, not drowned in a host timer's and a sync's 10-30 us.
MIN_SAMPLE_MS = 1.0
MAX_CALLS_PER_SAMPLE = 100


def median_ms(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median time of one `fn()` call in ms, after `warmup` calls. The one timer every stop and `tour bench` use.
    On CUDA: `repeats` samples of k calls each between CUDA events on the device's stream, one sync at the end
    (`cuda_median_ms`). Elsewhere: host wall time, waiting for the device around each call, so a GPU's work is
    measured and not just its launch."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        return cuda_median_ms(fn, device, repeats)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def output_and_median_ms(fn, device: torch.device, repeats: int, warmup: int = 0):
    """(fn's output, `median_ms`): the output of the last call, so the call that answers is also a timed one. For
    a model that already ran this path (or, with warmup=new_shape_warmup(device), any path) a separate untimed
    first call only doubles the cost of a median of one."""
    box = {}
    ms = median_ms(lambda: box.update(out=fn()), device, repeats, warmup=warmup)
    return box["out"], ms


def medians_ms(fns: dict, device: torch.device, repeats: int, warmup: int = 1,
               budget_s: float | None = None) -> dict:
    """`median_ms` for several variants side by side: each round times every variant once (interleaved), so a
    neighbour that slows the machine for a while slows them all alike and their ratios stay fair. `budget_s`: no
    new round once the rounds so far took that long (at least one round): for calls of seconds each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {label: [] for label in fns}
    start = time.perf_counter()
    for _ in range(repeats):
        for label, fn in fns.items():
            times[label].append(median_ms(fn, device, 1, warmup=0))
        if budget_s is not None and time.perf_counter() - start >= budget_s:
            break
    return {label: statistics.median(t) for label, t in times.items()}


def cuda_median_ms(fn, device: torch.device, repeats: int) -> float:
    """`median_ms` on CUDA: k calls per sample, k chosen from one timed call so a sample lasts MIN_SAMPLE_MS."""
    with torch.cuda.device(device):  # events and kernels on this device's stream, also for cuda:1
        first = _cuda_sample(fn, 1)
        torch.cuda.synchronize(device)
        one = first[0].elapsed_time(first[1])
        calls = max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(MIN_SAMPLE_MS / max(one, 1e-3))))
        samples = [_cuda_sample(fn, calls) for _ in range(repeats)]
        torch.cuda.synchronize(device)  # the one host wait: every event has happened
    return statistics.median(start.elapsed_time(end) / calls for start, end in samples)


def _cuda_sample(fn, calls: int):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    return start, end


def new_shape_warmup(device: torch.device) -> int:
    """Untimed calls to make before timing a shape the model has not run yet: an accelerator picks its kernels and
    grows its allocator on that first call (1); on a CPU it costs oneDNN a few ms of set-up, nothing beside calls of
    seconds, so the first call is timed (0) and its time not spent twice."""
    return 0 if device.type == "cpu" else 1


def warm_up(device: torch.device) -> None:
    """Pay an accelerator's one-time costs (its context, the cuBLAS handle and workspace: 100s of ms on the first
    matmul) before a timed region starts. Nothing on CPU, whose timings stay as they were."""
    if device.type == "cpu":
        return
    a = torch.ones(64, 64, device=device, requires_grad=True)
    (a @ a).sum().backward()  # forward and backward GEMMs both
    synchronize(device)
