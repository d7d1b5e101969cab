"""Shared by the doctor's tests: rows built through the real probe machinery, facts planted from the installed
versions (read, never written down), and running a fix line with `pip install --dry-run`."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import subprocess
import sys

import pytest

from tour.tools.doctor import facts as doctor_facts
from tour.tools.doctor.rows import Facts, Probe, ProbeResult
from tour.tools.doctor.worker import run_probe

TORCH = importlib.metadata.version("torch")
REGISTRY_TIMEOUT = 120  # seconds for one `pip install --dry-run`


def row(name: str, group: str, raise_or_return, libraries=("torch",), device=None, required=True) -> ProbeResult:
    """A row made the way the worker makes it: run_probe on a Probe whose function raises (or returns) this."""
    def func():
        if isinstance(raise_or_return, BaseException):
            raise raise_or_return
        return raise_or_return

    return ProbeResult.from_dict(run_probe(Probe(name, group, func, required, libraries=libraries, device=device)))


def torch_row(**data) -> ProbeResult:
    return row("torch", "system", ("torch", {"threads": 4, **data}))


def facts(**changes) -> Facts:
    """The installed stack's own facts (versions, declared ranges, tested sets), no GPU, with `changes` planted."""
    base = doctor_facts.collect_facts()
    planted = {"gpu": {"dev_nodes": [], "gpus": [], "driver": None}, "cpu": {"count": 8, "usable": 8, "running": 0.5},
               "env": {"OMP_WAIT_POLICY": "PASSIVE"}, "compilers": {"g++": "/usr/bin/g++"}, "caches": [],
               "torch_cuda": "13.0", "triton": "3.8.0", "ffmpeg_libs": ["avutil"]}
    base = Facts.from_dict({**base.__dict__, **planted, **changes})
    return base


def packages(fix: str) -> tuple[list[str], str | None]:
    """The requirements and the --index-url of a `pip install ...` fix line."""
    words = shlex.split(fix.split("#")[0])
    assert words[:2] == ["pip", "install"], fix
    index = words[words.index("--index-url") + 1] if "--index-url" in words else None
    return [w for w in words[2:] if not w.startswith("-") and w != index], index


def dry_run(fix: str) -> dict:
    """Run the fix line's packages through `pip install --dry-run --no-deps` against the registry this machine can
    reach; the PyTorch CUDA indexes are not reachable here, so their releases are resolved from the default index
    (the same release numbers). Returns pip's report; skips when the registry cannot be reached."""
    reqs, _ = packages(fix)
    # This test asks the registry on purpose; and whether the registry has a release, not this machine's cap on
    # torch (its pip configuration's constraint file), is the question.
    env = dict(os.environ, TOUR_NETGUARD="0", PIP_CONSTRAINT="/dev/null")
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "--quiet", "--report", "-", *reqs]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=REGISTRY_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        pytest.skip("the package registry did not answer in time")
    if done.returncode != 0 and any(s in done.stderr for s in ("NewConnectionError", "Max retries", "ConnectTimeout",
                                                               "Temporary failure in name resolution")):
        pytest.skip("the package registry is unreachable")
    assert done.returncode == 0, f"{fix}\n{done.stderr[-2000:]}"
    return json.loads(done.stdout)


def resolved(fix: str) -> dict[str, dict]:
    """name -> {"version", "requires"} of what `fix` would install."""
    report = dry_run(fix)
    return {item["metadata"]["name"].lower(): {"version": item["metadata"]["version"],
                                               "requires": item["metadata"].get("requires_dist", [])}
            for item in report["install"]}
