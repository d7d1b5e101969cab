# %% [markdown]
# # The building blocks
# Tensors, autograd, an `nn.Module` trained on real handwritten digits, and a graph that Python builds as it runs.
# Each cell calls one function of `tour/basics.py`, so you can read the code next to what it prints.
# Runs as a script too: `python examples/basics.py` (`TOUR_QUICK=1` for a short run, `TOUR_OUT` for the folder).

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

from tour import basics
from tour.core.data import digits_split
from tour.core.models import accuracy, train_mlp

cfg = startup.example_config(basics.Config)  # TOUR_QUICK=1: fewer epochs, the numbers stay real; $TOUR_OUT
device = startup.example_device(cfg)  # accelerator if there is one, else the CPU (TOUR_DEVICE overrides); seeded

# %% [markdown]
# ## 1) Tensors
# Broadcasting stretches a column and a row into a table without copying either; `torch.from_numpy` shares memory
# with the array, so a write through NumPy shows up in the tensor.

# %%
shape, shared = basics.tensors(device)

# %% [markdown]
# ## 2) Autograd
# `backward()` replays the recorded operations in reverse. We compare it with the derivative written by hand, then
# let `gradcheck` test a custom `autograd.Function` (softplus with a hand-written backward) by finite differences.

# %%
print(f"autograd vs 3x^2 + cos x: max error {basics.analytic_grad_error():.1e}")
print(f"gradcheck on SoftPlus: {basics.custom_function_gradcheck()}")

# %% [markdown]
# ## 3) An MLP on real digits
# scikit-learn's 1,797 8x8 digits, split with every class in the test set. `train_mlp` is the plain loop
# (forward, loss, backward, step) that the Lightning and DDP stops reproduce exactly.

# %%
train, test = digits_split(cfg.test_fraction, cfg.seed)
print(f"train {tuple(train[0].shape)}, test {tuple(test[0].shape)}, labels {sorted(set(train[1].tolist()))}")
model, losses = train_mlp(cfg, device, train, cfg.epochs)
acc = accuracy(model, test, device)
print(model)
print(f"{cfg.epochs} epochs: loss {losses[0]:.3f} -> {losses[-1]:.3f}; held-out accuracy {acc:.3f}")

# %% [markdown]
# ## 4) Dynamic graphs
# `Halving` loops until its input is small (the data decides how often), then picks one of two heads by a sign.
# Autograd follows whatever Python ran: only the head that ran gets gradients.

# %%
steps, grads = basics.dynamic_graph(device)

# %% [markdown]
# ## The whole stop in one call
# `basics.run(cfg)` runs all four sections and returns a `Result`. In a notebook the cell below shows it as a table
# with the training curve inline; as a script it prints the summary.

# %%
result = basics.run(cfg)
print(f"basics: held-out accuracy {result.test_accuracy:.3f}, gradcheck {result.gradcheck_passed}")
result
