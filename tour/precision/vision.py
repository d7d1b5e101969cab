"""4) EfficientNet-Lite0 and MobileNetV2 on the tour's photos: fp32, channels_last, and each under autocast to the
lower precision, timed side by side; a variant keeps its check when its top-1 equals fp32's on every photo."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch

from tour.core.dtypes import autocast, dtype_name
from tour.core.timing import medians_ms
from tour.core.errors import require
from tour.precision.config import Config, Variant, Vision
from tour.precision.variants import BASE, rows, show


def mobilenet_v2(device):
    """(model, its transforms), loaded as the vision stop loads it (the packaged file staged where torch.hub looks)."""
    from tour.core.models import load_mobilenet_v2

    model, weights, _ = load_mobilenet_v2(device)
    return model, weights.transforms()


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
    fns = {BASE: run(model, batch, nullcontext), "channels_last (fp32)": run(last, batch_last, nullcontext)}
    if low is not None:
        amp = lambda: autocast(device, low)  # noqa: E731
        fns |= {f"{dtype_name(low)} autocast": run(model, batch, amp),
                f"channels_last + {dtype_name(low)} autocast": run(last, batch_last, amp)}
    return fns


def models(device) -> dict:
    """label -> (model, transform of one HWC uint8 photo into its input tensor)."""
    from tour.core.models import load_efficientnet_lite0, preprocess

    mobilenet, mobilenet_tf = mobilenet_v2(device)
    return {"EfficientNet-Lite0": (load_efficientnet_lite0(device), preprocess()),
            "MobileNetV2": (mobilenet, lambda im: mobilenet_tf(torch.from_numpy(im).permute(2, 0, 1)))}


def one_model(label: str, model, batch, cfg: Config, device, low) -> tuple[list[Variant], dict[str, list[int]]]:
    """(rows, way -> top-1 id per photo): the ways timed on `cfg.images` images, top-1 read on the photos."""
    photos = batch.shape[0]
    timing = batch.repeat((cfg.images + photos - 1) // photos, 1, 1, 1)[:cfg.images]
    fns = vision_fns(model, timing, low, device)
    ms = medians_ms(fns, device, cfg.repeats)
    ids = {k: fn()[:photos].argmax(1).tolist() for k, fn in fns.items()}
    same = {k: sum(a == b for a, b in zip(ids[k], ids[BASE])) for k in ms}
    found = rows(f"{label} inference", ms, {k: n == photos for k, n in same.items()},
                 {k: f"top-1 same as fp32 on {n}/{photos} photos" for k, n in same.items()})
    show(found)
    return found, ids


def measure(cfg: Config, device, low) -> Vision:
    from tour.core.data import SKIMAGE_PHOTOS, SKLEARN_PHOTOS, builtin_photo

    # the weight packages are asked for where their files are looked up (assets: a one-line install line, or a
    # random-weights stand-in)
    require("torchvision", "skimage", stop="the precision stop's vision part")
    photos = [builtin_photo(n) for n in SKIMAGE_PHOTOS + SKLEARN_PHOTOS]
    found, top1 = [], {}
    for label, (model, transform) in models(device).items():
        batch = torch.stack([transform(im) for im in photos]).to(device)
        model_rows, top1[label] = one_model(label, model, batch, cfg, device, low)
        found += model_rows
    return Vision(rows=found, top1=top1, agree=all(r.keeps for r in found) if low is not None else None)
