"""Each planted fault's fix line, run through `pip install --dry-run --no-deps` against the registry: it resolves,
pins the torch it means, and the libraries it pins pair with that torch (by their own metadata). Skipped when the
registry cannot be reached."""

from __future__ import annotations

import pytest
from doctor_helpers import TORCH, facts, packages, resolved, row, torch_row
from packaging.requirements import Requirement
from packaging.version import Version

from tour.tools.doctor import fixes
from tour.tools.doctor.rows import MISSING_SHARED_LIBRARY, Fact
from tour.tools.doctor.rules import diagnose

pytestmark = pytest.mark.registry

GPU = {"dev_nodes": ["/dev/nvidia0"], "gpus": ["GPU 0: A10G"], "driver": "535.104.05", "driver_cuda": "12.2"}


def _fix(planted, rows, rule: str) -> str:
    (d,) = [d for d in diagnose(planted, rows) if d.rule == rule]
    return d.fix


def _assert_resolves_and_pairs(fix: str) -> dict:
    reqs, _ = packages(fix)
    got = resolved(fix)
    torch = got.get("torch")
    assert torch is not None and f"torch=={torch['version']}" in reqs, fix  # the torch it means, pinned
    for name, info in got.items():
        for text in info["requires"]:
            req = Requirement(text)
            if req.name == "torch" and not req.marker:
                assert req.specifier.contains(torch["version"]), f"{name} {info['version']} wants {text}"
    return got


def test_torch_pair_fix():
    planted = facts(dists={"torchvision": {"version": "0.0.0", "location": "/x", "requires": ["torch==2.0.0"]}})
    got = _assert_resolves_and_pairs(_fix(planted, [torch_row()], "torch-pair"))
    assert got["torch"]["version"] == fixes.public(TORCH)


def test_torchcodec_built_for_another_cuda_fix():
    failed = row("torchcodec", "audio i/o", Fact("x", MISSING_SHARED_LIBRARY, {"missing_libraries": ["libnvrtc.so.13"]}),
                 ("torch", "torchcodec", "soundfile"), required=False)
    got = _assert_resolves_and_pairs(_fix(facts(), [torch_row(), failed], "cuda-library"))
    assert got["torchcodec"]["version"] == fixes.companion("torchcodec", TORCH)


def test_driver_too_old_fix():
    fix = _fix(facts(gpu=GPU), [torch_row(cuda_available=False)], "cuda-unusable")
    if fix.startswith("install an NVIDIA driver"):
        pytest.skip(f"no torch in the declared range runs on a CUDA 12.2 driver: {fix}")
    _assert_resolves_and_pairs(fix)


def test_cpu_build_on_a_gpu_machine_fix():
    fix = _fix(facts(gpu=GPU, torch_cuda=None), [torch_row()], "cpu-build-on-gpu")
    if fix.startswith("install an NVIDIA driver"):
        pytest.skip(f"no torch in the declared range runs on a CUDA 12.2 driver: {fix}")
    _assert_resolves_and_pairs(fix)


def test_below_the_floor_fixes():
    base = facts()
    old = "4.0.0"
    fix = _fix(facts(installed={**base.installed, "transformers": old}), [torch_row()], "version-range")
    got = resolved(fix)
    assert Version(got["transformers"]["version"]) > Version(old)
    torch_old = "2.0.0"
    _assert_resolves_and_pairs(_fix(facts(torch_version=torch_old, installed={**base.installed, "torch": torch_old}),
                                    [torch_row()], "version-range"))


def test_torchcodec_hint_pins_the_release_that_pairs_with_torch():
    from tour.tools.doctor.probes_stack import torchcodec_hint

    hint = torchcodec_hint()
    got = _assert_resolves_and_pairs(hint)
    assert got["torchcodec"]["version"] == fixes.companion("torchcodec", TORCH)


def test_untested_versions_note_fix_installs_the_tested_set():
    base = facts()
    newer = f"{Version(TORCH).major}.{Version(TORCH).minor + 1}.0"
    fix = _fix(facts(torch_version=newer, installed={**base.installed, "torch": newer}), [torch_row()],
               "version-untested")
    got = _assert_resolves_and_pairs(fix)
    assert got["torch"]["version"] == base.tested["torch"][0]
