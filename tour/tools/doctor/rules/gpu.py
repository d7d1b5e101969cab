"""GPU rules: a CUDA build that cannot use the GPU, a CPU build on a GPU machine, Triton and the CUDA toolkit."""

from __future__ import annotations

from tour.tools.doctor import fixes
from tour.tools.doctor.rows import (DEVICE_ABSENT, ERROR, MISSING_COMPILER, MISSING_CUDA_TOOLKIT,
                                    MISSING_PYTHON_HEADERS, MISSING_TRITON, OK, WARNING, Diagnosis, Facts)
from tour.tools.doctor.rules.common import (failed, install, keys, lacks_compiler, named_gpu, on_gpu, system_fix,
                                           torch_data)
from tour.tools.doctor.rules.versions import driver_fix


def _gpu_present(facts: Facts) -> bool:
    return bool(facts.gpu.get("dev_nodes") or facts.gpu.get("gpus") or facts.gpu.get("driver"))


def _gpu_evidence(facts: Facts) -> str:
    g = facts.gpu
    seen = ", ".join(g.get("gpus") or g.get("dev_nodes") or []) or "an NVIDIA driver"
    driver = f"driver {g['driver']} (runs CUDA up to {g.get('driver_cuda') or '?'})" if g.get("driver") else \
        f"nvidia-smi: {g.get('smi_error') or 'not found'}"
    return f"{seen}; {driver}"


def _gpu_rows(probes) -> list:
    return [p for p in failed(probes) if on_gpu(p) or (p.kind == DEVICE_ABSENT and on_gpu(p))]


def _cuda_available(probes) -> bool | None:
    """From the torch row; when the run stopped before it (`--device cuda` refused: the doctor passes that refusal as
    a row of kind device_absent), from the refusal. None: unknown."""
    data = torch_data(probes)
    if "cuda_available" in data:
        return bool(data["cuda_available"])
    refused = any(p.kind == DEVICE_ABSENT and on_gpu(p) for p in failed(probes))
    return False if refused else None


def _driver_too_old(facts: Facts) -> bool:
    driver, build = fixes.version(facts.gpu.get("driver_cuda")), fixes.version(facts.torch_cuda)
    return driver is not None and build is not None and driver < build


def rule_cuda_unusable(facts: Facts, probes) -> list[Diagnosis]:
    if not facts.torch_cuda or not _gpu_present(facts) or _cuda_available(probes) is not False:
        return []
    g, build, torch = facts.gpu, facts.torch_cuda, facts.torch_version or "?"
    visible = facts.env.get("CUDA_VISIBLE_DEVICES")
    if _driver_too_old(facts):
        need = fixes.needed_driver(build)
        cause = f"torch {torch} is built for CUDA {build}, newer than the NVIDIA driver runs (CUDA {g['driver_cuda']}); " \
                f"this build needs driver >= {need}"
        fix = driver_fix(facts, build)
    elif visible is not None and visible.strip() in ("", "-1", "none"):
        cause, fix = f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from torch", "unset CUDA_VISIBLE_DEVICES"
    elif g.get("smi_error") or not g.get("driver"):
        cause = "an NVIDIA GPU is present but its driver does not answer, so torch sees no GPU"
        fix = install(facts, "modprobe nvidia") + "   # or reinstall the NVIDIA driver, then check: nvidia-smi"
    else:
        cause = f"torch's CUDA {build} build cannot use the GPU although the driver runs CUDA {g.get('driver_cuda')}"
        fix = driver_fix(facts, build)
    severity = ERROR if named_gpu(facts) else WARNING
    return [Diagnosis("cuda-unusable", severity, cause, f"torch.cuda.is_available() is False; {_gpu_evidence(facts)}",
                      fix, keys(_gpu_rows(probes)))]


def rule_cpu_build_on_gpu(facts: Facts, probes) -> list[Diagnosis]:
    if not facts.torch_installs or facts.torch_cuda or facts.torch_hip or not _gpu_present(facts):
        return []
    torch = facts.torch_version or "?"
    return [Diagnosis(
        "cpu-build-on-gpu", ERROR if named_gpu(facts) else WARNING,
        f"torch {torch} is a CPU-only build, on a machine with an NVIDIA GPU",
        f"torch/version.py says cuda = None; {_gpu_evidence(facts)}",
        driver_fix(facts, None),
        keys(_gpu_rows(probes)))]


def rule_tour_device_absent(facts: Facts, probes) -> list[Diagnosis]:
    refused = torch_data(probes).get("tour_device_refused")
    if not refused:
        return []
    named = facts.env.get("TOUR_DEVICE", "")
    return [Diagnosis("tour-device-absent", ERROR,
                      f"TOUR_DEVICE={named} names a device torch cannot use here, so every `tour run` stops at once "
                      "(the doctor itself probes the devices present)", refused,
                      "unset TOUR_DEVICE   # auto: the best device present; or export TOUR_DEVICE=cpu")]


def rule_no_triton(facts: Facts, probes) -> list[Diagnosis]:
    gpu_in_use = torch_data(probes).get("cuda_available") or any(on_gpu(p) and p.status == OK for p in probes)
    if not gpu_in_use or facts.triton:
        return []
    req = facts.torch_triton_req or "triton"
    return [Diagnosis("no-triton", ERROR if named_gpu(facts) else WARNING,
                      "torch.compile cannot build GPU kernels: Triton is not installed",
                      f"a usable CUDA GPU; no triton on the path (torch {facts.torch_version} requires {req})",
                      f'pip install "{req}"', keys(failed(probes, MISSING_TRITON)))]


def rule_triton_build(facts: Facts, probes) -> list[Diagnosis]:
    rows = [p for p in failed(probes) if p.kind == MISSING_PYTHON_HEADERS or lacks_compiler(p, "c")]
    if not rows:
        return []
    need = {MISSING_COMPILER: ("a C compiler", "gcc"), MISSING_PYTHON_HEADERS: ("Python.h", "python3-dev")}
    missing = [need[k] for k in (MISSING_COMPILER, MISSING_PYTHON_HEADERS) if any(p.kind == k for p in rows)]
    packages = " ".join(pkg for _, pkg in missing)
    fix = system_fix(facts, packages, f"-c conda-forge {packages.replace('python3-dev', 'python')}")
    return [Diagnosis("triton-build", ERROR if named_gpu(facts) else WARNING,
                      f"Triton cannot build its kernel launcher: {' and '.join(w for w, _ in missing)} missing",
                      f"Triton {facts.triton or '?'} compiles a C launcher against this Python's headers", fix,
                      keys(rows))]


def rule_no_cuda_toolkit(facts: Facts, probes) -> list[Diagnosis]:
    rows = failed(probes, MISSING_CUDA_TOOLKIT)
    if not rows:
        return []
    cuda = facts.torch_cuda or "?"
    package = "cuda-toolkit-" + cuda.replace(".", "-")
    fix = system_fix(facts, package, f"-c nvidia cuda-toolkit={cuda}") + " && export CUDA_HOME=/usr/local/cuda"
    return [Diagnosis("no-cuda-toolkit", WARNING,
                      "AOTInductor cannot build for the GPU: no CUDA toolkit (pip's CUDA wheels ship none)",
                      f"CUDA_HOME {facts.env.get('CUDA_HOME') or 'unset'}; torch is a CUDA {cuda} build", fix,
                      keys(rows))]
