"""`make gpu-check` (python -m tour.tools.gpu_check): its no-GPU path here, its step runner's time limit, and the
summary it writes from a doctor report. The full run needs a CUDA GPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tour.tools import gpu_check
from tour.tools.gpu_check import Outcome, Step


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: gpu-check would run everything")
def test_without_a_gpu_it_ends_cleanly_with_one_line(tmp_path):
    out = tmp_path / "gpu"
    done = subprocess.run([sys.executable, "-m", "tour.tools.gpu_check", "--out", str(out)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA GPU on this machine (") and \
        lines[0].endswith("; nothing to check"), lines
    assert not out.exists()


def test_a_step_past_its_limit_is_cut_off(tmp_path):
    step = Step("sleep", [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], 3,
                "sleep.log")
    outcome = gpu_check.run_step(step, tmp_path)
    assert outcome.code is None and outcome.seconds < 30 and outcome.state == "TIMED OUT after 3 s"
    assert (tmp_path / "sleep.log").read_text().strip() == "started"


def test_summary_carries_the_doctors_gpu_rows_and_diagnoses(tmp_path):
    probe = {"name": "sdpa [cuda:0]", "group": "device", "status": "ok", "detail": "backends that ran: math, flash",
             "seconds": 0.1, "required": True, "data": {"sdpa_backends": ["math", "flash"]}}
    diag = {"rule": "no-triton", "severity": "error", "cause": "no Triton", "evidence": "e", "fix": "pip install triton",
            "explains": []}
    (tmp_path / "doctor.json").write_text(json.dumps({"probes": [probe], "seconds": 1.0, "quick": False,
                                                      "device": "cuda", "diagnoses": [diag], "facts": None}))
    outcomes = [Outcome(Step("doctor", [], 900, "doctor.json"), 1, 12.0)]
    path = gpu_check.write_summary(tmp_path, {"names": ["H100"], "torch": "2.14.1", "build": "13.0"}, outcomes)
    text = path.read_text()
    assert "# gpu-check: H100" in text and "| doctor | FAILED (exit code 1) | 12 | doctor.json |" in text
    assert "| device sdpa [cuda:0] | ok | backends that ran: math, flash |" in text
    assert "fix: pip install triton" in text and (tmp_path / "doctor.txt").exists()


# a failed check fails the step; --out is the caller's -------------------------------------------------------------
GPU = {"cuda": True, "nvidia": True, "count": 1, "names": ["Fake GPU"], "torch": "x", "build": "13.0"}


def stop_with_a_failed_check(tmp_path, monkeypatch):
    """What `tour run all` writes for a stop that ran but whose Result has one failed check: run_stop's own
    outcome, written by the report's own writer."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from tour.core.config import BaseConfig
    from tour.core.results import BaseResult, check
    from tour.tools import report, run_all

    @dataclass
    class Result(BaseResult):
        device: str
        parity: bool | None = check("compiled output allclose to eager", None)

    stop = SimpleNamespace(__doc__="a stop", Config=BaseConfig, run=lambda cfg: Result("cuda", parity=False))
    monkeypatch.setattr(run_all, "load", lambda name: stop)
    cfg = run_all.Config(quick=True, device="cpu", out=str(tmp_path / "run-all"), doctor=False)
    outcome = run_all.run_stop("compile", cfg)
    assert not outcome.ok and outcome.error == "failed check(s): parity"
    report.write(tmp_path / "run-all", [outcome], None, cfg, 1.0)


def test_a_failed_check_in_run_all_fails_the_step_and_the_summary_says_which(tmp_path, monkeypatch, capsys):
    stop_with_a_failed_check(tmp_path, monkeypatch)
    assert gpu_check.run_all_failures(tmp_path) == ["compile: failed check(s): parity"]
    monkeypatch.setattr(gpu_check, "gpu_state", lambda: dict(GPU))
    monkeypatch.setattr(gpu_check, "run_step", lambda step, out: Outcome(step, 0, 1.0))  # every command exits 0
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    summary = (tmp_path / "summary.md").read_text()
    assert "| run all | FAILED (1 failed: compile: failed check(s): parity) |" in summary
    assert "- compile: failed check(s): parity" in summary
    assert "3 of 4 steps ok" in capsys.readouterr().out


def test_bench_failures_are_read_from_bench_json(tmp_path):
    (tmp_path / "bench").mkdir()
    rows = [{"section": "compile", "what": "MLP, inference", "parity": False}, {"section": "x", "what": "y", "parity": True}]
    (tmp_path / "bench" / "bench.json").write_text(json.dumps({"rows": rows, "failed": {"export": "OSError: no ld"}}))
    assert gpu_check.bench_failures(tmp_path) == ["bench export: OSError: no ld",
                                                  "bench compile MLP, inference: parity False"]
    assert Outcome(Step("bench", [], 1, "bench.log"), 0, 1.0, ["x"]).ok is False


def test_a_relative_out_is_the_callers_folder(tmp_path, monkeypatch):
    # The steps run in the checkout (for tests/), so a relative --out must be resolved where the caller stands.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpu_check, "gpu_state", lambda: dict(GPU))
    ran = []
    monkeypatch.setattr(gpu_check, "run_step", lambda step, out: (ran.append((step, out)), Outcome(step, 0, 1.0))[1])
    assert gpu_check.main(["--out", "rel/gpu"]) == 0
    where = tmp_path / "rel" / "gpu"
    assert (where / "summary.md").exists() and all(out == where for _, out in ran)
    paths = [a.split("=", 1)[-1] for step, _ in ran for a in step.cmd if "rel" in a]
    assert paths and all(p.startswith(str(where)) for p in paths)  # absolute: right whatever the steps' folder


# make gpu-check: offline, on the existing venv ----------------------------------------------------------------------
MAKEFILE = gpu_check.ROOT / "Makefile"


def test_make_gpu_check_needs_no_setup_and_runs_offline():
    lines = MAKEFILE.read_text().splitlines()
    rule = lines.index("gpu-check:")  # no prerequisite: `setup` needs the network
    recipe = "\n".join(lines[rule + 1:rule + 4])
    assert "HF_HUB_OFFLINE=1 $(PY) -m tour.tools.gpu_check" in recipe


def test_make_gpu_check_without_a_venv_says_so_in_one_line(tmp_path):
    done = subprocess.run(["make", "-s", "-C", str(gpu_check.ROOT), "gpu-check", f"VENV={tmp_path / 'none'}"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "pip" not in done.stdout + done.stderr  # nothing installed, nothing fetched
    assert done.stdout.startswith(f"gpu-check: no venv at {tmp_path / 'none'}; run make setup once")


def test_system_packages_include_what_triton_builds_with():
    plan = subprocess.run(["make", "-n", "-C", str(gpu_check.ROOT), "system-deps"], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    assert "command -v gcc" in plan and 'missing="$missing gcc"' in plan
    # gcc alone brings no C++ compiler: Inductor's CPU kernels and AOTInductor need g++ too
    assert "command -v g++" in plan and 'missing="$missing g++"' in plan
    # python3-dev is a header, not a command: probed where this Python's sysconfig puts Python.h
    assert "sysconfig.get_paths()['include'], 'Python.h'" in plan and 'missing="$missing python3-dev"' in plan
