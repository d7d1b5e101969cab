"""PyTorch Lightning: the basics stop's digits MLP as a LightningModule + LightningDataModule, trained by
a Trainer with a checkpoint callback, and checked against the plain training loop it replaces.

Run: `tour run lightning` (or `python -m tour.lightning`, `python examples/lightning_demo.py`); `--quick` for a
short run. Needs the extra: `pip install 'torch-tour[lightning]'`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

from tour.core.cli import stop_main

from tour.core.config import out_dir
from tour.core.errors import TourError, require
from tour.core.results import BaseResult, check, labelled
from tour.core.state import keeps_caller_state
from tour.lightning.config import ACCURACY_FLOOR, NAME, WEIGHT_TOL, Config  # noqa: F401  (the stop's API)


@dataclass
class Result(BaseResult):
    device: str
    accelerator: str  # what the Trainer was given, taken from tour.core.device's pick
    epochs: int
    train_size: int
    test_size: int
    # held-out accuracy of tour.core.models.train_mlp (the hand-written loop)
    plain_accuracy: float = labelled("hand-written loop: held-out accuracy", "%")
    # held-out accuracy of the Trainer-trained model, same seed/data/hyper-parameters
    lightning_accuracy: float = labelled("Lightning Trainer: held-out accuracy", "%")
    lightning_test_acc: float  # the same number as Lightning's own trainer.test() logged it
    accuracy_gap: float = labelled("accuracy gap", "%")  # |lightning - plain|
    max_weight_diff: float = labelled("max |weight difference|")  # largest |w_lightning - w_plain| over all parameters
    plain_losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    lightning_losses: list[float] = field(default_factory=list)
    checkpoint: str = ""  # the file ModelCheckpoint wrote
    reloaded_accuracy: float = 0.0  # accuracy after LitDigits.load_from_checkpoint
    plain_seconds: float = labelled("hand-written loop: time", "s", 0.0)
    lightning_seconds: float = labelled("Lightning Trainer: time", "s", 0.0)
    same_weights: bool | None = check(f"the Trainer ends with the hand-written loop's weights (max |diff| < "
                                      f"{WEIGHT_TOL:g})", None)
    test_logged_right: bool | None = check("trainer.test() logs the held-out accuracy we compute (within 1e-6)", None)
    reloads: bool | None = check("the checkpoint, loaded with load_from_checkpoint, scores the trained model's "
                                 "accuracy (within 1e-6)", None)
    learned: bool | None = check(f"held-out accuracy >= {ACCURACY_FLOOR} (not run with training settings of your "
                                 "own)", None)


def accelerator_for(device) -> str:
    """Lightning's accelerator name for a torch.device picked by tour.core.device. Lightning registers its
    accelerators under torch's own device-type names (cpu, cuda, mps), so the type passes straight through."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    if device.type not in AcceleratorRegistry:
        raise TourError(f"Lightning has no accelerator for device type {device.type!r} "
                        f"(it knows {', '.join(sorted(AcceleratorRegistry))}); pass --device cpu")
    return device.type


# 1) the plain loop, from the basics stop ----------------------------------------------------------------------
def plain_loop(cfg: Config, device, train, test):
    from tour.core import device as dev
    from tour.core import timing
    from tour.core.models import accuracy, train_mlp

    # The plain loop runs first: on a GPU it would otherwise pay the context and cuBLAS set-up (100s of ms) that
    # the Trainer, timed after it, finds done; both timings are then of training alone.
    timing.warm_up(device)
    dev.seed_everything(cfg.seed)  # same seed before building the model: both start from identical weights
    start = time.perf_counter()
    model, losses = train_mlp(cfg, device, train, cfg.epochs)
    timing.synchronize(device)
    seconds = time.perf_counter() - start
    return model, losses, accuracy(model, test, device), seconds


# 2) the same model under a Trainer ----------------------------------------------------------------------------
def make_trainer(cfg: Config, device, folder):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    checkpoint = ModelCheckpoint(dirpath=folder / "checkpoints", filename="digits-{epoch:02d}")  # latest epoch
    return L.Trainer(
        accelerator=accelerator_for(device),
        devices=[device.index] if device.index is not None else 1,
        deterministic=True,  # deterministic kernels, so a rerun gives the same weights
        max_epochs=cfg.epochs,
        default_root_dir=folder,  # everything Lightning writes stays in the stop's folder, not the cwd
        logger=CSVLogger(folder, name="logs"),  # metrics.csv per run; TensorBoard is not needed
        callbacks=[checkpoint],
        enable_progress_bar=not cfg.quick,
        enable_model_summary=not cfg.quick,
        num_sanity_val_steps=0,  # the held-out check runs after each epoch anyway
        log_every_n_steps=1,  # 23 batches an epoch: the default (50) would warn that it never logs a step
    ), checkpoint


def epoch_losses(metrics_csv) -> list[float]:
    """The per-epoch mean training loss, read back from the CSVLogger's file."""
    import csv

    with open(metrics_csv, newline="") as f:
        return [float(row["train_loss"]) for row in csv.DictReader(f) if row.get("train_loss")]


def lightning_fit(cfg: Config, device, folder):
    import torch

    from tour.core import device as dev
    from tour.lightning.modules import DigitsData, LitDigits
    data = DigitsData(cfg.batch_size, cfg.test_fraction, cfg.seed)
    dev.seed_everything(cfg.seed)
    model = LitDigits(cfg.hidden, cfg.lr)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        trainer, checkpoint = make_trainer(cfg, device, folder)  # deterministic=True applies here
        with warnings.catch_warnings():
            # the digits live in memory: worker processes would only add start-up time
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            # raised inside Lightning 2.6 by its own use of a torch API newer torch deprecates; nothing to fix here
            warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
            start = time.perf_counter()
            trainer.fit(model, datamodule=data)
            seconds = time.perf_counter() - start
            (tested,) = trainer.test(model, datamodule=data, verbose=not cfg.quick)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)  # the Trainer set it process-wide: put it back
    metrics = f"{trainer.logger.log_dir}/metrics.csv"
    return model, tested["test_acc"], checkpoint.best_model_path, metrics, epoch_losses(metrics), seconds


def max_weight_diff(a, b) -> float:
    return max((p.detach().cpu() - q.detach().cpu()).abs().max().item()
               for p, q in zip(a.parameters(), b.parameters(), strict=True))


# 3) the checkpoint, reloaded ----------------------------------------------------------------------------------
def reload_accuracy(path: str, test, device) -> float:
    from tour.core.models import accuracy
    from tour.lightning.modules import LitDigits
    model = LitDigits.load_from_checkpoint(path, map_location=device)  # hyper-parameters come from the file
    model.eval()
    return accuracy(model, test, device)


@keeps_caller_state
def run(cfg: Config) -> Result:
    require("lightning", stop="the lightning stop")
    from tour.core import device as dev
    from tour.core.data import digits_split
    from tour.core.models import accuracy

    device = dev.get_device(cfg.device)
    accelerator = accelerator_for(device)
    folder = out_dir(cfg, NAME)
    print(f"[lightning] {dev.describe(cfg.device)}\n[lightning] Trainer(accelerator={accelerator!r})")
    train, test = digits_split(cfg.test_fraction, cfg.seed)
    print(f"1) the plain loop (tour.core.models.train_mlp): {cfg.epochs} epochs on {len(train[0])} real digits")
    plain, plain_losses, plain_acc, plain_s = plain_loop(cfg, device, train, test)
    print(f"  loss {plain_losses[0]:.3f} -> {plain_losses[-1]:.3f}, held-out accuracy {plain_acc:.3f} "
          f"({plain_s:.1f} s)")
    print("2) the same model as a LightningModule, data as a LightningDataModule, loop by the Trainer")
    lit, test_acc, ckpt, metrics, lit_losses, lit_s = lightning_fit(cfg, device, folder)
    lit_acc = accuracy(lit.net.to(device), test, device)
    diff = max_weight_diff(lit.net, plain)
    print(f"  loss {lit_losses[0]:.3f} -> {lit_losses[-1]:.3f}, held-out accuracy {lit_acc:.3f} ({lit_s:.1f} s); "
          f"plain loop {plain_acc:.3f}: gap {abs(lit_acc - plain_acc):.3f}, largest weight difference {diff:.1e}")
    print("3) the checkpoint ModelCheckpoint wrote, loaded back with load_from_checkpoint")
    reloaded = reload_accuracy(ckpt, test, device)
    print(f"  {ckpt}: held-out accuracy {reloaded:.3f}; per-epoch metrics in {metrics}")
    return Result(device=str(device), accelerator=accelerator, epochs=cfg.epochs, train_size=len(train[0]),
                  test_size=len(test[0]), plain_accuracy=plain_acc, lightning_accuracy=lit_acc,
                  lightning_test_acc=test_acc, accuracy_gap=abs(lit_acc - plain_acc), max_weight_diff=diff,
                  plain_losses=plain_losses, lightning_losses=lit_losses, checkpoint=ckpt,
                  reloaded_accuracy=reloaded, plain_seconds=plain_s, lightning_seconds=lit_s,
                  same_weights=diff < WEIGHT_TOL, test_logged_right=abs(test_acc - lit_acc) <= 1e-6,
                  reloads=abs(reloaded - lit_acc) <= 1e-6,
                  learned=lit_acc >= ACCURACY_FLOOR if cfg.stock(*cfg.TRAINING) else None)


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
