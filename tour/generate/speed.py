"""The generate stop's side-by-side timings: KV cache on/off, batched vs one at a time, eager vs SDPA attention,
and decode speed against the limit memory bandwidth sets. Each pair is checked to give the same tokens.
`measure` returns the Result's `speed` part; `tour bench` reads the same part."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.results import check, labelled
from tour.generate.config import Config
from tour.generate.model import chat_inputs, decode, generate


@dataclass
class Speed:
    kv_on_ms: float = labelled("greedy, KV cache on", "ms", 0.0)
    kv_off_ms: float = labelled("greedy, KV cache off", "ms", 0.0)
    kv_ratio: float = labelled("KV cache (off / on)", "x", 0.0, parity="kv_same")
    # The three *_same checks are exact token matches in fp32 (the stop loads the model in fp32 for them): each pair
    # differs only in how the same maths is ordered (cache, batch GEMMs, attention kernel), so a flip needs a tie
    # closer than fp32's rounding.
    kv_same: bool | None = check("greedy tokens with the KV cache equal those without it (exact, fp32)", None)
    single_ms: float = labelled("prompts one at a time", "ms", 0.0)  # all prompts, one at a time
    batched_ms: float = labelled("prompts in one left-padded batch", "ms", 0.0)  # all prompts in one left-padded batch
    # single / batched
    batched_ratio: float = labelled("batching (one at a time / batch)", "x", 0.0, parity="batched_same")
    batched_same: bool | None = check("a left-padded batch gives the same greedy replies as one prompt at a time "
                                      "(exact tokens, fp32)", None)
    eager_ms: float = labelled('attention "eager"', "ms", 0.0)
    sdpa_ms: float = labelled('attention "sdpa"', "ms", 0.0)
    sdpa_ratio: float = labelled("SDPA attention (eager / sdpa)", "x", 0.0, parity="sdpa_same")
    sdpa_same: bool | None = check('greedy tokens with attention "sdpa" equal those with "eager" (exact, fp32)', None)
    # (read + written) bytes / time of a large tensor copy
    bandwidth_gb_s: float = labelled("memory copy bandwidth", "GB/s", 0.0)
    weights_mb: float = labelled("weights read per decoded token", "MB", 0.0)  # bytes every decode step reads
    # KV cache on, batch 1
    decode_tokens_per_s: float = labelled("decode rate, KV cache, batch 1", "tokens/s", 0.0,
                                          roof="decode_limit_tokens_per_s")
    decode_limit_tokens_per_s: float = labelled("memory-bandwidth limit", "tokens/s", 0.0)  # bandwidth / weight bytes


def generate_ms(model, inputs, n: int, repeats: int, device, **kw):
    """(median ms, the new token ids) of `n` exact new tokens: the chat section warmed the model, so on a CPU the
    first call is timed too (a new path costs it ms, a decode hundreds); an accelerator warms up first."""
    from tour.core.timing import new_shape_warmup, output_and_median_ms

    ids, ms = output_and_median_ms(lambda: generate(model, inputs, n, exact=True, **kw), device, repeats,
                                   warmup=new_shape_warmup(device))
    return ms, ids


def kv_cache(cfg: Config, model, inputs, device) -> tuple[float, float, bool]:
    """Without the cache every step re-runs the whole sequence; with it, each step feeds one new token.
    (ms with the cache, ms without, same tokens)"""
    on, ids_on = generate_ms(model, inputs, cfg.speed_tokens, cfg.repeats, device, use_cache=True)
    off, ids_off = generate_ms(model, inputs, cfg.speed_tokens, cfg.repeats, device, use_cache=False)
    same = bool((ids_on == ids_off).all())
    print(f"  KV cache on {on:.0f} ms, off {off:.0f} ms for {cfg.speed_tokens} tokens: {off / on:.2f}x; same tokens: {same}")
    return on, off, same


def batching(cfg: Config, tokenizer, model, device) -> tuple[float, float, bool]:
    """Left padding lets prompts of different lengths decode together; the attention mask hides the pads.
    (ms one at a time, ms batched, same replies)"""
    from tour.core.timing import new_shape_warmup, output_and_median_ms

    singles = [chat_inputs(tokenizer, cfg.system, [p], device) for p in cfg.prompts]
    batch = chat_inputs(tokenizer, cfg.system, cfg.prompts, device)
    # the timed calls give the replies compared (as generate_ms: on a CPU no untimed first call)
    one, single_ms = output_and_median_ms(lambda: [decode(tokenizer, generate(model, s, cfg.speed_tokens))[0]
                                                   for s in singles], device, cfg.repeats,
                                          warmup=new_shape_warmup(device))
    together, batched_ms = output_and_median_ms(lambda: decode(tokenizer, generate(model, batch, cfg.speed_tokens)),
                                                device, cfg.repeats, warmup=new_shape_warmup(device))
    same = one == together
    print(f"  {len(singles)} prompts one at a time {single_ms:.0f} ms, batched {batched_ms:.0f} ms: "
          f"{single_ms / batched_ms:.2f}x; same replies: {same}")
    return single_ms, batched_ms, same


def attention_impls(cfg: Config, model, inputs, device) -> tuple[float, float, bool]:
    """The same weights with transformers' eager attention (explicit softmax) and with PyTorch's SDPA kernel.
    (ms eager, ms sdpa, same tokens)"""
    model.set_attn_implementation("eager")
    try:
        eager, ids_eager = generate_ms(model, inputs, cfg.speed_tokens, cfg.repeats, device)
    finally:
        model.set_attn_implementation("sdpa")
    sdpa, ids_sdpa = generate_ms(model, inputs, cfg.speed_tokens, cfg.repeats, device)
    same = bool((ids_eager == ids_sdpa).all())
    print(f"  eager {eager:.0f} ms, sdpa {sdpa:.0f} ms: {eager / sdpa:.2f}x; same tokens: {same}")
    return eager, sdpa, same


def bandwidth(cfg: Config, model, device, kv_on_ms: float, n: int) -> tuple[float, float, float, float]:
    """Each decode step reads every weight once, so bytes/s / weight bytes bounds tokens/s at batch 1; the bytes/s
    is the core's copy bandwidth (tour.core.roofs), shared with `tour bench` and the precision stop.
    (copy GB/s, weight MB, decoded tokens/s, the limit in tokens/s)"""
    from tour.core import roofs

    weights = sum(p.numel() * p.element_size() for p in model.parameters())  # a tied embedding counts once
    got = n * 1e3 / kv_on_ms
    gbs = roofs.bandwidth_gb_s(device, cfg.copy_mb, cfg.quick, at_least=got * weights / 1e9)
    limit = gbs * 1e9 / weights
    print(f"  memory bandwidth {gbs:.1f} GB/s (copy of {cfg.copy_mb or roofs.copy_mib(device.type)} MiB); weights "
          f"{weights / 1e6:.0f} MB per step -> limit {limit:.1f} tokens/s; decoding reached {got:.1f} tokens/s "
          f"({roofs.share_text(got, limit, 'of it')})")
    return gbs, weights / 1e6, got, limit


def measure(cfg: Config, tokenizer, model, device) -> Speed:
    """The four side-by-side measurements, in the order the stop prints them."""
    inputs = chat_inputs(tokenizer, cfg.system, cfg.prompts[:1], device)
    kv_on, kv_off, kv_same = kv_cache(cfg, model, inputs, device)
    single, batched, batched_same = batching(cfg, tokenizer, model, device)
    eager, sdpa, sdpa_same = attention_impls(cfg, model, inputs, device)
    gbs, weights_mb, got, limit = bandwidth(cfg, model, device, kv_on, cfg.speed_tokens)
    return Speed(kv_on_ms=kv_on, kv_off_ms=kv_off, kv_ratio=kv_off / kv_on, kv_same=kv_same,
                 single_ms=single, batched_ms=batched, batched_ratio=single / batched, batched_same=batched_same,
                 eager_ms=eager, sdpa_ms=sdpa, sdpa_ratio=eager / sdpa, sdpa_same=sdpa_same,
                 bandwidth_gb_s=gbs, weights_mb=weights_mb, decode_tokens_per_s=got, decode_limit_tokens_per_s=limit)
