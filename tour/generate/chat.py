"""The generate stop's first two sections: chat (greedy replies, seeded sampling) and streaming (time to first text,
decode rate). Each returns its part of the Result."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tour.core.results import check, labelled
from tour.generate.config import Config
from tour.generate.model import chat_inputs, decode, generate, timed_streamer


@dataclass
class Chat:
    transcript: list[dict] = field(default_factory=list)  # prompt, greedy reply
    greedy_repeat_same: bool | None = check("greedy decoding twice gives the same reply", None)
    sampled_reply: str = ""  # first prompt, sampled with the seed
    sample_reproducible: bool | None = check("sampling twice with the same seed gives the same reply", None)


@dataclass
class Streaming:
    ttft_ms: float = labelled("streaming: time to first text", "ms", 0.0)
    # decode rate after the first token
    tokens_per_s: float = labelled("streaming: decode rate", "tokens/s", 0.0)


# 1) chat -----------------------------------------------------------------------------------------------------------
def chat(cfg: Config, tokenizer, model, device) -> Chat:
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
    return Chat(transcript=[{"prompt": p, "reply": r} for p, r in zip(cfg.prompts, replies)],
                greedy_repeat_same=again == replies[0], sampled_reply=samples[0],
                sample_reproducible=samples[0] == samples[1])


# 2) streaming -------------------------------------------------------------------------------------------------------
def stream(cfg: Config, tokenizer, model, device) -> Streaming:
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
    return Streaming(ttft_ms=ttft, tokens_per_s=rate)
