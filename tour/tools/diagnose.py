"""The doctor's diagnoses: from failed probes to one root cause, its evidence and the exact command that fixes it.

Two halves. `collect_facts()` takes a snapshot of the install (package metadata, where torch really loads from, the
NVIDIA driver, caches, threads, compilers, FFmpeg) without importing torch, so it works when torch is broken; the
doctor runs it as `python -m tour.tools.diagnose --facts` in a killable child, next to the probe worker. Then
`diagnose(facts, probes)` runs the rules: each rule is a pure function of those facts and the probe results (tests
plant facts), returns at most one `Diagnosis` per cause, and names the failed probes that cause explains, so four
failed rows with one cause print as one diagnosis with one fix line.

Rules (id: what it finds):
    torch-pair         torchvision / torchaudio / torchcodec whose metadata requires another torch than the one loaded
    cuda-unusable      a CUDA build, an NVIDIA GPU or driver present, and torch cannot use it (driver vs build CUDA)
    cpu-build-on-gpu   a CPU-only torch on a machine with an NVIDIA GPU
    torchcodec-ffmpeg  torchcodec installed but FFmpeg's shared libraries missing
    cache-unwritable   a Hugging Face / Inductor / tour cache folder that cannot be written (fix: HF_HOME, ...)
    offline-hub-name   HF_HUB_OFFLINE set while a hub model named with `tour doctor --model NAME` is not cached
    cpu-oversubscribed more torch threads than usable cores, or spin-waiting OpenMP threads on a loaded machine
    no-triton          a GPU torch.compile would use, and no Triton
    no-cxx             no C++ compiler for Inductor on CPU
    torch-shadowed     two torch installs on the path (user site vs venv, a stray PYTHONPATH entry)
    low-disk           little free space where a cache lives (below TOUR_DOCTOR_MIN_FREE_GB, default 5)

A diagnosis with severity "error" makes the doctor's exit code 1, like a failed required probe; a "warning" does not.
"""

from __future__ import annotations

import argparse
import ctypes.util
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ERROR, WARNING = "error", "warning"
PAIRED = ("torchvision", "torchaudio", "torchcodec")  # wheels built against one torch release
MIN_FREE_VAR = "TOUR_DOCTOR_MIN_FREE_GB"
MIN_FREE_GB = 5.0  # a few models and their compiled kernels
SMI_TIMEOUT = 15.0  # seconds for each nvidia-smi call (a wedged driver can hang it)
# PyTorch's CUDA wheel indexes, oldest first: the fix picks the newest one the driver can run.
CUDA_INDEXES = ("11.8", "12.1", "12.4", "12.6", "12.8", "12.9", "13.0")
ENV_VARS = ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
            "HF_DATASETS_OFFLINE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "CXX", "PATH",
            "PYTHONPATH", "PYTHONNOUSERSITE", "CUDA_VISIBLE_DEVICES", "TORCHINDUCTOR_CACHE_DIR", "TOUR_CACHE_DIR",
            "TOUR_DEVICE", "TOUR_THREADS", MIN_FREE_VAR)


# -- facts --------------------------------------------------------------------------------------------------------
@dataclass
class Facts:
    """What the rules look at. Every field is plain JSON, so the doctor can carry it from its child process."""

    python: str = sys.executable
    platform: str = sys.platform
    user_site: str | None = None  # the user site-packages folder when it is on sys.path
    path: list[str] = field(default_factory=list)  # sys.path, in order
    dists: dict[str, dict] = field(default_factory=dict)  # name -> version, location, requires: the first found
    torch_installs: list[dict] = field(default_factory=list)  # every torch dist on the path: version, location, loaded
    torch_version: str | None = None  # the torch `import torch` loads
    torch_cuda: str | None = None  # its build's CUDA version, read from torch/version.py; None: CPU-only (or ROCm)
    torch_hip: str | None = None
    torch_triton_req: str | None = None  # torch's own requirement on triton, e.g. "triton~=3.8.0"
    triton: str | None = None  # installed triton version
    gpu: dict = field(default_factory=dict)  # dev_nodes, nvidia_smi, driver, driver_cuda, gpus, smi_error
    env: dict[str, str] = field(default_factory=dict)
    caches: list[dict] = field(default_factory=list)  # name, path, var, writable, why, free_bytes, device
    min_free_bytes: int = int(MIN_FREE_GB * 1e9)
    cpu: dict = field(default_factory=dict)  # count, usable, load1
    compilers: dict[str, str | None] = field(default_factory=dict)  # g++, c++, clang++ -> path
    ffmpeg_libs: list[str] = field(default_factory=list)  # FFmpeg shared libraries the loader finds
    models: list[dict] = field(default_factory=list)  # from --model: name, kind (folder/hub), cached
    device: str | None = None  # the doctor's --device
    has_apt: bool = False
    root: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> Facts:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _requires(dist: importlib.metadata.Distribution, name: str) -> list[str]:
    """The dist's requirements on `name` (markers dropped): ['torch==2.13.0']."""
    found = []
    for req in dist.requires or []:
        head = req.split(";")[0].strip()
        if re.match(rf"{re.escape(name)}\b(?![-_.\w])", head, re.IGNORECASE):
            found.append(head.replace(" ", "").replace("(", "").replace(")", ""))
    return found


def _dist_location(dist: importlib.metadata.Distribution) -> str:
    return str(Path(str(dist.locate_file(""))))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_WANTED = ("torch", *PAIRED, "triton")


@functools.lru_cache(maxsize=1)
def _dist_index() -> dict[str, list[importlib.metadata.Distribution]]:
    """The dists the rules care about, each name's in sys.path order: one pass over the installed metadata."""
    index: dict[str, list] = {}
    for dist in importlib.metadata.distributions():
        name = _normal(dist.metadata["Name"] or "")
        if name in _WANTED:
            index.setdefault(name, []).append(dist)
    return index


def _dists_named(name: str) -> list[importlib.metadata.Distribution]:
    """Every dist called `name` on sys.path, in path order (importlib.metadata.version() gives the first)."""
    return _dist_index().get(_normal(name), [])


def _torch_build(origin: Path) -> dict[str, str | None]:
    """CUDA / HIP versions from torch/version.py, read as text: importing torch is what may be broken."""
    try:
        text = (origin.parent / "version.py").read_text()
    except OSError:
        return {"cuda": None, "hip": None}
    out = {}
    for key in ("cuda", "hip"):
        m = re.search(rf"^{key}\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
        out[key] = m.group(1) if m else None
    return out


def _torch_facts(facts: Facts) -> None:
    spec = importlib.util.find_spec("torch")  # where `import torch` would load from, without importing it
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    for dist in _dists_named("torch"):
        loaded = origin is not None and Path(str(dist.locate_file("torch/__init__.py"))).resolve() == origin
        facts.torch_installs.append({"version": dist.version, "location": _dist_location(dist), "loaded": loaded})
        if loaded:
            facts.torch_version = dist.version
            facts.torch_triton_req = next(iter(_requires(dist, "triton")), None)
    if facts.torch_version is None and facts.torch_installs:  # a torch without metadata: trust the first dist
        facts.torch_version = facts.torch_installs[0]["version"]
    if origin is not None:
        build = _torch_build(origin)
        facts.torch_cuda, facts.torch_hip = build["cuda"], build["hip"]


def _run(cmd: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SMI_TIMEOUT, stdin=subprocess.DEVNULL,
                              check=False)
    except subprocess.TimeoutExpired:
        return -1, f"{cmd[0]} did not answer in {SMI_TIMEOUT:g} s"
    except OSError as e:
        return -1, str(e)
    return done.returncode, done.stdout + done.stderr


def _gpu_facts() -> dict:
    gpu: dict[str, Any] = {"dev_nodes": sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*")),
                           "nvidia_smi": shutil.which("nvidia-smi"), "driver": None, "driver_cuda": None,
                           "gpus": [], "smi_error": None}
    if gpu["nvidia_smi"]:
        code, text = _run([gpu["nvidia_smi"]])
        driver = re.search(r"Driver Version:\s*([\d.]+)", text)
        cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
        gpu["driver"], gpu["driver_cuda"] = driver and driver.group(1), cuda and cuda.group(1)
        if code != 0:
            gpu["smi_error"] = text.strip().splitlines()[0][:200] if text.strip() else f"exit code {code}"
        else:
            _, listing = _run([gpu["nvidia_smi"], "-L"])
            gpu["gpus"] = [ln.split(" (UUID")[0].strip() for ln in listing.splitlines() if ln.startswith("GPU ")]
    return gpu


def _cache_dirs(env: dict[str, str]) -> list[tuple[str, Path, str]]:
    """(name, folder, the variable that moves it) for each cache the tour writes, as the libraries compute them."""
    from tour.core.assets import cache_root
    from tour.core.inductor import default_cache_dir

    xdg = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    hf_home = Path(env.get("HF_HOME") or xdg / "huggingface").expanduser()
    hub = ("HF_HUB_CACHE", Path(env["HF_HUB_CACHE"]).expanduser()) if env.get("HF_HUB_CACHE") else \
        ("HF_HOME", hf_home / "hub")
    ds = ("HF_DATASETS_CACHE", Path(env["HF_DATASETS_CACHE"]).expanduser()) if env.get("HF_DATASETS_CACHE") else \
        ("HF_HOME", hf_home / "datasets")
    return [("hugging face hub", hub[1], hub[0]), ("hugging face datasets", ds[1], ds[0]),
            ("inductor", default_cache_dir(), "TORCHINDUCTOR_CACHE_DIR"), ("torch-tour", cache_root(), "TOUR_CACHE_DIR")]


def writable(folder: Path) -> tuple[bool, str, Path]:
    """Can this process create files in `folder` (making it first if needed)? Tried for real where it exists:
    permission bits say nothing for root or on a read-only mount. Returns (ok, why not, the folder checked)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return False, f"{probe} is a file, not a folder", probe
    if probe == folder:
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            return False, f"cannot create a file in {folder}: {e.strerror or e}", probe
        return True, "", probe
    if not os.access(probe, os.W_OK | os.X_OK):
        return False, f"{folder} does not exist and {probe} is not writable", probe
    return True, "", probe


def _cache_facts(env: dict[str, str]) -> list[dict]:
    caches = []
    for name, folder, var in _cache_dirs(env):
        ok, why, checked = writable(folder)
        try:
            usage, dev = shutil.disk_usage(checked), os.stat(checked).st_dev
            free = usage.free
        except OSError:
            free, dev = None, None
        caches.append({"name": name, "path": str(folder), "var": var, "writable": ok, "why": why,
                       "free_bytes": free, "device": dev})
    return caches


def _model_facts(names: list[str], hub_cache: Path) -> list[dict]:
    models = []
    for name in names:
        if Path(name).expanduser().exists():
            models.append({"name": name, "kind": "folder", "cached": True})
            continue
        snapshots = hub_cache / f"models--{name.replace('/', '--')}" / "snapshots"
        hub_like = re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None
        cached = snapshots.is_dir() and any(snapshots.iterdir())
        models.append({"name": name, "kind": "hub" if hub_like else "missing folder", "cached": cached})
    return models


def collect_facts(device: str | None = None, models: list[str] | tuple[str, ...] = ()) -> Facts:
    """The snapshot the rules read. Imports no torch; every outside call has a timeout."""
    env = {k: os.environ[k] for k in ENV_VARS if k in os.environ}
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    facts = Facts(user_site=user_site if user_site in sys.path else None, path=list(sys.path), env=env,
                  device=device, has_apt=bool(shutil.which("apt-get") or Path("/usr/bin/apt-get").exists()),
                  root=hasattr(os, "geteuid") and os.geteuid() == 0)
    for name in (*PAIRED, "triton"):
        dists = _dists_named(name)
        if dists:
            facts.dists[name] = {"version": dists[0].version, "location": _dist_location(dists[0]),
                                 "requires": _requires(dists[0], "torch")}
    facts.triton = facts.dists.get("triton", {}).get("version")
    if facts.triton is None and importlib.util.find_spec("triton") is not None:
        facts.triton = "unknown"
    _torch_facts(facts)
    facts.gpu = _gpu_facts()
    facts.caches = _cache_facts(env)
    try:
        facts.min_free_bytes = int(float(env.get(MIN_FREE_VAR, MIN_FREE_GB)) * 1e9)
    except ValueError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts.cpu = {"count": os.cpu_count(), "usable": usable,
                 "load1": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    facts.compilers = {c: shutil.which(c) for c in ("g++", "c++", "clang++")}
    if env.get("CXX"):
        facts.compilers["$CXX"] = shutil.which(env["CXX"])
    facts.ffmpeg_libs = [n for n in ("avutil", "avcodec", "avformat") if ctypes.util.find_library(n)]
    facts.models = _model_facts(list(models), Path(facts.caches[0]["path"]))
    return facts


# -- diagnoses ----------------------------------------------------------------------------------------------------
@dataclass
class Diagnosis:
    rule: str  # a stable id, one of the rules listed in this module's docstring
    severity: str  # "error": the doctor exits 1; "warning": reported only
    cause: str  # one line: what is wrong
    evidence: str  # one line: the facts that show it
    fix: str  # the exact command to type
    explains: list[dict] = field(default_factory=list)  # the failed probes it explains: {"group", "name"}

    def to_dict(self) -> dict:
        return asdict(self)


def _failed(probes) -> list:
    return [p for p in probes if p.status == "failed"]


def _probe(probes, group: str, name: str):
    return next((p for p in probes if p.group == group and p.name == name), None)


def _keys(probes) -> list[dict]:
    return [{"group": p.group, "name": p.name} for p in probes]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _ver(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text or "")[:2]) or (0,)


def _install(facts: Facts, sudo_cmd: str) -> str:
    return sudo_cmd if facts.root else f"sudo {sudo_cmd}"


def _satisfies(version: str, requirement: str) -> bool | None:
    """Does `version` meet `requirement` ('torch==2.13.0', 'torch>=2.14.0')? None when it cannot tell."""
    try:
        from packaging.requirements import Requirement
        from packaging.version import Version

        return Requirement(requirement).specifier.contains(Version(version), prereleases=True)
    except Exception:  # noqa: BLE001 - packaging absent or an odd string: fall back to plain ==
        m = re.fullmatch(r"[\w.-]+==([\w.+]+)", requirement)
        return None if m is None else version.split("+")[0] == m.group(1).split("+")[0]


def _index_for(facts: Facts) -> str:
    """`--index-url ...` for torch's own local tag (2.14.1+cu126, +cpu); PyPI needs none."""
    local = (facts.torch_version or "").partition("+")[2]
    return f" --index-url https://download.pytorch.org/whl/{local}" if local else ""


# Libraries a probe group loads beyond its own: a broken one fails these probes too. Measured: transformers
# imports torchvision when it is installed, and a broken torchvision fails `from transformers import Bert...`.
LOADS: dict[str, tuple[str, ...]] = {"transformers": ("torchvision",), "assets MiniLM": ("transformers", "torchvision")}


def _loads(p) -> set[str]:
    return {p.group, *LOADS.get(p.group, ()), *LOADS.get(f"{p.group} {p.name}", ())}


def rule_torch_pair(facts: Facts, probes) -> list[Diagnosis]:
    out = []
    if not facts.torch_version:
        return out
    for name in PAIRED:
        info = facts.dists.get(name)
        if not info:
            continue
        wrong = [r for r in info["requires"] if _satisfies(facts.torch_version, r) is False]
        if not wrong:
            continue
        explained = [p for p in _failed(probes) if name in _loads(p)]
        torch_pin = facts.torch_version.split("+")[0]
        out.append(Diagnosis(
            "torch-pair", ERROR,
            f"{name} {info['version']} was built for {wrong[0]}, but torch {facts.torch_version} is installed",
            f"{name}'s metadata in {info['location']} requires {', '.join(wrong)}",
            f'pip install --upgrade "torch=={torch_pin}" {name}{_index_for(facts)}', _keys(explained)))
    return out


def _gpu_present(facts: Facts) -> bool:
    return bool(facts.gpu.get("dev_nodes") or facts.gpu.get("gpus") or facts.gpu.get("driver"))


def _cuda_index(driver_cuda: str | None) -> str:
    usable = [c for c in CUDA_INDEXES if driver_cuda and _ver(c) <= _ver(driver_cuda)]
    pick = usable[-1] if usable else CUDA_INDEXES[-1]
    return f"https://download.pytorch.org/whl/cu{pick.replace('.', '')}"


def _gpu_evidence(facts: Facts) -> str:
    g = facts.gpu
    seen = ", ".join(g.get("gpus") or g.get("dev_nodes") or []) or "an NVIDIA driver"
    driver = f"driver {g['driver']} (runs CUDA up to {g.get('driver_cuda') or '?'})" if g.get("driver") else \
        f"nvidia-smi: {g.get('smi_error') or 'not found'}"
    return f"{seen}; {driver}"


def _torch_data(probes) -> dict:
    p = _probe(probes, "system", "torch")
    return p.data if p is not None and p.status == "ok" else {}


def _gpu_probes(probes) -> list:
    return [p for p in _failed(probes)
            if "[cuda" in p.name or p.name == "nccl" or "CUDA" in p.detail or "cuda" in p.detail]


def _named_gpu(facts: Facts) -> bool:
    return (facts.device or "").startswith("cuda")


def _cuda_available(probes) -> bool | None:
    """From the torch probe; when the run stopped before it (`--device cuda` refused as absent: the doctor passes
    that refusal as a "usage" row), from the refusal. None: unknown."""
    data = _torch_data(probes)
    if "cuda_available" in data:
        return bool(data["cuda_available"])
    refusal = next((p for p in probes if p.group == "usage" and "cuda" in p.name), None)
    return False if refusal is not None and "not available" in refusal.detail else None


def rule_cuda_unusable(facts: Facts, probes) -> list[Diagnosis]:
    if not facts.torch_cuda or not _gpu_present(facts) or _cuda_available(probes) is not False:
        return []
    g, build = facts.gpu, facts.torch_cuda
    visible = facts.env.get("CUDA_VISIBLE_DEVICES")
    if g.get("driver_cuda") and _ver(g["driver_cuda"]) < _ver(build):
        cause = f"torch {facts.torch_version} is built for CUDA {build}, newer than the NVIDIA driver runs " \
                f"(CUDA {g['driver_cuda']})"
        fix = f"pip install --force-reinstall torch torchvision torchaudio --index-url {_cuda_index(g['driver_cuda'])}"
    elif visible is not None and visible.strip() in ("", "-1", "none"):
        cause, fix = f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from torch", "unset CUDA_VISIBLE_DEVICES"
    elif g.get("smi_error") or not g.get("driver"):
        cause = "an NVIDIA GPU is present but its driver does not answer, so torch sees no GPU"
        fix = _install(facts, "modprobe nvidia") + "   # or reinstall the NVIDIA driver, then check: nvidia-smi"
    else:
        cause = f"torch's CUDA {build} build cannot use the GPU although the driver runs CUDA {g.get('driver_cuda')}"
        fix = f"pip install --force-reinstall torch torchvision torchaudio --index-url {_cuda_index(g.get('driver_cuda'))}"
    severity = ERROR if _named_gpu(facts) else WARNING
    return [Diagnosis("cuda-unusable", severity, cause, f"torch.cuda.is_available() is False; {_gpu_evidence(facts)}",
                      fix, _keys(_gpu_probes(probes)))]


def rule_cpu_build_on_gpu(facts: Facts, probes) -> list[Diagnosis]:
    if not facts.torch_installs or facts.torch_cuda or facts.torch_hip or not _gpu_present(facts):
        return []
    return [Diagnosis(
        "cpu-build-on-gpu", ERROR if _named_gpu(facts) else WARNING,
        f"torch {facts.torch_version} is a CPU-only build, on a machine with an NVIDIA GPU",
        f"torch/version.py says cuda = None; {_gpu_evidence(facts)}",
        f"pip install --force-reinstall torch torchvision torchaudio --index-url {_cuda_index(facts.gpu.get('driver_cuda'))}",
        _keys(_gpu_probes(probes)))]


def rule_torchcodec_ffmpeg(facts: Facts, probes) -> list[Diagnosis]:
    p = _probe(probes, "audio i/o", "torchcodec")
    load_error = p is not None and p.status == "failed" and re.search(r"libtorchcodec|FFmpeg|libav", p.detail)
    if not load_error and not ("torchcodec" in facts.dists and not facts.ffmpeg_libs and p is None):
        return []
    if facts.platform == "darwin":
        fix = "brew install ffmpeg"
    elif facts.has_apt:
        fix = _install(facts, "apt-get install -y ffmpeg")
    else:
        fix = 'conda install -c conda-forge "ffmpeg<8"'
    libs = ", ".join(facts.ffmpeg_libs) or "none of libavutil, libavcodec, libavformat"
    return [Diagnosis("torchcodec-ffmpeg", WARNING,
                      "torchcodec cannot load FFmpeg's shared libraries (torchaudio.load/save need them)",
                      f"the loader finds {libs}" + (f"; probe: {p.detail[:100]}" if load_error else ""),
                      fix, _keys([p] if load_error else []))]


def rule_cache_unwritable(facts: Facts, probes) -> list[Diagnosis]:
    out = []
    for cache in facts.caches:
        if cache["writable"]:
            continue
        var = cache["var"]
        default = {"HF_HOME": "~/.cache/huggingface", "TORCHINDUCTOR_CACHE_DIR": "~/.cache/torch-tour/inductor",
                   "TOUR_CACHE_DIR": "~/.cache/torch-tour"}.get(var, f"~/.cache/{var.lower()}")
        target = Path(default).expanduser()
        if not writable(target)[0] or str(target) == cache["path"] or str(target) in cache["path"]:
            target = Path(tempfile.gettempdir()) / f"{var.lower()}-{os.getuid() if hasattr(os, 'getuid') else 0}"
        explained = [p for p in _failed(probes) if cache["path"] in p.detail or "Permission denied" in p.detail
                     or (var.startswith("HF") and p.group in ("hugging face", "datasets"))]
        if any(d.rule == "cache-unwritable" and var in d.fix for d in out):
            continue  # HF_HOME moves both Hugging Face caches: one diagnosis, one fix
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
    load = facts.cpu.get("load1") or 0.0
    policy = (facts.env.get("OMP_WAIT_POLICY") or "").upper()
    # The 1-minute load lags; when the tour chose the threading (tour.core.threads, from what runs right now), its
    # choice already answers spinning, so only the user's own settings are judged then.
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
        why.append(f"load average {load:.1f} on {usable} usable cores with OMP_WAIT_POLICY "
                   f"{policy or 'unset'}: waiting OpenMP threads spin and steal each other's cores")
    return [Diagnosis("cpu-oversubscribed", WARNING, "the CPU is oversubscribed: more busy threads than cores",
                      "; ".join(why), f"export OMP_NUM_THREADS={usable} OMP_WAIT_POLICY=PASSIVE")]


def rule_no_triton(facts: Facts, probes) -> list[Diagnosis]:
    gpu_in_use = _torch_data(probes).get("cuda_available") or any(
        "[cuda" in p.name and p.status == "ok" for p in probes)
    if not gpu_in_use or facts.triton:
        return []
    req = facts.torch_triton_req or "triton"
    explained = [p for p in _failed(probes) if "riton" in p.detail]
    return [Diagnosis("no-triton", ERROR if _named_gpu(facts) else WARNING,
                      "torch.compile cannot build GPU kernels: Triton is not installed",
                      f"a usable CUDA GPU; no triton on the path (torch {facts.torch_version} requires {req})",
                      f'pip install "{req}"', _keys(explained))]


def rule_no_cxx(facts: Facts, probes) -> list[Diagnosis]:
    cxx = facts.env.get("CXX")
    found = [v for k, v in facts.compilers.items() if v and k != "$CXX"]
    bad_cxx = bool(cxx) and not facts.compilers.get("$CXX")
    if found and not bad_cxx:
        return []
    if found:
        cause, fix = f"CXX={cxx} names a compiler that is not there, and Inductor calls $CXX first", "unset CXX"
    elif facts.platform == "darwin":
        cause, fix = "no C++ compiler for Inductor on CPU (torch.compile, AOTInductor)", "xcode-select --install"
    elif facts.has_apt:
        cause = "no C++ compiler for Inductor on CPU (torch.compile, AOTInductor)"
        fix = _install(facts, "apt-get install -y g++")
    else:
        cause = "no C++ compiler for Inductor on CPU (torch.compile, AOTInductor)"
        fix = "conda install -c conda-forge cxx-compiler"
    explained = [p for p in _failed(probes) if p.group == "compile" and p.name != "torch.export"]
    evidence = f"CXX {cxx or 'unset'}; " + (f"found {', '.join(found)}" if found else "no g++, c++ or clang++ on PATH")
    return [Diagnosis("no-cxx", ERROR, cause, evidence, fix, _keys(explained))]


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
    python_path = [p for p in facts.env.get("PYTHONPATH", "").split(os.pathsep) if p]
    on_pythonpath = [p for p in python_path if Path(p).resolve() == Path(stray["location"]).resolve()]
    if on_pythonpath:
        rest = os.pathsep.join(p for p in python_path if p not in on_pythonpath)
        fix = f"export PYTHONPATH={rest}" if rest else "unset PYTHONPATH"
    elif facts.user_site and Path(stray["location"]).resolve() == Path(facts.user_site).resolve():
        fix = "python -m pip uninstall -y torch   # the user-site copy comes first on the path, so it goes"
    else:
        fix = f"rm -rf {stray['location']}/torch-{stray['version']}.dist-info {stray['location']}/torch" \
              "   # the copy `import torch` does not load"
    shadow = "metadata (pip, importlib.metadata) see" if loaded is not first else "it is the one loaded; also"
    return [Diagnosis("torch-shadowed", WARNING, f"two torch installs on the path: {len(facts.torch_installs)} found",
                      f"{listed}; {shadow} {first['version']} first", fix)]


def rule_low_disk(facts: Facts, probes) -> list[Diagnosis]:
    low = [c for c in facts.caches if c.get("free_bytes") is not None and c["free_bytes"] < facts.min_free_bytes]
    if not low:
        return []
    fixes = []
    for c in low:
        if c["var"] in ("HF_HOME", "HF_HUB_CACHE") and "hf cache prune" not in fixes:
            fixes.append("hf cache prune")
        elif c["name"] in ("inductor",):
            fixes.append(f"rm -rf {c['path']}")
    fixes = fixes or [f"export {low[0]['var']}=/a/folder/on/a/disk/with/room"]
    where = "; ".join(f"{c['name']} {c['path']}: {c['free_bytes'] / 1e9:.1f} GB free" for c in low)
    return [Diagnosis("low-disk", WARNING,
                      f"little free disk where the caches live (under {facts.min_free_bytes / 1e9:g} GB, "
                      f"{MIN_FREE_VAR} sets the limit)", where, " && ".join(fixes))]


RULES: tuple[Callable[[Facts, list], list[Diagnosis]], ...] = (
    rule_torch_shadowed, rule_torch_pair, rule_cuda_unusable, rule_cpu_build_on_gpu, rule_no_triton, rule_no_cxx,
    rule_torchcodec_ffmpeg, rule_cache_unwritable, rule_offline_hub_name, rule_cpu_oversubscribed, rule_low_disk)


def diagnose(facts: Facts | None, probes: list) -> list[Diagnosis]:
    """Every rule on the facts and the probe results. A failed probe is explained by the first diagnosis that
    claims it (rules run root causes first), so it never counts twice. A rule that raises is a bug in the rule and
    never takes the doctor down: it becomes a warning naming the rule."""
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


def format_diagnoses(diagnoses: list[Diagnosis], failed: list | None = None) -> str:
    """`diagnoses:` then, per cause: the cause and evidence on one line, the fix on the next, what it explains."""
    lines = ["diagnoses:" if diagnoses else "diagnoses: none"]
    for i, d in enumerate(diagnoses, 1):
        tag = "ERROR" if d.severity == ERROR else "warning"
        lines.append(f"  {i}. [{d.rule}] {tag}: {d.cause} ({d.evidence})")
        lines.append(f"     fix: {d.fix}")
        if d.explains:
            lines.append(f"     explains: {', '.join(k['group'] + ' ' + k['name'] for k in d.explains)}")
    if failed:
        claimed = {(k["group"], k["name"]) for d in diagnoses for k in d.explains}
        rest = [f"{p.group} {p.name}" for p in failed if (p.group, p.name) not in claimed]
        if rest:
            lines.append(f"  not explained by a known cause: {', '.join(rest)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m tour.tools.diagnose --facts`: print the facts as one JSON line (the doctor reads it)."""
    parser = argparse.ArgumentParser(prog="python -m tour.tools.diagnose")
    parser.add_argument("--facts", action="store_true", help="print the facts snapshot as JSON")
    parser.add_argument("--device")
    parser.add_argument("--model", action="append", default=[])
    args = parser.parse_args(argv)
    print(json.dumps(asdict(collect_facts(args.device, args.model))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
