"""The lightning stop: the Trainer-trained digits MLP matches the plain loop, checkpoints reload, and a missing
extra is a one-line error."""

import json
from pathlib import Path

import pytest

pytest.importorskip("lightning")

from tour import lightning as stop  # noqa: E402
from tour.core import errors  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, stop_device):
    """Run once in quick mode from an empty working directory, so stray files in the cwd would show."""
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        result = stop.run(stop.Config(quick=True, device=stop_device, out=str(cwd / "out")))
    return result, cwd


@pytest.fixture(scope="module")
def result(run_dir):
    return run_dir[0]


def test_lightning_matches_the_plain_loop(result):
    assert result.plain_accuracy >= 0.95
    assert result.lightning_accuracy >= 0.95
    assert result.accuracy_gap <= 0.02
    # same seed, same shuffle, same initial weights: Lightning runs the very same steps
    assert result.max_weight_diff < stop.WEIGHT_TOL
    assert result.lightning_losses == pytest.approx(result.plain_losses, rel=1e-4)


def test_every_check_passes(result):
    assert set(result.checks()) >= {"same_weights", "test_logged_right", "reloads", "learned"}
    assert result.failed_checks() == []


def test_losses_fall_and_trainer_test_agrees(result):
    assert len(result.lightning_losses) == result.epochs == 15
    assert result.lightning_losses[-1] < result.lightning_losses[0] / 5
    assert result.lightning_test_acc == pytest.approx(result.lightning_accuracy, abs=1e-6)
    assert result.train_size + result.test_size == 1797


def test_checkpoint_reloads_to_the_same_accuracy(run_dir):
    result, cwd = run_dir
    ckpt = Path(result.checkpoint)
    assert ckpt.is_file() and ckpt.parent == cwd / "out" / "lightning" / "checkpoints"
    assert result.reloaded_accuracy == pytest.approx(result.lightning_accuracy, abs=1e-6)


def test_everything_stays_in_out_dir(run_dir):
    _, cwd = run_dir
    assert sorted(p.name for p in cwd.iterdir()) == ["out"]  # no lightning_logs/ in the working directory
    assert list((cwd / "out" / "lightning" / "logs").glob("version_*/metrics.csv"))


def test_deterministic_mode_is_put_back(result, stop_device):
    import torch

    assert result.accelerator == torch.device(stop_device).type  # the Trainer ran where the stop was asked to
    assert torch.device(result.device).type == torch.device(stop_device).type
    assert not torch.are_deterministic_algorithms_enabled()


def test_accelerator_for_unknown_device_type_is_a_tour_error():
    import torch

    assert stop.accelerator_for(torch.device("cpu")) == "cpu"
    assert stop.accelerator_for(torch.device("cuda", 1)) == "cuda"  # the index goes to Trainer(devices=[1])
    with pytest.raises(errors.TourError, match="no accelerator for device type 'meta'"):
        stop.accelerator_for(torch.device("meta"))


def test_the_plain_loop_is_timed_on_a_warmed_up_device(monkeypatch):
    """On a GPU the first cuBLAS call pays the context's set-up: warm_up runs before the plain loop's clock starts,
    and the clock stops after the device is done (faked here: the calls are recorded, not run)."""
    import torch

    calls, gpu = [], torch.device("cuda", 1)
    monkeypatch.setattr("tour.core.timing.warm_up", lambda d: calls.append(("warm_up", d)))
    monkeypatch.setattr("tour.core.timing.synchronize", lambda d: calls.append(("synchronize", d)))
    monkeypatch.setattr("tour.core.models.train_mlp", lambda cfg, d, train, epochs: (calls.append(("train", d)),
                                                                                    ("model", [1.0]))[1])
    monkeypatch.setattr("tour.core.models.accuracy", lambda model, test, d: 1.0)
    model, losses, acc, seconds = stop.plain_loop(stop.Config(quick=True), gpu, None, None)
    assert calls == [("warm_up", gpu), ("train", gpu), ("synchronize", gpu)] and seconds >= 0


def test_missing_extra_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    real = errors.is_available
    monkeypatch.setattr(errors, "is_available", lambda m: m != "lightning" and real(m))
    assert stop.main(["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "pip install 'torch-tour[lightning]'" in err
    assert not (tmp_path / "lightning").exists()  # nothing half-written


def test_main_writes_result_json(tmp_path, capsys):
    assert stop.main(["--quick", "--device", "cpu", "--out", str(tmp_path), "--epochs", "2"]) == 0
    saved = json.loads(Path(tmp_path, "lightning", "result.json").read_text())
    assert saved["epochs"] == 2 and saved["accuracy_gap"] <= 0.02
    assert saved["learned"] is None and saved["same_weights"] is True  # your own epochs: no accuracy floor
    assert "held-out accuracy" in capsys.readouterr().out
