"""The basics stop's numbers: each section's fact, and the digits MLP's held-out accuracy."""

import json
from pathlib import Path

import pytest

from tour import basics


@pytest.fixture(scope="module")
def result(tmp_path_factory, stop_device):
    out = tmp_path_factory.mktemp("out")
    return basics.run(basics.Config(quick=True, device=stop_device, out=str(out)))


def test_tensors(result):
    assert result.broadcast_shape == [3, 4]
    assert result.numpy_shares_memory is True


def test_autograd_matches_calculus(result):
    assert result.grad_max_error < basics.GRAD_TOL
    assert result.gradcheck_passed


def test_mlp_learns_real_digits(result):
    assert result.train_size + result.test_size == 1797
    assert result.losses[-1] < result.losses[0] / 5
    assert result.test_accuracy >= 0.95  # seed 0; the stop's own floor (ACCURACY_FLOOR) leaves room for any seed


def test_dynamic_graph_follows_the_path_that_ran(result):
    assert result.dynamic_steps[0] == 0 and result.dynamic_steps[0] < result.dynamic_steps[1] < result.dynamic_steps[2]
    assert result.dynamic_grads == {"shrink": True, "pos": True, "neg": False}


def test_every_check_passes(result):
    assert set(result.checks()) >= {"numpy_shares_memory", "gradcheck_passed", "grad_matches", "learned",
                                    "dynamic_follows_path"}
    assert result.failed_checks() == []


def test_a_wrong_branch_fails_the_path_check():
    assert basics.follows_path([0, 3, 7], {"shrink": True, "pos": True, "neg": False})
    assert not basics.follows_path([0, 3, 7], {"shrink": True, "pos": True, "neg": True})
    assert not basics.follows_path([0, 7, 3], {"shrink": True, "pos": True, "neg": False})


def test_broken_backward_fails_gradcheck(monkeypatch):
    monkeypatch.setattr(basics.SoftPlus, "backward", staticmethod(lambda ctx, g: g * 0.5))
    with pytest.raises(Exception, match="Jacobian mismatch"):
        basics.custom_function_gradcheck()


def test_main_writes_result_json(tmp_path, capsys):
    assert basics.main(["--quick", "--device", "cpu", "--out", str(tmp_path), "--epochs", "3"]) == 0
    saved = json.loads(Path(tmp_path, "basics", "result.json").read_text())
    assert saved["device"] == "cpu" and len(saved["losses"]) == 3
    assert saved["learned"] is None and saved["gradcheck_passed"] is True  # your own epochs: the floor is not run
    assert "held-out accuracy" in capsys.readouterr().out


def test_loss_curve_png(result):
    from pathlib import Path

    png = Path(result.loss_plot)
    assert png.name == "digits_loss.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
