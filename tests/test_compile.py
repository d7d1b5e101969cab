"""The compile stop: parity of compiled vs eager, compile times recorded, graph breaks found, recompiles counted.

One quick run (fusion block + the small vision model) is shared; no test asserts a speedup."""

import json
from pathlib import Path

import pytest

from tour import compile as comp
from tour.core.errors import TourError


@pytest.fixture(scope="module")
def result(tmp_path_factory, stop_device):
    out = tmp_path_factory.mktemp("out")
    return comp.run(comp.Config(quick=True, device=stop_device, out=str(out)))


def test_every_comparison_has_parity_and_timings(result):
    assert result.compiler is None  # g++ is there, so Inductor ran
    modes = [(c.model.split()[0], c.mode) for c in result.comparisons]
    assert modes == [("fusion", "inference"), ("MNIST", "inference"), ("MNIST", "training step")]
    for c in result.comparisons:
        assert c.parity is True and c.max_abs_diff < 1e-3, c
        assert c.eager_ms > 0 and c.compiled_ms > 0 and c.speedup == pytest.approx(c.eager_ms / c.compiled_ms)
        assert c.first_compile_s > 0 and c.warm_compile_s > 0
        assert c.first_compile_cache in ("miss", "hit", "mixed")


def test_every_check_passes_and_is_named_by_its_comparison(result):
    parities = [k for k in result.checks() if k.endswith(".parity")]
    assert parities == [f"comparisons[{c.model}, {c.mode}].parity" for c in result.comparisons]
    assert {"break_found", "dynamic_compiles_once"} <= set(result.checks())
    assert result.failed_checks() == []


def test_graph_break_is_found_with_its_reason(result):
    assert result.graph_count == 2 and result.graph_breaks == 1
    assert "item()" in result.break_reasons[0]


def test_dynamic_true_compiles_once(result):
    assert result.compiles == {"dynamic=False": 4, "dynamic=None": 2, "dynamic=True": 1}
    assert result.break_found and result.dynamic_compiles_once
    assert result.dynamic_shape.startswith("(s") and result.dynamic_shape.endswith(", 64)")  # a symbolic batch


def test_second_run_hits_the_inductor_cache(result, stop_device, tmp_path, capsys):
    # same TORCHINDUCTOR_CACHE_DIR as the shared run, and its device: the fusion block's graph (C++ kernels on a
    # CPU, Triton on a GPU) comes from the cache the shared run filled
    assert comp.main(["--quick", "--device", stop_device, "--out", str(tmp_path), "--models", "fusion"]) == 0
    saved = json.loads(Path(tmp_path, "compile", "result.json").read_text())
    (fusion,) = saved["comparisons"]
    assert fusion["first_compile_cache"] == "hit" and fusion["parity"] is True
    assert "allclose True" in capsys.readouterr().out


def test_missing_compiler_runs_the_eager_half(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("tour.core.inductor.compile_problem", lambda device: "no C++ compiler (g++) found")
    res = comp.run(comp.Config(quick=True, device="cpu", out=str(tmp_path), models=["fusion"]))
    assert res.compiler.startswith("no C++ compiler")
    (c,) = res.comparisons
    assert c.eager_ms > 0 and c.compiled_ms is None and c.parity is None
    assert res.failed_checks() == [] and set(res.checks().values()) == {None}  # skipped, not failed
    assert "eager half only" in capsys.readouterr().out


def test_unknown_model_is_a_one_line_error():
    with pytest.raises(TourError, match="--models 'resnet' is not one of: fusion, vision, encoder"):
        comp.Config(quick=True, models=["resnet"])
