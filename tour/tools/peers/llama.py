"""llama.cpp (llama-cpp-python) on the tour's own SmolLM2 GGUF file against the precision stop's batch-1 decode ways
(tour.precision.decode.WAYS) on the same file de-quantised: greedy, the tour's chat prompts, NEW_TOKENS new tokens,
the same threads. Batch-1 decoding reads every weight once per token, so it is bound by the bytes of weights read."""

from __future__ import annotations

import time
from pathlib import Path

from tour.core.results import BenchRow, BenchSettings
from tour.tools.peers import SECTION, THREADS, ratio_note, with_threads
from tour.tools.registry import part

NEW_TOKENS = 64  # new tokens per timed reply, prefill included (as the precision stop times its ways)
AGREE_N = 16  # the agreement check: the same greedy tokens as the tour's fp32 way for the first AGREE_N


def _config(settings: BenchSettings):
    Config = part("precision", "config").Config

    return Config(quick=settings.quick, device="cpu", out=settings.out, seed=settings.seed,
                  repeats=max(1, settings.repeats // 3), new_tokens=NEW_TOKENS)


def gguf_bytes_per_token(path: Path) -> int:
    """Bytes of weights llama.cpp reads per token: every tensor once, the token embedding only as the output layer
    it is tied to (a row per token otherwise), as tour.precision.decode.weight_bytes counts the tour's."""
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(path)).tensors}
    tied = "output.weight" not in tensors
    return sum(n for name, n in tensors.items() if name != "token_embd.weight" or tied)


def prepare(settings: BenchSettings, work: Path) -> dict:
    """The GGUF file and the chat prompts as the tour's tokenizer makes them: both sides start from the same ids."""
    from tour.core.assets import smollm2_gguf

    decode = part("precision", "decode")

    cfg = _config(settings)
    tokenizer, _ = decode.load("cpu")
    chats, _ = decode.inputs(cfg, tokenizer, "cpu")
    return {"gguf": str(smollm2_gguf()), "prompts": [c["input_ids"][0].tolist() for c in chats],
            "new_tokens": NEW_TOKENS, "repeats": cfg.repeats, "threads": THREADS}


def child(payload: dict) -> dict:
    """In llama.cpp's own process: greedy replies (argmax of its logits) to every prompt, then the first prompt's
    reply timed `repeats` times; the median counts."""
    import statistics

    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=payload["gguf"], n_threads=payload["threads"],
                          n_threads_batch=payload["threads"], n_ctx=512, verbose=False)

    vocab = llm.n_vocab()

    def last_logits():
        # llama.cpp's own buffer: Llama.scores is filled only with logits_all (which computes the output layer for
        # every prompt token, a cost the tour's side does not pay)
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,))

    def reply(ids: list[int], n: int) -> list[int]:
        llm.reset()
        llm.eval(ids)  # the prefill: the prompt in one batch
        out = []
        for i in range(n):
            out.append(int(np.argmax(last_logits())))
            if i < n - 1:
                llm.eval(out[-1:])
        return out

    n = payload["new_tokens"]
    replies = [reply(ids, n) for ids in payload["prompts"]]  # also the warm-up
    times = []
    for _ in range(payload["repeats"]):
        start = time.perf_counter()
        reply(payload["prompts"][0], n)
        times.append((time.perf_counter() - start) * 1e3)
    ms = statistics.median(times)
    print(f"llama.cpp {llama_cpp.__version__}: {n * 1e3 / ms:.1f} tokens/s")
    return {"version": llama_cpp.__version__, "ms": ms, "replies": replies,
            "setting": f"Q4_1 GGUF, {payload['threads']} threads, greedy"}


def tour(settings: BenchSettings, payload: dict) -> dict:
    """The precision stop's batch-1 ways (decode.WAYS: fp32, bf16 weights, int8, int8 + static cache + compile...)
    built, checked and timed by its own functions; the fastest is the tour's best."""
    from contextlib import nullcontext

    import torch

    from tour.core import roofs
    from tour.core.inductor import inductor_cache
    from tour.core.timing import medians_ms

    decode = part("precision", "decode")
    low_dtype = part("precision", "roofs").low_dtype

    with_threads()
    cfg, device = _config(settings), torch.device("cpu")
    tokenizer, model = decode.load(device)
    chats, _ = decode.inputs(cfg, tokenizer, device)
    low, _ = low_dtype(cfg, device)
    ways = {k: w for k, w in decode.WAYS.items() if w.batch == 1}  # the peer decodes one prompt at a time
    built, skipped = decode.build_ways(model, low, ways, device, cfg.quick)
    with inductor_cache() if any(w.compiles for w, _ in built.values()) else nullcontext():
        # compiles too, outside the timing, and is every way's warm-up (as in the precision stop's decode)
        replies = {label: [t.tolist() for t in way.generate(m, chats, cfg.new_tokens)]
                   for label, (way, m) in built.items()}
        ms = medians_ms({label: (lambda w=way, m=m: w.generate(m, chats[:1], cfg.new_tokens, True))
                         for label, (way, m) in built.items()}, device, cfg.repeats, warmup=0)
    weights = {label: decode.weight_bytes(m) for label, (_, m) in built.items()}
    best = min(ms, key=ms.get)
    bandwidth = roofs.bandwidth_gb_s(device, cfg.copy_mb, cfg.quick)
    return {"ms": ms, "best": best, "replies": replies, "weights": weights, "bandwidth": bandwidth,
            "skipped": skipped, "reference": next(iter(built))}


def parted(a: list[int], b: list[int]) -> int | None:
    """The index of the first token where two greedy replies part, or None when the shorter is a prefix."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def agreement(peer: list[list[int]], ref: list[list[int]]) -> tuple[bool, str]:
    """The same greedy tokens as the tour's reference way (fp32 on the same file) for the first AGREE_N of every
    reply (up to its end-of-text); where they part, at which token."""
    parts = [parted(p, r[:AGREE_N]) for p, r in zip(peer, ref)]
    same = all(i is None for i in parts)
    said = "; ".join(f"prompt {k + 1} parts at token {i + 1}" for k, i in enumerate(parts) if i is not None)
    later = [parted(p, r) for p, r in zip(peer, ref)]
    tail = [f"prompt {k + 1} at token {i + 1}" for k, i in enumerate(later) if i is not None and i >= AGREE_N]
    return same, (f"same greedy tokens as the tour's fp32 for the first {AGREE_N} of every reply"
                  + (f" (later they part: {', '.join(tail)}; Q4_1 x 8-bit activations vs fp32 maths)" if tail else "")
                  if same else f"greedy tokens part from the tour's fp32 within {AGREE_N}: {said}")


def row(settings: BenchSettings, payload: dict, peer: dict, ours: dict) -> BenchRow:
    from tour.core.roofs import share_text
    from tour.tools.peers import where

    n, best = payload["new_tokens"], ours["best"]
    tour_rate, peer_rate = n * 1e3 / ours["ms"][best], n * 1e3 / peer["ms"]
    tour_bytes, peer_bytes = ours["weights"][best], gguf_bytes_per_token(Path(payload["gguf"]))
    bw = ours["bandwidth"] * 1e9
    same, said = agreement(peer["replies"], ours["replies"][ours["reference"]])
    others = ", ".join(f"{k} {n * 1e3 / v:.1f}" for k, v in ours["ms"].items() if k != best)
    why = (f"batch-1 decode reads every weight once per token, so bytes decide: llama.cpp reads "
           f"{peer_bytes / 1e6:.0f} MB of 4.5-bit weights, the tour's best {tour_bytes / 1e6:.0f} MB; "
           + where("AMX speeds GEMMs, not this GEMV: the fewer bytes still lead",
                   "no matrix tiles to lose: the fewer bytes lead"))
    note = (f"{ratio_note('llama.cpp', peer_rate, tour_rate, 'tokens/s')} ({peer_rate:.1f} vs {tour_rate:.1f} "
            f"tokens/s; {share_text(peer_rate, bw / peer_bytes, 'of its bandwidth limit')} vs "
            f"{share_text(tour_rate, bw / tour_bytes, 'of its')} at {ours['bandwidth']:.1f} GB/s); {why}; "
            f"the tour's other batch-1 ways (tokens/s): "
            f"{others or 'none'}" + "".join(f"; {k} skipped: {v}" for k, v in ours["skipped"].items())
            + f"; {said}")
    print(f"  llama.cpp {peer_rate:.1f} tokens/s vs the tour's {best} {tour_rate:.1f}: {said}")
    return BenchRow(SECTION, f"SmolLM2-135M greedy decode, batch 1, {n} new tokens, {THREADS} threads",
                    f"tour: {best}", f"llama.cpp {peer['version']}: {peer['setting']}",
                    1e3 / tour_rate, 1e3 / peer_rate, peer_rate / tour_rate, same, note)
