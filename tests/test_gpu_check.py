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
