"""The vision stop's Config, the photos' known classes and the tolerance and floor its checks use; every part of the
stop imports them from here."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.config import FLOAT_DTYPES, BaseConfig, arg
from tour.core.data import SKIMAGE_PHOTOS, SKLEARN_PHOTOS  # the photos live in the core

NAME = "vision"
CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = (504, 967, 968)  # coffee mug, espresso, cup
PARITY_TOL = 1e-4  # Lite0 vs the reference implementation, max |logit diff| (fp32 on the CPU; a bad mapping: ~1)
ACCURACY_FLOOR = 0.90  # the MNIST CNN, held out: quick (2,000 digits, 3 epochs) gave 0.95-0.96, full 0.98 by epoch 5


@dataclass
class Config(BaseConfig):
    images: list[str] = arg(list(SKIMAGE_PHOTOS + SKLEARN_PHOTOS),
                            "photos to classify: built-in names, your own image files (JPEG, PNG, ...) or "
                            "folders of them")
    top_k: int = arg(5, "labels printed per photo", min=1, max=1000)  # ImageNet has 1000 classes
    epochs: int = arg(5, "passes over the MNIST training digits", min=1, quick=3)
    batch_size: int = arg(64, "digits per training step", min=1)
    lr: float = arg(3e-3, "peak AdamW learning rate of the one-cycle schedule", gt=0)
    eval_batch_size: int = arg(16, "images per batch when timing the pretrained model", min=1, quick=2)
    repeats: int = arg(8, "timed batches per variant, after warm-up; the median counts", min=1, quick=2)
    # auto, as measured on an AMX-BF16 CPU: in bf16 both models' top-1 stayed the same on all six photos
    # (probabilities moved by 0.04 at most). Lite0's parity check and MNIST training run in fp32 whatever it says.
    dtype: str = arg("auto", "dtype of the photos' predictions and the throughput table's autocast variant (fp32: "
                             "none); auto: bf16 where the hardware has it, fp16 on other GPUs, else fp32",
                     choices=FLOAT_DTYPES)
