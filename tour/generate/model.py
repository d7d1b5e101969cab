"""The generate stop's model: SmolLM2-135M-Instruct from its GGUF file, converted once to safetensors; or any
causal LM the user names. Imported only by the generate stop (tour/generate/).

Why convert: transformers reads GGUF (`from_pretrained(folder, gguf_file=...)`, with the gguf and accelerate
packages) by de-quantising every tensor to fp32, ~20-40 s on a small CPU, and refuses `save_pretrained` on the
result. Building the same architecture from the config, loading the state dict and saving gives a plain
safetensors folder that later runs load in about a second (`tour.core.assets.convert_smollm2`, shared with the
precision stop); `converted` builds it in a temporary folder and renames it into the cache, so a crash or two
runs at once never leave half a model there.
"""

from __future__ import annotations

import time
from pathlib import Path

from tour.core.errors import TourError, require

from tour.core.assets import SMOLLM2_CACHE as CACHE_NAME  # the converted folder's name (the tests find it by it)
from tour.core.assets import smollm2_dir as default_folder

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")  # architecture names transformers gives decoder-only LMs


def check_causal_lm(folder: Path, flag: str) -> None:
    """A local folder must hold a causal LM's config: one line saying what it holds instead."""
    if not (folder / "config.json").is_file():
        raise TourError(f"{flag} {folder} has no config.json; pass a folder saved with save_pretrained "
                        "(a causal language model), or leave --model out for SmolLM2")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder)
    except (ValueError, OSError) as e:
        raise TourError(f"{flag} {folder}: its config.json is not a transformers config ({str(e)[:80]})") from None
    archs = config.architectures or [config.model_type]
    if not any(a.endswith(CAUSAL_SUFFIXES) for a in archs):
        raise TourError(f"{flag} {folder} holds {', '.join(archs)}, not a causal language model; pass a folder "
                        "with a *ForCausalLM model, or leave --model out for SmolLM2")


def resolve(model: str | None) -> tuple[str, bool]:
    """Where to load from, and whether this call converted the GGUF file (unset: SmolLM2)."""
    if not model:
        from tour.core.assets import cached

        fresh = cached(CACHE_NAME) is None
        return str(default_folder()), fresh
    from tour.core.models import resolve_model

    source = resolve_model(model)  # a folder, or a hub name (a mistyped path is a one-line error there)
    if Path(source).exists():
        check_causal_lm(Path(source), "--model")
    return source, False  # a hub name: from_pretrained downloads it (online) or finds it in the HF cache


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    from tour.core.models import from_pretrained

    tokenizer = from_pretrained(AutoTokenizer, source)
    if tokenizer.pad_token is None:  # batches need a pad token; the end-of-sequence token is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends on the right, so padding goes on the left
    return tokenizer


def load_model(source: str, device, attn: str = "sdpa"):
    """The model in eval mode, fp32 (so batched/single and cached/uncached runs can be compared exactly)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tour.core.models import from_pretrained

    model = from_pretrained(AutoModelForCausalLM, source, dtype=torch.float32, attn_implementation=attn)
    return model.to(device).eval()


def open_source(model: str | None):
    """(source, tokenizer, context length, converted_now): everything but the weights, so prompts can be checked
    before the (slower) model load."""
    require("transformers", stop="the generate stop")
    from transformers import AutoConfig

    from tour.core.models import from_pretrained

    source, fresh = resolve(model)
    tokenizer = load_tokenizer(source)
    config = from_pretrained(AutoConfig, source)
    return source, tokenizer, context_length(config), fresh


def context_length(config) -> int:
    """Positions the model was trained on (SmolLM2: 8192); prompts plus new tokens must fit."""
    return int(getattr(config, "max_position_embeddings", 0) or 2048)


# chat helpers ---------------------------------------------------------------------------------------------------------
def chat_inputs(tokenizer, system: str, prompts: list[str], device):
    """The chat template turns messages into the exact text format the model was tuned on (left-padded batch)."""
    msgs = [[{"role": "system", "content": system}, {"role": "user", "content": p}] for p in prompts]
    enc = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True,
                                        padding=True)
    return {k: v.to(device) for k, v in enc.items()}


def check_prompts(tokenizer, system: str, prompts: list[str], max_new: int, context: int) -> None:
    """Before loading weights: every prompt plus its reply must fit in the model's context."""
    for i, p in enumerate(prompts):
        n = len(tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": p}],
                                              add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        if n + max_new > context:
            raise TourError(f"--prompts: prompt {i + 1} is {n} tokens; with --max-new-tokens {max_new} that exceeds "
                            f"the model's context of {context} tokens; shorten it")


def generate(model, inputs, n: int, exact: bool = False, **kw):
    """New token ids (batch, <= n); `exact` forces n tokens (no early stop) so timings compare like with like."""
    import torch

    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n if exact else None,
                             do_sample=kw.pop("do_sample", False), **kw)
    return out[:, inputs["input_ids"].shape[1]:]


def decode(tokenizer, ids) -> list[str]:
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def timed_streamer(tokenizer):
    """A TextIteratorStreamer that also notes when each new token arrived. Its text comes a word at a time (it
    waits for a space before it can decode safely), so timing the text would overstate the token rate."""
    from transformers import TextIteratorStreamer

    class TimedStreamer(TextIteratorStreamer):
        def put(self, value):
            if not self.next_tokens_are_prompt:  # generate() hands over the prompt first, then a token per step
                self.token_times.append(time.perf_counter())
            super().put(value)

    streamer = TimedStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    streamer.token_times = []
    return streamer
