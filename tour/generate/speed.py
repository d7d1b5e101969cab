"""The generate stop's side-by-side timings: KV cache on/off, batched vs one at a time, eager vs SDPA attention,
and decode speed against the limit memory bandwidth sets. Each pair is checked to give the same tokens.
Imported only by tour/generate.py; `cfg` is that stop's Config (not imported here: the stop imports this module)."""

from __future__ import annotations

from tour.generate_model import chat_inputs, decode, generate


def timed(model, inputs, n: int, repeats: int, device, **kw):
    from tour.core.device import median_ms

    ids = generate(model, inputs, n, exact=True, **kw)
    return median_ms(lambda: generate(model, inputs, n, exact=True, **kw), device, repeats, warmup=0), ids  # warm already


def kv_cache(cfg, model, inputs, device) -> dict:
    """Without the cache every step re-runs the whole sequence; with it, each step feeds one new token."""
    on, ids_on = timed(model, inputs, cfg.speed_tokens, cfg.repeats, device, use_cache=True)
    off, ids_off = timed(model, inputs, cfg.speed_tokens, cfg.repeats, device, use_cache=False)
    same = bool((ids_on == ids_off).all())
    print(f"  KV cache on {on:.0f} ms, off {off:.0f} ms for {cfg.speed_tokens} tokens: {off / on:.2f}x; same tokens: {same}")
    return {"kv_on_ms": on, "kv_off_ms": off, "kv_ratio": off / on, "kv_same": same}


def batching(cfg, tokenizer, model, device) -> dict:
    """Left padding lets prompts of different lengths decode together; the attention mask hides the pads."""
    from tour.core.device import median_ms

    singles = [chat_inputs(tokenizer, cfg.system, [p], device) for p in cfg.prompts]
    batch = chat_inputs(tokenizer, cfg.system, cfg.prompts, device)
    one = [decode(tokenizer, generate(model, s, cfg.speed_tokens))[0] for s in singles]
    together = decode(tokenizer, generate(model, batch, cfg.speed_tokens))
    single_ms = median_ms(lambda: [generate(model, s, cfg.speed_tokens) for s in singles], device, cfg.repeats)
    batched_ms = median_ms(lambda: generate(model, batch, cfg.speed_tokens), device, cfg.repeats)
    same = one == together
    print(f"  {len(singles)} prompts one at a time {single_ms:.0f} ms, batched {batched_ms:.0f} ms: "
          f"{single_ms / batched_ms:.2f}x; same replies: {same}")
    return {"single_ms": single_ms, "batched_ms": batched_ms, "batched_ratio": single_ms / batched_ms,
            "batched_same": same}


def attention_impls(cfg, model, inputs, device) -> dict:
    """The same weights with transformers' eager attention (explicit softmax) and with PyTorch's SDPA kernel."""
    model.set_attn_implementation("eager")
    try:
        eager, ids_eager = timed(model, inputs, cfg.speed_tokens, cfg.repeats, device)
    finally:
        model.set_attn_implementation("sdpa")
    sdpa, ids_sdpa = timed(model, inputs, cfg.speed_tokens, cfg.repeats, device)
    same = bool((ids_eager == ids_sdpa).all())
    print(f"  eager {eager:.0f} ms, sdpa {sdpa:.0f} ms: {eager / sdpa:.2f}x; same tokens: {same}")
    return {"eager_ms": eager, "sdpa_ms": sdpa, "sdpa_ratio": eager / sdpa, "sdpa_same": same}


def bandwidth(cfg, model, device, kv_on_ms: float, n: int) -> dict:
    """Each decode step reads every weight once, so bytes/s / weight bytes bounds tokens/s at batch 1."""
    import torch

    from tour.core.device import median_ms

    src = torch.ones(cfg.copy_mb * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, max(3, cfg.repeats))
    gbs = 2 * src.numel() * 4 / ms / 1e6  # read + write
    weights = sum(p.numel() * p.element_size() for p in model.parameters())  # a tied embedding counts once
    limit, got = gbs * 1e9 / weights, n * 1e3 / kv_on_ms
    print(f"  memory bandwidth {gbs:.1f} GB/s (copy of {cfg.copy_mb} MiB); weights {weights / 1e6:.0f} MB per step "
          f"-> limit {limit:.1f} tokens/s; decoding reached {got:.1f} tokens/s ({got / limit:.0%} of it)")
    return {"bandwidth_gb_s": gbs, "weights_mb": weights / 1e6, "decode_tokens_per_s": got,
            "decode_limit_tokens_per_s": limit}


def speed(cfg, tokenizer, model, device) -> dict:
    inputs = chat_inputs(tokenizer, cfg.system, cfg.prompts[:1], device)
    found = kv_cache(cfg, model, inputs, device)
    found |= batching(cfg, tokenizer, model, device)
    found |= attention_impls(cfg, model, inputs, device)
    return found | bandwidth(cfg, model, device, found["kv_on_ms"], cfg.speed_tokens)
