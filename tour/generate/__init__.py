"""Text generation with a pretrained chat model (SmolLM2-135M-Instruct, offline): chat templates, greedy and
seeded sampling, streaming, what makes decoding fast (KV cache, batching, SDPA, memory bandwidth), token
log-probabilities and perplexity, and a LoRA fine-tune with PEFT whose adapter reloads and merges exactly.
Run: `tour run generate` (or `python -m tour.generate`, `python examples/generate.py`); `--quick` for a short run."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tour.core.cli import stop_main
from tour.core.results import BaseResult, BenchRow, BenchSettings, labelled
from tour.core.state import keeps_caller_state
from tour.generate import chat, lora, speed
from tour.generate.chat import Chat, Streaming
from tour.generate.config import ADAPTER_TOL, LOGPROB_TOL, MERGE_TOL, NAME, Config  # noqa: F401  (the stop's API)
from tour.generate.lora import Lora, Probabilities
from tour.generate.speed import Speed


@dataclass
class Result(BaseResult):
    """What the model is, then one part per section (`result.speed.kv_same`, `result.lora.loss_after`)."""

    device: str
    model: str  # where the weights came from
    params_m: float = labelled("parameters", "M")  # parameters, millions
    load_seconds: float = labelled("load time", "s")  # conversion (first run only) + load
    converted_now: bool  # this run built the safetensors folder from the GGUF file
    chat: Chat  # 1) greedy replies to the prompts, a seeded sample
    streaming: Streaming  # 2) time to first text, decode rate
    speed: Speed  # 3) KV cache, batching, SDPA, memory bandwidth, each side by side
    probabilities: Probabilities  # 4) the first reply's token log-probabilities, checked against a forward pass
    lora: Lora  # 5) the LoRA fine-tune: held-out loss, adapter round trip


@keeps_caller_state
def run(cfg: Config) -> Result:
    from tour.core import device as dev
    from tour.generate.model import check_prompts, load_model, open_source

    device = dev.get_device(cfg.device)
    print(f"[generate] {dev.describe(cfg.device)}")
    start = time.perf_counter()
    source, tokenizer, context, fresh = open_source(cfg.model)
    check_prompts(tokenizer, cfg.system, cfg.prompts, max(cfg.max_new_tokens, cfg.speed_tokens), context)
    pairs = lora.qa_pairs(cfg.topics)  # now, so an unknown --topics fails before minutes of work
    model = load_model(source, device)
    loaded = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    print(f"0) {source}: {params / 1e6:.1f}M parameters, loaded in {loaded:.1f} s{' (converted now)' if fresh else ''}")
    dev.seed_everything(cfg.seed)
    print(f"1) chat: system prompt {cfg.system!r}, greedy decoding")
    replies = chat.chat(cfg, tokenizer, model, device)
    print("2) streaming with TextIteratorStreamer")
    streaming = chat.stream(cfg, tokenizer, model, device)
    print(f"3) what makes decoding fast, side by side (median of {cfg.repeats})")
    timings = speed.measure(cfg, tokenizer, model, device)
    print("4) per-token probabilities of the first reply")
    probs = lora.probabilities(cfg, tokenizer, model, device)
    print("5) LoRA fine-tune with PEFT on chatterbot question/answer pairs")
    tuned = lora.fine_tune(cfg, tokenizer, model, source, device, pairs)
    return Result(device=str(device), model=source, params_m=params / 1e6, load_seconds=loaded, converted_now=fresh,
                  chat=replies, streaming=streaming, speed=timings, probabilities=probs, lora=tuned)


@keeps_caller_state
def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """KV cache, batching and attention implementation, each timed side by side; decode vs the bandwidth roof."""
    from tour.core import device as dev
    from tour.core import roofs
    from tour.generate import model as gm

    cfg = Config(device=settings.device, quick=settings.quick, out=settings.out, seed=settings.seed,
                 repeats=max(1, min(settings.repeats, 3)))
    device = dev.get_device(cfg.device)
    source, tokenizer, _, _ = gm.open_source("")
    model = gm.load_model(source, device)
    dev.seed_everything(cfg.seed)
    s = speed.measure(cfg, tokenizer, model, device)
    n = f"{cfg.speed_tokens} new tokens"
    return [
        BenchRow("generate", f"SmolLM2 greedy, {n}", "no KV cache", "KV cache", s.kv_off_ms, s.kv_on_ms, s.kv_ratio,
                 s.kv_same),
        BenchRow("generate", f"{len(cfg.prompts)} prompts, {n}", "one at a time", "left-padded batch",
                 s.single_ms, s.batched_ms, s.batched_ratio, s.batched_same),
        BenchRow("generate", f"SmolLM2 greedy, {n}", "eager attention", "sdpa", s.eager_ms, s.sdpa_ms, s.sdpa_ratio,
                 s.sdpa_same),
        # ms per token at the limit vs measured: the ratio is the share of the memory roof that decoding reaches
        BenchRow("generate", "decode ms/token, batch 1, KV cache", "bandwidth limit", "measured",
                 1e3 / s.decode_limit_tokens_per_s, 1e3 / s.decode_tokens_per_s,
                 roofs.share(s.decode_tokens_per_s, s.decode_limit_tokens_per_s), None, roof=True,
                 note=f"{s.decode_tokens_per_s:.1f} tok/s vs {s.decode_limit_tokens_per_s:.1f} tok/s = "
                      f"{s.bandwidth_gb_s:.1f} GB/s copy bandwidth / {s.weights_mb:.0f} MB of weights per token: "
                      + roofs.share_text(s.decode_tokens_per_s, s.decode_limit_tokens_per_s, "of it")),
    ]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)
