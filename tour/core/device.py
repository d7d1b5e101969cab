"""The one place that decides the device. Every stop asks here; no stop names a device itself. Its dtype is
tour.core.dtypes' choice and its timer tour.core.timing's.

Order: an explicit `device=` argument, then the TOUR_DEVICE environment variable, then the best device present
(`torch.accelerator` where the build has it, else cuda, mps, xpu), falling back to cpu.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from tour.core.dtypes import dtypes_note, precision_note
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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) in one call."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds cuda/mps/xpu generators too


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


def indexed(device: str | torch.device) -> torch.device:
    """The device with its index: a bare "cuda" (or "xpu") is the current one, so "cuda" and "cuda:0" name one
    GPU (a per-device cache keys on this). A CPU or MPS device stays as it is: there is one."""
    device = torch.device(device)
    mod = getattr(torch, device.type, None)
    if device.index is None and device.type in ("cuda", "xpu") and hasattr(mod, "current_device"):
        return torch.device(device.type, mod.current_device())
    return device


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
