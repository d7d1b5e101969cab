"""How the decode part generates: greedy one prompt at a time, the prompts in one left-padded batch, or with a
static KV cache and generate's own torch.compile. Each takes (model, chats, n new tokens, exact) and returns the new
token ids per prompt (per row of a batch)."""

from __future__ import annotations

import math

import torch


def greedy(model, chats, n: int, exact: bool = False) -> list:
    """Greedy new token ids per prompt (batch 1 each); `exact` forces n tokens so timings compare like with like."""
    outs = []
    with torch.inference_mode():
        for enc in chats:
            out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n if exact else None, do_sample=False)
            outs.append(out[0, enc["input_ids"].shape[1]:])
    return outs


def pad_id(model) -> int:
    """The token a left-padded batch pads with: the model's pad token, else its (first) end-of-sequence token."""
    found = model.generation_config.pad_token_id
    found = found if found is not None else model.generation_config.eos_token_id
    return found[0] if isinstance(found, list) else found


def left_padded(chats: list, pad: int) -> dict:
    """The chat inputs as one batch, padded on the left: every row then continues from its own last token."""
    width = max(c["input_ids"].shape[1] for c in chats)
    fill = lambda t, value: torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value)  # noqa: E731
    return {"input_ids": torch.cat([fill(c["input_ids"], pad) for c in chats]),
            "attention_mask": torch.cat([fill(c["attention_mask"], 0) for c in chats])}


def batched_greedy(model, chats, n: int, exact: bool = False) -> list:
    """Greedy new token ids per prompt, all prompts decoded in one left-padded batch: each step reads the weights
    once for every row (a small GEMM, where bf16's matrix units beat fp32, instead of a GEMV)."""
    pad = pad_id(model)
    batch = left_padded(chats, pad)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=n, min_new_tokens=n if exact else None, do_sample=False,
                             pad_token_id=pad)
    return list(out[:, batch["input_ids"].shape[1]:])


def compiled_greedy(model, chats, n: int, exact: bool = False) -> list:
    """greedy with a static KV cache and generate's own torch.compile of the decode step (the prefill stays eager),
    in the mode transformers intends on the model's device (CUDA graphs on CUDA: generate_compile_config). One cache
    length for every call, so the step compiles once. Never with Inductor's freezing: a frozen step with the static
    cache gives wrong replies (fp32 too)."""
    from tour.core.torch_private import generate_compile_config, inductor_config_patch

    length = 256 * math.ceil((max(c["input_ids"].shape[1] for c in chats) + n) / 256)
    config = generate_compile_config(model.device)
    outs = [None] * len(chats)
    with torch.inference_mode(), inductor_config_patch(freezing=False):
        # longest prompt first: where generate sizes the cache from its first call (transformers 4.x), every later,
        # shorter call then reuses that one cache, so the step still compiles once
        for i in sorted(range(len(chats)), key=lambda k: -chats[k]["input_ids"].shape[1]):
            enc = chats[i]
            out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n if exact else None, do_sample=False,
                                 cache_implementation="static", compile_config=config,
                                 **static_cache_length(length))
            outs[i] = out[0, enc["input_ids"].shape[1]:]
    return outs


def static_cache_length(length: int) -> dict:
    """generate's keyword for the static cache's length where it has one (transformers 5: `max_cache_len`); 4.x
    refuses the keyword and sizes the cache from the first call instead (hence longest first above)."""
    from transformers import GenerationConfig

    return {"max_cache_len": length} if hasattr(GenerationConfig(), "max_cache_len") else {}
