"""The export stop: a trained model is exported with a dynamic batch, packaged by AOTInductor once for the whole
file, run in a fresh process that imports nothing of the tour, and matches eager PyTorch at every batch size."""

import json
import zipfile
from pathlib import Path

import pytest
import torch

from tour import export
from tour.core.errors import TourError
from tour.export import fresh as export_fresh


@pytest.fixture(scope="module")
def result(tmp_path_factory, stop_device):
    out = tmp_path_factory.mktemp("out")
    # the one AOTInductor compile (rebuild: not an earlier run's .pt2 from the tour's cache)
    return export.run(export.Config(quick=True, device=stop_device, out=str(out), rebuild=True))


@pytest.fixture
def packaged(result):
    """The run's AOTInductor half. On a GPU lacking what AOTInductor needs there (a CUDA toolkit), a skip with the
    stop's one-line reason; on CPU the compiler is part of the test set-up, so no skip hides a failure."""
    if result.pt2.skipped and result.device != "cpu":
        pytest.skip(result.pt2.skipped)
    return result


def test_exports_a_trained_cnn(result):
    assert result.arch == "cnn"
    assert result.test_accuracy >= 0.8  # one short epoch on 2,000 real MNIST digits
    assert result.n_params > 10_000


def test_graph_signature_and_dynamic_batch(result):
    sig = result.exported.signature
    assert sig["user_inputs"] == 1 and sig["user_outputs"] == 1
    assert sig["parameters"] > 0 and sig["buffers"] > 0  # BatchNorm's running stats are lifted as buffers
    assert result.exported.dynamic_batch == f"VR[1, {export.MAX_BATCH}]"
    assert result.exported.wrong_shape_rejected


def test_package_is_a_pt2_archive(packaged):
    path = Path(packaged.pt2.package)
    assert path.suffix == ".pt2" and zipfile.is_zipfile(path)
    assert packaged.pt2.skipped == "" and packaged.pt2.compile_s > 0
    assert packaged.pt2.reused is False  # --rebuild compiled it


def _tiny_program(bias: float = 0.0):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.bias.fill_(bias)
    return torch.export.export(model, (torch.ones(1, 3),))


def test_a_package_is_reused_only_for_the_same_program_weights_and_build(tmp_path, monkeypatch):
    """The tour keeps each .pt2 it built under a digest of what it was built from: the same program and weights
    are copied back without compiling (Inductor's kernel cache alone still links for seconds); other weights
    compile again."""
    from tour.core import inductor, torch_private

    monkeypatch.setenv(inductor.CACHE_VAR, str(tmp_path / "cache"))
    cpu = torch.device("cpu")
    key = inductor.package_key(_tiny_program(), cpu)
    assert key == inductor.package_key(_tiny_program(), cpu)  # deterministic
    assert key != inductor.package_key(_tiny_program(bias=1.0), cpu)  # a weight changed: another package
    built = tmp_path / "built.pt2"
    built.write_bytes(b"PK package")
    assert inductor.cached_package(key, tmp_path / "none.pt2") is None  # nothing kept yet
    inductor.keep_package(key, built, 7.5)

    def compiled(ep, path):
        Path(path).write_bytes(b"PK compiled")

    monkeypatch.setattr(torch_private, "aoti_compile_and_package", lambda ep, path: pytest.fail("compiled again"))
    seconds, reused = export.package(_tiny_program(), tmp_path / "again.pt2", cpu)
    assert (seconds, reused) == (7.5, True) and (tmp_path / "again.pt2").read_bytes() == b"PK package"
    monkeypatch.setattr(torch_private, "aoti_compile_and_package", compiled)
    seconds, reused = export.package(_tiny_program(), tmp_path / "rebuilt.pt2", cpu, rebuild=True)
    assert reused is False and (tmp_path / "rebuilt.pt2").read_bytes() == b"PK compiled"
    seconds, reused = export.package(_tiny_program(bias=1.0), tmp_path / "other.pt2", cpu)
    assert reused is False  # other weights: compiled, then kept
    assert inductor.cached_package(inductor.package_key(_tiny_program(bias=1.0), cpu), tmp_path / "o.pt2") > 0


def test_fresh_process_matches_eager_at_every_batch_size(packaged, tolerance):
    assert packaged.pt2.eager.parity == {"1": True, "7": True, "256": True}
    assert packaged.pt2.eager.max_abs_err < tolerance("float32")  # IEEE fp32 on both sides, also on a GPU
    outputs = Path(packaged.pt2.package).with_name("outputs.safetensors")
    from safetensors.torch import load_file

    shapes = {k: list(v.shape) for k, v in load_file(outputs).items()}
    assert shapes == {"batch_1": [1, 10], "batch_7": [7, 10], "batch_256": [256, 10], "timing": [64, 10]}


def test_every_check_passes(result):
    assert set(result.checks()) == {"exported.wrong_shape_rejected", "pt2.allclose", "pt2.runner_needs_no_tour"}
    assert result.failed_checks() == []


def test_fresh_process_never_imported_the_tour(packaged):
    assert packaged.pt2.fresh.tour_modules == []
    report = json.loads(Path(packaged.pt2.package).with_name("fresh_process.json").read_text())
    assert report["tour_modules"] == [] and report["load_s"] > 0


def test_latency_is_measured_both_sides(packaged):
    eager, fresh = packaged.pt2.eager, packaged.pt2.fresh
    assert eager.eager_ms > 0 and fresh.aoti_ms > 0
    assert eager.ratio == pytest.approx(eager.eager_ms / fresh.aoti_ms)


def test_missing_compiler_is_reported_and_export_still_runs(tmp_path, capsys):
    import torch._inductor.config as inductor_config

    # config.patch, not monkeypatch: undoing a monkeypatch on Inductor's config module deletes the option.
    argv = ["--quick", "--device", "cpu", "--arch", "mlp", "--epochs", "0", "--out", str(tmp_path)]
    with inductor_config.patch({"cpp.cxx": (None, "no-such-compiler++")}):
        assert "no C++ compiler" in export.aoti_problem(torch.device("cpu"))
        assert export.main(argv) == 0
    saved = json.loads(Path(tmp_path, "export", "result.json").read_text())
    assert "no C++ compiler" in saved["pt2"]["skipped"] and saved["pt2"]["package"] == ""
    assert saved["pt2"]["allclose"] is None and saved["exported"]["wrong_shape_rejected"] is True  # skipped, not failed
    assert saved["exported"]["signature"]["user_inputs"] == 1  # the torch.export half still ran
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
    assert saved["pt2"]["eager"]["parity"] == {"3": True} and saved["pt2"]["allclose"] is True


# a CUDA situation on a CPU: the real checks, with the toolkit and the device faked -------------------------------
def test_aoti_on_cuda_without_a_toolkit_is_skipped_in_one_line(tmp_path, monkeypatch, capsys):
    from tour.core import inductor

    for var in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(inductor, "DEFAULT_CUDA_HOME", str(tmp_path / "no-cuda"))
    monkeypatch.setattr(inductor.shutil, "which", lambda name, *a, **k: None if name == "nvcc" else "/usr/bin/" + name)
    monkeypatch.setattr(inductor, "triton_problem", lambda: None)  # Triton ready: only the toolkit is missing
    asked = []
    # The stop runs on the CPU, but asks AOTInductor's question for its device: answer it for a GPU.
    monkeypatch.setattr(export, "aoti_problem", lambda d: (asked.append(d), inductor.aoti_problem(torch.device("cuda")))[1])
    argv = ["--quick", "--device", "cpu", "--arch", "mlp", "--epochs", "0", "--out", str(tmp_path)]
    assert export.main(argv) == 0
    saved = json.loads(Path(tmp_path, "export", "result.json").read_text())
    assert asked == [torch.device("cpu")]  # the run's own device
    reason = saved["pt2"]["skipped"]
    assert reason.startswith("no CUDA toolkit found") and "CUDA_HOME" in reason and "\n" not in reason
    assert saved["pt2"]["package"] == "" and saved["exported"]["signature"]["user_inputs"] == 1  # torch.export still ran
    assert f"skipped: {reason}" in capsys.readouterr().out


def test_eager_is_timed_on_device_resident_input_in_ieee_fp32(monkeypatch):
    # The .pt2 side has its input on the device before timing: eager must not pay a copy per call either.
    from tour.core import dtypes, timing

    model = torch.nn.Linear(4, 2)
    inputs = {"batch_1": torch.randn(1, 4), "timing": torch.randn(3, 4)}
    outputs = {"batch_1": model(inputs["batch_1"]).detach(), "timing": model(inputs["timing"]).detach()}
    fresh = export.Fresh(import_s=1.0, load_s=0.1, aoti_ms=1.0, tour_modules=[])
    copies, states = [], []
    real_to = torch.Tensor.to

    def timer(fn, device, repeats, warmup=1):
        states.append(dtypes.tf32_enabled())
        monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: (copies.append(a), real_to(self, *a, **k))[1])
        fn()
        monkeypatch.setattr(torch.Tensor, "to", real_to)
        return 2.0

    monkeypatch.setattr(timing, "median_ms", timer)
    cfg = export.Config(quick=True, device="cpu", arch="mlp")
    got = export.pt2_vs_eager(model, fresh, outputs, inputs, cfg, torch.device("cpu"))
    assert copies == [] and got == export.Pt2VsEager(eager_ms=2.0, ratio=2.0, max_abs_err=0.0, parity={"1": True})
    assert states == [{"matmul": False, "conv": False}]  # IEEE fp32, as the fresh process computes


def test_fresh_process_loads_the_package_on_the_device_index(monkeypatch, tmp_path):
    # cuda:1 means device_index=1 for aoti_load_package (not the current GPU); run the runner's code up to the load.
    import sys

    import torch._inductor

    class Loaded(Exception):
        pass

    seen = {}

    def load(path, **kw):
        seen.update(kw, path=path)
        raise Loaded

    monkeypatch.setattr(torch._inductor, "aoti_load_package", load)
    monkeypatch.setattr(sys, "argv", ["-c", "m.pt2", "in", "out", "report", "cuda:1", "3", "1"])
    with pytest.raises(Loaded):
        exec(export_fresh.runner_code(), {"__name__": "__main__"})
    assert seen == {"path": "m.pt2", "device_index": 1}


def test_bench_row_comes_from_the_parts_run_calls(monkeypatch, tmp_path):
    """`tour bench` trains, exports and ships through run()'s own part functions (faked here), never run() itself."""
    from tour.core.results import BenchSettings

    shipped = export.Shipped(package="m.pt2", compile_s=2.0, fresh=export.Fresh(aoti_ms=1.0, load_s=0.5),
                             eager=export.Pt2VsEager(eager_ms=3.0, ratio=3.0, parity={"1": True}), allclose=True)
    monkeypatch.setattr(export, "run", lambda cfg: pytest.fail("bench_rows ran the whole stop"))
    monkeypatch.setattr(export, "check_config", lambda cfg: cfg)
    monkeypatch.setattr(export, "train", lambda cfg, device: ("model", (torch.zeros(2), None), 0.9))
    monkeypatch.setattr(export, "export_and_inspect", lambda model, x, device: ("program", None))
    monkeypatch.setattr(export, "pt2_part", lambda cfg, model, ep, x, folder, device: shipped)
    (row,) = export.bench_rows(BenchSettings(device="cpu", quick=True, out=str(tmp_path)))
    assert (row.baseline_ms, row.variant_ms, row.ratio, row.parity) == (3.0, 1.0, 3.0, True)
    assert "package built in 2.0 s, loaded in 0.50 s" in row.note
    skipped = export.Shipped(skipped="no C++ compiler")
    monkeypatch.setattr(export, "pt2_part", lambda *a: skipped)
    (row,) = export.bench_rows(BenchSettings(device="cpu", quick=True, out=str(tmp_path)))
    assert row.variant_ms is None and row.note == "skipped: no C++ compiler"
