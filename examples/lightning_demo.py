# %% [markdown]
# # PyTorch Lightning: the same model, with the loop handed to a Trainer
# The basics stop trains a digits MLP with a hand-written loop. Here the same network becomes a `LightningModule`
# (the model and what to do with one batch) and the data a `LightningDataModule`; a `Trainer` runs the loop, logs,
# checkpoints. With the same seed, data order and optimiser, both must end with the same weights.
# (This file is `lightning_demo.py`: a script named lightning.py would shadow the library.) `TOUR_QUICK=1` for short.

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

import inspect

from tour import lightning as stop
from tour.core.config import out_dir
from tour.core.data import digits_split
from tour.core.models import accuracy

cfg = startup.example_config(stop.Config)  # quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
device = startup.example_device(cfg, seed=False)  # each loop below sets the seed itself
train, test = digits_split(cfg.test_fraction, cfg.seed)
print(f"Trainer(accelerator={stop.accelerator_for(device)!r}), {cfg.epochs} epochs")

# %% [markdown]
# ## 1) The plain loop
# `tour.core.models.train_mlp`: batches, forward, loss, backward, step, written out.

# %%
plain, plain_losses, plain_acc, plain_s = stop.plain_loop(cfg, device, train, test)
print(f"plain loop: loss {plain_losses[0]:.3f} -> {plain_losses[-1]:.3f}, accuracy {plain_acc:.3f} ({plain_s:.1f} s)")

# %% [markdown]
# ## 2) The LightningModule
# `training_step` returns the loss; Lightning calls `zero_grad`, `backward` and `step` with it.
# `save_hyperparameters()` stores `hidden` and `lr` in every checkpoint.

# %%
from tour.lightning.modules import LitDigits  # noqa: E402  (imports lightning: kept out of the stop's import)

print(inspect.getsource(LitDigits.training_step))

# %% [markdown]
# ## 3) Fit with a Trainer, and compare
# `deterministic=True`, a CSV logger and a `ModelCheckpoint` callback; the stop restores the process-wide
# determinism flag afterwards.

# %%
lit, test_acc, ckpt, metrics, lit_losses, lit_s = stop.lightning_fit(cfg, device, out_dir(cfg, stop.NAME))
lit_acc = accuracy(lit.net.to(device), test, device)
print(f"Lightning: loss {lit_losses[0]:.3f} -> {lit_losses[-1]:.3f}, accuracy {lit_acc:.3f} ({lit_s:.1f} s)")
print(f"largest weight difference from the plain loop: {stop.max_weight_diff(lit.net, plain):.1e}")

# %% [markdown]
# ## 4) Back from the checkpoint
# `LitDigits.load_from_checkpoint` rebuilds the module from the hyper-parameters in the file, then loads weights.

# %%
print(f"lightning: {ckpt} reloads with held-out accuracy {stop.reload_accuracy(ckpt, test, device):.3f} "
      f"(plain loop {plain_acc:.3f})")
