"""The building blocks: tensors, autograd, nn.Module trained on real digits, dynamic graphs.

Each section prints what it shows and returns the numbers the tests check.
Run: `tour run basics` (or `python -m tour.basics`, `python examples/basics.py`); `--quick` for a short run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from tour.core.cli import stop_main
from tour.core.config import DigitsConfig, out_dir
from tour.core.results import BaseResult, check, labelled
from tour.core.state import keeps_caller_state

NAME = "basics"
GRAD_TOL = 1e-12  # autograd vs the hand-written derivative, float64: both are exact to rounding
# Held-out accuracy of the digits MLP at the quick (15) or full (40) epochs: seeds 0-5 gave 0.956-0.986 on CPU,
# so a floor a little lower holds for any seed and device and still fails a model that did not learn (~0.1).
ACCURACY_FLOOR = 0.93


@dataclass
class Config(DigitsConfig):
    """The digits MLP's settings (epochs, batch_size, lr, hidden, test_fraction), shared with the Lightning stop
    so both loops train the same model the same way."""


@dataclass
class Result(BaseResult):
    device: str
    broadcast_shape: list[int] = labelled("(3,1) + (4,) broadcasts to")  # (3,1) + (4,) -> (3,4)
    numpy_shares_memory: bool = check("torch.from_numpy shares memory: a write through NumPy is seen by the tensor")
    grad_max_error: float = labelled("autograd vs calculus, max error")
    gradcheck_passed: bool = check("a custom autograd.Function's backward passes torch.autograd.gradcheck (float64)")
    train_size: int = labelled("training digits")
    test_size: int = labelled("held-out digits")
    losses: list[float] = labelled("training loss per epoch", default_factory=list)  # mean training loss per epoch
    test_accuracy: float = labelled("held-out accuracy", "%", 0.0)
    train_seconds: float = labelled("training time", "s", 0.0)
    # steps the data-dependent loop took per input
    dynamic_steps: list[int] = labelled("loop steps per input (data-dependent)", default_factory=list)
    dynamic_grads: dict[str, bool] = field(default_factory=dict)  # which branch got gradients
    loss_plot: str = labelled("training loss per epoch (log scale)", "", "")  # PNG of the training curve
    grad_matches: bool | None = check(f"autograd's derivative of x^3 + sin x equals 3x^2 + cos x (float64, max error "
                                      f"< {GRAD_TOL:g})", None)
    learned: bool | None = check(f"the MLP learned the real digits: held-out accuracy >= {ACCURACY_FLOOR} (not run "
                                 "with training settings of your own)", None)
    dynamic_follows_path: bool | None = check("the data-dependent loop ran more steps for bigger inputs, and "
                                              "backward reached only the branch that ran", None)


# 1) tensors ---------------------------------------------------------------------------------------------------
def tensors(device) -> tuple[list[int], bool]:
    import numpy as np

    a = torch.arange(3.0).reshape(3, 1)  # a column
    b = torch.tensor([10.0, 20.0, 30.0, 40.0])  # a row
    c = a + b  # broadcasting stretches both to (3, 4) without copying either
    print(f"  arange/tensor dtypes: {a.dtype}, ints default to {torch.tensor([1]).dtype}; "
          f"(3,1) + (4,) broadcasts to {tuple(c.shape)}")
    arr = np.zeros(4, dtype=np.float32)
    t = torch.from_numpy(arr)  # same memory, no copy
    arr[0] = 42.0
    shared = bool(t[0].item() == 42.0)
    print(f"  torch.from_numpy shares memory: wrote 42 through NumPy, tensor sees {t[0].item():g}")
    moved = c.to(device)
    print(f"  .to({device}) -> tensor on {moved.device}, sum {moved.sum().item():g}")
    return list(c.shape), shared


# 2) autograd --------------------------------------------------------------------------------------------------
def analytic_grad_error() -> float:
    """d/dx (x^3 + sin x) recorded on the tape vs 3x^2 + cos x written by hand."""
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, requires_grad=True)
    (x**3 + torch.sin(x)).sum().backward()  # the tape records each op, backward() replays it in reverse
    expected = 3 * x.detach() ** 2 + torch.cos(x.detach())
    return (x.grad - expected).abs().max().item()


class SoftPlus(torch.autograd.Function):
    """log(1 + e^x) with a hand-written backward: gradcheck proves the two agree."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.nn.functional.softplus(x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out * torch.sigmoid(x)


def custom_function_gradcheck() -> bool:
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)  # float64: finite differences need precision
    return bool(torch.autograd.gradcheck(SoftPlus.apply, (x,)))


# 3) nn.Module on real data: tour.core.models.make_mlp / train_mlp (the plain loop the Lightning and DDP stops
#    match exactly) and tour.core.data.digits_split ------------------------------------------------------------------
def plot_losses(losses: list[float], acc: float, path) -> str:
    from tour.core import plots

    fig = plots.figure(5, 3.2)
    ax = fig.subplots()
    ax.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3)
    ax.set(xlabel="epoch", ylabel="training loss", yscale="log",
           title=f"digits MLP: held-out accuracy {acc:.3f}")
    ax.grid(alpha=0.3)
    return plots.save(fig, path)


# 4) dynamic graphs --------------------------------------------------------------------------------------------
class Halving(nn.Module):
    """Applies `shrink` until the input's norm drops below 1 (data decides how many times), then picks a branch by
    the sign of the sum. The graph is whatever Python ran: autograd follows exactly that path."""

    def __init__(self):
        super().__init__()
        self.shrink = nn.Linear(4, 4)
        self.pos = nn.Linear(4, 1)
        self.neg = nn.Linear(4, 1)
        with torch.no_grad():  # a contraction, so the loop always ends
            self.shrink.weight.copy_(0.5 * torch.eye(4))
            self.shrink.bias.zero_()

    def forward(self, x):
        steps = 0
        while x.norm() >= 1 and steps < 50:
            x = self.shrink(x)
            steps += 1
        head = self.pos if x.sum() > 0 else self.neg
        return head(x), steps


def dynamic_graph(device) -> tuple[list[int], dict[str, bool]]:
    model = Halving().to(device)
    steps_taken = []
    for scale in (0.1, 5.0, 100.0):  # bigger inputs need more halvings
        out, steps = model(torch.full((4,), scale, device=device))
        steps_taken.append(steps)
    model.zero_grad(set_to_none=True)
    out, steps = model(torch.full((4,), 3.0, device=device))  # positive input: only `pos` runs
    out.sum().backward()
    grads = {name: getattr(model, name).weight.grad is not None for name in ("shrink", "pos", "neg")}
    print(f"  inputs of size 0.1, 5, 100 took {steps_taken} loop steps; after backward on a positive input "
          f"gradients reached: {[k for k, v in grads.items() if v]} (not {[k for k, v in grads.items() if not v]})")
    return steps_taken, grads


def follows_path(steps: list[int], grads: dict[str, bool]) -> bool:
    """Bigger inputs took strictly more loop steps, and only the branch that ran (pos) got gradients."""
    increasing = all(a < b for a, b in zip(steps, steps[1:]))
    return increasing and grads == {"shrink": True, "pos": True, "neg": False}


@keeps_caller_state
def run(cfg: Config) -> Result:
    from tour.core import device as dev
    from tour.core import timing
    from tour.core.data import digits_split
    from tour.core.models import accuracy, train_mlp

    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    print(f"[basics] {dev.describe(cfg.device)}")
    print("1) tensors")
    shape, shared = tensors(device)
    print("2) autograd")
    err = analytic_grad_error()
    passed = custom_function_gradcheck()
    print(f"  d/dx(x^3 + sin x): autograd vs 3x^2 + cos x, max error {err:.1e}; "
          f"gradcheck on a custom SoftPlus Function: {'passed' if passed else 'FAILED'}")
    print("3) nn.Module: an MLP on scikit-learn's real 8x8 digits")
    train, test = digits_split(cfg.test_fraction, cfg.seed)
    timing.warm_up(device)  # the first cuBLAS call's set-up is not training time
    start = time.perf_counter()
    model, losses = train_mlp(cfg, device, train, cfg.epochs)
    timing.synchronize(device)
    seconds = time.perf_counter() - start
    acc = accuracy(model, test, device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"  {n_params:,} parameters, {cfg.epochs} epochs on {len(train[0])} digits in {seconds:.1f} s: "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, held-out accuracy {acc:.3f} on {len(test[0])} digits")
    plot = plot_losses(losses, acc, out_dir(cfg, NAME) / "digits_loss.png")
    print("4) dynamic graphs: Python control flow decided by the data")
    steps, grads = dynamic_graph(device)
    return Result(device=str(device), broadcast_shape=shape, numpy_shares_memory=shared, grad_max_error=err,
                  gradcheck_passed=passed, train_size=len(train[0]), test_size=len(test[0]), losses=losses,
                  test_accuracy=acc, train_seconds=seconds, dynamic_steps=steps, dynamic_grads=grads, loss_plot=plot,
                  grad_matches=err < GRAD_TOL, learned=acc >= ACCURACY_FLOOR if cfg.stock(*cfg.TRAINING) else None,
                  dynamic_follows_path=follows_path(steps, grads))


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
