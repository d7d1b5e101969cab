# %% [markdown]
# # The bench: the tour's speed claims, measured side by side on this machine
# Each stop that makes a speed claim offers `bench_rows(settings)`: its baseline and its variant timed in the
# same process, the ratio, and whether the two agree (parity). `tour bench` collects them into one table plus
# this machine's fp32 matmul roof. Here we run a couple of sections; `tour bench` runs them all.
# `TOUR_QUICK=1` for small sizes, `TOUR_OUT` for the folder bench.json and bench.md go to.

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

import torch

from tour.core import timing
from tour.core import roofs
from tour.tools import bench

# quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
cfg = startup.example_config(bench.Config, only=["roof", "attention"])
device = startup.example_device(cfg, seed=False)
print("sections:", bench.sections(cfg), "| all of them:", list(bench.SECTIONS))

# %% [markdown]
# ## 1) The roof
# An n x n matmul does 2n^3 floating-point operations; its median time gives about the best dense maths this
# device does. Bigger matrices get closer to it: small ones are dominated by overhead. The core measures the peak
# over a few sizes once per process (tour.core.roofs), and every "% of the roof" in the tour is held to it.

# %%
for n in (256, 1024):
    ms = timing.median_ms(roofs.matmul_call(torch.float32, n, device), device, 3, warmup=2)
    print(f"{n:>5} x {n}: {roofs.rate(n, ms):8.1f} GFLOP/s")
print("\n".join(roofs.describe(roofs.measure(device, quick=cfg.quick))))

# %% [markdown]
# ## 2) The sections, as `tour bench` runs them
# A section whose optional library is missing is skipped with the reason; the others still run and the JSON is
# still written. Ratios are baseline ms / variant ms: above 1 the variant is faster. Compare ratios from one run,
# not times across runs: a shared machine is noisy.

# %%
result = bench.run(cfg)
print(bench.table(result))
print(f"\nbench: {len(result.rows)} rows, roof {result.roof_gflops:.1f} GFLOP/s; saved {result.json_path}")
