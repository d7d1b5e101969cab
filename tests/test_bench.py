"""`tour bench` on a small subset: the table and JSON have their structure, parity columns hold; no speed asserts."""

import json
from pathlib import Path

import pytest

from tour.tools import bench


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    argv = ["--quick", "--device", "cpu", "--out", str(out), "--only", "flops", "compile", "attention",
            "--models", "fusion"]
    assert bench.main(argv) == 0
    folder = out / "bench"
    return json.loads((folder / "bench.json").read_text()), (folder / "bench.md").read_text()


def test_sections_and_rows(saved):
    data, _ = saved
    assert data["sections"] == ["roof", "compile", "attention", "flops"]  # flops brings its roof along
    assert data["skipped"] == {}
    sections = {r["section"] for r in data["rows"]}
    assert sections == {"compile", "attention"}
    (fusion,) = [r for r in data["rows"] if r["section"] == "compile"]
    assert fusion["what"].startswith("fusion block") and "compile" in fusion["note"]
    assert any(r["what"].startswith("MiniLM") for r in data["rows"])  # transformers eager vs sdpa


def test_every_row_has_a_ratio_and_parity(saved):
    data, _ = saved
    for r in data["rows"]:
        assert r["baseline_ms"] > 0 and r["variant_ms"] > 0
        assert r["ratio"] == pytest.approx(r["baseline_ms"] / r["variant_ms"], rel=1e-6)
        assert r["parity"] is True, r


def test_roof_and_achieved_fraction(saved):
    data, _ = saved
    assert data["roof_gflops"] > 0
    models = [f["model"] for f in data["flops"]]
    assert models == ["MiniLM-L6 encoder (pretrained)", "EfficientNet-Lite0 (pretrained)"]
    for f in data["flops"]:
        assert f["gflop_per_call"] > 0.1  # counted matmuls/convs, not zero
        assert f["gflops"] == pytest.approx(f["gflop_per_call"] / f["ms"] * 1e3)
        assert 0 < f["fraction_of_roof"] < 3  # noisy shared machines: a loose sanity bound, not a speed claim


def test_markdown_has_both_tables(saved):
    _, md = saved
    assert "| section | what | baseline | variant |" in md and "| fusion block" in md
    assert "matmul roof:" in md and "| MiniLM-L6 encoder (pretrained) |" in md


def test_absent_stop_is_skipped_with_a_note(monkeypatch, tmp_path):
    real = bench.optional_import
    monkeypatch.setattr(bench, "optional_import", lambda m: None if m == "tour.export" else real(m))
    res = bench.run(bench.Config(quick=True, device="cpu", out=str(tmp_path), only=["export"]))
    assert res.rows == [] and "tour.export" in res.skipped["export"]
    assert json.loads(Path(res.json_path).read_text())["skipped"] == res.skipped


def test_unknown_section_is_a_one_line_error(tmp_path, capsys):
    assert bench.main(["--only", "gpu-magic", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown section" in err and len(err.strip().splitlines()) == 1


def test_nlp_and_vision_throughput_rows():
    # Calls the NLP and vision stops' own throughput functions: a changed signature there must fail here.
    import torch

    rows = bench.throughput_rows(bench.Config(quick=True, device="cpu"), torch.device("cpu"))
    minilm = [r for r in rows if r.what.startswith("MiniLM")]
    lite0 = [r for r in rows if r.what == "EfficientNet-Lite0"]
    assert len(minilm) == 1 and minilm[0].parity is True and minilm[0].ratio > 0
    assert lite0 and all(r.variant_ms > 0 for r in lite0)
