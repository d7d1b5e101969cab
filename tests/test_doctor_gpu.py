"""The doctor's GPU probes (torch.compile on the GPU, AOTInductor readiness, a 2-rank NCCL all-reduce), with each
situation faked on this CPU machine: skipped without a GPU, and each missing need a failed row of its own kind that
its rule explains."""

from __future__ import annotations

import pytest
from doctor_helpers import facts, torch_row

from tour.core import inductor
from tour.tools.doctor import plan as doctor_plan
from tour.tools.doctor import probes_gpu
from tour.tools.doctor.rows import (DEVICE_ABSENT, MISSING_COMPILER, MISSING_CUDA_TOOLKIT, MISSING_PYTHON_HEADERS,
                                    MISSING_TRITON, OK, QUICK, TIMEOUT, Probe, ProbeResult)
from tour.tools.doctor.rules import diagnose
from tour.tools.doctor.worker import run_probe


def _run(name: str, func, device="cuda:0") -> ProbeResult:
    return ProbeResult.from_dict(run_probe(Probe(name, "compile", func, device=device)))


@pytest.fixture
def ready(monkeypatch):
    """Every need Inductor has on a GPU is met (as on a set-up GPU machine); tests take one away."""
    monkeypatch.setattr("torch.utils._triton.has_triton", lambda: True)
    monkeypatch.setattr(inductor, "cxx_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(inductor, "c_compiler", lambda: "/usr/bin/gcc")
    monkeypatch.setattr(inductor, "python_header", lambda: "/usr/include/python3/Python.h")
    monkeypatch.setattr(inductor, "cuda_toolkit_problem", lambda: None)
    monkeypatch.setattr(inductor, "cuda_home", lambda: "/usr/local/cuda")
    monkeypatch.setattr(inductor, "compile_problem", lambda device: None)
    monkeypatch.setattr(inductor, "aoti_problem", lambda device: None)
    return monkeypatch


def test_without_a_gpu_they_are_skipped_with_a_reason():
    for func in (lambda: probes_gpu.compile_gpu_probe(None, False), lambda: probes_gpu.aoti_probe(None),
                 lambda: probes_gpu.nccl_pair_probe(("cpu",)), lambda: probes_gpu.nccl_probe(("cpu",))):
        r = _run("gpu", func, device=None)
        assert r.status == "skipped" and r.kind == DEVICE_ABSENT and r.detail, r


def test_the_plan_puts_them_on_the_first_gpu_and_requires_them_only_when_named():
    (nccl, pair), (comp, aoti) = doctor_plan._gpu_probes(["cpu", "cuda:0", "cuda:1"], None, True)
    assert comp.name == "torch.compile [cuda:0]" and comp.device == aoti.device == "cuda:0"
    assert not comp.required and not aoti.required and not pair.required
    (nccl, _), (comp, _) = doctor_plan._gpu_probes(["cuda:1"], "cuda:1", True)
    assert comp.required and nccl.required and comp.device == "cuda:1"


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "cpu"])
def test_two_gpus_present_get_the_pair_probe_whatever_device_is_named(device, monkeypatch):
    # `tour doctor --device cuda` probes one GPU, but the 2-rank all-reduce needs (and finds) both present ones
    import torch

    monkeypatch.setattr("tour.core.device.get_device", lambda spec: torch.device(spec))
    monkeypatch.setattr("tour.core.device.present_devices", lambda: ["cpu", "cuda:0", "cuda:1"])
    (pair,) = [p for p in doctor_plan.plan(quick=True, device=device) if p.name == "nccl 2 ranks"]
    assert pair.func.args == (("cuda:0", "cuda:1"),) and pair.device == "cuda:0" and not pair.required
    (one,) = [p for p in doctor_plan.plan(quick=True, device=device) if p.name == "nccl"]
    assert one.device == (None if device == "cpu" else device)  # the one-rank probe stays on the named GPU


@pytest.mark.parametrize("missing,kind,rule", [
    ("has_triton", MISSING_TRITON, "no-triton"),
    ("c_compiler", MISSING_COMPILER, "triton-build"),
    ("python_header", MISSING_PYTHON_HEADERS, "triton-build"),
])
def test_compile_on_the_gpu_names_the_missing_need(ready, missing, kind, rule):
    target = "torch.utils._triton.has_triton" if missing == "has_triton" else f"{inductor.__name__}.{missing}"
    ready.setattr(target, (lambda: False) if missing == "has_triton" else (lambda: None))
    ready.setattr(inductor, "compile_problem", lambda device: "one line from tour.core.inductor")
    r = _run("torch.compile [cuda:0]", lambda: probes_gpu.compile_gpu_probe("cuda:0", False))
    assert r.status == "failed" and r.kind == kind and r.detail == "one line from tour.core.inductor"
    planted = facts(triton=None if kind == MISSING_TRITON else "3.8.0", has_apt=True, root=True)
    found = {d.rule: d for d in diagnose(planted, [torch_row(cuda_available=True), r])}
    assert found[rule].explains == [{"group": "compile", "name": "torch.compile [cuda:0]"}]
    if rule == "triton-build":
        assert found[rule].fix == "apt-get install -y " + ("gcc" if kind == MISSING_COMPILER else "python3-dev")


def test_aoti_without_a_cuda_toolkit(ready):
    ready.setattr(inductor, "aoti_problem", lambda device: "no CUDA toolkit found (CUDA_HOME, ...)")
    ready.setattr(inductor, "cuda_toolkit_problem", lambda: "no CUDA toolkit found")
    r = _run("AOTInductor [cuda:0]", lambda: probes_gpu.aoti_probe("cuda:0"))
    assert r.status == "failed" and r.kind == MISSING_CUDA_TOOLKIT
    (d,) = [d for d in diagnose(facts(has_apt=True, root=True), [r]) if d.rule == "no-cuda-toolkit"]
    assert d.fix.startswith("apt-get install -y cuda-toolkit-13-0") and "CUDA_HOME" in d.fix


def test_ready_gpu_readiness_rows(ready):
    r = _run("AOTInductor [cuda:0]", lambda: probes_gpu.aoti_probe("cuda:0"))
    assert r.status == OK and "/usr/local/cuda" in r.detail
    quick = _run("torch.compile [cuda:0]", lambda: probes_gpu.compile_gpu_probe("cuda:0", True))
    assert quick.status == "skipped" and quick.kind == QUICK


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(probes_gpu, "cuda_devices", lambda devices: ["cuda:0", "cuda:1"])
    monkeypatch.setattr("torch.distributed.is_nccl_available", lambda: True)
    return monkeypatch


def test_two_ranks_run_in_child_processes(two_gpus):
    two_gpus.setattr(probes_gpu, "_RANK", "print(3.0)")  # what each rank prints after a right all-reduce
    r = _run("nccl 2 ranks", lambda: probes_gpu.nccl_pair_probe(("cuda:0", "cuda:1")))
    assert r.status == OK and "1 + 2 = 3" in r.detail, r


def test_a_wedged_rank_is_cut_off(two_gpus):
    two_gpus.setattr(probes_gpu, "_RANK", "import time; time.sleep(60)")
    r = _run("nccl 2 ranks", lambda: probes_gpu.nccl_pair_probe(("cuda:0", "cuda:1"), limit=2))
    assert r.status == "failed" and r.kind == TIMEOUT and r.seconds < 30, r


def test_a_timed_out_pair_leaves_no_rank_running(two_gpus):
    # rank 0 hits the deadline first; rank 1, waiting in the same collective, must not outlive the probe either
    import subprocess

    started, real = [], subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real(*args, **kwargs))
        return started[-1]

    two_gpus.setattr(probes_gpu.subprocess, "Popen", popen)
    two_gpus.setattr(probes_gpu, "_RANK", "import time; time.sleep(60)")
    r = _run("nccl 2 ranks", lambda: probes_gpu.nccl_pair_probe(("cuda:0", "cuda:1"), limit=2))
    assert r.kind == TIMEOUT and len(started) == 2
    assert [p.returncode for p in started] == [-9, -9]  # both killed and reaped


def test_a_failing_rank_says_which(two_gpus):
    two_gpus.setattr(probes_gpu, "_RANK", "import sys; sys.exit('rank 1 broke') if sys.argv[1] == '1' else print(3.0)")
    r = _run("nccl 2 ranks", lambda: probes_gpu.nccl_pair_probe(("cuda:0", "cuda:1")))
    assert r.status == "failed" and "rank 1 failed: rank 1 broke" in r.detail, r
