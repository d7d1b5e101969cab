"""This machine's roofs: the peak matmul rate per dtype and the memory copy bandwidth, measured once per process
and shared, so `tour bench`, the precision stop and the generate stop hold their figures to the same numbers.

A peak is the best rate over a few sizes (a small matmul is dominated by overhead: on an AMX CPU bf16 reached
1048 GFLOP/s at n=1024 and 2202 at n=2048), each timed warm with the core's timer (tour.core.timing.median_ms).
Quick mode times the same sizes with fewer repeats, so its roof is within noise of the full one. A figure held
to a roof is a share of it in [0, 1]: above 1 the roof was mis-measured (a neighbour slowed its timing), so it
is measured again once, and a share still above is clamped and says so.
A GPU sanity pass: `print("\\n".join(roofs.describe(roofs.measure(torch.device("cuda")))))`.
Imports no torch at the top (the report reads `share`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# n of the n x n matmuls a peak is sought over, by device type: on a CPU a call at n=2048 lasts ~10-150 ms; on a
# GPU n=1024-2048 is over in tens of microseconds (launch-bound), while 4096-8192 keeps the tensor cores busy.
CPU_SIZES = (1024, 2048)
ACCELERATOR_SIZES = (4096, 8192)
IF_CHEAP = (3072,)  # tried too where one call would last under MAX_CALL_MS at the best rate the others reached
MAX_CALL_MS = 250.0
REPEATS = {False: 5, True: 3}  # timed calls per size after warm-up (median), full / quick mode
WARMUP = 2  # untimed calls first: page faults, oneDNN's / cuBLAS's kernel choice
COPY_MIB = {"cpu": 256}  # MiB copied for the bandwidth: past a CPU's last-level cache; a GPU: 1 GiB (below)
ACCELERATOR_COPY_MIB = 1024

_ms: dict[tuple, float] = {}  # (device key, dtype name, n) -> best median ms of one matmul seen in this process
_copies: dict[tuple, float] = {}  # (device key, MiB) -> best copy bandwidth in GB/s seen in this process
_rechecked: set[tuple] = set()  # roofs already measured again because a figure beat them (once each)


@dataclass(frozen=True)
class Peak:
    """A dtype's matmul roof: the best rate over the sizes tried, the n that reached it and its ms per call."""

    rate: float  # G(FL)OP/s (int8: GOP/s): 2 n^3 / ms
    n: int
    ms: float
    tried: tuple[int, ...] = ()  # every n timed for this dtype in this process, ascending


@dataclass(frozen=True)
class Roof:
    """What `measure` found: each dtype's peak, the copy bandwidth, and the dtypes not measured here with why."""

    device: str
    peaks: dict[str, Peak] = field(default_factory=dict)  # "fp32", "bf16", "fp16", "int8" -> its peak
    bandwidth_gb_s: float | None = None  # (read + written) bytes / time of a large copy
    copy_mib: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # dtype name -> why it has no roof here

    @property
    def rates(self) -> dict[str, float]:
        return {k: p.rate for k, p in self.peaks.items()}

    @property
    def n(self) -> dict[str, int]:
        return {k: p.n for k, p in self.peaks.items()}

    @property
    def ms(self) -> dict[str, float]:
        return {k: p.ms for k, p in self.peaks.items()}


# sizes: pure functions of the device type ------------------------------------------------------------------------
def sizes(device_type: str, extra: int | None = None) -> tuple[int, ...]:
    """The n tried for a peak on this kind of device, ascending (IF_CHEAP's only where cheap: `peak`); `extra` (a
    user's --roof-n) joins them."""
    base = (*CPU_SIZES, *IF_CHEAP) if device_type == "cpu" else ACCELERATOR_SIZES
    return tuple(sorted(set(base) | ({multiple_of_8(extra)} if extra else set())))


def multiple_of_8(n: int) -> int:
    """`n` rounded up to a multiple of 8: torch._int_mm's rule on CUDA (every dtype uses the same sizes)."""
    return -(-n // 8) * 8


def copy_mib(device_type: str) -> int:
    return COPY_MIB.get(device_type, ACCELERATOR_COPY_MIB)


# what is measured -------------------------------------------------------------------------------------------------
def skip_reason(device, dtype) -> str | None:
    """Why `dtype` has no roof on this hardware, or None. A dtype the hardware names (AVX512-FP16) is measured even
    where torch's kernels don't use it: that shows in its rate."""
    import torch

    from tour.core import dtypes
    from tour.core.torch_private import int_mm

    if dtype == torch.float32:
        return None
    named = any(dtypes.dtype_name(dtype).upper() in p.upper() for p in dtypes.fast_paths(device))
    if not (dtypes.supports_dtype(device, dtype) or named):
        return "not on this hardware"
    if dtype == torch.int8 and int_mm() is None:
        return "this torch has no torch._int_mm"
    return None


def matmul_call(dtype, n: int, device):
    """A call that multiplies two n x n matrices in `dtype` (2 n^3 operations). int8 runs torch._int_mm (int32
    accumulators), whose CUDA kernel wants B column-major: B is stored transposed and read back as its .t()."""
    import torch

    from tour.core.torch_private import int_mm

    if dtype == torch.int8:
        mm = int_mm()
        a = torch.randint(-127, 128, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-127, 128, (n, n), dtype=torch.int8, device=device).t().contiguous().t()
        return lambda: mm(a, b)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return lambda: a @ b


def rate(n: int, ms: float) -> float:
    """G(FL)OP/s of an n x n matmul that took `ms`."""
    return 2 * n**3 / ms / 1e6


def _key(device) -> tuple:
    """What a roof depends on besides dtype and size: the device, and on a CPU the threads torch uses."""
    import torch

    from tour.core.device import indexed

    device = indexed(device)
    if device.type == "cpu":
        return ("cpu", torch.get_num_threads())
    return (str(device),)


def _time_matmul(device, dtype, n: int, quick: bool) -> float:
    from tour.core import dtypes
    from tour.core import timing

    call = matmul_call(dtype, n, device)
    with dtypes.ieee_fp32():  # fp32's roof in IEEE fp32 (TF32 off): the maths the tour's fp32 rows run in
        return timing.median_ms(call, device, REPEATS[quick], warmup=WARMUP)


def _best(key: tuple, name: str) -> Peak | None:
    timed = sorted((n, ms) for (k, d, n), ms in _ms.items() if k == key and d == name)
    best = max(timed, key=lambda t: rate(*t), default=None)
    return Peak(rate(*best), *best, tuple(n for n, _ in timed)) if best else None


def peak(device, dtype, quick: bool = False, extra_n: int | None = None, at_least: float | None = None) -> Peak:
    """`dtype`'s matmul roof on `device`: the best rate over `sizes` (and every size already timed in this process),
    each size timed once per process (an IF_CHEAP size only where it is cheap here; a user's `extra_n` always). `at_least`: a rate some figure reached; a roof below
    it is measured again, once per process, and the better samples kept."""
    import torch

    from tour.core import dtypes

    device, key, name = torch.device(device), _key(device), dtypes.dtype_name(dtype)
    asked = multiple_of_8(extra_n) if extra_n else None
    for n in sizes(device.type, extra_n):
        best = _best(key, name)
        slow = n in IF_CHEAP and n != asked and best is not None and 2 * n**3 / best.rate / 1e6 > MAX_CALL_MS
        if (key, name, n) not in _ms and not slow:
            _ms[key, name, n] = _time_matmul(device, dtype, n, quick)
    found = _best(key, name)
    if at_least is not None and found.rate < at_least and (key, name) not in _rechecked:
        _rechecked.add((key, name))
        print(f"  a figure reached {at_least:.0f} G(FL)OP/s, above the {name} roof ({found.rate:.0f}): measuring "
              "the roof again")
        for n in [n for (k, d, n) in _ms if (k, d) == (key, name)]:
            _ms[key, name, n] = min(_ms[key, name, n], _time_matmul(device, dtype, n, quick))
        found = _best(key, name)
    return found


def bandwidth_gb_s(device, mib: int | None = None, quick: bool = False, at_least: float | None = None) -> float:
    """(read + written) bytes / median time of a copy of `mib` MiB (default `copy_mib`): the memory roof decoding
    runs into. Timed once per process per size; `at_least` as in `peak`."""
    import torch

    from tour.core import timing

    device = torch.device(device)
    mib = mib or copy_mib(device.type)
    key = (*_key(device), mib)
    fresh = key not in _copies
    if not fresh and at_least is not None and _copies[key] < at_least and key not in _rechecked:
        _rechecked.add(key)
        print(f"  a figure reached {at_least:.1f} GB/s, above the copy bandwidth ({_copies[key]:.1f}): measuring "
              "it again")
        fresh = True
    if fresh:
        src = torch.ones(mib * 2**20 // 4, device=device)
        dst = torch.empty_like(src)
        ms = timing.median_ms(lambda: dst.copy_(src), device, REPEATS[quick], warmup=1)
        _copies[key] = max(_copies.get(key, 0.0), 2 * src.numel() * 4 / ms / 1e6)
    return _copies[key]


def measure(device, dtypes=None, quick: bool = False, extra_n: int | None = None, copy_mb: int | None = None,
            bandwidth: bool = True) -> Roof:
    """Each dtype's peak (default: fp32, bf16, fp16, int8; one this hardware has no fast path for is skipped with
    the reason) and, with `bandwidth`, the copy bandwidth. Reuses whatever this process measured already."""
    import torch

    from tour.core.dtypes import dtype_name

    device = torch.device(device)
    peaks, skipped = {}, {}
    for dtype in dtypes or (torch.float32, torch.bfloat16, torch.float16, torch.int8):
        why = skip_reason(device, dtype)
        if why:
            skipped[dtype_name(dtype)] = why
        else:
            peaks[dtype_name(dtype)] = peak(device, dtype, quick, extra_n)
    mib = copy_mb or copy_mib(device.type)
    return Roof(str(device), peaks, bandwidth_gb_s(device, mib, quick) if bandwidth else None, mib, skipped)


def forget() -> None:
    """Drop every measured roof (tests; a process whose load changed)."""
    _ms.clear()
    _copies.clear()
    _rechecked.clear()


# figures held to a roof --------------------------------------------------------------------------------------------
def share(value: float, roof: float) -> float:
    """`value` as a share of its roof, in [0, 1]: above 1 the roof, not the figure, was wrong."""
    return min(1.0, max(0.0, value / roof)) if roof > 0 else 0.0


def share_text(value: float, roof: float, of: str = "of the roof") -> str:
    """'40% of the bf16 roof'; a figure above its roof reads '100% of it (clamped: measured 112%, so the roof was
    measured under load)', never a share above 100% on its own."""
    text = f"{share(value, roof):.0%} {of}"
    if roof > 0 and value > roof:
        text += f" (clamped: measured {value / roof:.0%}, so the roof was measured under load)"
    return text


def describe(roof: Roof) -> list[str]:
    """One printed line per dtype's peak (against fp32's), per skipped dtype, and the bandwidth."""
    fp32 = roof.rates.get("fp32")
    lines = [f"peak matmul {k:>4}: {p.rate:8.0f} {'GOP/s' if k == 'int8' else 'GFLOP/s'} at n={p.n} "
             f"({p.ms:.2f} ms; n tried: {', '.join(map(str, p.tried))})"
             + (f"  {p.rate / fp32:.1f}x fp32" if fp32 and k != "fp32" else "") for k, p in roof.peaks.items()]
    lines += [f"peak matmul {k:>4}: skipped ({why})" for k, why in roof.skipped.items()]
    if roof.bandwidth_gb_s is not None:
        lines.append(f"memory bandwidth (copy of {roof.copy_mib} MiB): {roof.bandwidth_gb_s:.1f} GB/s")
    return lines


def flops_per_call(fn) -> int:
    """FLOPs of one `fn()` call, counted by FlopCounterMode (matmuls, convolutions, attention); a model's rate is
    this over its median time."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()
