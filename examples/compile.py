# %% [markdown]
# # torch.compile: what it costs, what it buys, where it stops
# `torch.compile` traces a model's Python into graphs (Dynamo) and writes fused kernels for them (Inductor: C++ on the
# CPU, Triton on GPUs). We time eager vs compiled on a block built to benefit, check the outputs match, then look at
# a graph break and at recompiles when the batch size changes. `TOUR_QUICK=1` for a short run.

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

from tour import compile as compile_stop  # `compile` alone would hide Python's builtin
from tour.compile.models import specs
from tour.core.inductor import compile_problem, inductor_cache

# quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
cfg = startup.example_config(compile_stop.Config, models=["fusion"])
device = startup.example_device(cfg)  # accelerator if there is one, else the CPU (TOUR_DEVICE overrides); seeded
problem = compile_problem(device)  # None, or why Inductor cannot build code here (e.g. no C++ compiler)
print("Inductor can build here:", problem or "yes")

# %% [markdown]
# ## 1) Eager vs compiled on one model
# `FusionBlock` is LayerNorm, GELU, scale/shift, tanh and a residual, four times: eager makes one pass over memory
# per op, Inductor fuses each layer into a loop or two. `eager_vs_compiled` measures the first call (trace + codegen
# + build), a warm recompile from the on-disk cache, the steady-state medians, and `allclose` between the two outputs.

# %%
spec = specs(cfg, device)[0]
print(spec.label, "| input", tuple(spec.inputs[0].shape))
with inductor_cache() as cache:  # compiled kernels are kept here, so a second run skips the C++ build
    if problem:
        comparisons = compile_stop.comparisons(cfg, device, problem)  # times the eager side only, says why
    else:
        comparisons = [compile_stop.eager_vs_compiled(spec, "inference", device, cfg.repeats)]
        compile_stop.show(comparisons[0])

# %% [markdown]
# ## 2) A graph break
# `.item()` turns a tensor into a Python float, which a graph cannot hold: Dynamo compiles the code before and after
# it as two graphs and runs the `.item()` in Python. `torch._dynamo.explain` says where and why.

# %%
import inspect

print(inspect.getsource(compile_stop.rescale))
result = compile_stop.Result(str(device), problem, str(cache), comparisons)
if not problem:
    result.graph_count, result.graph_breaks, result.break_reasons = compile_stop.graph_breaks()

# %% [markdown]
# ## 3) Dynamic shapes
# A compiled MLP sees batches of 8, 16, 24 and 32. With `dynamic=False` each new size recompiles; by default the
# second size makes Dynamo mark the batch dimension symbolic; `dynamic=True` starts symbolic.

# %%
if not problem:
    result.compiles, result.dynamic_shape = compile_stop.dynamic_shapes()
print(f"compile: speedup {comparisons[0].speedup or 0:.2f}x, parity {comparisons[0].parity}")
result
