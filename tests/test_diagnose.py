"""The doctor's diagnoses on real broken situations built on disk, one per rule where that is possible here, run
through `python -m tour.tools.doctor --quick --only ...` in a subprocess. The rules on planted rows and facts are in
test_doctor_rules.py; the fix lines against the registry in test_doctor_fixes.py.

The subprocess runs start together in one fixture (their waits overlap) and each runs only the probe groups its
rule needs. Expected versions are read from the installed stack, never written down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from doctor_helpers import TORCH, packages
from packaging.requirements import Requirement
from packaging.version import Version

from tour.tools.doctor import facts as doctor_facts
from tour.tools.doctor import fixes

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
DRIVER_CUDA = "12.2"  # what the fake nvidia-smi below reports


def _dist(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A dist-info with just METADATA: what pip and importlib.metadata read first when it is first on the path."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def _package(folder: Path, name: str, files: dict[str, str]) -> None:
    (folder / name).mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (folder / name / rel).write_text(text)


def _fake_smi(folder: Path) -> Path:
    """An nvidia-smi that reports a GPU and a driver that runs CUDA up to 12.2 (the real one prints the same lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text('#!/bin/sh\nif [ "$1" = "-L" ]; then echo "GPU 0: NVIDIA A10G (UUID: GPU-0000)"; exit 0; fi\n'
                   'echo "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2 |"\n')
    smi.chmod(0o755)
    return folder


def _machine_neutral_env() -> dict:
    """This process's environment without the machine's own warnings: the free disk where the caches live and a
    busy CPU are facts of the machine the tests run on (a CI runner low on disk fired low-disk in a run that
    planted only an uncached hub name). Runs that plant one of those set it again in their env_changes."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update({doctor_facts.MIN_FREE_VAR: "0", "OMP_WAIT_POLICY": "PASSIVE"})
    return env


def _start(args, env_changes=None, path_first=None, cwd=None):
    env = _machine_neutral_env()
    env.update(env_changes or {})
    if path_first:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(path_first), env.get("PYTHONPATH")) if p)
    if cwd:  # `python -m` runs from there: the tour itself must still import, from the checkout
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    return subprocess.Popen([PY, "-m", "tour.tools.doctor", "--quick", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _usable() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    starts = {}

    # torchvision built for another torch: its metadata says so, and its ops fail as they do then.
    tv = root / "tv"
    _dist(tv, "torchvision", "0.0.0", ("torch==2.0.0",))
    _package(tv, "torchvision", {"__init__.py": 'raise RuntimeError("operator torchvision::nms does not exist")\n'})
    starts["pair"] = _start(["--only", "torchvision,transformers"], path_first=tv)

    # Warnings only (exit 0): a stray torch dist first on the path, torchcodec without FFmpeg, too many threads,
    # a cache limit no disk meets, and an NVIDIA driver (nvidia-smi) that this CUDA 13 build cannot use.
    warn = root / "warn"
    _dist(warn, "torch", "2.0.0")
    _dist(warn, "torchcodec", "0.0.0")
    _package(warn, "torchcodec", {"__init__.py": "", "decoders.py": 'raise RuntimeError("Could not load '
                                  'libtorchcodec. Likely causes: FFmpeg is not properly installed")\n'})
    smi = _fake_smi(root / "smi")
    starts["warn"] = _start(["--only", "audio i/o", "--json"], path_first=warn, env_changes={
        "OMP_NUM_THREADS": str(4 * _usable()), doctor_facts.MIN_FREE_VAR: "1e9",
        "PATH": f"{smi}{os.pathsep}{os.environ['PATH']}"})

    # No C++ compiler: a PATH with none on it, and CXX unset.
    bare = root / "bare-bin"
    bare.mkdir()
    env = {k: v for k, v in _machine_neutral_env().items() if k != "CXX"}
    env["PATH"] = str(bare)
    starts["nocxx"] = subprocess.Popen([PY, "-m", "tour.tools.doctor", "--quick", "--only", "compile", "--json"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    # HF_HOME that cannot be written: below a regular file (permission bits would not stop root).
    blocker = root / "a-file"
    blocker.write_text("not a folder\n")
    starts["cache"] = _start(["--only", "system", "--json"], env_changes={"HF_HOME": str(blocker / "hf")})

    # Offline, and a hub model asked for that is not cached; beside it a cached one and a local folder.
    hf = root / "hf"
    (hf / "hub" / "models--org--cached" / "snapshots" / "abc").mkdir(parents=True)
    starts["offline"] = _start(["--only", "system", "--json", "--model", "org/cached", "--model", str(root),
                                "--model", "org/not-cached"], env_changes={"HF_HOME": str(hf)})

    # A script of the user's named like a library, in the folder they run from: `import datasets` finds it first.
    work = root / "work"
    work.mkdir()
    (work / "datasets.py").write_text("# my notes on data sets\n")
    starts["shadow"] = _start(["--only", "datasets", "--json"], cwd=work)

    # A CPU-only torch on a machine with an NVIDIA GPU: a torch package whose version.py says cuda = None.
    cpu = root / "cpu"
    _dist(cpu, "torch", f"{TORCH}+cpu")
    _package(cpu, "torch", {"__init__.py": 'raise ImportError("a CPU-only stub")\n',
                            "version.py": "cuda = None\nhip = None\n"})
    starts["cpu"] = _start(["--only", "system", "--json"], path_first=cpu,
                           env_changes={"PATH": f"{smi}{os.pathsep}{os.environ['PATH']}"})

    # --device cuda where the driver is too old for this CUDA 13 build: a usage error, and the diagnosis says why.
    if not torch_cuda_available():
        starts["named"] = _start(["--device", "cuda"], env_changes={"PATH": f"{smi}{os.pathsep}{os.environ['PATH']}"})

    results = {}
    for name, proc in starts.items():
        out, err = proc.communicate(timeout=400)
        results[name] = (proc.returncode, out, err)
    return results


def _json(runs, name):
    code, out, err = runs[name]
    assert "Traceback" not in err, err
    data = json.loads(out)
    assert data["schema"] == 1 and data["exit_code"] == code
    return code, {d["rule"]: d for d in data["diagnoses"]}, data


# -- planted for real, through the CLI ----------------------------------------------------------------------------
def test_torchvision_for_another_torch_is_one_diagnosis_with_one_fix(runs):
    code, out, err = runs["pair"]
    assert code == 1, out + err
    block = out[out.index("\ndiagnoses:"):]
    assert block.count("ERROR") == 1 and block.count("[torch-pair]") == 1, block
    assert f"torchvision 0.0.0 was built for torch==2.0.0, but torch {TORCH} is installed" in block
    fix = next(ln.strip()[len("fix: "):] for ln in block.splitlines() if ln.strip().startswith("fix: "))
    reqs, _ = packages(fix)
    assert reqs == [f"torch=={TORCH}", f"torchvision=={fixes.companion('torchvision', TORCH)}"], fix
    explains = next(ln for ln in block.splitlines() if ln.strip().startswith("explains:"))
    for probe in ("torchvision model forward", "torchvision ops.nms", "torchvision transforms v2",
                  "transformers tiny model"):
        assert probe in explains, explains
    assert "not explained" not in block
    assert "diagnosed errors: torch-pair (exit code 1)" in out


def _declared_torch() -> Requirement:
    import importlib.metadata

    reqs = [Requirement(r) for r in importlib.metadata.requires("torch-tour") or []]
    return next(r for r in reqs if r.name == "torch" and r.marker is None)


def _assert_driver_fix(fix: str) -> None:
    """A fix for a driver that runs CUDA 12.2: a torch the tour supports, from an index that driver runs, with its
    pairs pinned; or the driver that the installed build needs."""
    if fix.startswith("install an NVIDIA driver >= "):
        return
    reqs, index = packages(fix)
    torch = Version(reqs[0].removeprefix("torch=="))
    assert _declared_torch().specifier.contains(torch), fix
    assert index and Version(index.rsplit("/cu", 1)[1][:2]).major == Version(DRIVER_CUDA).major, fix
    assert all("==" in r for r in reqs), fix  # every library pinned


def _build_cuda() -> str | None:
    import torch

    return torch.version.cuda


def test_warnings_are_diagnosed_and_keep_exit_0(runs):
    code, found, data = _json(runs, "warn")
    assert code == 0, data["diagnoses"]
    shadow = found["torch-shadowed"]
    assert "2.0.0 in " in shadow["evidence"] and "import torch loads this one" in shadow["evidence"]
    fix = shadow["fix"]  # off the user's own PYTHONPATH (the doctor's children also get the tour's root)
    assert fix == "unset PYTHONPATH" or fix.startswith("export PYTHONPATH=") and "warn" not in fix, fix
    codec = found["torchcodec-ffmpeg"]
    assert codec["explains"] == [{"group": "audio i/o", "name": "torchcodec"}]
    assert "ffmpeg" in codec["fix"]
    threads = found["cpu-oversubscribed"]
    assert f"OMP_NUM_THREADS={4 * _usable()} on {_usable()} usable cores" in threads["evidence"]
    assert threads["fix"] == f"export OMP_NUM_THREADS={_usable()} OMP_WAIT_POLICY=PASSIVE"
    assert "GB free" in found["low-disk"]["evidence"] and found["low-disk"]["fix"]
    build = _build_cuda()
    if build and Version(build) > Version(DRIVER_CUDA) and not data["probes"][3]["data"].get("cuda_available"):
        gpu = found["cuda-unusable"]
        assert f"built for CUDA {build}, newer than the NVIDIA driver runs (CUDA {DRIVER_CUDA})" in gpu["cause"]
        assert f"needs driver >= {fixes.needed_driver(build)}" in gpu["cause"]
        _assert_driver_fix(gpu["fix"])
    assert all(d["severity"] in ("warning", "note") for d in found.values())


def test_named_gpu_that_torch_cannot_use_is_exit_2_with_its_cause(runs):
    if "named" not in runs:
        pytest.skip("this machine has a usable CUDA GPU")
    code, out, err = runs["named"]
    assert code == 2 and "Traceback" not in out + err, out + err
    build = _build_cuda()
    if not build or Version(build) <= Version(DRIVER_CUDA):
        pytest.skip(f"this torch's CUDA {build} build runs on the fake driver")
    assert f"[cuda-unusable] ERROR: torch {TORCH} is built for CUDA {build}, newer than the NVIDIA driver runs " \
        f"(CUDA {DRIVER_CUDA})" in err
    fix = next(ln.strip()[len("fix: "):] for ln in err.splitlines() if ln.strip().startswith("fix: "))
    _assert_driver_fix(fix)


def test_no_cxx_compiler(runs):
    code, found, _ = _json(runs, "nocxx")
    assert code == 1
    d = found["no-cxx"]
    assert d["severity"] == "error" and d["explains"] == [{"group": "compile", "name": "c++ compiler"}]
    assert d["fix"] in ("apt-get install -y g++", "sudo apt-get install -y g++", "xcode-select --install",
                        "conda install -c conda-forge cxx-compiler")
    assert "no g++, c++ or clang++ on PATH" in d["evidence"]


def test_unwritable_hf_home(runs):
    code, found, data = _json(runs, "cache")
    assert code == 1
    d = found["cache-unwritable"]
    assert "a-file is a file, not a folder" in d["evidence"] and "set by HF_HOME" in d["evidence"]
    assert d["fix"].startswith("export HF_HOME=/")
    assert doctor_facts.writable(Path(d["fix"].split("=", 1)[1]))[0]
    assert [x["rule"] for x in data["diagnoses"]].count("cache-unwritable") == 1  # hub and datasets: one cause


def test_offline_with_an_uncached_hub_name(runs):
    code, found, _ = _json(runs, "offline")
    assert code == 1
    d = found["offline-hub-name"]
    assert "HF_HUB_OFFLINE=1 but the hub model org/not-cached is not in the cache" in d["cause"]
    assert d["fix"].startswith("HF_HUB_OFFLINE=0 hf download org/not-cached")
    assert [r for r, d in found.items() if d["severity"] != "note"] == ["offline-hub-name"]  # the others are fine


def test_a_users_file_named_like_a_library_is_found_and_named(runs):
    """./datasets.py in the working folder hides the installed datasets from `python -m`, notebooks and scripts."""
    code, found, _ = _json(runs, "shadow")
    d = found["module-shadowed"]
    assert code == 1 and d["severity"] == "error" and d["explains"] and all(
        e["group"] in ("datasets", "hugging face") for e in d["explains"])
    assert "`import datasets` loads " in d["cause"] and d["cause"].split(" loads ")[1].startswith(str(Path("/")))
    assert "work/datasets.py" in d["cause"] and "not the installed datasets " in d["cause"]
    assert d["fix"].startswith("mv ") and d["fix"].split()[1].endswith("work/datasets.py")
    # the fix line, run as the user would, really resolves it: the same doctor run is clean afterwards
    work = Path(d["fix"].split()[1]).parent
    subprocess.run(d["fix"], shell=True, check=True, cwd=work)
    proc = _start(["--only", "datasets", "--json"], cwd=work)
    out, err = proc.communicate(timeout=400)
    after = json.loads(out)
    assert proc.returncode == 0 and "module-shadowed" not in [x["rule"] for x in after["diagnoses"]], err


def test_cpu_only_build_on_a_gpu_machine(runs):
    code, found, _ = _json(runs, "cpu")
    d = found["cpu-build-on-gpu"]
    assert f"torch {TORCH}+cpu is a CPU-only build" in d["cause"] and "NVIDIA A10G" in d["evidence"]
    _assert_driver_fix(d["fix"])
    assert code == 1  # the stub torch fails the torch probe; the diagnosis itself is a warning without --device
    assert d["severity"] == "warning"
