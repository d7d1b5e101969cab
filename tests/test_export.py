"""The export stop: a trained model is exported with a dynamic batch, packaged by AOTInductor once for the whole
file, run in a fresh process that imports nothing of the tour, and matches eager PyTorch at every batch size."""

import json
import zipfile
from pathlib import Path

import pytest
import torch

from tour import export
from tour.core.errors import TourError


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return export.run(export.Config(quick=True, device="cpu", out=str(out)))  # the one AOTInductor compile


def test_exports_a_trained_cnn(result):
    assert result.arch == "cnn"
    assert result.test_accuracy >= 0.8  # one short epoch on 2,000 real MNIST digits
    assert result.n_params > 10_000


def test_graph_signature_and_dynamic_batch(result):
    sig = result.signature
    assert sig["user_inputs"] == 1 and sig["user_outputs"] == 1
    assert sig["parameters"] > 0 and sig["buffers"] > 0  # BatchNorm's running stats are lifted as buffers
    assert result.dynamic_batch == f"VR[1, {export.MAX_BATCH}]"
    assert result.wrong_shape_rejected


def test_package_is_a_pt2_archive(result):
    path = Path(result.package)
    assert path.suffix == ".pt2" and zipfile.is_zipfile(path)
    assert result.aoti_skipped == "" and result.aoti_compile_s > 0


def test_fresh_process_matches_eager_at_every_batch_size(result):
    assert result.parity == {"1": True, "7": True, "256": True}
    assert result.max_abs_err < 1e-4
    outputs = Path(result.package).with_name("outputs.safetensors")
    from safetensors.torch import load_file

    shapes = {k: list(v.shape) for k, v in load_file(outputs).items()}
    assert shapes == {"batch_1": [1, 10], "batch_7": [7, 10], "batch_256": [256, 10], "timing": [64, 10]}


def test_fresh_process_never_imported_the_tour(result):
    assert result.fresh_process_tour_modules == []
    report = json.loads(Path(result.package).with_name("fresh_process.json").read_text())
    assert report["tour_modules"] == [] and report["load_s"] > 0


def test_latency_is_measured_both_sides(result):
    assert result.eager_ms > 0 and result.aoti_ms > 0
    assert result.ratio == pytest.approx(result.eager_ms / result.aoti_ms)


def test_missing_compiler_is_reported_and_export_still_runs(tmp_path, capsys):
    import torch._inductor.config as inductor_config

    # config.patch, not monkeypatch: undoing a monkeypatch on Inductor's config module deletes the option.
    argv = ["--quick", "--device", "cpu", "--arch", "mlp", "--epochs", "0", "--out", str(tmp_path)]
    with inductor_config.patch({"cpp.cxx": (None, "no-such-compiler++")}):
        assert "no C++ compiler" in export.aoti_problem(torch.device("cpu"))
        assert export.main(argv) == 0
    saved = json.loads(Path(tmp_path, "export", "result.json").read_text())
    assert "no C++ compiler" in saved["aoti_skipped"] and saved["package"] == ""
    assert saved["signature"]["user_inputs"] == 1  # the torch.export half still ran
    assert not list(Path(tmp_path, "export").glob("*.pt2"))
    assert "skipped: no C++ compiler" in capsys.readouterr().out


def test_out_of_range_batch_is_refused_before_work(tmp_path):
    with pytest.raises(TourError, match="--batch-size 5000 is out of range: it must be <= 4096"):
        export.Config(device="cpu", batch_size=5000, out=str(tmp_path))
    with pytest.raises(TourError, match="--batches 0 is out of range: it must be >= 1"):
        export.Config(device="cpu", batches=[0], out=str(tmp_path))
    with pytest.raises(TourError, match="--arch 'resnet' is not one of: cnn, mlp"):
        export.Config(device="cpu", arch="resnet", out=str(tmp_path))
    assert not Path(tmp_path, "export").exists()


def test_default_relative_out_folder_works(tmp_path, monkeypatch):
    # The fresh process runs in the output folder: a relative --out (the default) must still find the .pt2.
    monkeypatch.chdir(tmp_path)
    assert export.main(["--quick", "--device", "cpu", "--arch", "mlp", "--epochs", "0", "--batches", "3"]) == 0
    saved = json.loads(Path(tmp_path, "tour-output", "export", "result.json").read_text())
    assert saved["parity"] == {"3": True}
