"""The one place that decides device and dtype. Every stop asks here; no stop names a device itself.

Order: an explicit `device=` argument, then the TOUR_DEVICE environment variable, then the best device present
(`torch.accelerator` where the build has it, else cuda, mps, xpu), falling back to cpu.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from tour.core.config import FLOAT_DTYPES  # the --dtype choices: with the flags, torch-free
from tour.core.errors import TourError

ENV_VAR = "TOUR_DEVICE"
# Device types the tour knows how to probe, best first. torch knows more (meta, hpu, ...), but a tour stop
# running on "meta" would compute nothing, so those are refused with the list below.
KNOWN = ("cuda", "mps", "xpu", "cpu")
# Device types on which torch.compile's Inductor generates Triton kernels (it writes C++ on cpu).
TRITON_TYPES = ("cuda", "xpu")


def _backend_available(kind: str) -> bool:
    """Is a device of this type really usable here (not merely compiled into the build)?"""
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if kind == "xpu":
        return hasattr(torch, "xpu") and torch.xpu.is_available()
    return False


def _device_count(kind: str) -> int:
    if kind == "cpu":
        return 1
    if kind == "mps":
        return 1 if _backend_available("mps") else 0
    mod = getattr(torch, kind, None)
    return mod.device_count() if mod is not None and _backend_available(kind) else 0


def _auto() -> tuple[str, str]:
    """Best device present, with the reason it was chosen."""
    acc = getattr(torch, "accelerator", None)
    # torch.accelerator.current_accelerator() names the *build's* backend (a CUDA build says "cuda" on a
    # machine with no GPU), so it only counts when is_available() agrees.
    if acc is not None and acc.is_available():
        kind = acc.current_accelerator().type
        return kind, f"torch.accelerator reports {kind} available"
    for kind in KNOWN[:-1]:
        if _backend_available(kind):
            return kind, f"{kind} is available"
    return "cpu", "no accelerator available (checked torch.accelerator, cuda, mps, xpu)"


def _parse(spec: str, source: str) -> torch.device:
    """Turn a user's string into a device, with an error that lists the valid choices."""
    choices = ", ".join(("auto",) + KNOWN)
    try:
        dev = torch.device(spec.strip().lower())
    except (RuntimeError, ValueError):
        raise TourError(f"unknown device {spec!r} from {source}; choose one of: {choices}") from None
    if dev.type not in KNOWN:
        raise TourError(f"unsupported device {spec!r} from {source}; choose one of: {choices}")
    if not _backend_available(dev.type):
        raise TourError(f"device {spec!r} from {source} is not available on this machine "
                        f"(best available: {_auto()[0]}); use --device auto or cpu", kind="device_absent")
    count = _device_count(dev.type)
    if dev.index is not None and dev.index >= count:
        raise TourError(f"device {spec!r} from {source} does not exist: this machine has {count} {dev.type} "
                        f"device(s)", kind="device_absent")
    return dev


@dataclass(frozen=True)
class Choice:
    device: torch.device
    reason: str  # why this device: "--device cuda", "TOUR_DEVICE=cpu", "cuda is available", ...


def choose(device: str | torch.device | None = None) -> Choice:
    """Pick the device, explaining why. `device` wins over TOUR_DEVICE, which wins over auto."""
    if isinstance(device, torch.device):
        return Choice(_parse(str(device), "the device argument"), "given as an argument")
    if device and device.strip().lower() != "auto":
        return Choice(_parse(device, "--device"), f"--device {device}")
    env = os.environ.get(ENV_VAR, "").strip()
    if env and env.lower() != "auto":
        return Choice(_parse(env, f"{ENV_VAR}={env}"), f"{ENV_VAR}={env}")
    kind, reason = _auto()
    return Choice(torch.device(kind), reason)


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device a stop should use. Raises TourError (a one-line message) on a bad or absent device."""
    return choose(device).device


def present_devices() -> list[str]:
    """cpu, then every accelerator device torch can really use here, one entry per GPU ("cuda:0", "mps", ...)."""
    found = ["cpu"]
    for kind in KNOWN[:-1]:
        if _backend_available(kind):
            found += [kind] if kind == "mps" else [f"{kind}:{i}" for i in range(_device_count(kind))]
    return found


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory still free on the device, where torch can tell (CUDA); None elsewhere."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return None


def get_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision (training) dtype on this device: bf16 on an accelerator that runs it natively
    (`supports_dtype`: Ampere and newer, an Intel GPU's XMX; not a T4 or V100, which emulate it), else fp32.
    Inference in bf16 where a CPU has AMX/AVX512-BF16 is `inference_dtype`'s choice, not this one."""
    # CPU policy: fp32 even with AMX-BF16. Mixed-precision training on a CPU gains little over fp32 and moves the
    # numbers the stops compare with their fp32 references (losses, parity), so the tour trains in fp32 there.
    if device.type == "cpu":
        return torch.float32
    return torch.bfloat16 if supports_dtype(device, torch.bfloat16) else torch.float32


# Low-precision fast paths by the dtype they speed up. CPU names are the instruction sets oneDNN's kernels use
# (Linux /proc/cpuinfo flags in upper case); GPU names say which tensor-core generation the compute capability has.
# AVX512-FP16 is listed by fast_paths but speeds up nothing here: on a Sapphire Rapids CPU that has it, an fp16
# 2048² matmul ran at 0.8x fp32 (torch 2.14), so only AMX-FP16 (Granite Rapids), which oneDNN targets, counts.
FAST_PATHS_FOR = {
    torch.bfloat16: ("AMX-BF16", "AVX512-BF16", "tensor cores (bf16)", "XMX (bf16)"),
    torch.float16: ("AMX-FP16", "tensor cores (fp16)", "XMX (fp16)", "Metal (fp16)"),
    torch.int8: ("AMX-INT8", "AVX512-VNNI", "AVX-VNNI", "tensor cores (int8)"),
}
_CPU_FLAGS = {"amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8", "amx_fp16": "AMX-FP16", "avx512_bf16": "AVX512-BF16",
              "avx512_fp16": "AVX512-FP16", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI"}
# (compute capability, what it added): Volta fp16 tensor cores, Turing int8 (torch._int_mm), Ampere bf16 + TF32
_CUDA_PATHS = (((7, 0), "tensor cores (fp16)"), ((7, 5), "tensor cores (int8)"), ((8, 0), "tensor cores (bf16)"),
               ((8, 0), "TF32"))
DTYPE_NAMES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:  # not Linux: torch's own capability string is all we know
        return set()


def fast_paths(device: torch.device) -> tuple[str, ...]:
    """The low-precision fast paths this hardware has, by name (AMX-BF16, AVX512-BF16, tensor cores (bf16), TF32...).
    Empty means fp32 is the only dtype that runs at full speed here; others work but are emulated."""
    if device.type == "cpu":
        flags = _cpu_flags()
        return tuple(name for flag, name in _CPU_FLAGS.items() if flag in flags)
    if device.type == "cuda":
        cc = torch.cuda.get_device_capability(device)
        return tuple(name for need, name in _CUDA_PATHS if cc >= need)
    if device.type == "xpu":
        return ("XMX (bf16)", "XMX (fp16)")
    if device.type == "mps":
        return ("Metal (fp16)",)
    return ()


def dtype_fast_paths(device: torch.device, dtype: torch.dtype) -> list[str]:
    """The fast paths this hardware has that speed up `dtype` (["AMX-BF16", "AVX512-BF16"] for bf16 on a recent
    Xeon); empty where `dtype` would be emulated."""
    wanted = FAST_PATHS_FOR.get(dtype, ())
    # fast_paths is looked up at call time, so a test can force a device without fast paths
    return [p for p in fast_paths(device) if p in wanted]


def supports_dtype(device: torch.device, dtype: torch.dtype) -> bool:
    """Does this hardware run `dtype` natively (a fast path), not by emulation slower than fp32? fp32 always."""
    return dtype == torch.float32 or bool(dtype_fast_paths(device, dtype))


def inference_dtype(device: torch.device) -> torch.dtype:
    """The dtype to run inference in on this device: bf16 where it is native (fp32's range, so no overflow), else
    fp16 on a GPU with fp16 fast paths, else fp32. Training keeps `get_dtype` (fp32 on CPU)."""
    if supports_dtype(device, torch.bfloat16):
        return torch.bfloat16
    if device.type != "cpu" and supports_dtype(device, torch.float16):
        return torch.float16
    return torch.float32


def parse_dtype(name: str, device: torch.device, flag: str = "--dtype") -> torch.dtype:
    """'auto' (inference_dtype) or one of DTYPE_NAMES -> a torch dtype; anything else is a one-line error."""
    if name == "auto":
        return inference_dtype(device)
    if name not in DTYPE_NAMES:
        raise TourError(f"{flag} {name!r} is not a dtype the tour knows; choose one of: auto, "
                        f"{', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> 'bf16': the tour's short name (DTYPE_NAMES), else torch's own."""
    return next((k for k, v in DTYPE_NAMES.items() if v == dtype), str(dtype).removeprefix("torch."))


def choose_dtype(name: str, device: torch.device, flag: str = "--dtype") -> tuple[torch.dtype, str]:
    """A stop's `--dtype NAME` -> (dtype, what to print about the choice). 'auto' is `inference_dtype` (bf16
    where this hardware has a bf16 fast path...); an explicit dtype runs even without a fast path, and says that
    it is emulated there (usually slower than fp32)."""
    if name not in FLOAT_DTYPES:
        raise TourError(f"{flag} {name!r} is not a float dtype a stop can run in; choose one of: "
                        f"{', '.join(FLOAT_DTYPES)}")
    dtype = parse_dtype(name, device, flag)
    paths = dtype_fast_paths(device, dtype)
    if name == "auto":
        why = (f"auto: {', '.join(paths)} on this {device.type}" if paths
               else f"auto: no bf16/fp16 fast path on this {device.type}, so fp32")
    elif not supports_dtype(device, dtype):
        why = f"{flag} {name}: no fast path on this {device.type}, so emulated (usually slower than fp32)"
    else:
        why = f"{flag} {name}"
    return dtype, f"{dtype_name(dtype)} ({why})"


def cache_sizes() -> dict[str, int]:
    """CPU cache sizes in bytes by level ("L1d", "L2", "L3"), from sysfs (Linux); empty where unknown."""
    import glob
    from pathlib import Path

    sizes = {}
    for folder in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            level, kind, size = (Path(folder, name).read_text().strip() for name in ("level", "type", "size"))
        except OSError:
            continue
        if kind == "Instruction":
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        sizes[f"L{level}" + ("d" if kind == "Data" else "")] = int(size.rstrip("KMG")) * units.get(size[-1], 1)
    return sizes


def autocast(device: torch.device, dtype: torch.dtype | None = None):
    """An autocast context where it helps (a bf16-capable accelerator), a no-op context elsewhere. On CPU only an
    explicit `dtype` (e.g. `inference_dtype(device)`, which the precision stop checks against fp32) autocasts:
    the default stays fp32 there, so the other stops' numbers match their fp32 references."""
    dtype = dtype or get_dtype(device)
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) in one call."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds cuda/mps/xpu generators too


def synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on this device (its index honoured: cuda:1, not the current GPU)."""
    mod = getattr(torch, device.type, None)
    if device.type == "cpu" or mod is None or not hasattr(mod, "synchronize"):
        return
    if device.type in ("cuda", "xpu"):
        mod.synchronize(device)
    else:  # mps: one device, no argument
        mod.synchronize()


# TF32 -----------------------------------------------------------------------------------------------------------
# On Ampere and newer, fp32 matmuls and cuDNN convolutions may run in TF32 (10-bit mantissa): faster, but off from
# an IEEE fp32 reference by ~1e-3. torch's defaults: matmul IEEE, cuDNN convolutions TF32. torch 2.9 added a
# per-operator API (fp32_precision = "ieee" / "tf32"); reading the legacy flags after using it raises, so the new
# one is used where it exists.


def _precision_slots() -> dict | None:
    """The new API's settings objects by operator, or None on a torch without them."""
    b = torch.backends
    slots = {"matmul": b.cuda.matmul, "conv": getattr(b.cudnn, "conv", None), "rnn": getattr(b.cudnn, "rnn", None)}
    return slots if all(hasattr(v, "fp32_precision") for v in slots.values()) else None


def tf32_enabled() -> dict[str, bool]:
    """Whether TF32 is allowed now for fp32 matmuls and for cuDNN convolutions."""
    slots = _precision_slots()
    if slots is None:
        return {"matmul": torch.backends.cuda.matmul.allow_tf32, "conv": torch.backends.cudnn.allow_tf32}
    inherited = getattr(torch.backends, "fp32_precision", "none")  # "none" on an operator: the global setting
    return {op: (slots[op].fp32_precision if slots[op].fp32_precision != "none" else inherited) == "tf32"
            for op in ("matmul", "conv")}


def precision_note(device: torch.device) -> str:
    """The fp32 precision in force, for the device line and the bench files: "TF32 matmul off, cuDNN conv on" on
    CUDA; "" elsewhere (TF32 is a CUDA tensor-core mode)."""
    if device.type != "cuda":
        return ""
    state = tf32_enabled()
    return f"TF32 matmul {'on' if state['matmul'] else 'off'}, cuDNN conv {'on' if state['conv'] else 'off'}"


@contextmanager
def ieee_fp32():
    """fp32 matmuls and cuDNN convolutions in IEEE fp32 (TF32 off) for the duration, then the caller's settings back.
    Parity checks (eager vs compiled, vs a package) run inside, so a TF32 rounding difference is not a failure."""
    slots = _precision_slots()
    if slots is None:
        before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    else:
        before = {op: slot.fp32_precision for op, slot in slots.items()}
        for slot in slots.values():
            slot.fp32_precision = "ieee"
    try:
        yield
    finally:
        if slots is None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
        else:
            for op, slot in slots.items():
                slot.fp32_precision = before[op]


@contextmanager
def one_thread():
    """torch on one CPU thread for a while, then back to what it was. For work made of many tiny ops (Silero's
    32 ms audio windows, Pyro's per-step Python), thread hand-offs cost more than the maths, and on busy cores
    they made steps 10-20x slower here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def medians_ms(fns: dict, device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """`median_ms` for several variants side by side: each round times every variant once (interleaved), so a
    neighbour that slows the machine for a while slows them all alike and their ratios stay fair."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {label: [] for label in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            times[label].append(median_ms(fn, device, 1, warmup=0))
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


def warm_up(device: torch.device) -> None:
    """Pay an accelerator's one-time costs (its context, the cuBLAS handle and workspace: 100s of ms on the first
    matmul) before a timed region starts. Nothing on CPU, whose timings stay as they were."""
    if device.type == "cpu":
        return
    a = torch.ones(64, 64, device=device, requires_grad=True)
    (a @ a).sum().backward()  # forward and backward GEMMs both
    synchronize(device)


def memory_bytes(device: torch.device) -> int | None:
    """Total memory of the device where torch can tell; None where it cannot."""
    try:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory
        if device.type == "xpu":
            return torch.xpu.get_device_properties(device).total_memory
        if device.type == "mps":
            return torch.mps.recommended_max_memory()
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError, RuntimeError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "xpu":
        return torch.xpu.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (Metal)"
    import platform

    return platform.processor() or platform.machine()


def busy_cpu_note() -> str | None:
    """A warning when other work already fills the CPU cores and nothing chose this process's threading for it
    (neither the tour's policy, tour.core.threads, nor the user's OMP_* variables): runs will be slow.

    Measured on a 2-core machine beside two small torch jobs: the basics MLP trained slower with OpenMP's
    default (spinning) wait policy and two threads (8-32x), 1.5x with the tour's policy (one thread, PASSIVE).
    """
    from tour.core import threads

    if threads.current() is not None or any(os.environ.get(v) for v in threads.WAIT_VARS):
        return None
    machine = threads.observe()  # the threads policy's own signal: what runs now, not the lagging load average
    cores = threads.usable_cores(machine)
    if machine.load <= cores:
        return None
    return (f"the CPU is busy ({machine.load:.1f} other threads running on {cores} cores): expect slow runs; call "
            "tour.core.threads.configure() before importing torch (the `tour` command does), or set "
            "OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1")


def dtypes_note(device: torch.device) -> str:
    """'training fp32, inference bf16': the two dtypes the helper picks here (get_dtype, inference_dtype), so a stop
    that trains in fp32 and predicts in bf16 doesn't read as a contradiction."""
    train, infer = dtype_name(get_dtype(device)), dtype_name(inference_dtype(device))
    return f"dtype {train}" if train == infer else f"training {train}, inference {infer}"


def describe(device: str | torch.device | None = None) -> str:
    """What was picked and why: name, count, memory, dtype, threads (on cpu: the tour's threading choice and its
    reason, or a warning if the CPU is busy and nothing chose)."""
    choice = choose(device)
    dev = choice.device
    mem = memory_bytes(dev)
    mem_txt = f", {mem / 2**30:.1f} GiB" if mem else ""
    extra = f", {torch.get_num_threads()} threads" if dev.type == "cpu" else ""
    precision = f", {precision_note(dev)}" if precision_note(dev) else ""
    text = (f"device {dev} ({device_name(dev)}, {_device_count(dev.type)} present{mem_txt}{extra}; "
            f"{dtypes_note(dev)}{precision}) - {choice.reason}")
    if dev.type == "cpu":
        from tour.core import threads

        policy = threads.current()
        text += f"\n  threads: {policy.reason}" if policy else ""
    note = busy_cpu_note() if dev.type == "cpu" else None
    return f"{text}\n  note: {note}" if note else text
