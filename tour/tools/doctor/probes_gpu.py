"""The doctor's GPU probes: nccl on one rank, torch.compile on the GPU (compared with eager), whether AOTInductor can
build for the GPU, and with two GPUs or more a 2-rank NCCL all-reduce in child processes.

Without a CUDA GPU each is skipped with kind `device_absent`. What Inductor needs (Triton, a C compiler, Python.h,
a CUDA toolkit) is decided by tour.core.inductor; here it becomes a failed row whose kind says which need is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from tour.tools.doctor.rows import (DEVICE_ABSENT, ERROR_KIND, MISSING_COMPILER, MISSING_CUDA_TOOLKIT,
                                    MISSING_PYTHON_HEADERS, MISSING_TRITON, QUICK, TIMEOUT, Fact, Skip, expect)

PAIR_TIMEOUT = 60.0  # seconds for the 2-rank all-reduce, start-up included; a wedged NCCL is cut off here
NCCL_TIMEOUT = 20  # seconds: the process group's own limit per collective (torch's default is 10 minutes)


def cuda_devices(devices: tuple[str, ...]) -> list[str]:
    """The devices torch pairs with nccl (NVIDIA GPUs), found from torch's own device -> backend table."""
    import torch.distributed as dist

    backend_for = dist.Backend.default_device_backend_map
    return [d for d in devices if backend_for.get(d.split(":")[0]) == dist.Backend.NCCL]


def _need_gpu(device: str | None) -> str:
    if device is None:
        raise Skip("no CUDA GPU here", DEVICE_ABSENT)
    return device


def readiness_kind(aoti: bool) -> tuple[str, dict]:
    """(kind, data) for the need that is missing, in the order tour.core.inductor checks them (compile_problem,
    aoti_problem); data["compiler"] says which compiler ("c++" for Inductor's wrapper, "c" for Triton's launcher)."""
    from torch.utils._triton import has_triton

    from tour.core import inductor

    if aoti and inductor.cxx_compiler() is None:
        return MISSING_COMPILER, {"compiler": "c++"}
    if not has_triton():
        return MISSING_TRITON, {}
    if inductor.c_compiler() is None:
        return MISSING_COMPILER, {"compiler": "c"}
    if inductor.python_header() is None:
        return MISSING_PYTHON_HEADERS, {}
    if aoti and inductor.cuda_toolkit_problem() is not None:
        return MISSING_CUDA_TOOLKIT, {}
    return ERROR_KIND, {}


# -- nccl -----------------------------------------------------------------------------------------------------------
def nccl_probe(devices: tuple[str, ...]):
    import torch.distributed as dist

    from tour.tools.doctor.probes_core import all_reduce_one_rank

    gpus = cuda_devices(devices)
    if not gpus:
        raise Skip("no CUDA GPU here (nccl is for NVIDIA GPUs)", DEVICE_ABSENT)
    expect(dist.is_nccl_available(), "the nccl backend is not built into this torch")
    expect(all_reduce_one_rank("nccl", gpus[0]) == 3.0, "nccl all_reduce on one rank gave the wrong sum")
    return f"nccl: a one-rank group on {gpus[0]} initialises and all_reduce is right"


# Each rank: join a 2-rank group through a file store (no network port to pick), all-reduce rank+1, check 1+2.
_RANK = """
import datetime, sys, torch, torch.distributed as dist
rank, store = int(sys.argv[1]), sys.argv[2]
dev = torch.device("cuda", rank)
torch.cuda.set_device(dev)
dist.init_process_group("nccl", init_method="file://" + store, rank=rank, world_size=2, device_id=dev,
                        timeout=datetime.timedelta(seconds=int(sys.argv[3])))
t = torch.tensor([float(rank + 1)], device=dev)
dist.all_reduce(t)
torch.cuda.synchronize(dev)
dist.destroy_process_group()
print(t.item())
"""


def nccl_pair_probe(devices: tuple[str, ...], limit: float = PAIR_TIMEOUT):
    import torch.distributed as dist

    gpus = cuda_devices(devices)
    if len(gpus) < 2:
        raise Skip(f"needs 2 CUDA GPUs, {len(gpus)} here", DEVICE_ABSENT)
    expect(dist.is_nccl_available(), "the nccl backend is not built into this torch")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        ranks = [subprocess.Popen([sys.executable, "-c", _RANK, str(r), store, str(NCCL_TIMEOUT)], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
                 for r in range(2)]
        try:
            outs = [_finish(proc, start + limit) for proc in ranks]
        finally:  # past the deadline (or on any error) no rank outlives the probe: one waits on the other
            _kill_all(ranks)
    for rank, (out, proc) in enumerate(zip(outs, ranks)):
        expect(proc.returncode == 0, f"rank {rank} failed: {out}")
        expect(out == "3.0", f"2-rank all_reduce gave {out}, expected 3.0")
    return f"nccl: 2 ranks on cuda:0 and cuda:1 all-reduce 1 + 2 = 3 in {time.perf_counter() - start:.1f} s"


def _finish(proc: subprocess.Popen, deadline: float) -> str:
    """The rank's last line of output (or of its errors); a TIMEOUT Fact past the deadline (the caller kills)."""
    try:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.perf_counter()))
    except subprocess.TimeoutExpired:
        raise Fact(f"the 2-rank all-reduce did not finish in {PAIR_TIMEOUT:g} s (cut off)", TIMEOUT) from None
    lines = (out.strip() or err.strip()).splitlines()
    return lines[-1][:200] if lines else ""


def _kill_all(ranks: list[subprocess.Popen]) -> None:
    """Kill every rank still running and reap it (its pipes closed), so none is left waiting in a collective."""
    for proc in ranks:
        if proc.poll() is None:
            proc.kill()
    for proc in ranks:
        proc.communicate()


# -- Inductor on the GPU --------------------------------------------------------------------------------------------
def compile_gpu_probe(device: str | None, quick: bool):
    device = _need_gpu(device)
    import torch

    from tour.core.inductor import compile_problem

    problem = compile_problem(torch.device(device))
    if problem:
        raise Fact(problem, *readiness_kind(aoti=False))
    if quick:
        raise Skip("ready (Triton, C compiler, Python.h); the compile itself is slow: skipped by --quick", QUICK)
    from tour.tools.doctor.probes_core import tiny_fn

    torch._dynamo.reset()
    x = torch.randn(32, 64, device=device)
    start = time.perf_counter()
    got = torch.compile(tiny_fn, fullgraph=True)(x)  # Inductor writes Triton kernels here
    torch.cuda.synchronize(x.device)
    took = time.perf_counter() - start
    err = (got - tiny_fn(x)).abs().max().item()
    expect(err < 1e-4, f"compiled output on {device} differs from eager by {err:.2e}")
    return f"Inductor compiled a small function to Triton on {device} in {took:.1f} s; matches eager (diff {err:.1e})"


def aoti_probe(device: str | None):
    device = _need_gpu(device)
    import torch

    from tour.core.inductor import aoti_problem, cuda_home, cxx_compiler

    problem = aoti_problem(torch.device(device))
    if problem:
        raise Fact(problem, *readiness_kind(aoti=True))
    return f"AOTInductor can build for {device}: C++ compiler {cxx_compiler()}, CUDA toolkit {cuda_home()}, Triton"
