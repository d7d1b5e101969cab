"""Text generation with a pretrained chat model (SmolLM2-135M-Instruct, offline): chat templates, greedy and
seeded sampling, streaming, what makes decoding fast (KV cache, batching, SDPA, memory bandwidth), token
log-probabilities and perplexity, and a LoRA fine-tune with PEFT whose adapter reloads and merges exactly.
Run: `tour run generate` (or `python -m tour.generate`, `python examples/generate.py`); `--quick` for a short run."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from tour.core.config import BaseConfig, arg, out_dir, stop_main
from tour.core.errors import TourError
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state
from tour.generate_model import chat_inputs, check_prompts, decode, generate, timed_streamer
from tour.generate_speed import bandwidth, kv_cache, speed  # noqa: F401  (the example uses them)

NAME = "generate"
LOGPROB_TOL = 1e-3  # generate()'s scores vs one forward pass's log-softmax (fp32: cached vs full attention)
ADAPTER_TOL = 1e-5  # LoRA adapter reloaded on a fresh base model vs the trained one (0 on CPU: the same arithmetic)
MERGE_TOL = 1e-3  # the adapter folded into the weights by merge_and_unload vs applied on the side (rounding only)
# LoRA lowering the held-out loss was seen with these settings as the tour sets them; settings of yours: not run
LORA_SETTINGS = ("model", "system", "topics", "test_fraction", "max_train", "epochs", "lr", "batch_size", "lora_rank",
                 "lora_layers")
PROMPTS = ["What is the capital of France?", "What is the capital of Japan?", "Name a primary colour."]


@dataclass
class Config(BaseConfig):
    model: str = arg("", "a local causal-LM folder or a hub name (default: SmolLM2-135M-Instruct, converted once)")
    prompts: list[str] = arg(PROMPTS, "your questions to the model", quick=PROMPTS[:2])
    system: str = arg("You are a helpful assistant. Answer in one short sentence.", "the system prompt")
    max_new_tokens: int = arg(40, "new tokens per reply", min=1, max=4096, quick=16)
    temperature: float = arg(1.0, "sampling temperature (below 1 sharpens the distribution)", min=0.01, max=5.0)
    top_p: float = arg(0.95, "sampling keeps the smallest set of tokens whose probability reaches top_p", min=0.01,
                       max=1.0)
    speed_tokens: int = arg(24, "new tokens in each side-by-side timing", min=2, max=512, quick=8)
    repeats: int = arg(2, "timed runs per side-by-side measurement after one warm-up (median)", min=1, quick=1)
    copy_mb: int = arg(256, "size of the tensor copied to measure memory bandwidth", min=8, quick=128)
    topics: list[str] = arg(["ai", "emotion"], "chatterbot topics whose question/answer pairs LoRA learns")
    test_fraction: float = arg(0.2, "share of the pairs held out for the loss/perplexity", min=0.05, max=0.5,
                                quick=0.1)
    max_train: int = arg(64, "at most this many training pairs (0: all)", min=0, quick=24)
    epochs: int = arg(2, "passes over the training pairs", min=1, quick=1)
    lr: float = arg(2e-3, "AdamW learning rate for the LoRA weights", gt=0)
    batch_size: int = arg(8, "pairs per training step", min=1)
    lora_rank: int = arg(8, "rank r of each LoRA update B @ A", min=1)
    lora_layers: int = arg(6, "adapt only the top N transformer blocks (the rest needs no backward pass)", min=1,
                           quick=4)

    def validate(self) -> None:
        if not self.prompts:
            raise TourError("--prompts is empty; give at least one question, e.g. --prompts 'What is 2 + 2?'")
        blank = [i + 1 for i, p in enumerate(self.prompts) if not p.strip()]
        if blank:
            raise TourError(f"--prompts: prompt {blank[0]} is empty; give each question as non-empty text")
        if not self.topics:
            raise TourError("--topics is empty; name one or more chatterbot topics, e.g. --topics ai emotion")


@dataclass
class Result(BaseResult):
    device: str
    model: str  # where the weights came from
    params_m: float = labelled("parameters", "M")  # parameters, millions
    load_seconds: float = labelled("load time", "s")  # conversion (first run only) + load
    converted_now: bool  # this run built the safetensors folder from the GGUF file
    transcript: list[dict] = field(default_factory=list)  # prompt, greedy reply
    greedy_repeat_same: bool | None = check("greedy decoding twice gives the same reply", None)
    sampled_reply: str = ""  # first prompt, sampled with the seed
    sample_reproducible: bool | None = check("sampling twice with the same seed gives the same reply", None)
    ttft_ms: float = labelled("streaming: time to first text", "ms", 0.0)
    # streaming: decode rate after the first token
    stream_tokens_per_s: float = labelled("streaming: decode rate", "tokens/s", 0.0)
    kv_on_ms: float = labelled("greedy, KV cache on", "ms", 0.0)
    kv_off_ms: float = labelled("greedy, KV cache off", "ms", 0.0)
    kv_ratio: float = labelled("KV cache (off / on)", "x", 0.0, parity="kv_same")
    kv_same: bool | None = check("greedy tokens with the KV cache equal those without it", None)
    single_ms: float = labelled("prompts one at a time", "ms", 0.0)  # all prompts, one at a time
    batched_ms: float = labelled("prompts in one left-padded batch", "ms", 0.0)  # all prompts in one left-padded batch
    # single / batched
    batched_ratio: float = labelled("batching (one at a time / batch)", "x", 0.0, parity="batched_same")
    batched_same: bool | None = check("a left-padded batch gives the same greedy replies as one prompt at a time", None)
    eager_ms: float = labelled('attention "eager"', "ms", 0.0)
    sdpa_ms: float = labelled('attention "sdpa"', "ms", 0.0)
    sdpa_ratio: float = labelled("SDPA attention (eager / sdpa)", "x", 0.0, parity="sdpa_same")
    sdpa_same: bool | None = check('greedy tokens with attention "sdpa" equal those with "eager"', None)
    # (read + written) bytes / time of a large tensor copy
    bandwidth_gb_s: float = labelled("memory copy bandwidth", "GB/s", 0.0)
    weights_mb: float = labelled("weights read per decoded token", "MB", 0.0)  # bytes every decode step reads
    # KV cache on, batch 1
    decode_tokens_per_s: float = labelled("decode rate, KV cache, batch 1", "tokens/s", 0.0,
                                          roof="decode_limit_tokens_per_s")
    decode_limit_tokens_per_s: float = labelled("memory-bandwidth limit", "tokens/s", 0.0)  # bandwidth / weight bytes
    token_logprobs: list[dict] = field(default_factory=list)  # the first reply's tokens, log p, p
    logprob_check: float = 0.0  # max |generate's scores - one forward pass's log-softmax|
    heldout_pairs: int = 0
    # held-out loss per answer token, before LoRA
    loss_before: float = labelled("held-out loss before LoRA", "nats/token", 0.0)
    ppl_before: float = labelled("held-out perplexity before LoRA", "", 0.0)
    loss_after: float = labelled("held-out loss after LoRA", "nats/token", 0.0)
    ppl_after: float = labelled("held-out perplexity after LoRA", "", 0.0)
    trainable_params: int = labelled("LoRA's trainable parameters", "", 0)
    trainable_share: float = labelled("trainable share of all parameters", "%", 0.0)  # trainable / all
    train_losses: list[float] = field(default_factory=list)
    train_seconds: float = labelled("LoRA training time", "s", 0.0)
    changed_question: str = ""
    reply_before: str = ""
    reply_after: str = ""
    adapter_dir: str = ""
    reload_max_diff: float = 0.0  # adapter reloaded on a fresh base model vs the trained one
    merged_max_diff: float = 0.0  # after merge_and_unload
    loss_png: str = labelled("LoRA training loss", "", "")
    logprobs_match: bool | None = check(f"generate()'s token scores match one forward pass's log-softmax (max diff "
                                        f"< {LOGPROB_TOL:g})", None)
    lora_learned: bool | None = check("LoRA lowered the held-out loss on the chatterbot answers (not run with a "
                                      "--model or LoRA settings of your own)", None)
    adapter_reloads: bool | None = check(f"the saved adapter, reloaded on a fresh base model, gives the trained "
                                         f"model's logits (max diff <= {ADAPTER_TOL:g})", None)
    merge_exact: bool | None = check(f"merge_and_unload gives the adapter's logits (max diff < {MERGE_TOL:g})", None)


# 1) chat -----------------------------------------------------------------------------------------------------------
def chat(cfg: Config, tokenizer, model, device) -> dict:
    import torch

    replies = []
    for p in cfg.prompts:
        reply = decode(tokenizer, generate(model, chat_inputs(tokenizer, cfg.system, [p], device), cfg.max_new_tokens))[0]
        print(f"  you> {p}\n  bot> {reply}")
        replies.append(reply)
    first = chat_inputs(tokenizer, cfg.system, cfg.prompts[:1], device)
    again = decode(tokenizer, generate(model, first, cfg.max_new_tokens))[0]
    samples = []
    for _ in range(2):
        torch.manual_seed(cfg.seed)  # sampling draws from torch's generator: the same seed, the same reply
        samples.append(decode(tokenizer, generate(model, first, cfg.max_new_tokens, do_sample=True,
                                                  temperature=cfg.temperature, top_p=cfg.top_p))[0])
    print(f"  sampled (T={cfg.temperature}, top_p={cfg.top_p}, seed {cfg.seed}): {samples[0]}")
    return {"transcript": [{"prompt": p, "reply": r} for p, r in zip(cfg.prompts, replies)],
            "greedy_repeat_same": again == replies[0], "sampled_reply": samples[0],
            "sample_reproducible": samples[0] == samples[1]}


# 2) streaming -------------------------------------------------------------------------------------------------------
def stream(cfg: Config, tokenizer, model, device) -> dict:
    """generate() runs in a thread and pushes text into the streamer; we print it as it arrives."""
    inputs = chat_inputs(tokenizer, cfg.system, cfg.prompts[-1:], device)
    streamer = timed_streamer(tokenizer)
    worker = threading.Thread(target=generate, args=(model, inputs, cfg.max_new_tokens), kwargs={"streamer": streamer})
    start = time.perf_counter()
    worker.start()
    print("  bot> ", end="", flush=True)
    for text in streamer:
        print(text, end="", flush=True)
    worker.join()
    times = streamer.token_times
    ttft = (times[0] - start) * 1e3
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    print(f"\n  {len(times)} tokens; the first after {ttft:.0f} ms (prompt read + one step), then {rate:.1f} tokens/s")
    return {"ttft_ms": ttft, "stream_tokens_per_s": rate}


# 4) probabilities and 5) LoRA -----------------------------------------------------------------------------------------
def probabilities(cfg: Config, tokenizer, model, device) -> dict:
    from tour import generate_lora as gl

    rows, err = gl.token_logprobs(model, tokenizer, chat_inputs(tokenizer, cfg.system, cfg.prompts[:1], device),
                                  device, cfg.max_new_tokens)
    print("  " + " ".join(f"{r['token']!r}:{r['p']:.2f}" for r in rows[:12]) + f"  (check vs forward {err:.1e})")
    return {"token_logprobs": rows, "logprob_check": err, "logprobs_match": err < LOGPROB_TOL}


def reply_to(cfg, tokenizer, model, question, device) -> str:
    return decode(tokenizer, generate(model, chat_inputs(tokenizer, cfg.system, [question], device),
                                      cfg.max_new_tokens))[0]


def lora(cfg: Config, tokenizer, model, source: str, device, pairs: list[tuple[str, str]] | None = None) -> dict:
    from tour import generate_lora as gl
    from tour.generate_model import load_model

    train_pairs, test_pairs = gl.split_pairs(pairs or gl.qa_pairs(cfg.topics), cfg.test_fraction, cfg.seed, cfg.max_train)
    held = gl.batches(tokenizer, cfg.system, test_pairs, cfg.batch_size, device)
    before = gl.heldout_loss(model, held)
    print(f"  held-out {', '.join(cfg.topics)} answers ({len(test_pairs)} pairs): loss {before:.3f}, "
          f"perplexity {math.exp(before):.1f}")
    question = test_pairs[0][0]
    reply_before = reply_to(cfg, tokenizer, model, question, device)
    peft_model = gl.add_lora(model, cfg.lora_rank, cfg.lora_layers)
    trainable, total = gl.trainable_share(peft_model)
    print(f"  LoRA r={cfg.lora_rank} on the top {cfg.lora_layers} blocks: {trainable:,} trainable of {total:,} "
          f"({trainable / total:.2%}); {len(train_pairs)} training pairs")
    losses, seconds = gl.train(peft_model, gl.batches(tokenizer, cfg.system, train_pairs, cfg.batch_size, device),
                               cfg.epochs, cfg.lr, cfg.seed)
    after = gl.heldout_loss(peft_model, held)
    reply_after = reply_to(cfg, tokenizer, peft_model, question, device)
    print(f"  held-out loss {before:.3f} -> {after:.3f}, perplexity {math.exp(before):.1f} -> {math.exp(after):.1f}"
          f" ({seconds:.0f} s)")
    # not "you>": this question is the corpus's (held out), not one of the user's --prompts
    print(f"  a held-out chatterbot question> {question}\n  the corpus's answer> {test_pairs[0][1]}\n"
          f"  before LoRA> {reply_before}\n  after LoRA>  {reply_after}")
    folder = out_dir(cfg, NAME)
    reload_diff, merge_diff = gl.round_trip(peft_model, lambda: load_model(source, device), folder / "adapter", held[0])
    print(f"  adapter saved, reloaded on a fresh base model: max |logit diff| {reload_diff:.1e}; "
          f"merged: {merge_diff:.1e}")
    return {"heldout_pairs": len(test_pairs), "loss_before": before, "ppl_before": math.exp(before),
            "loss_after": after, "ppl_after": math.exp(after), "trainable_params": trainable,
            "trainable_share": trainable / total, "train_losses": losses, "train_seconds": seconds,
            "changed_question": question, "reply_before": reply_before, "reply_after": reply_after,
            "adapter_dir": str(folder / "adapter"), "reload_max_diff": reload_diff, "merged_max_diff": merge_diff,
            "lora_learned": after < before if cfg.stock(*LORA_SETTINGS) else None,
            "adapter_reloads": reload_diff <= ADAPTER_TOL,
            "merge_exact": merge_diff < MERGE_TOL,
            "loss_png": plot_losses(losses, before, after, folder)}


def plot_losses(losses: list[float], before: float, after: float, folder) -> str:
    from tour.core.plots import figure, save

    fig = figure()
    ax = fig.add_subplot()
    ax.plot(range(1, len(losses) + 1), losses, marker=".", label="training batch")
    ax.axhline(before, color="grey", linestyle="--", label=f"held-out before ({before:.2f})")
    ax.axhline(after, color="green", linestyle="--", label=f"held-out after ({after:.2f})")
    ax.set(xlabel="step", ylabel="loss per answer token", title="LoRA fine-tune on chatterbot answers")
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
    ax.legend()
    return save(fig, folder / "lora_loss.png")


@keeps_caller_state
def run(cfg: Config) -> Result:
    from tour.core import device as dev
    from tour.generate_model import load_model, open_source

    device = dev.get_device(cfg.device)
    print(f"[generate] {dev.describe(cfg.device)}")
    start = time.perf_counter()
    source, tokenizer, context, fresh = open_source(cfg.model)
    check_prompts(tokenizer, cfg.system, cfg.prompts, max(cfg.max_new_tokens, cfg.speed_tokens), context)
    from tour.generate_lora import qa_pairs

    pairs = qa_pairs(cfg.topics)  # now, so an unknown --topics fails before minutes of work
    model = load_model(source, device)
    loaded = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    print(f"0) {source}: {params / 1e6:.1f}M parameters, loaded in {loaded:.1f} s{' (converted now)' if fresh else ''}")
    dev.seed_everything(cfg.seed)
    print(f"1) chat: system prompt {cfg.system!r}, greedy decoding")
    found = chat(cfg, tokenizer, model, device)
    print("2) streaming with TextIteratorStreamer")
    found |= stream(cfg, tokenizer, model, device)
    print(f"3) what makes decoding fast, side by side (median of {cfg.repeats})")
    found |= speed(cfg, tokenizer, model, device)
    print("4) per-token probabilities of the first reply")
    found |= probabilities(cfg, tokenizer, model, device)
    print("5) LoRA fine-tune with PEFT on chatterbot question/answer pairs")
    found |= lora(cfg, tokenizer, model, source, device, pairs)
    return Result(device=str(device), model=source, params_m=params / 1e6, load_seconds=loaded, converted_now=fresh,
                  **found)


@keeps_caller_state
def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """KV cache, batching and attention implementation, each timed side by side; decode vs the bandwidth roof."""
    from tour.core import device as dev
    from tour.generate_model import load_model, open_source

    cfg = Config(device=settings.device, quick=settings.quick, out=settings.out, seed=settings.seed,
                 repeats=max(1, min(settings.repeats, 3)))
    device = dev.get_device(cfg.device)
    source, tokenizer, _, _ = open_source("")
    model = load_model(source, device)
    dev.seed_everything(cfg.seed)
    s = speed(cfg, tokenizer, model, device)
    n = f"{cfg.speed_tokens} new tokens"
    return [
        BenchRow("generate", f"SmolLM2 greedy, {n}", "no KV cache", "KV cache", s["kv_off_ms"], s["kv_on_ms"],
                 s["kv_ratio"], s["kv_same"]),
        BenchRow("generate", f"{len(cfg.prompts)} prompts, {n}", "one at a time", "left-padded batch",
                 s["single_ms"], s["batched_ms"], s["batched_ratio"], s["batched_same"]),
        BenchRow("generate", f"SmolLM2 greedy, {n}", "eager attention", "sdpa", s["eager_ms"], s["sdpa_ms"],
                 s["sdpa_ratio"], s["sdpa_same"]),
        # ms per token at the limit vs measured: the ratio is the share of the memory roof that decoding reaches
        BenchRow("generate", "decode ms/token, batch 1, KV cache", "bandwidth limit", "measured",
                 1e3 / s["decode_limit_tokens_per_s"], 1e3 / s["decode_tokens_per_s"],
                 s["decode_tokens_per_s"] / s["decode_limit_tokens_per_s"], None, roof=True,
                 note=f"{s['decode_tokens_per_s']:.1f} tok/s vs {s['decode_limit_tokens_per_s']:.1f} tok/s = "
                      f"{s['bandwidth_gb_s']:.1f} GB/s copy bandwidth / {s['weights_mb']:.0f} MB of weights per token"),
    ]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
