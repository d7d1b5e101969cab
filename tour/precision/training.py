"""3) A MiniLM classifier's training steps in fp32 and under autocast: the same start, the same batches, the loss
curves compared within the lower precision's rounding, and a further step timed side by side."""

from __future__ import annotations

import copy

import torch

from tour.core.timing import medians_ms
from tour.core.torch_private import fused_optimizer_devices
from tour.precision.config import Config, Training
from tour.precision.encoder import corpus
from tour.precision.variants import BASE, rows, show, tolerance, ways

LOSS_EPS = 4  # autocast's losses stay within this many eps(dtype), relative, of fp32's


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


def warmed_scaler(model, batch, ctx, device, halvings: int = 24):
    """fp16's GradScaler, started at the largest scale (torch's 2^16 and down, halving) at which this batch's scaled
    gradients stay finite. A fresh scaler finds that scale by skipping steps, and a skipped step leaves the fp16
    curve an update behind fp32's: compared step by step, a missing update, not fp16's rounding. autograd.grad
    leaves the weights' .grad and the optimiser untouched; the caller seeds after this, so its draws don't count."""
    params = [p for p in model.parameters() if p.requires_grad]
    scale = torch.amp.GradScaler(device.type).get_scale()  # torch's own starting scale
    for _ in range(halvings):
        with ctx():
            loss = model(**batch).loss
        grads = torch.autograd.grad(loss * scale, params, allow_unused=True)
        if all(bool(torch.isfinite(g).all()) for g in grads if g is not None):
            break
        scale /= 2
    return torch.amp.GradScaler(device.type, init_scale=scale)


def optimizer(model, device):
    """AdamW over the trainable weights; the fused kernel where torch has one for this device (its own list), so
    the optimiser's fp32 work, the same in both ways, does not hide the maths."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5,
                             fused=device.type in fused_optimizer_devices())


def training(clf, batches, low, device, repeats: int, seed: int = 0) -> tuple[dict, dict]:
    """The same classifier from the same start, trained on the same batches with the same dropout draws (seeded
    alike) in fp32 and under autocast: ({way: losses per step}, {way: median ms of a further step, interleaved})."""
    losses, steps = {}, {}
    for label, (_, ctx) in ways(clf, low, device, weights=False).items():  # training keeps fp32 master weights
        model = copy.deepcopy(clf).train()
        # As the nlp stop trains: word embeddings frozen (half the weights, nothing to learn from a few hundred texts)
        model.get_input_embeddings().requires_grad_(False)
        opt = optimizer(model, device)
        scaler = warmed_scaler(model, batches[0], ctx, device) if low == torch.float16 and label != BASE else None
        # Dropout is on in training: unseeded, each way drew other masks, and their losses differed by ~0.5% from
        # that alone (measured), more than fp16's whole tolerance (4 eps = 0.4%)
        torch.manual_seed(seed)
        losses[label] = [train_step_fn(model, opt, b, ctx, scaler)() for b in batches]
        steps[label] = train_step_fn(model, opt, batches[0], ctx, scaler)
    return losses, medians_ms(steps, device, repeats)


def batches(cfg: Config, tokenizer, data: dict, device) -> list[dict]:
    """The first `train_steps` batches of the training texts, each padded to its longest, with their labels."""
    texts, ys, n = data["train"]["text"], data["train"]["label"], cfg.batch_size
    return [tokenizer(texts[i * n:(i + 1) * n], padding=True, truncation=True, max_length=64,
                      return_tensors="pt").to(device) | {"labels": torch.tensor(ys[i * n:(i + 1) * n], device=device)}
            for i in range(cfg.train_steps)]


def measure(cfg: Config, device, low, tokenizer) -> Training:
    from transformers import AutoModelForSequenceClassification

    from tour.core.models import from_pretrained, resolve_model

    data = corpus(cfg.max_per_topic, cfg.seed)
    clf = from_pretrained(AutoModelForSequenceClassification, resolve_model(None), num_labels=len(data["labels"]))
    losses, ms = training(clf.to(device), batches(cfg, tokenizer, data, device), low, device, cfg.repeats, cfg.seed)
    base = losses[BASE]
    worst = {k: max(abs(a - b) / b for a, b in zip(curve, base)) for k, curve in losses.items()}
    keeps = {k: w <= LOSS_EPS * tolerance(low or torch.float32) for k, w in worst.items()}
    detail = {k: f"losses {', '.join(f'{x:.3f}' for x in curve)} (worst relative diff {worst[k]:.4f})"
              for k, curve in losses.items()}
    found = rows("MiniLM training step", ms, keeps, detail)
    show(found)
    return Training(rows=found, losses=losses, close=all(keeps.values()) if low is not None else None)
