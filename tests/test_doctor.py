"""`tour doctor`: real probes pass here, and a broken or hanging library is reported, never a crash.

Two doctor runs share the work, started together so that the fault run's deliberate hang overlaps the healthy run:
a healthy `--quick --json` run, and a fault-injection run with stub packages put first on PYTHONPATH (a torchvision
that raises on import, a torchcodec that hangs on import).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

from tour.tools import doctor
from tour.tools.doctor import FAILED, OK, SKIPPED, ProbeResult, Report, probes_core
from tour.tools.doctor.collect import diagnoses_for
from tour.tools.doctor.rows import CRASH, DEVICE_ABSENT, IMPORT_ERROR, TIMEOUT, Probe
from tour.tools.doctor.worker import run_probe

PY = sys.executable
HANG_LIMIT = 20  # seconds: the fault run's --timeout, so the stub torchcodec's hang is cut off


def _start(args, extra_path=None):
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra_path), env.get("PYTHONPATH")) if p)
    return subprocess.Popen([PY, "-m", "tour.tools.doctor", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _stubs(folder):
    (folder / "torchvision").mkdir(parents=True)
    (folder / "torchvision" / "__init__.py").write_text('raise ImportError("broken on purpose")\n')
    (folder / "torchcodec").mkdir()
    (folder / "torchcodec" / "__init__.py").write_text("import time\ntime.sleep(600)\n")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    stubs = _stubs(tmp_path_factory.mktemp("stubs"))
    healthy = _start(["--quick", "--json"])
    fault = _start(["--quick", "--timeout", str(HANG_LIMIT)], extra_path=stubs)
    fault_json = _start(["--quick", "--json", "--timeout", str(HANG_LIMIT), "--only", "torchvision,audio i/o"],
                        extra_path=stubs)
    results = {}
    for name, proc in (("healthy", healthy), ("fault", fault), ("fault-json", fault_json)):
        out, err = proc.communicate(timeout=500)
        results[name] = (proc.returncode, out, err)
    return results


@pytest.fixture(scope="module")
def healthy(runs):
    code, out, err = runs["healthy"]
    assert code == 0, out + err
    data = json.loads(out)
    return data, {(p["group"], p["name"]): p for p in data["probes"]}


def _row(table: str, group: str, name: str) -> str:
    lines = [ln for ln in table.splitlines() if ln.startswith(f"  {group:<13}{name:<22}")]
    assert len(lines) == 1, f"no row for {group} {name} in:\n{table}"
    return lines[0]


# -- the healthy run ----------------------------------------------------------------------------------------------
def test_every_required_probe_passes(healthy):
    data, probes = healthy
    assert data["ok"] is True and data["exit_code"] == 0 and data["seconds"] > 0
    bad = [p for p in probes.values() if p["required"] and p["status"] == FAILED]
    assert not bad, bad
    assert data["counts"][OK] >= 20  # the probes really ran, not all skipped


def test_cpu_probes_check_real_facts(healthy):
    _, probes = healthy
    for name in ("matmul [cpu]", "autograd [cpu]", "sdpa [cpu]", "memory [cpu]"):
        assert probes[("device", name)]["status"] == OK, probes[("device", name)]
    assert "CPU float64 reference" in probes[("device", "matmul [cpu]")]["detail"]
    assert "math" in probes[("device", "sdpa [cpu]")]["data"]["sdpa_backends"]
    assert probes[("device", "memory [cpu]")]["data"]["total_bytes"] > 2**30


def test_rows_carry_structured_fields(healthy):
    _, probes = healthy
    matmul = probes[("device", "matmul [cpu]")]
    assert matmul["device"] == "cpu" and matmul["libraries"] == ["torch"] and matmul["kind"] is None
    assert "torchvision" in probes[("assets", "MobileNetV2 weights")]["libraries"]
    assert "torchvision" in probes[("transformers", "tiny model")]["libraries"]  # transformers imports it
    for key in [("compile", "torch.compile"), ("compile", "torch.export")]:
        assert probes[key]["kind"] == "quick"


def test_gpu_probes_are_skipped_without_a_gpu(healthy):
    data, probes = healthy
    if data["facts"]["gpu"].get("gpus"):
        pytest.skip("this machine has an NVIDIA GPU")
    for key in [("distributed", "nccl"), ("distributed", "nccl 2 ranks"), ("compile", "torch.compile [cuda]"),
                ("compile", "AOTInductor [cuda]")]:
        assert probes[key]["status"] == SKIPPED and probes[key]["kind"] == DEVICE_ABSENT, probes[key]


def test_reworded_details_change_no_diagnosis(healthy):
    """The real run's rows with every detail reworded: the rules give the same diagnoses."""
    data, _ = healthy
    rows = [ProbeResult.from_dict(p) for p in data["probes"]]
    before = [d.to_dict() for d in diagnoses_for(data["facts"], rows)]
    for r in rows:
        r.detail = "xyz"
    assert [d.to_dict() for d in diagnoses_for(data["facts"], rows)] == before


def test_the_tested_set_gets_no_mismatch_and_no_error_diagnosis(healthy):
    data, probes = healthy
    assert data["schema"] == 1 and data["facts"]["torch_version"] == importlib.metadata.version("torch")
    assert not [d for d in data["diagnoses"] if d["rule"] == "torch-pair" or d["severity"] == "error"], \
        data["diagnoses"]
    assert "release pair" not in probes[("system", "versions")]["detail"]  # the hand-written table is gone


def test_versions_come_from_metadata(healthy):
    _, probes = healthy
    versions = probes[("system", "versions")]["data"]["versions"]
    assert versions["torch"] == importlib.metadata.version("torch")
    assert versions["torchvision"] == importlib.metadata.version("torchvision")
    assert set(versions) >= {"torchaudio", "transformers", "datasets", "lightning", "pyro-ppl", "soundfile"}


def test_library_and_asset_probes_pass(healthy):
    _, probes = healthy
    for key in [("torchvision", "ops.nms"), ("torchvision", "transforms v2"), ("torchaudio", "extension"),
                ("torchaudio", "MelSpectrogram"), ("audio i/o", "soundfile"), ("transformers", "tiny model"),
                ("datasets", "map"), ("distributed", "gloo"), ("assets", "MiniLM"), ("assets", "Silero VAD"),
                ("assets", "EfficientNet-Lite0"), ("assets", "chatterbot corpus"), ("assets", "ImageNet labels")]:
        assert probes[key]["status"] == OK, probes[key]
    assert "nms keeps [0, 2]" in probes[("torchvision", "ops.nms")]["detail"]


def test_quick_skips_the_slow_probes(healthy):
    _, probes = healthy
    for name in ("torch.compile", "torch.export"):
        assert probes[("compile", name)]["status"] == SKIPPED
        assert "--quick" in probes[("compile", name)]["detail"]


def test_reports_offline_mode_and_caches(healthy):
    _, probes = healthy
    hf = probes[("hugging face", "offline mode")]
    assert hf["status"] == OK and hf["detail"].startswith("offline")  # conftest sets HF_HUB_OFFLINE=1
    assert hf["data"]["caches"]["hub"].startswith(os.environ["HF_HOME"])  # where the caches really are


# -- the fault-injection run --------------------------------------------------------------------------------------
def test_broken_library_fails_its_probes_and_nothing_else(runs):
    code, out, err = runs["fault"]
    assert code == 1, out + err
    assert "Traceback" not in out + err
    for name in ("model forward", "ops.nms", "transforms v2"):
        row = _row(out, "torchvision", name)
        assert " FAILED " in row and "ImportError: broken on purpose" in row, row
    data = json.loads(runs["fault-json"][1])
    probes = {(p["group"], p["name"]): p for p in data["probes"]}
    assert probes[("torchvision", "ops.nms")]["kind"] == IMPORT_ERROR
    assert probes[("audio i/o", "torchcodec")]["kind"] == TIMEOUT
    for group, name in (("device", "matmul [cpu]"), ("torchaudio", "extension"), ("audio i/o", "soundfile")):
        assert f" {OK} " in _row(out, group, name)
    assert "required probes failed: torchvision model forward" in out
    assert "\nversions: " in out and " supported (within its ranges)" in out  # the version check always reports
    # Its metadata is the real, matching torchvision's, but `import torchvision` finds the stub folder first on
    # PYTHONPATH: that is the cause the doctor names, with the fix that takes the folder off the path.
    assert "[module-shadowed] ERROR: `import torchvision` loads " in out and "/torchvision, not the installed " \
        "torchvision " in out
    fix = next(ln.strip() for ln in out.splitlines() if ln.strip().startswith("fix: ") and
               ("PYTHONPATH" in ln or ln.strip().startswith("fix: mv")))
    assert fix in ("fix: unset PYTHONPATH",) or fix.startswith("fix: export PYTHONPATH="), fix
    assert "not explained by a known cause: torchvision model forward" not in out


def test_hanging_import_is_cut_off_and_the_rest_still_runs(runs):
    _, out, _ = runs["fault"]
    row = _row(out, "audio i/o", "torchcodec")
    assert f"timed out after {HANG_LIMIT} s" in row and "(optional)" in row, row
    # After the cut-off a fresh worker carried on with the probes that follow.
    for name in ("ImageNet labels", "chatterbot corpus"):
        assert f" {OK} " in _row(out, "assets", name)


def _stub_torch(folder, body):
    (folder / "torch").mkdir()
    (folder / "torch" / "__init__.py").write_text(body)
    return folder


def test_a_crashing_torch_is_reported_not_fatal(tmp_path):
    """A segfault on `import torch` kills the worker before it can plan: one failed probe says where."""
    stubs = _stub_torch(tmp_path, "import ctypes\nctypes.string_at(0)\n")
    out, err = _start(["--quick"], extra_path=stubs).communicate(timeout=120)
    row = _row(out, "system", "probe worker")
    assert "SIGSEGV" in row and "torch/__init__.py:2 in <module>" in row, row
    probes = json.loads(_start(["--quick", "--json"], extra_path=stubs).communicate(timeout=120)[0])["probes"]
    assert probes[0]["kind"] == CRASH
    assert "exit code 1" in out and "Traceback" not in out + err


def test_a_broken_torch_fails_the_torch_probes_only(tmp_path):
    stubs = _stub_torch(tmp_path, 'raise ImportError("no torch today")\n')
    proc = _start(["--quick", "--json"], extra_path=stubs)
    out, err = proc.communicate(timeout=300)
    probes = {(p["group"], p["name"]): p for p in json.loads(out)["probes"]}
    assert proc.returncode == 1 and "Traceback" not in err
    for key in (("system", "torch"), ("device", "matmul [cpu]"), ("distributed", "gloo")):
        assert probes[key]["status"] == FAILED and "no torch today" in probes[key]["detail"]
    for key in (("system", "versions"), ("audio i/o", "soundfile"), ("assets", "chatterbot corpus")):
        assert probes[key]["status"] == OK, probes[key]


# -- compile and export, run here directly (the doctor runs them without --quick) ----------------------------------
def test_compile_and_export_probes():
    for func in (probes_core.compile_probe, probes_core.export_probe):
        result = run_probe(Probe(func.__name__, "compile", lambda f=func: f(False)))
        assert result["status"] == OK, result
        assert "matches eager" in result["detail"]


# -- cheap unit checks --------------------------------------------------------------------------------------------
def test_a_raising_probe_is_one_line_and_a_missing_package_skips():
    def boom():
        raise RuntimeError("kaput\nsecond line")

    failed = run_probe(Probe("boom", "x", boom))
    assert failed["status"] == FAILED and failed["detail"].startswith("RuntimeError: kaput (raised in ")
    assert "second line" not in failed["detail"] and failed["kind"] == "error"
    missing = run_probe(Probe("m", "x", boom, needs=("no_such_module_xyz",)))
    assert missing["status"] == SKIPPED and "pip install no_such_module_xyz" in missing["detail"]
    assert missing["kind"] == "not_installed"


def test_exit_code_counts_only_required_failures():
    ok = ProbeResult("a", "g", OK, "fine", 0.1, True)
    optional = ProbeResult("gpu", "g", FAILED, "no", 0.1, False)
    required = ProbeResult("b", "g", FAILED, "broken", 0.1, True)
    assert Report([ok, optional], 1.0, True, None).exit_code == 0
    report = Report([ok, optional, required], 1.0, True, None)
    assert report.exit_code == 1 and report.counts() == {OK: 1, FAILED: 2, SKIPPED: 0}
    table = doctor.format_table(report)
    assert "(optional)" in _row(table, "g", "gpu") and " FAILED " in _row(table, "g", "b")
    assert json.loads(doctor.to_json(report))["probes"][2]["detail"] == "broken"


def test_usage_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        doctor.main(["--timeout", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "positive number of seconds" in err and len(err.strip().splitlines()) == 1


def test_unknown_probe_group_is_a_usage_error():
    proc = _start(["--only", "nope", "--json"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "unknown probe group 'nope'" in err and "Traceback" not in out + err


def test_absent_device_is_a_usage_error():
    proc = _start(["--device", "tpu9", "--json"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "unknown device 'tpu9'" in err and "Traceback" not in out + err


def test_importing_the_doctor_imports_no_torch():
    code = "import sys, tour.tools.doctor; print('torch' in sys.modules)"
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_reader_that_stops_early_is_no_traceback():
    """`tour doctor --json | head`: the pipe closes before the report is written."""
    proc = subprocess.Popen([PY, "-m", "tour.tools.doctor", "--json", "--quick", "--only", "system"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the doctor writes a byte
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141 and "Traceback" not in err, err
