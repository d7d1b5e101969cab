"""`tour bench` on a small subset: the table and JSON have their structure, parity columns hold; no speed asserts."""

import json
from pathlib import Path

import pytest

from tour.core import roofs
from tour.core.errors import TourError
from tour.tools import bench, registry


@pytest.fixture(scope="module")
def saved(tmp_path_factory, stop_device):
    out = tmp_path_factory.mktemp("out")
    argv = ["--quick", "--device", stop_device, "--out", str(out), "--only", "flops", "attention"]
    assert bench.main(argv) == 0
    folder = out / "bench"
    return json.loads((folder / "bench.json").read_text()), (folder / "bench.md").read_text()


def test_sections_and_rows(saved):
    data, _ = saved
    assert data["sections"] == ["roof", "flops", "attention"]  # flops brings its roof along
    assert data["skipped"] == {}
    assert {r["section"] for r in data["rows"]} == {"attention"}
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
        assert 0 < f["fraction_of_roof"] <= 1  # a rate above the roof has it measured again, and is clamped


def test_markdown_has_both_tables(saved):
    data, md = saved
    dtype = next(r["what"] for r in data["rows"] if r["what"].startswith("L=128")).split(", ")[1]  # bf16 on a GPU
    assert "| section | what | baseline | variant |" in md and f"| L=128, {dtype} |" in md
    assert "matmul roof:" in md and "| MiniLM-L6 encoder (pretrained) |" in md


def test_every_declared_bench_stop_offers_bench_rows():
    # The registry is the one interface: a stop declared bench=True must really offer bench_rows(settings).
    for name in registry.bench_stops():
        assert callable(registry.load(name).bench_rows), name


def test_missing_library_skips_that_section_and_still_writes_json(monkeypatch, tmp_path):
    # transformers "missing" for the NLP rows: the section is skipped with the reason, the others still run.
    def missing(settings):
        raise TourError("the NLP bench rows need transformers, which is not installed; run: pip install 'torch-tour[nlp]'")

    monkeypatch.setattr(registry.load("nlp"), "bench_rows", missing)
    res = bench.run(bench.Config(quick=True, device="cpu", out=str(tmp_path), only=["roof", "nlp"]))
    assert res.roof_gflops > 0 and res.rows == []
    assert "pip install 'torch-tour[nlp]'" in res.skipped["nlp"]
    assert json.loads(Path(res.json_path).read_text())["skipped"] == res.skipped


def test_unknown_section_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's usage error: exit 2, one line
        bench.main(["--only", "gpu-magic", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "'gpu-magic' is not one of" in err and len(err.strip().splitlines()) == 1


def test_nlp_throughput_rows_are_against_the_batched_pipeline():
    from tour.core.results import BenchSettings

    rows = registry.load("nlp").bench_rows(BenchSettings(quick=True, device="cpu"))
    assert [r.variant for r in rows] == ["pipeline per sentence", "batched embed()"]
    assert all(r.baseline == "pipeline(batch_size=64)" and r.parity is True and r.ratio > 0 for r in rows)


def test_a_section_that_raises_is_recorded_and_the_files_still_written(monkeypatch, tmp_path, capsys):
    # Triton's and AOTInductor's errors are RuntimeError/OSError, not TourError: one section fails, not the bench.
    def broken(settings):
        raise RuntimeError("\nTriton failed to build its launcher\n(a page of compiler output)")

    monkeypatch.setattr(registry.load("nlp"), "bench_rows", broken)
    argv = ["--quick", "--device", "cpu", "--out", str(tmp_path), "--only", "roof", "nlp"]
    assert bench.main(argv) == 1  # a failed section fails the command
    data = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert data["failed"] == {"nlp": "RuntimeError: Triton failed to build its launcher"} and data["skipped"] == {}
    assert data["roof_gflops"] > 0  # the section before it kept its figure
    md = (tmp_path / "bench" / "bench.md").read_text()
    assert "- nlp FAILED: RuntimeError: Triton failed to build its launcher" in md
    assert "nlp FAILED: RuntimeError" in capsys.readouterr().out


def test_files_are_written_when_the_first_section_raises(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "fp32_roof", lambda *a: (_ for _ in ()).throw(OSError("libcuda.so: not found")))
    res = bench.run(bench.Config(quick=True, device="cpu", out=str(tmp_path), only=["roof"]))
    assert res.failed == {"roof": "OSError: libcuda.so: not found"}
    assert json.loads(Path(res.json_path).read_text())["failed"] == res.failed


def test_precision_and_roof_size_are_recorded(saved):
    data, md = saved
    on_cpu = data["device"] == "cpu"
    tf32 = "no TF32 on cpu" if on_cpu else "TF32 matmul off, cuDNN conv on"  # torch's defaults on a GPU
    assert data["precision"] == f"fp32 in IEEE for the roof and FLOP rows; elsewhere {tf32}"
    assert data["precision"] in md and data["roof_n"] in roofs.sizes(data["device"].split(":")[0])
    assert f"GFLOP/s (fp32 peak, reached at n={data['roof_n']})" in md


def test_roof_n_is_one_more_size_the_core_tries(monkeypatch, tmp_path):
    """`--roof-n` still works: one more n for the core's fp32 peak, beside its own sizes (timings faked)."""
    monkeypatch.setattr(roofs, "_time_matmul", lambda device, dtype, n, quick: 10.0)  # the largest n wins
    roofs.forget()
    try:
        res = bench.run(bench.parse_config(bench.Config, ["--quick", "--device", "cpu", "--out", str(tmp_path),
                                                          "--only", "roof", "--roof-n", "4000"], "tour bench"))
    finally:
        roofs.forget()  # the faked roof must not reach the next test
    assert res.roof_n == 4000 and not res.failed
