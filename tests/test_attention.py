"""The attention stop: naive and SDPA agree (plain and causal), memory is measured, backends are reported,
MiniLM gives the same hidden states with eager and sdpa attention, and an impossible length is refused early."""

import json
from pathlib import Path

import pytest

from tour import attention
from tour.core.errors import TourError


@pytest.fixture(scope="module")
def result(tmp_path_factory, stop_device):
    out = tmp_path_factory.mktemp("out")
    return attention.run(attention.Config(quick=True, device=stop_device, out=str(out)))


def test_quick_lengths_and_parity(result, tolerance):
    assert [r["seq_len"] for r in result.lengths.rows] == [128, 256, 512]  # the quick lengths
    for r in result.lengths.rows:
        assert r["allclose"] and r["max_abs_err"] < tolerance(result.dtype), r
        assert r["naive_ms"] > 0 and r["sdpa_ms"] > 0 and r["ratio"] == pytest.approx(r["naive_ms"] / r["sdpa_ms"])


def test_naive_memory_grows_with_the_score_matrix(result):
    import torch

    # measured, not guessed: the profiler's allocation record on CPU, the allocator's own counters on a GPU
    assert ("profiler" if result.device == "cpu" else "max_memory_allocated") in result.lengths.memory_source
    batch, heads, _ = result.shape
    itemsize = getattr(torch, result.dtype).itemsize
    for r in result.lengths.rows:
        scores_mb = batch * heads * r["seq_len"] ** 2 * itemsize / 2**20
        assert r["naive_peak_mb"] >= 2 * scores_mb  # scores and their softmax live together
        assert r["sdpa_peak_mb"] < r["naive_peak_mb"]
    longest = result.lengths.rows[-1]
    assert longest["sdpa_peak_mb"] < longest["naive_peak_mb"] / 4  # SDPA never builds the L x L matrix


def test_causal_mask_matches(result, tolerance):
    assert result.causal.allclose is True  # element by element: atol + rtol x |naive|
    if result.dtype == "float32":  # fp32's rtol (2.4e-7) adds nothing: the absolute bound holds as it is
        assert result.causal.max_abs_err < tolerance(result.dtype)
    assert result.causal.max_abs_err < 0.25  # bf16 on a GPU: a few steps of 0.031 at |o| ~ 4, not a wrong mask


def test_one_bf16_step_on_a_large_output_is_within_the_causal_tolerance():
    """What a GPU's bf16 kernels give (faked here): outputs ~4 one or two bf16 steps (0.031 each) apart are equal
    within bf16's rounding, though above its absolute tolerance (3e-2); two steps' gap near 0.1 is a real error."""
    import torch

    bf16 = torch.bfloat16
    ref = torch.tensor([4.0, 0.1, -2.5], dtype=bf16)
    one_step = torch.nextafter(ref[:1], torch.tensor([8.0], dtype=bf16))
    assert (one_step - ref[:1]).item() == 0.03125 > attention.tolerance(bf16)
    assert attention.within_tolerance(ref, torch.cat([one_step, ref[1:]]), bf16)
    assert attention.within_tolerance(ref, ref + torch.tensor([0.0625, 0.0, 0.0], dtype=bf16), bf16)
    assert not attention.within_tolerance(ref, ref + torch.tensor([0.0, 0.0625, 0.0], dtype=bf16), bf16)
    assert not attention.within_tolerance(ref, ref + torch.tensor([0.125, 0.0, 0.0], dtype=bf16), bf16)


def test_backends_reported_with_reasons(result, tolerance):
    assert result.backends.found["MATH"]["ran"] and result.backends.found["MATH"]["max_abs_err"] < tolerance(result.dtype)
    assert any(info["ran"] for name, info in result.backends.found.items() if name != "MATH")  # a fused kernel ran
    for info in result.backends.found.values():
        assert info["ran"] or info["reason"]  # a backend that did not run says why


def test_every_check_passes(result):
    assert set(result.checks()) >= {"lengths.allclose", "causal.allclose", "backends.allclose", "minilm.allclose"}
    assert result.failed_checks() == []


def test_a_backend_off_by_more_than_the_tolerance_fails_its_check():
    import torch

    off = {"MATH": {"ran": True, "max_abs_err": 0.0}, "FLASH_ATTENTION": {"ran": True, "max_abs_err": 0.5}}
    assert attention.backends_close(off, torch.float32) is False
    none_ran = {"FLASH_ATTENTION": {"ran": False, "max_abs_err": None}}
    assert attention.backends_close(none_ran, torch.float32) is None
    assert attention.Result("cpu", "float32", [1, 1, 1], attention.Lengths(allclose=True), attention.Causal(),
                            attention.Backends(off, False), attention.MiniLM()).failed_checks() == ["backends.allclose"]


def test_minilm_eager_and_sdpa_agree(result, tolerance):
    assert result.minilm.shape == [2, 64]
    assert result.minilm.max_abs_err < tolerance("float32")  # MiniLM runs in fp32
    assert result.minilm.eager_ms > 0 and result.minilm.sdpa_ms > 0


def test_naive_is_the_textbook_formula():
    import torch

    q = k = torch.eye(4).reshape(1, 1, 4, 4)  # each query matches its own key best
    v = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = attention.naive_attention(q, k, v)
    weights = torch.softmax(torch.eye(4) / 2.0, dim=-1)  # sqrt(d) = 2
    assert torch.allclose(out[0, 0], weights @ v[0, 0])
    causal = attention.naive_attention(q, k, v, causal=True)
    assert torch.equal(causal[0, 0, 0], v[0, 0, 0])  # the first token can only see itself


def test_too_long_is_refused_before_allocating(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(attention, "qkv", lambda *a: calls.append(a))
    with pytest.raises(TourError, match=r"--seq-lens 1000000 .*GiB.*free"):
        attention.run(attention.Config(device="cpu", seq_lens=[1_000_000], out=str(tmp_path)))
    assert calls == []


def test_bad_sizes_are_refused(tmp_path):
    # Refused when the Config is built, before any work: the same line a notebook and the CLI see.
    with pytest.raises(TourError, match=r"^--seq-lens 0 is out of range: it must be >= 1$"):
        attention.Config(device="cpu", seq_lens=[256, 0], out=str(tmp_path))
    with pytest.raises(TourError, match="--hf-seq-len 4096 is out of range: it must be <= 512"):
        attention.Config(hf_seq_len=4096)


def test_main_writes_result_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(attention, "minilm_switch", lambda cfg, device: attention.MiniLM())  # MiniLM is covered above
    argv = ["--device", "cpu", "--out", str(tmp_path), "--seq-lens", "64", "--repeats", "1", "--heads", "2"]
    assert attention.main(argv) == 0
    saved = json.loads(Path(tmp_path, "attention", "result.json").read_text())
    assert [r["seq_len"] for r in saved["lengths"]["rows"]] == [64] and saved["lengths"]["rows"][0]["allclose"]
    assert "naive/SDPA" in capsys.readouterr().out


def test_a_model_that_does_not_load_is_one_line(tmp_path, capsys):
    """A typo fails before any work, an empty folder fails at the load: one line each, exit 2, no traceback."""
    from tour import attention

    empty = tmp_path / "empty"
    empty.mkdir()
    for model in (str(tmp_path / "typo" / "x"), str(empty)):
        assert attention.main(["--quick", "--device", "cpu", "--seq-lens", "16", "--model", model]) == 2
        err = capsys.readouterr().err
        assert f"--model {model}" in err and "Traceback" not in err


def test_peak_memory_is_read_on_the_device_measured(monkeypatch):
    # cuda:1's counters, not the current GPU's: every allocator call names the device (faked here, on a CPU).
    import torch

    asked, allocated = [], iter([100 * 2**20, 164 * 2**20])
    monkeypatch.setattr(torch.accelerator, "reset_peak_memory_stats", lambda d: asked.append(("reset", d)))
    monkeypatch.setattr(torch.accelerator, "memory_allocated", lambda d: (asked.append(("now", d)), next(allocated))[1])
    monkeypatch.setattr(torch.accelerator, "max_memory_allocated", lambda d: (asked.append(("peak", d)),
                                                                              next(allocated))[1])
    monkeypatch.setattr("tour.core.timing.synchronize", lambda d: asked.append(("sync", d)))
    gpu1 = torch.device("cuda", 1)
    mb, source = attention.peak_mb(lambda: None, gpu1)
    assert mb == 64 and source == "torch.accelerator.max_memory_allocated"
    assert asked == [("reset", gpu1), ("now", gpu1), ("sync", gpu1), ("peak", gpu1)]
