"""The doctor's facts: a snapshot of the install, taken without importing torch (so it works when torch is broken).

Package metadata (what is installed, what the tour declares, what each paired wheel requires of torch), the tested
set (constraints.txt, shipped in the package: tested/), where torch really loads from, the NVIDIA driver, caches,
threads, compilers, FFmpeg. The doctor runs it as `python -m tour.tools.doctor.facts` in a killable child (see
worker.py); the rules (rules/) read the result and never do I/O themselves.
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
import urllib.parse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tour.tools.doctor.rows import CALLER_PYTHONPATH, MIN_FREE_GB, Facts

TOUR_DIST = "torch-tour"
PAIRED = ("torchvision", "torchaudio", "torchcodec")  # wheels built against one torch release
MIN_FREE_VAR = "TOUR_DOCTOR_MIN_FREE_GB"
SMI_TIMEOUT = 15.0  # seconds for each nvidia-smi call (a wedged driver can hang it)
ENV_VARS = ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
            "HF_DATASETS_OFFLINE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "CXX", "PATH",
            "PYTHONPATH", "PYTHONNOUSERSITE", "CUDA_VISIBLE_DEVICES", "TORCHINDUCTOR_CACHE_DIR", "TOUR_CACHE_DIR",
            "TOUR_DEVICE", "TOUR_THREADS", MIN_FREE_VAR)


# -- package metadata -----------------------------------------------------------------------------------------------
def parse_requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def requirements_on(dist: importlib.metadata.Distribution, name: str) -> list[str]:
    """The dist's requirements on `name`, markers dropped: ['torch==2.13.0']."""
    wanted = canonicalize_name(name)
    found = []
    for text in dist.requires or []:
        req = parse_requirement(text)
        if req is not None and canonicalize_name(req.name) == wanted:
            found.append(f"{req.name}{req.specifier}")
    return found


def _dist_location(dist: importlib.metadata.Distribution) -> str:
    return str(Path(str(dist.locate_file(""))))


@functools.lru_cache(maxsize=1)
def _dist_index() -> dict[str, list[importlib.metadata.Distribution]]:
    """Every installed dist by canonical name, each name's in sys.path order: one pass over the metadata."""
    index: dict[str, list] = {}
    for dist in importlib.metadata.distributions():
        index.setdefault(canonicalize_name(dist.metadata["Name"] or ""), []).append(dist)
    return index


def dists_named(name: str) -> list[importlib.metadata.Distribution]:
    """Every dist called `name` on sys.path, in path order (importlib.metadata.version() gives the first)."""
    return _dist_index().get(canonicalize_name(name), [])


def installed_version(name: str) -> str | None:
    dists = dists_named(name)
    return dists[0].version if dists else None


def _declared_facts(facts: Facts) -> None:
    """The tour's declared requirements, read from the installed torch-tour's metadata, and the installed version of
    each distribution they name (plus torch's pairs)."""
    tour = dists_named(TOUR_DIST)
    facts.declared = list(tour[0].requires or []) if tour else None
    facts.extras = list(tour[0].metadata.get_all("Provides-Extra") or []) if tour else []
    names = {canonicalize_name(r.name) for r in map(parse_requirement, facts.declared or []) if r is not None}
    for name in sorted(names | {"torch", *PAIRED}):
        version = installed_version(name)
        if version is not None and name != TOUR_DIST:
            facts.installed[name] = version
    if facts.torch_version:  # the torch `import torch` loads, not a stray one first in the metadata
        facts.installed["torch"] = facts.torch_version


TESTED = Path(__file__).parent / "tested"  # package data: copies of the checkout's constraints.txt, stacks/*.txt


def tested_files() -> list[Path]:
    """The tested sets, shipped inside the package so any install has them (editable or not):
    constraints.txt (the newest tested set) first, then stacks/*.txt (the oldest supported stack, ...)."""
    found = [TESTED / "constraints.txt"] if (TESTED / "constraints.txt").is_file() else []
    return found + sorted((TESTED / "stacks").glob("*.txt")) if found else []


def read_pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a constraints file -> {canonical name: version}."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        req = parse_requirement(text) if text else None
        exact = [s.version for s in req.specifier if s.operator == "=="] if req is not None else []
        if exact:
            pins[canonicalize_name(req.name)] = exact[0]
    return pins


def _tested_facts(facts: Facts) -> None:
    files = tested_files()
    if not files:
        return
    # constraints.txt names what the tested sets pin; the other stacks add versions of those (a package no set
    # pins was tested at whatever pip resolved, which nobody wrote down: it is not judged).
    facts.tested, facts.tested_files = {n: [v] for n, v in read_pins(files[0]).items()}, [str(f) for f in files]
    for path in files[1:]:
        for name, version in read_pins(path).items():
            if name in facts.tested and version not in facts.tested[name]:
                facts.tested[name].append(version)


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
    for dist in dists_named("torch"):
        loaded = origin is not None and Path(str(dist.locate_file("torch/__init__.py"))).resolve() == origin
        facts.torch_installs.append({"version": dist.version, "location": _dist_location(dist), "loaded": loaded})
        if loaded:
            facts.torch_version = dist.version
            facts.torch_triton_req = next(iter(requirements_on(dist, "triton")), None)
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
    try:  # make a folder where `folder` would start, for real: root passes os.access even on /proc
        os.rmdir(tempfile.mkdtemp(dir=probe))
    except OSError as e:
        return False, f"{folder} does not exist and cannot be made in {probe}: {e.strerror or e}", probe
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
                       "free_bytes": free, "device": dev, "fallback": None if ok else _fallback(var, folder)})
    return caches


# Where each cache goes by default: the fix for an unwritable one points there, or at a temp folder if that fails too.
_DEFAULTS = {"HF_HOME": "~/.cache/huggingface", "TORCHINDUCTOR_CACHE_DIR": "~/.cache/torch-tour/inductor",
             "TOUR_CACHE_DIR": "~/.cache/torch-tour"}


def _fallback(var: str, folder: Path) -> str:
    """A folder this process can write, for the variable that moves an unwritable cache."""
    target = Path(_DEFAULTS.get(var, f"~/.cache/{var.lower()}")).expanduser()
    if not writable(target)[0] or str(target) in str(folder):
        target = Path(tempfile.gettempdir()) / f"{var.lower()}-{os.getuid() if hasattr(os, 'getuid') else 0}"
    return str(target)


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


def _home(dist: importlib.metadata.Distribution) -> Path:
    """Where a dist's modules live: its site-packages folder, or for an editable install the source tree its
    direct_url.json points at (PEP 610), which is no shadow."""
    try:
        url = json.loads(dist.read_text("direct_url.json") or "{}")
    except (OSError, ValueError):
        url = {}
    if url.get("dir_info", {}).get("editable") and url.get("url", "").startswith("file://"):
        return Path(urllib.parse.unquote(url["url"][len("file://"):])).resolve()
    return Path(str(dist.locate_file(""))).resolve()


# Top-level names some wheels ship by mistake (torchao ships `test`): never what a script imports them by, and a
# user's own tests/ folder beside them is no shadow.
NOT_LIBRARIES = {"test", "tests", "testing", "docs", "examples", "benchmarks", "scripts"}


def _shadow_facts(facts: Facts) -> None:
    """The declared libraries' top-level modules that `import` would load from outside their installed dist: a
    user's own `datasets.py` in the working folder, or a stray `transformers/` folder on PYTHONPATH, hides the real
    library from every script, notebook and `python -m` run there. Finds, never imports."""
    for module, names in importlib.metadata.packages_distributions().items():
        ours = [canonicalize_name(n) for n in names if canonicalize_name(n) in facts.installed]
        if not ours or module.startswith("_") or module in NOT_LIBRARIES or ours == ["torch-tour"]:
            continue
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        # a namespace package (mpl_toolkits) spans folders and hides nothing; built-ins have no file
        if not spec or spec.origin in (None, "namespace", "built-in", "frozen"):
            continue
        origin = Path(spec.origin).resolve()
        dists = [d for n in ours for d in dists_named(n)]
        if any(_home(d) in origin.parents for d in dists):
            continue
        facts.shadowed.append({"module": module, "origin": str(origin), "dist": ours[0], "version": dists[0].version,
                               "location": _dist_location(dists[0])})


def collect_facts(device: str | None = None, models: list[str] | tuple[str, ...] = ()) -> Facts:
    """The snapshot the rules read. Imports no torch; every outside call has a timeout."""
    env = {k: os.environ[k] for k in ENV_VARS if k in os.environ}
    if CALLER_PYTHONPATH in os.environ:  # a doctor child: its PYTHONPATH ends with the tour's root, which the
        env.pop("PYTHONPATH", None)  # user did not set; fix lines must edit the user's own
        if os.environ[CALLER_PYTHONPATH]:
            env["PYTHONPATH"] = os.environ[CALLER_PYTHONPATH]
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    facts = Facts(user_site=user_site if user_site in sys.path else None, path=list(sys.path), env=env,
                  device=device, has_apt=bool(shutil.which("apt-get") or Path("/usr/bin/apt-get").exists()),
                  root=hasattr(os, "geteuid") and os.geteuid() == 0)
    for name in (*PAIRED, "triton"):
        dists = dists_named(name)
        if dists:
            facts.dists[name] = {"version": dists[0].version, "location": _dist_location(dists[0]),
                                 "requires": requirements_on(dists[0], "torch")}
    facts.triton = facts.dists.get("triton", {}).get("version")
    if facts.triton is None and importlib.util.find_spec("triton") is not None:
        facts.triton = "unknown"
    _torch_facts(facts)
    _declared_facts(facts)
    _tested_facts(facts)
    _shadow_facts(facts)
    facts.gpu = _gpu_facts()
    facts.caches = _cache_facts(env)
    try:
        facts.min_free_bytes = int(float(env.get(MIN_FREE_VAR, MIN_FREE_GB)) * 1e9)
    except ValueError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from tour.core import threads  # the tour's one "is the CPU busy" signal, not the lagging load average

    facts.cpu = {"count": os.cpu_count(), "usable": usable, "running": round(threads.observe().load, 1)}
    facts.compilers = {c: shutil.which(c) for c in ("g++", "c++", "clang++")}
    if env.get("CXX"):
        facts.compilers["$CXX"] = shutil.which(env["CXX"])
    facts.ffmpeg_libs = [n for n in ("avutil", "avcodec", "avformat") if ctypes.util.find_library(n)]
    facts.models = _model_facts(list(models), Path(facts.caches[0]["path"]))
    return facts




def main(argv: list[str] | None = None) -> int:
    """`python -m tour.tools.doctor.facts`: print the facts as one JSON line (the doctor reads it)."""
    parser = argparse.ArgumentParser(prog="python -m tour.tools.doctor.facts")
    parser.add_argument("--device")
    parser.add_argument("--model", action="append", default=[])
    args = parser.parse_args(argv)
    print(json.dumps(asdict(collect_facts(args.device, args.model))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
