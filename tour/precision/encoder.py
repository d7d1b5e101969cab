"""2) MiniLM inference in fp32, under autocast and with its weights in the lower precision: speed, each sentence's
embedding against fp32's, and a classifier's held-out accuracy on the nlp stop's corpus. `corpus` is shared with
the training part."""

from __future__ import annotations

import copy
import functools
import time
from contextlib import nullcontext

import torch

from tour.core.dtypes import dtype_name
from tour.core.timing import medians_ms
from tour.core.models import mean_pool
from tour.core.roofs import flops_per_call, share_text
from tour.precision import roofs
from tour.precision.config import Config, Encoder
from tour.precision.variants import BASE, rows, show, tolerance, ways

ACCURACY_POINTS = 0.01  # a lower precision keeps the classifier's accuracy within one point of fp32's


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


FROZEN = "{low} weights + compile (freezing)"
FULL_ONLY = "full mode only: its compile takes ~30 s cold"


def frozen_compiled(model, low):
    """A call like the model's: a `low` copy compiled with Inductor's freezing (weights become constants: each
    Linear a prepacked oneDNN kernel, GELU and adds fused into it). Every call runs inside the patch, so a recompile
    is frozen too; Dynamo is reset first, or it reuses a graph another instance of the class compiled otherwise."""
    from tour.core.torch_private import inductor_config_patch

    torch._dynamo.reset()
    compiled = torch.compile(copy.deepcopy(model).to(low))

    def call(**enc):
        with inductor_config_patch(freezing=True):
            return compiled(**enc)
    return call


def frozen_skipped(cfg: Config, low, device) -> str | None:
    """Why the frozen compiled variant does not run: quick mode, no lower precision, or Inductor can't build here."""
    from tour.core.inductor import compile_problem

    if low is None:
        return None
    return FULL_ONLY if cfg.quick else compile_problem(device)


def encoder_fns(encoder, enc, low, device, frozen: bool = False) -> dict:
    """fp32 eager, autocast to `low`, the weights themselves in `low` (only fp32 when `low` is None), and with
    `frozen` the `low` copy compiled with freezing: callables returning hidden states. The classifier does not
    run the frozen one: its padded batches vary in length, and each length would recompile."""
    def run(model, ctx):
        def fn():
            with torch.inference_mode(), ctx():
                return model(**enc).last_hidden_state.float()
        return fn

    fns = {label: run(model, ctx) for label, (model, ctx) in ways(encoder, low, device).items()}
    if frozen and low is not None:
        fns[FROZEN.format(low=dtype_name(low))] = run(frozen_compiled(encoder, low), nullcontext)
    return fns


def pooled(fn_model, ctx, tokenizer, texts, device, batch: int = 64):
    """Mean-pooled unit sentence vectors (fp32, CPU) of `texts` under `ctx`, in input order. Batches are cut from
    the texts sorted by length, so each pads only to neighbours of its own length: the corpus's lines run from 2 to
    60+ tokens, and padding every batch to its longest did several times the work (masked, so the vectors are the
    same)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = []
    with torch.inference_mode(), ctx():
        for start in range(0, len(order), batch):
            enc = tokenizer([texts[i] for i in order[start:start + batch]], padding=True, truncation=True,
                            max_length=64, return_tensors="pt").to(device)
            out.append(mean_pool(fn_model(**enc).last_hidden_state.float(), enc["attention_mask"]).cpu())
    vectors = torch.cat(out)
    return vectors[torch.tensor(order).argsort()]


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


def of_roof(cfg: Config, device, variant: str, ms: float, flops: int) -> str:
    """'; 120 GFLOP/s, 40% of the bf16 roof': the rate a variant reached against its own dtype's matmul roof (the
    core's peak, measured again if the variant beat it)."""
    rate = flops / ms / 1e6
    dtype = variant.split()[0]  # "fp32 eager", "bf16 autocast", "bf16 weights"
    roof = roofs.peak(cfg, device, dtype, at_least=rate)
    return f"; {rate:.0f} GFLOP/s" + (f", {share_text(rate, roof, f'of the {dtype} roof')}" if roof else "")


def first_call(fns: dict, label: str | None) -> str:
    """Runs `label`'s first call (its compile) outside the timing: 'compile + first call 29 s', or ""."""
    if label not in fns:
        return ""
    start = time.perf_counter()
    fns[label]()
    said = f"compile + first call {time.perf_counter() - start:.0f} s"
    print(f"  {label}: {said}")
    return said


def measure(cfg: Config, device, low, tokenizer, encoder) -> Encoder:
    """Each way timed side by side on one padded batch, then its embeddings and accuracy against fp32's."""
    from tour.core.inductor import inductor_cache

    data = corpus(cfg.max_per_topic, cfg.seed)
    texts = (data["test"]["text"] * cfg.batch_size)[:cfg.batch_size]
    enc = tokenizer(texts, padding="max_length", max_length=128, truncation=True, return_tensors="pt").to(device)
    skipped = frozen_skipped(cfg, low, device)
    if skipped:
        print(f"  {FROZEN.format(low=dtype_name(low))}: skipped ({skipped})")
    frozen = FROZEN.format(low=dtype_name(low)) if low is not None and not skipped else None
    with inductor_cache() if frozen else nullcontext():
        fns = encoder_fns(encoder, enc, low, device, frozen=frozen is not None)
        compiled = first_call(fns, frozen)
        ms = medians_ms(fns, device, cfg.repeats)  # side by side: a neighbour's load slows every way alike
        outs = {label: fn() for label, fn in fns.items()}
    flops = flops_per_call(fns[BASE])  # the same maths in every variant
    ref, pool = outs[BASE], lambda h: mean_pool(h, enc["attention_mask"])  # noqa: E731
    cos = {label: float((pool(out) * pool(ref)).sum(-1).min()) for label, out in outs.items()}
    acc = classifier_accuracy(encoder, low, tokenizer, data["train"], data["test"], device)
    accuracy = {k: a for k, (a, _) in acc.items()}
    eps = tolerance(low or torch.float32)
    kept = {k: abs(a - accuracy[BASE]) <= ACCURACY_POINTS for k, a in accuracy.items()}
    keeps = {k: cos[k] >= 1 - eps and kept.get(k, True) for k in ms}  # the frozen variant: its embeddings only
    detail = {k: f"cosine >= {cos[k]:.5f}; " + (f"accuracy {acc[k][0]:.3f}; max logit diff "
                                                f"{abs(acc[k][1] - acc[BASE][1]).max():.3f}" if k in acc else compiled)
              + of_roof(cfg, device, k, ms[k], flops) for k in ms}
    found = rows("MiniLM inference", ms, keeps, detail)
    show(found)
    return Encoder(rows=found, min_cosine=min(cos.values()),
                   max_diff=max(float((out - ref).abs().max()) for out in outs.values()), accuracy=accuracy,
                   close=all(c >= 1 - eps for c in cos.values()) if low is not None else None,
                   accuracy_kept=all(kept.values()) if low is not None else None,
                   skipped={FROZEN.format(low=dtype_name(low)): skipped} if skipped else {})
