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

import os
from collections.abc import Callable
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from tour.tools.doctor import fixes
from tour.tools.doctor.rows import (DEVICE_ABSENT, ERROR, FAILED, MISSING_COMPILER, MISSING_CUDA_TOOLKIT,
                                    MISSING_PYTHON_HEADERS, MISSING_SHARED_LIBRARY, MISSING_TRITON, NOTE, OK,
                                    PERMISSION, LIBRARY_LOAD, WARNING, Diagnosis, Facts, ProbeResult)

PAIRED = ("torchvision", "torchaudio", "torchcodec")  # wheels built against one torch release
MIN_FREE_VAR = "TOUR_DOCTOR_MIN_FREE_GB"
# The CUDA runtime's own libraries: a library that cannot find one of these was built for another CUDA than the
# torch installed (its wheel links the CUDA its torch shipped), not for a missing system package.
CUDA_LIBRARIES = ("libnvrtc", "libcudart", "libcublas", "libcudnn", "libcufft", "libcurand", "libcusparse",
                  "libcusolver", "libnvjpeg", "libnpp", "libnccl", "libcuda.")


# -- selecting rows by their fields ------------------------------------------------------------------------------------
def _failed(probes, kind: str | None = None) -> list:
    return [p for p in probes if p.status == FAILED and (kind is None or p.kind == kind)]


def _loading(probes, name: str) -> list:
    """Failed rows that load the distribution `name`."""
    return [p for p in _failed(probes) if canonicalize_name(name) in p.libraries]


def _on_gpu(p) -> bool:
    return (p.device or "").startswith("cuda")


def _missing(p, compiler: str) -> bool:
    """Did this row fail for want of the C ("c", Triton's launcher) or C++ ("c++", Inductor) compiler?"""
    return p.kind == MISSING_COMPILER and p.data.get("compiler", "c++") == compiler


def _keys(probes) -> list[dict]:
    return [{"group": p.group, "name": p.name} for p in probes]


def _torch_data(probes) -> dict:
    p = next((p for p in probes if p.group == "system" and p.name == "torch"), None)
    return p.data if p is not None and p.status == OK else {}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _install(facts: Facts, sudo_cmd: str) -> str:
    return sudo_cmd if facts.root else f"sudo {sudo_cmd}"


def _system_fix(facts: Facts, apt: str, conda: str, mac: str | None = None) -> str:
    """The command that installs a system package here: `mac` on macOS, apt where it exists, else conda."""
    if mac and facts.platform == "darwin":
        return mac
    return _install(facts, f"apt-get install -y {apt}") if facts.has_apt else f"conda install {conda}"


def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def _contains(spec, version: str) -> bool | None:
    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return None


def _named_gpu(facts: Facts) -> bool:
    return (facts.device or "").startswith("cuda")


# -- versions: the tour's declared ranges, the paired wheels, the tested set -----------------------------------------
def declared_ranges(facts: Facts) -> dict[str, tuple[Requirement, list[str]]]:
    """canonical name -> (its requirement, the extras that bring it, "core" for none) from torch-tour's Requires-Dist
    lines. A requirement whose marker excludes this platform for every extra does not apply."""
    ranges: dict[str, tuple[Requirement, list[str]]] = {}
    for text in facts.declared or []:
        req = _requirement(text)
        if req is None or canonicalize_name(req.name) == "torch-tour" or not str(req.specifier):
            continue
        extras = [e for e in facts.extras if req.marker is None or req.marker.evaluate({"extra": e})]
        core = req.marker is None or req.marker.evaluate({"extra": ""})
        if core or extras:
            known = ranges.setdefault(canonicalize_name(req.name), (req, []))
            known[1].extend(["core"] if core else extras)
    return ranges


def _declared_torch(facts: Facts) -> str | None:
    found = declared_ranges(facts).get("torch")
    return str(found[0].specifier) if found else None


def _paired_installed(facts: Facts, names: tuple[str, ...] = ("torchvision", "torchaudio")) -> tuple[str, ...]:
    return tuple(n for n in names if n in facts.installed or n in facts.dists)


def _keep(facts: Facts, torch_version: str, names: tuple[str, ...]) -> dict[str, str]:
    """The installed versions among `names` that already pair with `torch_version`: a fix line keeps them."""
    keep = {}
    for name in names:
        info = facts.dists.get(name) or {}
        installed = info.get("version") or facts.installed.get(name)
        if installed and fixes.pairs(name, installed, torch_version, info.get("requires", [])):
            keep[name] = fixes.public(installed)
    return keep


def _torch_fix(facts: Facts, torch_version: str, names: tuple[str, ...], force: bool = False,
               loaded: bool = False) -> str:
    """Pin this torch and the paired libraries among `names` that are installed, or all of them when a row `loaded`
    them (a library without metadata still loads); the ones that pair already stay."""
    installed = names if loaded else _paired_installed(facts, names)
    return fixes.pip_line(torch_version, installed, _keep(facts, torch_version, installed),
                          index=fixes.local_index(facts.torch_version or ""), force=force)


def _driver_fix(facts: Facts, build: str | None) -> str:
    torch, names = facts.torch_version or "?", _paired_installed(facts)
    return fixes.driver_fix(torch, build, facts.gpu.get("driver_cuda"), _declared_torch(facts), names,
                            _keep(facts, torch, names))


def _newest_tested(facts: Facts, name: str) -> str | None:
    return ((facts.tested or {}).get(name) or [None])[0]  # constraints.txt's pin comes first


def _target(facts: Facts, name: str, req: Requirement) -> str | None:
    """The version a fix should pin for `name`: a tested one in range (newest first), else the newest known release
    (torch) in range."""
    tested = [v for v in (facts.tested or {}).get(name, []) if _contains(req.specifier, v)]
    if tested:
        return tested[0]
    if name == "torch":
        return next((r for r in sorted(fixes.TORCHVISION, key=Version, reverse=True)
                     if _contains(req.specifier, r)), None)
    return None


def _is_tested(facts: Facts, name: str, installed: str) -> bool:
    return fixes.public(installed) in (facts.tested or {}).get(name, [])


def rule_version_range(facts: Facts, probes) -> list[Diagnosis]:
    out = []
    for name, (req, extras) in declared_ranges(facts).items():
        installed = facts.installed.get(name)
        if installed is None or _contains(req.specifier, installed) is not False or _wrong_torch(facts, name):
            continue  # in range, or a wheel built for another torch: rule_torch_pair names that cause
        where = "below the floor" if _below(req, installed) else "above the ceiling"
        target = _target(facts, name, req)
        if name == "torch" and target:
            fix = _torch_fix(facts, target, ("torchvision", "torchaudio"))
        elif name in PAIRED and facts.torch_version:
            fix = _torch_fix(facts, facts.torch_version, (name,))  # its pair for the torch that stays
        else:
            fix = f'pip install "{name}=={target}"' if target else f'pip install "{name}{req.specifier}"'
        out.append(Diagnosis(
            "version-range", ERROR,
            f"{name} {installed} is {where} of the range the tour supports ({name}{req.specifier})",
            f"torch-tour declares {name}{req.specifier} for: {', '.join(sorted(set(extras)))}", fix,
            _keys(_loading(probes, name))))
    return out


def _below(req: Requirement, installed: str) -> bool:
    v = Version(installed)
    return any(v < Version(s.version) for s in req.specifier if s.operator in (">=", ">", "~=", "==", "==="))


def _declares_torch(facts: Facts, name: str) -> bool:
    return bool((facts.dists.get(name) or {}).get("requires"))


def _wrong_torch(facts: Facts, name: str) -> list[str]:
    """The paired wheel's requirements on torch (its own metadata) that the loaded torch does not meet. A torchaudio
    that declares none (2.11.0 does not) was built against the torch release of its own number: an older torch
    cannot load it."""
    info = facts.dists.get(name) or {}
    if not facts.torch_version or not info:
        return []
    requires = info.get("requires") or []
    built = fixes.version(fixes.public(info["version"])) if name == "torchaudio" and not requires else None
    if built is not None:
        requires = [f"torch>={built.major}.{built.minor}"]
    return [r for r in requires if _requirement(r) is not None
            and _contains(_requirement(r).specifier, facts.torch_version) is False]


def rule_torch_pair(facts: Facts, probes) -> list[Diagnosis]:
    out = []
    for name in PAIRED:
        info, wrong = facts.dists.get(name), _wrong_torch(facts, name)
        if not wrong:
            continue
        said = "requires" if _declares_torch(facts, name) else "declares no torch; its release number means"
        out.append(Diagnosis(
            "torch-pair", ERROR,
            f"{name} {info['version']} was built for {wrong[0]}, but torch {facts.torch_version} is installed",
            f"{name}'s metadata in {info['location']} {said} {', '.join(wrong)}",
            _torch_fix(facts, facts.torch_version, (name,)), _keys(_loading(probes, name))))
    return out


def _cuda_libs(p) -> list[str]:
    return [lib for lib in p.data.get("missing_libraries", []) if lib.startswith(CUDA_LIBRARIES)]


def rule_cuda_library(facts: Facts, probes) -> list[Diagnosis]:
    """A row whose library could not load a CUDA runtime .so: the library was built for another torch / CUDA."""
    rows = [p for p in _failed(probes, MISSING_SHARED_LIBRARY) if _cuda_libs(p)]
    if not rows or not facts.torch_version:
        return []
    libs = sorted({lib for p in rows for lib in _cuda_libs(p)})
    paired = tuple(n for n in PAIRED if any(n in p.libraries for p in rows))
    build = f"CUDA {facts.torch_cuda}" if facts.torch_cuda else "CPU-only"
    return [Diagnosis(
        "cuda-library", ERROR if any(p.required for p in rows) else WARNING,
        f"{', '.join(paired) or 'a library'} was built for another torch/CUDA than torch {facts.torch_version} "
        f"({build} build): the loader cannot find {', '.join(libs)}",
        f"{', '.join(f'{p.group} {p.name}' for p in rows)} failed loading {', '.join(libs)}",
        _torch_fix(facts, facts.torch_version, paired, force=True, loaded=True), _keys(rows))]


def version_summary(facts: Facts) -> str:
    """One line: how many installed packages are within the supported (declared) ranges, how many at a tested
    version. Printed on every run, so a clean stack still says that its versions were checked."""
    ranges = declared_ranges(facts)
    checked = [n for n in ranges if n in facts.installed]
    inside = [n for n in checked if _contains(ranges[n][0].specifier, facts.installed[n]) is not False]
    line = f"versions: {len(inside)} of the {len(checked)} installed packages the tour declares are supported " \
           "(within its ranges)"
    if facts.declared is None:
        return "versions: supported ranges unknown (the torch-tour distribution is not installed)"
    if facts.tested is None:
        return f"{line}; tested set unknown"
    judged = [n for n in checked if n in facts.tested]
    tested = [n for n in judged if _is_tested(facts, n, facts.installed[n])]
    return f"{line}; {len(tested)} of the {len(judged)} the tested sets pin are at a tested version"


def rule_version_untested(facts: Facts, probes) -> list[Diagnosis]:
    ranges = declared_ranges(facts)
    if facts.declared is None:
        return [Diagnosis("version-untested", NOTE, "declared ranges unknown: the torch-tour distribution is not "
                          "installed, so its supported versions cannot be read", "no torch-tour metadata on the path",
                          "pip install -e .   # from the tour's checkout")]
    if facts.tested is None:
        return [Diagnosis("version-untested", NOTE, "tested set unknown: versions were checked against the supported "
                          "(declared) ranges only", "the tour's package holds no tested sets "
                          "(tour/tools/doctor/tested/constraints.txt)", "")]
    off = {n: v for n, v in facts.installed.items() if n in ranges and n in facts.tested
           and not _is_tested(facts, n, v) and _contains(ranges[n][0].specifier, v)}
    if not off:
        return []
    listed = ", ".join(f"{n} {v} (tested: {', '.join(facts.tested[n])})" for n, v in sorted(off.items()))
    pins = [f'"{n}=={_newest_tested(facts, n)}"' for n in sorted(off) if n not in ("torch", *PAIRED)]
    if "torch" in off or any(n in off for n in PAIRED):
        torch = _newest_tested(facts, "torch") or facts.torch_version or ""
        keep = {n: _newest_tested(facts, n) for n in PAIRED if n in facts.tested}
        pins = fixes.pins(torch, _paired_installed(facts), keep) + pins
    return [Diagnosis("version-untested", NOTE, f"supported (within the declared range) but not tested: {listed}",
                      f"the tested sets are {', '.join(facts.tested_files)}",
                      f"pip install {' '.join(pins)}   # the newest tested set")]


# -- GPUs -----------------------------------------------------------------------------------------------------------
def _gpu_present(facts: Facts) -> bool:
    return bool(facts.gpu.get("dev_nodes") or facts.gpu.get("gpus") or facts.gpu.get("driver"))


def _gpu_evidence(facts: Facts) -> str:
    g = facts.gpu
    seen = ", ".join(g.get("gpus") or g.get("dev_nodes") or []) or "an NVIDIA driver"
    driver = f"driver {g['driver']} (runs CUDA up to {g.get('driver_cuda') or '?'})" if g.get("driver") else \
        f"nvidia-smi: {g.get('smi_error') or 'not found'}"
    return f"{seen}; {driver}"


def _gpu_rows(probes) -> list:
    return [p for p in _failed(probes) if _on_gpu(p) or (p.kind == DEVICE_ABSENT and _on_gpu(p))]


def _cuda_available(probes) -> bool | None:
    """From the torch row; when the run stopped before it (`--device cuda` refused: the doctor passes that refusal as
    a row of kind device_absent), from the refusal. None: unknown."""
    data = _torch_data(probes)
    if "cuda_available" in data:
        return bool(data["cuda_available"])
    refused = any(p.kind == DEVICE_ABSENT and _on_gpu(p) for p in _failed(probes))
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
        fix = _driver_fix(facts, build)
    elif visible is not None and visible.strip() in ("", "-1", "none"):
        cause, fix = f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from torch", "unset CUDA_VISIBLE_DEVICES"
    elif g.get("smi_error") or not g.get("driver"):
        cause = "an NVIDIA GPU is present but its driver does not answer, so torch sees no GPU"
        fix = _install(facts, "modprobe nvidia") + "   # or reinstall the NVIDIA driver, then check: nvidia-smi"
    else:
        cause = f"torch's CUDA {build} build cannot use the GPU although the driver runs CUDA {g.get('driver_cuda')}"
        fix = _driver_fix(facts, build)
    severity = ERROR if _named_gpu(facts) else WARNING
    return [Diagnosis("cuda-unusable", severity, cause, f"torch.cuda.is_available() is False; {_gpu_evidence(facts)}",
                      fix, _keys(_gpu_rows(probes)))]


def rule_cpu_build_on_gpu(facts: Facts, probes) -> list[Diagnosis]:
    if not facts.torch_installs or facts.torch_cuda or facts.torch_hip or not _gpu_present(facts):
        return []
    torch = facts.torch_version or "?"
    return [Diagnosis(
        "cpu-build-on-gpu", ERROR if _named_gpu(facts) else WARNING,
        f"torch {torch} is a CPU-only build, on a machine with an NVIDIA GPU",
        f"torch/version.py says cuda = None; {_gpu_evidence(facts)}",
        _driver_fix(facts, None),
        _keys(_gpu_rows(probes)))]


def rule_tour_device_absent(facts: Facts, probes) -> list[Diagnosis]:
    refused = _torch_data(probes).get("tour_device_refused")
    if not refused:
        return []
    named = facts.env.get("TOUR_DEVICE", "")
    return [Diagnosis("tour-device-absent", ERROR,
                      f"TOUR_DEVICE={named} names a device torch cannot use here, so every `tour run` stops at once "
                      "(the doctor itself probes the devices present)", refused,
                      "unset TOUR_DEVICE   # auto: the best device present; or export TOUR_DEVICE=cpu")]


def rule_no_triton(facts: Facts, probes) -> list[Diagnosis]:
    gpu_in_use = _torch_data(probes).get("cuda_available") or any(_on_gpu(p) and p.status == OK for p in probes)
    if not gpu_in_use or facts.triton:
        return []
    req = facts.torch_triton_req or "triton"
    return [Diagnosis("no-triton", ERROR if _named_gpu(facts) else WARNING,
                      "torch.compile cannot build GPU kernels: Triton is not installed",
                      f"a usable CUDA GPU; no triton on the path (torch {facts.torch_version} requires {req})",
                      f'pip install "{req}"', _keys(_failed(probes, MISSING_TRITON)))]


def rule_triton_build(facts: Facts, probes) -> list[Diagnosis]:
    rows = [p for p in _failed(probes) if p.kind == MISSING_PYTHON_HEADERS or _missing(p, "c")]
    if not rows:
        return []
    need = {MISSING_COMPILER: ("a C compiler", "gcc"), MISSING_PYTHON_HEADERS: ("Python.h", "python3-dev")}
    missing = [need[k] for k in (MISSING_COMPILER, MISSING_PYTHON_HEADERS) if any(p.kind == k for p in rows)]
    packages = " ".join(pkg for _, pkg in missing)
    fix = _system_fix(facts, packages, f"-c conda-forge {packages.replace('python3-dev', 'python')}")
    return [Diagnosis("triton-build", ERROR if _named_gpu(facts) else WARNING,
                      f"Triton cannot build its kernel launcher: {' and '.join(w for w, _ in missing)} missing",
                      f"Triton {facts.triton or '?'} compiles a C launcher against this Python's headers", fix,
                      _keys(rows))]


def rule_no_cuda_toolkit(facts: Facts, probes) -> list[Diagnosis]:
    rows = _failed(probes, MISSING_CUDA_TOOLKIT)
    if not rows:
        return []
    cuda = facts.torch_cuda or "?"
    package = "cuda-toolkit-" + cuda.replace(".", "-")
    fix = _system_fix(facts, package, f"-c nvidia cuda-toolkit={cuda}") + " && export CUDA_HOME=/usr/local/cuda"
    return [Diagnosis("no-cuda-toolkit", WARNING,
                      "AOTInductor cannot build for the GPU: no CUDA toolkit (pip's CUDA wheels ship none)",
                      f"CUDA_HOME {facts.env.get('CUDA_HOME') or 'unset'}; torch is a CUDA {cuda} build", fix,
                      _keys(rows))]


# -- compilers, codecs, caches, threads, disk -------------------------------------------------------------------------
def rule_no_cxx(facts: Facts, probes) -> list[Diagnosis]:
    cxx = facts.env.get("CXX")
    found = [v for k, v in facts.compilers.items() if v and k != "$CXX"]
    bad_cxx = bool(cxx) and not facts.compilers.get("$CXX")
    if found and not bad_cxx:
        return []
    cause = "no C++ compiler for Inductor on CPU (torch.compile, AOTInductor)"
    if found:
        cause, fix = f"CXX={cxx} names a compiler that is not there, and Inductor calls $CXX first", "unset CXX"
    else:
        fix = _system_fix(facts, "g++", "-c conda-forge cxx-compiler", mac="xcode-select --install")
    explained = [p for p in _failed(probes) if _missing(p, "c++")]
    evidence = f"CXX {cxx or 'unset'}; " + (f"found {', '.join(found)}" if found else "no g++, c++ or clang++ on PATH")
    return [Diagnosis("no-cxx", ERROR, cause, evidence, fix, _keys(explained))]


def rule_torchcodec_ffmpeg(facts: Facts, probes) -> list[Diagnosis]:
    # A load failure that names no library, or names one that is not CUDA's (CUDA's: rule_cuda_library).
    rows = [p for p in _failed(probes) if "torchcodec" in p.libraries and (p.kind == LIBRARY_LOAD or (
        p.kind == MISSING_SHARED_LIBRARY and not _cuda_libs(p)))]
    absent = "torchcodec" in facts.dists and not facts.ffmpeg_libs and not any("torchcodec" in p.libraries
                                                                               for p in probes)
    if not rows and not absent:
        return []
    fix = _system_fix(facts, "ffmpeg", '-c conda-forge "ffmpeg<8"', mac="brew install ffmpeg")
    libs = ", ".join(facts.ffmpeg_libs) or "none of libavutil, libavcodec, libavformat"
    missing = sorted({lib for p in rows for lib in p.data.get("missing_libraries", [])})
    return [Diagnosis("torchcodec-ffmpeg", WARNING,
                      "torchcodec cannot load FFmpeg's shared libraries (torchaudio.load/save need them)",
                      f"the loader finds {libs}" + (f"; missing: {', '.join(missing)}" if missing else ""),
                      fix, _keys(rows))]


def _under(path: str | None, folder: str) -> bool:
    return bool(path) and (Path(path) == Path(folder) or Path(folder) in Path(path).parents)


def rule_cache_unwritable(facts: Facts, probes) -> list[Diagnosis]:
    out = []
    hf_rows = [p for p in _failed(probes) if {"huggingface-hub", "datasets"} & set(p.libraries)]
    for cache in facts.caches:
        if cache["writable"]:
            continue
        var = cache["var"]
        if any(d.rule == "cache-unwritable" and var in d.fix for d in out):
            continue  # HF_HOME moves both Hugging Face caches: one diagnosis, one fix
        target = cache.get("fallback") or f"/tmp/{var.lower()}"
        inside = [p for p in _failed(probes) if _under(p.data.get("path"), cache["path"])]  # the OSError's path
        explained = _failed(probes, PERMISSION) + inside + (hf_rows if var.startswith("HF") else [])
        explained = list({id(p): p for p in explained}.values())
        out.append(Diagnosis("cache-unwritable", ERROR, f"the {cache['name']} cache cannot be written",
                             f"{cache['why']} (set by {var if var in facts.env else 'the default'})",
                             f"export {var}={target}", _keys(explained)))
    return out


def rule_offline_hub_name(facts: Facts, probes) -> list[Diagnosis]:
    offline = [v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if _truthy(facts.env.get(v))]
    missing = [m for m in facts.models if m["kind"] == "hub" and not m["cached"]]
    if not offline or not missing:
        return []
    name = missing[0]["name"]
    return [Diagnosis("offline-hub-name", ERROR,
                      f"{offline[0]}=1 but the hub model {name} is not in the cache, so loading it will fail",
                      f"no {facts.caches[0]['path']}/models--{name.replace('/', '--')}/snapshots",
                      f"HF_HUB_OFFLINE=0 hf download {name}   # once, online; offline runs then load it from the cache")]


def _env_int(facts: Facts, name: str) -> int:
    try:
        return int(facts.env.get(name, ""))
    except ValueError:
        return 0


def rule_cpu_oversubscribed(facts: Facts, probes) -> list[Diagnosis]:
    usable = facts.cpu.get("usable") or 0
    threads = _torch_data(probes).get("threads") or 0
    asked = {v: _env_int(facts, v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if _env_int(facts, v) > usable}
    load = facts.cpu.get("running") or 0.0
    policy = (facts.env.get("OMP_WAIT_POLICY") or "").upper()
    # When the tour chose the threading (tour.core.threads, from what runs right now), its choice already answers
    # spinning, so only the user's own settings are judged then.
    chosen = (facts.env.get("TOUR_THREADS") or "off") != "off"
    spinning = bool(usable and load > usable and policy != "PASSIVE" and not chosen)
    if not usable or not (threads > usable or asked or spinning):
        return []
    why = []
    if threads > usable or asked:
        # torch may clamp its own pool to the usable cores; OpenMP/MKL in other libraries still use the variable
        set_by = ", ".join(f"{k}={v}" for k, v in asked.items())
        why.append(f"{set_by + ' ' if set_by else ''}on {usable} usable cores (torch runs {threads} intra-op threads)")
    if spinning:
        why.append(f"{load:.1f} other threads running on {usable} usable cores with OMP_WAIT_POLICY "
                   f"{policy or 'unset'}: waiting OpenMP threads spin and steal each other's cores")
    return [Diagnosis("cpu-oversubscribed", WARNING, "the CPU is oversubscribed: more busy threads than cores",
                      "; ".join(why), f"export OMP_NUM_THREADS={usable} OMP_WAIT_POLICY=PASSIVE")]


def _pythonpath_without(facts: Facts, folder: str) -> str | None:
    """The fix that takes `folder` off PYTHONPATH; None when PYTHONPATH does not put it there."""
    python_path = [p for p in facts.env.get("PYTHONPATH", "").split(os.pathsep) if p]
    on_it = [p for p in python_path if Path(p).resolve() == Path(folder).resolve()]
    if not on_it:
        return None
    rest = os.pathsep.join(p for p in python_path if p not in on_it)
    return f"export PYTHONPATH={rest}" if rest else "unset PYTHONPATH"


def rule_module_shadowed(facts: Facts, probes) -> list[Diagnosis]:
    out = []
    for s in facts.shadowed:
        origin = Path(s["origin"])
        hider = origin.parent if origin.name == "__init__.py" else origin  # a package folder or a module file
        fix = _pythonpath_without(facts, str(hider.parent)) or \
            f"mv {hider} {hider.with_name(hider.stem + '_mine' + hider.suffix)}   # or rename it: it is not the library"
        explained = _loading(probes, s["dist"])
        out.append(Diagnosis(
            "module-shadowed", ERROR if any(p.required for p in explained) else WARNING,  # optional rows: a warning
            f"`import {s['module']}` loads {hider}, not the installed {s['dist']} {s['version']}",
            f"{s['dist']} {s['version']} is installed in {s['location']}, but {hider.parent} comes first on sys.path "
            "(PYTHONPATH, or the working folder, which Python searches first for `python -m`, `python -c` and "
            "notebooks)", fix, _keys(explained)))
    return out


def rule_torch_shadowed(facts: Facts, probes) -> list[Diagnosis]:
    places = {i["location"] for i in facts.torch_installs}
    if len(places) < 2:
        return []
    loaded = next((i for i in facts.torch_installs if i["loaded"]), None)
    first = facts.torch_installs[0]
    others = [i for i in facts.torch_installs if i is not loaded]
    stray = others[0] if others else facts.torch_installs[1]
    listed = "; ".join(f"{i['version']} in {i['location']}" + (" (import torch loads this one)" if i["loaded"] else "")
                       for i in facts.torch_installs)
    fix = _pythonpath_without(facts, stray["location"])
    if fix is None and facts.user_site and Path(stray["location"]).resolve() == Path(facts.user_site).resolve():
        fix = "python -m pip uninstall -y torch   # the user-site copy comes first on the path, so it goes"
    elif fix is None:
        fix = f"rm -rf {stray['location']}/torch-{stray['version']}.dist-info {stray['location']}/torch" \
              "   # the copy `import torch` does not load"
    shadow = "metadata (pip, importlib.metadata) see" if loaded is not first else "it is the one loaded; also"
    return [Diagnosis("torch-shadowed", WARNING, f"two torch installs on the path: {len(facts.torch_installs)} found",
                      f"{listed}; {shadow} {first['version']} first", fix)]


def rule_low_disk(facts: Facts, probes) -> list[Diagnosis]:
    low = [c for c in facts.caches if c.get("free_bytes") is not None and c["free_bytes"] < facts.min_free_bytes
           and c["writable"]]  # an unwritable one is cache-unwritable's (a pseudo file system has 0 bytes free)
    if not low:
        return []
    fixes_ = []
    for c in low:
        if c["var"] in ("HF_HOME", "HF_HUB_CACHE") and "hf cache prune" not in fixes_:
            fixes_.append("hf cache prune")
        elif c["name"] == "inductor":
            fixes_.append(f"rm -rf {c['path']}")
    fixes_ = fixes_ or [f"export {low[0]['var']}=/a/folder/on/a/disk/with/room"]
    where = "; ".join(f"{c['name']} {c['path']}: {c['free_bytes'] / 1e9:.1f} GB free" for c in low)
    return [Diagnosis("low-disk", WARNING,
                      f"little free disk where the caches live (under {facts.min_free_bytes / 1e9:g} GB, "
                      f"{MIN_FREE_VAR} sets the limit)", where, " && ".join(fixes_))]


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
