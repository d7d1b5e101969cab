"""The doctor's rules: pure functions from the facts (facts.py) and the probe rows to diagnoses.

A rule selects rows by their structured fields only (status, kind, device, libraries, data), never by the wording
of a detail. Each returns at most one `Diagnosis` per cause and names the failed probes that cause explains, so six
failed rows with one cause print as one diagnosis with one fix line. Rules run root causes first; a failed probe is
explained by the first diagnosis that claims it.

Rules (id: what it finds):
    torch-shadowed      two torch installs on the path (user site vs venv, a stray PYTHONPATH entry)
    module-shadowed     a declared library's module found outside its install (./datasets.py, a folder on PYTHONPATH)
    version-range       an installed package outside the range the tour declares (torch-tour's own metadata)
    torch-pair          torchvision / torchaudio / torchcodec whose metadata requires another torch than the one loaded
    cuda-library        a library fails to load a CUDA runtime .so (libnvrtc.so.13, ...): built for another torch/CUDA
    cuda-unusable       a CUDA build, an NVIDIA GPU or driver present, and torch cannot use it (driver vs build CUDA)
    cpu-build-on-gpu    a CPU-only torch on a machine with an NVIDIA GPU
    tour-device-absent  TOUR_DEVICE names a device torch cannot use here: every `tour run` would refuse to start
    no-triton           a GPU torch.compile would use, and no Triton
    triton-build        Triton is there but cannot build its launcher: no C compiler or no Python.h
    no-cuda-toolkit     AOTInductor on the GPU needs a CUDA toolkit (CUDA_HOME, cuda.h) that is not there
    no-cxx              no C++ compiler for Inductor on CPU
    torchcodec-ffmpeg   torchcodec installed but FFmpeg's shared libraries missing
    cache-unwritable    a Hugging Face / Inductor / tour cache folder that cannot be written (fix: HF_HOME, ...)
    offline-hub-name    HF_HUB_OFFLINE set while a hub model named with `tour doctor --model NAME` is not cached
    cpu-oversubscribed  more torch threads than usable cores, or spin-waiting OpenMP threads on a loaded machine
    low-disk            little free space where a cache lives (below TOUR_DOCTOR_MIN_FREE_GB, default 5)
    version-untested    installed versions inside the declared range but not the tested set (a note)

Severity "error" makes the doctor's exit code 1, like a failed required probe; "warning" and "note" do not.
"""

from __future__ import annotations

from collections.abc import Callable

from tour.tools.doctor.rows import WARNING, Diagnosis, Facts, ProbeResult
from tour.tools.doctor.rules.gpu import (rule_cpu_build_on_gpu, rule_cuda_unusable, rule_no_cuda_toolkit,
                                        rule_no_triton, rule_tour_device_absent, rule_triton_build)
from tour.tools.doctor.rules.system import (rule_cache_unwritable, rule_cpu_oversubscribed, rule_low_disk,
                                           rule_module_shadowed, rule_no_cxx, rule_offline_hub_name,
                                           rule_torch_shadowed, rule_torchcodec_ffmpeg)
from tour.tools.doctor.rules.versions import (declared_ranges, rule_cuda_library, rule_torch_pair,
                                             rule_version_range, rule_version_untested, version_summary)

__all__ = ["RULES", "declared_ranges", "diagnose", "version_summary"]

RULES: tuple[Callable[[Facts, list], list[Diagnosis]], ...] = (
    rule_torch_shadowed, rule_module_shadowed, rule_version_range, rule_torch_pair, rule_cuda_library,
    rule_cuda_unusable, rule_cpu_build_on_gpu, rule_tour_device_absent, rule_no_triton, rule_triton_build,
    rule_no_cuda_toolkit, rule_no_cxx, rule_torchcodec_ffmpeg, rule_cache_unwritable, rule_offline_hub_name,
    rule_cpu_oversubscribed, rule_low_disk, rule_version_untested)


def diagnose(facts: Facts | None, probes: list[ProbeResult]) -> list[Diagnosis]:
    """Every rule on the facts and the rows. A failed probe is explained by the first diagnosis that claims it, so
    it never counts twice. A rule that raises is a bug in the rule and never takes the doctor down: it becomes a
    warning naming the rule."""
    if facts is None:
        return []
    found: list[Diagnosis] = []
    claimed: set[tuple[str, str]] = set()
    for rule in RULES:
        try:
            new = rule(facts, probes)
        except Exception as e:  # noqa: BLE001
            new = [Diagnosis(rule.__name__.removeprefix("rule_").replace("_", "-"), WARNING,
                             f"the doctor's rule {rule.__name__} failed: {type(e).__name__}: {e}", "", "")]
        for d in new:
            d.explains = [k for k in d.explains if (k["group"], k["name"]) not in claimed]
            claimed.update((k["group"], k["name"]) for k in d.explains)
            found.append(d)
    return found
