"""The doctor's diagnoses: every rule on planted facts (fast, pure), and the real broken situation built on disk for
each rule where that is possible here, run through `python -m tour.tools.doctor --quick --only ...` in a subprocess.

The subprocess runs start together in one fixture (their waits overlap) and each runs only the probe groups its
rule needs. Rules that need a GPU to plant for real (no Triton on a usable GPU) are covered by planted facts only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tour.tools import diagnose as dg
from tour.tools.doctor import ProbeResult

PY = sys.executable
TORCH_VERSION = "2.14.1"


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


def _start(args, env_changes=None, path_first=None):
    env = dict(os.environ)
    env.update(env_changes or {})
    if path_first:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(path_first), env.get("PYTHONPATH")) if p)
    return subprocess.Popen([PY, "-m", "tour.tools.doctor", "--quick", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


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
        "OMP_NUM_THREADS": str(4 * _usable()), dg.MIN_FREE_VAR: "1e9",
        "PATH": f"{smi}{os.pathsep}{os.environ['PATH']}"})

    # No C++ compiler: a PATH with none on it, and CXX unset.
    bare = root / "bare-bin"
    bare.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
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

    # A CPU-only torch on a machine with an NVIDIA GPU: a torch package whose version.py says cuda = None.
    cpu = root / "cpu"
    _dist(cpu, "torch", f"{TORCH_VERSION}+cpu")
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
    assert block.count("fix: ") == 1 and block.count("[torch-pair]") == 1, block
    assert "torchvision 0.0.0 was built for torch==2.0.0, but torch 2.14.1 is installed" in block
    assert f'fix: pip install --upgrade "torch=={TORCH_VERSION}" torchvision\n' in block
    explains = next(ln for ln in block.splitlines() if ln.strip().startswith("explains:"))
    for probe in ("torchvision model forward", "torchvision ops.nms", "torchvision transforms v2",
                  "transformers tiny model"):
        assert probe in explains, explains
    assert "not explained" not in block
    assert "diagnosed errors: torch-pair (exit code 1)" in out


def test_warnings_are_diagnosed_and_keep_exit_0(runs):
    code, found, data = _json(runs, "warn")
    assert code == 0, data["diagnoses"]
    shadow = found["torch-shadowed"]
    assert "2.0.0 in " in shadow["evidence"] and "import torch loads this one" in shadow["evidence"]
    assert shadow["fix"].startswith("export PYTHONPATH=") and "warn" not in shadow["fix"]
    codec = found["torchcodec-ffmpeg"]
    assert codec["explains"] == [{"group": "audio i/o", "name": "torchcodec"}]
    assert codec["fix"].endswith("ffmpeg") or "ffmpeg" in codec["fix"]
    threads = found["cpu-oversubscribed"]
    assert f"OMP_NUM_THREADS={4 * _usable()} on {_usable()} usable cores" in threads["evidence"]
    assert threads["fix"] == f"export OMP_NUM_THREADS={_usable()} OMP_WAIT_POLICY=PASSIVE"
    assert "GB free" in found["low-disk"]["evidence"] and found["low-disk"]["fix"]
    if not data["probes"][3]["data"].get("cuda_available"):  # on a real GPU box the fake driver is moot
        gpu = found["cuda-unusable"]
        assert "built for CUDA 13.0, newer than the NVIDIA driver runs (CUDA 12.2)" in gpu["cause"]
        assert gpu["fix"] == ("pip install --force-reinstall torch torchvision torchaudio "
                              "--index-url https://download.pytorch.org/whl/cu121")
    assert all(d["severity"] == "warning" for d in found.values())


def test_named_gpu_that_torch_cannot_use_is_exit_2_with_its_cause(runs):
    if "named" not in runs:
        pytest.skip("this machine has a usable CUDA GPU")
    code, out, err = runs["named"]
    assert code == 2 and "Traceback" not in out + err, out + err
    assert "[cuda-unusable] ERROR: torch 2.14.1 is built for CUDA 13.0, newer than the NVIDIA driver runs (CUDA 12.2)" \
        in err
    assert "fix: pip install --force-reinstall torch torchvision torchaudio " \
        "--index-url https://download.pytorch.org/whl/cu121" in err


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
    assert dg.writable(Path(d["fix"].split("=", 1)[1]))[0]
    assert [x["rule"] for x in data["diagnoses"]].count("cache-unwritable") == 1  # hub and datasets: one cause


def test_offline_with_an_uncached_hub_name(runs):
    code, found, _ = _json(runs, "offline")
    assert code == 1
    d = found["offline-hub-name"]
    assert "HF_HUB_OFFLINE=1 but the hub model org/not-cached is not in the cache" in d["cause"]
    assert d["fix"].startswith("HF_HUB_OFFLINE=0 hf download org/not-cached")
    assert list(found) == ["offline-hub-name"]  # the cached model and the folder are fine


def test_cpu_only_build_on_a_gpu_machine(runs):
    code, found, _ = _json(runs, "cpu")
    d = found["cpu-build-on-gpu"]
    assert f"torch {TORCH_VERSION}+cpu is a CPU-only build" in d["cause"] and "NVIDIA A10G" in d["evidence"]
    assert d["fix"].endswith("--index-url https://download.pytorch.org/whl/cu121")
    assert code == 1  # the stub torch fails the torch probe; the diagnosis itself is a warning without --device
    assert d["severity"] == "warning"


# -- the rules on planted facts -------------------------------------------------------------------------------------
def _facts(**changes) -> dg.Facts:
    base = {"torch_version": TORCH_VERSION, "torch_cuda": "13.0",
            "torch_installs": [{"version": TORCH_VERSION, "location": "/venv/site", "loaded": True}],
            "dists": {"torchvision": {"version": "0.29.1", "location": "/venv/site", "requires": ["torch>=2.14.0"]},
                      "torchaudio": {"version": "2.11.0", "location": "/venv/site", "requires": []}},
            "triton": "3.8.0", "torch_triton_req": "triton~=3.8.0", "cpu": {"count": 8, "usable": 8, "load1": 0.5},
            "compilers": {"g++": "/usr/bin/g++"}, "env": {"OMP_WAIT_POLICY": "PASSIVE"},
            "gpu": {"dev_nodes": [], "gpus": [], "driver": None}}
    base.update(changes)
    return dg.Facts(**base)


def _torch_row(**data) -> ProbeResult:
    return ProbeResult("torch", "system", "ok", "", 0.0, True, {"threads": 4, **data})


def test_the_tested_set_gives_no_diagnosis():
    """torch 2.14.1, torchvision 0.29.1 (requires torch>=2.14.0), torchaudio 2.11.0 (declares no torch)."""
    assert dg.diagnose(_facts(), [_torch_row(cuda_available=False)]) == []


def test_torch_pair_reads_each_wheels_metadata():
    facts = _facts(dists={"torchaudio": {"version": "2.5.0", "location": "/x", "requires": ["torch==2.5.0"]}})
    failed = ProbeResult("extension", "torchaudio", "failed", "OSError: undefined symbol", 0.0, True)
    (d,) = dg.diagnose(facts, [_torch_row(), failed])
    assert d.rule == "torch-pair" and d.fix == f'pip install --upgrade "torch=={TORCH_VERSION}" torchaudio'
    assert d.explains == [{"group": "torchaudio", "name": "extension"}]
    local = _facts(torch_version="2.14.1+cu126", dists={"torchvision": {"version": "0.28.0", "location": "/x",
                                                                            "requires": ["torch==2.13.0"]}})
    (d,) = dg.rule_torch_pair(local, [])
    assert d.fix.endswith("torchvision --index-url https://download.pytorch.org/whl/cu126")


def test_cuda_unusable_variants():
    gpu = {"dev_nodes": ["/dev/nvidia0"], "gpus": ["GPU 0: H100"], "driver": "580.1", "driver_cuda": "13.0"}
    hidden = _facts(gpu=gpu, env={"CUDA_VISIBLE_DEVICES": ""}, device="cuda")
    (d,) = dg.rule_cuda_unusable(hidden, [_torch_row(cuda_available=False)])
    assert d.fix == "unset CUDA_VISIBLE_DEVICES" and d.severity == "error"
    assert dg.rule_cuda_unusable(_facts(gpu=gpu), [_torch_row(cuda_available=True)]) == []
    assert dg.rule_cuda_unusable(_facts(), [_torch_row(cuda_available=False)]) == []  # no GPU here: nothing to say


def test_no_triton_on_a_usable_gpu():
    facts = _facts(triton=None, device="cuda")
    (d,) = dg.rule_no_triton(facts, [_torch_row(cuda_available=True)])
    assert d.fix == 'pip install "triton~=3.8.0"' and d.severity == "error"
    assert dg.rule_no_triton(_facts(triton=None), [_torch_row(cuda_available=False)]) == []  # no GPU: not needed


def test_cxx_pointing_nowhere():
    facts = _facts(env={"CXX": "/opt/nope/g++"}, compilers={"g++": "/usr/bin/g++", "$CXX": None})
    (d,) = dg.rule_no_cxx(facts, [])
    assert d.fix == "unset CXX"


def test_spinning_openmp_on_a_loaded_machine():
    facts = _facts(cpu={"count": 2, "usable": 2, "load1": 5.0}, env={})
    (d,) = dg.rule_cpu_oversubscribed(facts, [_torch_row(threads=2)])
    assert "OMP_WAIT_POLICY unset" in d.evidence and d.fix == "export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE"


def test_a_failing_rule_is_a_warning_not_a_crash(monkeypatch):
    def broken(facts, probes):
        raise KeyError("oops")

    monkeypatch.setattr(dg, "RULES", (broken,))
    (d,) = dg.diagnose(_facts(), [])
    assert d.severity == "warning" and "KeyError" in d.cause


def test_a_probe_is_explained_once():
    facts = _facts(dists={"torchvision": {"version": "0.0.0", "location": "/x", "requires": ["torch==2.0.0"]}},
                   compilers={})
    failed = ProbeResult("c++ compiler", "compile", "failed", "no C++ compiler found", 0.0, True)
    found = dg.diagnose(facts, [_torch_row(), failed])
    assert [d.rule for d in found] == ["torch-pair", "no-cxx"]
    assert found[0].explains == [] and found[1].explains == [{"group": "compile", "name": "c++ compiler"}]
