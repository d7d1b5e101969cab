# %% [markdown]
# # Attention, measured: the textbook formula vs `scaled_dot_product_attention`
# `softmax(Q K^T / sqrt(d)) V` written out builds an L x L score matrix per head. `F.scaled_dot_product_attention`
# (SDPA) computes the same thing in tiles (the Flash idea), so memory grows with L, not L^2. We check they agree,
# time them, see which SDPA kernels this machine has, and flip the same switch inside a transformers model.
# `TOUR_QUICK=1` for short sequences.

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

import torch
import torch.nn.functional as F

from tour import attention
from tour.core import dtypes

cfg = startup.example_config(attention.Config)  # quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
device = startup.example_device(cfg)  # accelerator if there is one, else the CPU (TOUR_DEVICE overrides); seeded
dtype = dtypes.get_dtype(device)  # bf16 on accelerators (what the Flash kernels want), fp32 on the CPU
print("dtype", dtype)

# %% [markdown]
# ## 1) Same answer
# One batch of queries, keys and values, shaped (batch, heads, length, head_dim).

# %%
q, k, v = attention.qkv(cfg, 256, device, dtype)
naive = attention.naive_attention(q, k, v)
fused = F.scaled_dot_product_attention(q, k, v)
print(f"output {tuple(fused.shape)}, max |naive - SDPA| = {(naive - fused).abs().max().item():.1e}")
print(f"the naive version materialised {q.shape[1]} score matrices of {q.shape[2]} x {q.shape[2]}")

# %% [markdown]
# ## 2) Time and peak memory across lengths
# Each row times both (one warm-up, then the median) and records the peak memory of one call. On the CPU the
# profiler's allocation record gives the peak; on a GPU the allocator's counters do.

# %%
lengths = attention.lengths_part(cfg, device, dtype)  # compare_length at each length, printed as a table

# %% [markdown]
# ## 3) A causal mask, and the kernels behind SDPA
# `is_causal=True` must match a triangular mask on the naive side. Then each SDPA backend is forced in turn with
# `sdpa_kernel`: the ones this device or build cannot run say why.

# %%
causal = attention.causal_part(cfg, cfg.seq_lens[0], device, dtype)
backends = attention.backends_part(cfg, cfg.seq_lens[0], device, dtype)

# %% [markdown]
# ## 4) The same switch inside transformers
# MiniLM loaded twice from the same weights, with `attn_implementation="eager"` and `"sdpa"`.

# %%
import transformers  # noqa: E402

transformers.logging.disable_progress_bar()  # no "Loading weights" bar for each of the two loads
minilm = attention.minilm_switch(cfg, device)

# %% [markdown]
# The numbers above are what `attention.run(cfg)` collects into its `Result` (a table in a notebook).

# %%
result = attention.Result(device=str(device), dtype=str(dtype).removeprefix("torch."),
                          shape=[cfg.batch_size, cfg.heads, cfg.head_dim], lengths=lengths, causal=causal,
                          backends=backends, minilm=minilm)
print(f"attention: {len(lengths.rows)} lengths, all allclose: {lengths.allclose}; failed checks: "
      f"{result.failed_checks() or 'none'}")
result
