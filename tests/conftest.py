"""Test harness: offline, network-blocked, caches in a temp dir, RNG state kept, CUDA tests skipped without a GPU."""

from __future__ import annotations

import importlib.metadata
import os
import random
import socket
import sys
import tempfile

import pytest

# Set before any test imports transformers/datasets: they read these at import time.
_CACHE_ROOT = tempfile.mkdtemp(prefix="tour-test-cache-")
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HOME": os.path.join(_CACHE_ROOT, "hf"),
    "TORCHINDUCTOR_CACHE_DIR": os.path.join(_CACHE_ROOT, "inductor"),
    "TORCH_HOME": os.path.join(_CACHE_ROOT, "torch"),  # torch.hub's checkpoints (the staged MobileNetV2 file)
    "TOUR_CACHE_DIR": os.path.join(_CACHE_ROOT, "tour"),  # converted models (SmolLM2, Whisper): once per session
    "MPLBACKEND": "Agg",
}
# On a busy 2-core machine torch's OpenMP threads spin while waiting for each other; passive waiting made
# the vision tests ~3x faster under load (subprocesses inherit it too). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.update(OFFLINE_ENV)
os.environ.pop("TOUR_DEVICE", None)  # tests choose devices explicitly


def pytest_report_header(config):
    names = ["torch", "torchvision", "torchaudio", "transformers", "datasets", "lightning", "pyro-ppl"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ["torch-tour stack: " + ", ".join(found), f"caches under {_CACHE_ROOT} (HF offline)"]


def pytest_sessionfinish(session, exitstatus):
    """The session's caches hold converted models (~0.5 GB): remove them, or every `make test` leaves a copy."""
    if not os.environ.get("TOUR_KEEP_TEST_CACHE"):
        import shutil

        shutil.rmtree(_CACHE_ROOT, ignore_errors=True)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


# -- devices: a stop fixture that asks for `stop_device` runs once per device present ------------------------------
def device_params() -> list:
    """cpu, then cuda (marked needs_cuda) only when a GPU is here: a CPU machine keeps its tests, ids and time."""
    params = [pytest.param("cpu", id="cpu")]
    if _cuda_available():
        params.append(pytest.param("cuda", id="cuda", marks=pytest.mark.needs_cuda))
    return params


def pytest_generate_tests(metafunc):
    # Module scope: a module's stop fixture (one run of the stop) is built once per device, not per test.
    if "stop_device" in metafunc.fixturenames:
        metafunc.parametrize("stop_device", device_params(), scope="module")


# Two computations of the same maths agree to within this, by dtype: kernels and reduction orders differ between
# devices and backends; bf16 and fp16 keep ~3 significant digits.
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 1e-2}


@pytest.fixture
def tolerance():
    """atol by dtype: tolerance("bfloat16") or tolerance(torch.bfloat16)."""
    return lambda dtype: TOLERANCE[str(dtype).removeprefix("torch.")]


def pytest_collection_modifyitems(config, items):
    _mark_slow(items)
    if any("needs_cuda" in item.keywords for item in items) and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU; none here")
        for item in items:
            if "needs_cuda" in item.keywords:
                item.add_marker(skip)


# -- network: loopback only, in this process and in every Python child ----------------------------------------
# The guard lives in tests/netguard/ (one copy of its logic); its sitecustomize.py installs it in each child that
# the tests start (the CLI, doctor workers, torchrun ranks, export's fresh process), as that folder comes first on
# the PYTHONPATH they inherit.
_NETGUARD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netguard")
sys.path.insert(0, _NETGUARD_DIR)
import tour_netguard

sys.path.remove(_NETGUARD_DIR)
NetworkBlocked = tour_netguard.NetworkBlocked
_is_local = tour_netguard.is_local
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_NETGUARD_DIR, os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(autouse=True)
def _block_network(monkeypatch):
    """Any test that opens a non-loopback connection fails; loopback stays open for distributed tests."""
    for name, method in tour_netguard.guarded_methods(socket.socket).items():
        monkeypatch.setattr(socket.socket, name, method)
    yield


@pytest.fixture(autouse=True)
def _keep_rng_and_threads():
    """Tests may seed and change thread counts; put both back so test order never matters."""
    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        import torch
    except ImportError:
        torch = None
    torch_state = torch.random.get_rng_state() if torch else None
    threads = torch.get_num_threads() if torch else None
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    if torch:
        torch.random.set_rng_state(torch_state)
        torch.set_num_threads(threads)


@pytest.fixture
def out_dir(tmp_path):
    """A fresh output folder for a stop's files."""
    return str(tmp_path / "out")


# -- the fast tier: a test that runs a stop, a doctor worker or a subprocess is `slow`, found from its code -----------
# `make test-fast` (pytest -m "not slow") then checks renderers, rules, parsers and flags in a couple of minutes;
# CI keeps the full suite. Read from the source of the test, of the fixtures it uses and of the module's own helpers
# it calls, so a new test is classed without anyone remembering to mark it.
def _slow_pattern():
    import re

    from tour.tools.registry import STOPS

    stops = "|".join(STOPS)
    # a stop's run(Config(...)) or main([...]) under any name it was imported as (comp.main([...]))
    return re.compile(rf"\bsubprocess\b|\bPopen\b|\bcheck_output\(|\b(?:{stops}|stop|module)\.(?:run|main)\(|"
                      r"\.run\(\w*\.?Config\(|\.main\(\[|\bbench_rows\(|\brun_probe\(|\bNotebookClient\b|"
                      r"\bDataLoader\(|"
                      r"\brun_stop\(|\bstop_main\(|\bdoctor\.(?:collect|main)\(|\bcollect\(|\bgpu_check\.(?:main|"
                      r"execute)\(|\b(?:run_all|bench|cli|compat)\.main\(|\bspawn\(|\btorchrun\b")


def _sources(item) -> list[str]:
    import inspect

    found, seen = [], set()

    def add(fn):
        fn = inspect.unwrap(fn)
        if fn in seen:
            return
        seen.add(fn)
        try:
            text = inspect.getsource(fn)
        except (OSError, TypeError):
            return
        found.append(text)
        module = inspect.getmodule(fn)
        for name, helper in vars(module or object).items():  # the module's own helpers it calls, one level deep
            if inspect.isfunction(helper) and helper.__module__ == getattr(module, "__name__", None) and \
                    f"{name}(" in text and not name.startswith("test_"):
                add(helper)

    add(item.function)
    for defs in getattr(item, "_fixtureinfo").name2fixturedefs.values():
        for d in defs:
            if str(getattr(d, "baseid", "")).startswith("tests") or "tests" in str(inspect.getfile(d.func)):
                add(d.func)
    return found


def _mark_slow(items) -> None:
    pattern = _slow_pattern()
    for item in items:
        if "slow" not in item.keywords and any(pattern.search(s) for s in _sources(item)):
            item.add_marker(pytest.mark.slow)
