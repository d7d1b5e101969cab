"""The precision stop's measurements, each side by side with fp32 on the same inputs: matmul roofs per dtype and
memory bandwidth, MiniLM (speed, embeddings, a classifier's accuracy, a training step), the vision models' top-1,
SmolLM2's greedy decode in fp32, bf16 and int8 weights, and compile's fusion gain across cache sizes.
Imported only by tour/precision.py; `cfg` is that stop's Config.
"""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from tour.core.device import DTYPE_NAMES, autocast, median_ms, medians_ms, synchronize

NAMES = {dtype: short for short, dtype in DTYPE_NAMES.items()}  # torch.bfloat16 -> "bf16", the flag's spelling


@dataclass
class Variant:
    """One way of running a model, timed beside its fp32 eager baseline."""

    model: str  # "MiniLM inference", "SmolLM2 decode", ...
    variant: str  # "fp32 eager", "bf16 autocast", "bf16 weights", "int8 weight-only (torchao)"
    ms: float
    speedup: float = 1.0  # fp32 eager ms / this ms: above 1 it is faster
    keeps: bool | None = True  # keeps the model's check (accuracy, top-1, loss, greedy reply)
    detail: str = ""  # what the check measured


def name(dtype) -> str:
    return NAMES.get(dtype, str(dtype).removeprefix("torch."))


def tolerance(dtype) -> float:
    """Relative error a dtype's rounding allows: its machine epsilon (bf16 2^-7, fp16 2^-10, fp32 2^-23)."""
    return torch.finfo(dtype).eps


def timed_variants(model: str, fns: dict, device, repeats: int) -> list[Variant]:
    """Each callable's interleaved median ms, with its speed-up over the first (fp32 eager)."""
    rows = [Variant(model, label, ms) for label, ms in medians_ms(fns, device, repeats).items()]
    for row in rows:
        row.speedup = rows[0].ms / row.ms
    return rows


def count_flops(fn) -> int:
    """FLOPs of one call, counted by FlopCounterMode (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


# 1) roofs ----------------------------------------------------------------------------------------------------------
def matmul_roof(dtype, n: int, device, repeats: int) -> tuple[float, float]:
    """(ms, G(FL)OP/s) of an n x n matmul in `dtype`; int8 through torch._int_mm (int32 accumulators)."""
    from tour.core.torch_private import int_mm

    if dtype == torch.int8:
        a, b = (torch.randint(-127, 128, (n, n), dtype=torch.int8, device=device) for _ in range(2))
        fn = lambda: int_mm()(a, b)  # noqa: E731
    else:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        fn = lambda: a @ b  # noqa: E731
    ms = median_ms(fn, device, repeats, warmup=2)
    return ms, 2 * n**3 / ms / 1e6


def bandwidth_gb_s(mb: int, device, repeats: int) -> float:
    """(read + written) bytes / time of a large tensor copy: the memory roof decoding runs into."""
    src = torch.ones(mb * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, max(3, repeats), warmup=1)
    return 2 * src.numel() * 4 / ms / 1e6


# 2) MiniLM: inference, a classifier on its embeddings, a training step ---------------------------------------------
def encoder_fns(encoder, enc, low, device) -> dict:
    """fp32 eager, autocast to `low`, and the weights themselves in `low` (only fp32 when `low` is None):
    callables returning hidden states."""
    def run(model, ctx):
        def fn():
            with torch.inference_mode(), ctx():
                return model(**enc).last_hidden_state.float()
        return fn

    return {label: run(model, ctx) for label, (model, ctx) in ways(encoder, low, device).items()}


def ways(model, low, device, weights: bool = True) -> dict:
    """label -> (model, context): fp32 eager, autocast to `low`, the weights cast to `low`; fp32 only without low."""
    found = {"fp32 eager": (model, nullcontext)}
    if low is not None:
        found[f"{name(low)} autocast"] = (model, lambda: autocast(device, low))
    if low is not None and weights:
        found[f"{name(low)} weights"] = (copy.deepcopy(model).to(low), nullcontext)
    return found


def pooled(fn_model, ctx, tokenizer, texts, device, batch: int = 64):
    """Mean-pooled unit sentence vectors (fp32, CPU) of `texts` under `ctx`, in input order."""
    from tour.core.models import mean_pool

    out = []
    with torch.inference_mode(), ctx():
        for start in range(0, len(texts), batch):
            enc = tokenizer(texts[start:start + batch], padding=True, truncation=True, max_length=64,
                            return_tensors="pt").to(device)
            out.append(mean_pool(fn_model(**enc).last_hidden_state.float(), enc["attention_mask"]).cpu())
    return torch.cat(out)


def classifier_accuracy(encoder, low, tokenizer, train, test, device) -> dict:
    """A logistic head fitted on fp32 embeddings of the training texts; held-out accuracy and logits with the test
    texts embedded in fp32 and in each lower-precision way."""
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(max_iter=2000, C=10.0).fit(
        pooled(encoder, nullcontext, tokenizer, train["text"], device).numpy(), train["label"])
    found = {}
    for label, (model, ctx) in ways(encoder, low, device).items():
        x = pooled(model, ctx, tokenizer, test["text"], device).numpy()
        found[label] = (float(head.score(x, test["label"])), head.decision_function(x))
    return found


def train_step_fn(model, opt, batch, ctx, scaler):
    """One optimiser step under `ctx` (autocast or nothing); a GradScaler only for fp16 (bf16 has fp32's range)."""
    def step() -> float:
        with ctx():
            loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return loss.item()
    return step


def training(clf, batches, low, device, repeats: int) -> tuple[dict, dict]:
    """The same classifier from the same start, trained on the same batches in fp32 and under autocast:
    ({way: losses per step}, {way: median ms of a further step, the ways interleaved})."""
    losses, steps = {}, {}
    for label, (_, ctx) in ways(clf, low, device, weights=False).items():  # training keeps fp32 master weights
        model = copy.deepcopy(clf).train()
        # As the nlp stop trains: word embeddings frozen (half the weights, nothing to learn from a few hundred
        # texts). The fused AdamW kernel keeps the optimiser's fp32 work, the same in both ways, from hiding the maths.
        model.get_input_embeddings().requires_grad_(False)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5,
                                fused=device.type in ("cpu", "cuda"))
        scaler = torch.amp.GradScaler(device.type) if low == torch.float16 and label != "fp32 eager" else None
        losses[label] = [train_step_fn(model, opt, b, ctx, scaler)() for b in batches]
        steps[label] = train_step_fn(model, opt, batches[0], ctx, scaler)
    return losses, medians_ms(steps, device, repeats)


# 2b) the vision models on the tour's photos -----------------------------------------------------------------------
def mobilenet_v2(device):
    """(model, its transforms): the packaged file staged where torch.hub looks, then torchvision's own builder."""
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2 as build

    from tour.core import assets

    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    assets.stage_hub_checkpoint(assets.mobilenet_v2_weights(), weights.url)
    return build(weights=weights).eval().to(device), weights.transforms()


def vision_fns(model, batch, low, device) -> dict:
    """fp32 eager and channels_last (NHWC: convolutions read a pixel's channels at once), then each under autocast
    to `low`: channels_last alone shows how much of the gain is the layout and how much the dtype."""
    def run(net, x, ctx):
        def fn():
            with torch.inference_mode(), ctx():
                return net(x).float()
        return fn

    last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    batch_last = batch.contiguous(memory_format=torch.channels_last)
    fns = {"fp32 eager": run(model, batch, nullcontext), "channels_last (fp32)": run(last, batch_last, nullcontext)}
    if low is not None:
        amp = lambda: autocast(device, low)  # noqa: E731
        fns |= {f"{name(low)} autocast": run(model, batch, amp),
                f"channels_last + {name(low)} autocast": run(last, batch_last, amp)}
    return fns


# 3) generation: SmolLM2 in fp32, bf16 weights and int8 weight-only ------------------------------------------------
def weight_bytes(model) -> int:
    """Bytes a decode step reads: every weight once, a quantised tensor by its stored parts (int8 + scales). An
    embedding table is read one row per token, so it counts only through the output layer it may be tied to."""
    total, seen = 0, set()
    for p in (p for m in model.modules() if not isinstance(m, torch.nn.Embedding) for p in m.parameters(recurse=False)):
        if id(p) in seen:  # a tied weight is read once
            continue
        seen.add(id(p))
        flatten = getattr(p, "__tensor_flatten__", None)
        if flatten is not None and type(p) not in (torch.Tensor, torch.nn.Parameter):
            total += sum(getattr(p, n).numel() * getattr(p, n).element_size() for n in flatten()[0])
        else:
            total += p.numel() * p.element_size()
    return total


def int8_weight_only(model):
    """A copy with every Linear's weights stored as int8 with a scale per output channel (torchao), or None."""
    from tour.core.errors import is_available

    if not is_available("torchao"):
        return None
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantised = copy.deepcopy(model)
    quantize_(quantised, Int8WeightOnlyConfig())
    return quantised


def greedy(model, chats, n: int, exact: bool = False) -> list:
    """Greedy new token ids per prompt (batch 1 each); `exact` forces n tokens so timings compare like with like."""
    outs = []
    with torch.inference_mode():
        for enc in chats:
            out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n if exact else None, do_sample=False)
            outs.append(out[0, enc["input_ids"].shape[1]:])
    return outs


def perplexity(model, tokenizer, texts: list[str], device) -> float:
    """exp(mean next-token loss) over `texts` (held-out corpus sentences), padding ignored; the plain text only."""
    enc = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(device)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    with torch.inference_mode():
        return math.exp(model(**enc, labels=labels).loss.float().item())


def plain_text_differs(tokenizer) -> str | None:
    """Why perplexities on plain text are not comparable here, or None. transformers 4.x converts SmolLM2's GGUF
    tokenizer with <|im_start|> as its BOS and EOS: plain text then tokenizes unlike the model's own tokenizer, the
    model sees text it was not tuned on (perplexity ~200 vs ~38) and bf16 rounding moves that by ~9%."""
    if tokenizer.bos_token is not None and tokenizer.bos_token == tokenizer.eos_token:
        import transformers

        return (f"transformers {transformers.__version__} converts SmolLM2's GGUF tokenizer with "
                f"{tokenizer.bos_token} as both BOS and EOS, so plain-text perplexity is not the model's: the "
                "perplexity check needs transformers >= 5 (greedy replies are still compared)")
    return None


def decode_fn(model, chat, n: int):
    """A call that decodes exactly n new tokens of one prompt (KV cache on, batch 1), for the timer."""
    return lambda: greedy(model, [chat], n, exact=True)


# 4) compile on this CPU: fusion vs tensor size -------------------------------------------------------------------
def elementwise_block(x, scale, shift):
    """Four rounds of LayerNorm, GELU, scale/shift, tanh, residual: eager makes ~8 passes over x per round,
    Inductor fuses a round into one or two loops. What fusing saves is memory traffic."""
    for i in range(scale.shape[0]):
        h = torch.nn.functional.gelu(torch.nn.functional.layer_norm(x, x.shape[-1:])) * scale[i] + shift[i]
        x = x + 0.5 * torch.tanh(h)
    return x


def fusion_sweep(sizes_mb: list[int], device, repeats: int) -> list[dict]:
    """Eager vs compiled at each tensor size (width 512 fp32); one dynamic-shape compile serves every size."""
    width = 512
    scale, shift = torch.ones(4, width, device=device), torch.zeros(4, width, device=device)
    compiled = torch.compile(elementwise_block, dynamic=True)
    rows = []
    for mb in sizes_mb:
        x = torch.randn(max(1, mb * 2**20 // (4 * width)), width, device=device)
        same = torch.allclose(compiled(x, scale, shift), elementwise_block(x, scale, shift), atol=1e-4)
        eager, comp = medians_ms({"eager": lambda: elementwise_block(x, scale, shift),
                                  "compiled": lambda: compiled(x, scale, shift)}, device, repeats).values()
        rows.append({"mb": mb, "eager_ms": eager, "compiled_ms": comp, "ratio": eager / comp, "parity": same})
        del x
        synchronize(device)
    return rows


def cache_level(mb: int, caches: dict[str, int]) -> str:
    """The smallest cache that holds a tensor of `mb` MB plus its output, or "DRAM"."""
    for level in ("L2", "L3"):
        if level in caches and 2 * mb * 2**20 <= caches[level]:
            return level
    return "DRAM" if caches else "?"


def size_text(nbytes: int) -> str:
    return f"{nbytes / 2**20:g} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:g} KB"


def fusion_reason(rows: list[dict], caches: dict[str, int]) -> str:
    """Why the ratio is what it is here, from the measured rows and this CPU's caches."""
    sizes = ", ".join(f"{k} {size_text(v)}" for k, v in caches.items()) or "cache sizes unknown"
    by_level = {}
    for r in rows:
        by_level.setdefault(r.get("where") or cache_level(r["mb"], caches), []).append(r["ratio"])
    spread = "; ".join(f"in {lvl}: {min(v):.2f}-{max(v):.2f}x" for lvl, v in by_level.items())
    grows = rows[-1]["ratio"] > rows[0]["ratio"] * 1.2
    knee = cache_knee(rows)
    verdict = ("the gain grows as the tensors leave the caches, as the bandwidth argument predicts" if grows else
               "the gain does not grow with size here, so memory traffic is not what limits this block on this CPU; "
               "likely the maths (erf, tanh, LayerNorm's reductions) on few cores is")
    return (f"caches {sizes}. Fusing saves passes over memory: while input and output fit in a cache, eager's "
            f"extra passes are cheap; once they spill to DRAM each pass costs bandwidth. Measured {spread}: {verdict}."
            + knee)


def cache_knee(rows: list[dict]) -> str:
    """Where eager's time per MB jumps (at least 2x between two sizes): the cache this process really gets ends
    there, which can be far below the last-level size sysfs reports (shared by a whole socket, other tenants)."""
    per_mb = [r["eager_ms"] / r["mb"] for r in rows]
    for (a, b), (pa, pb) in zip(zip(rows, rows[1:]), zip(per_mb, per_mb[1:])):
        if pb > 2 * pa:
            return (f" Eager's time per MB jumps {pb / pa:.1f}x between {a['mb']} and {b['mb']} MB: the cache this "
                    f"process really gets ends there.")
    return ""
