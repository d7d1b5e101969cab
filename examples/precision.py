# %% [markdown]
# # Precision: bf16, fp16 and int8 against this machine's roofs, each checked against fp32
# Most CPUs and GPUs people run the tour on do far more work per second in bf16 (or int8) than in fp32: AMX and
# AVX512-BF16 on recent Intel CPUs, tensor cores on NVIDIA GPUs. We measure those roofs here, then run the tour's
# own models in lower precision *side by side* with fp32 on the same inputs, and keep a variant only where it keeps
# the model's check: embeddings and accuracy for MiniLM, top-1 for the vision models, greedy replies for SmolLM2.
# `TOUR_QUICK=1` for a short run.

# %%
# Start-up first, before torch starts (the `tour` command does this itself; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

import torch

from tour import precision
from tour.core import device as dev
from tour.core import dtypes
from tour.precision import decode, encoder, fusion, roofs, variants

cfg = startup.example_config(precision.Config)  # quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
device = startup.example_device(cfg)  # chosen, seeded, described
print("fast paths here:", ", ".join(dtypes.fast_paths(device)) or "none")
print("the device helper would run inference in", dtypes.inference_dtype(device))

# %% [markdown]
# ## 1) Roofs: what each dtype can do here
# An n x n matmul is about the best dense maths a device does; its rate in each dtype is that dtype's roof. The
# memory bandwidth (a large copy) is the other roof: decoding a language model reads every weight once per token,
# so bytes per weight, not FLOPs, set its speed.

# %%
low, why_not = roofs.low_dtype(cfg, device)  # None (with a one-line reason) where there is no fast path
found_roofs = roofs.measure(cfg, device, low)  # each part returns its own record: here Roofs

# %% [markdown]
# ## 2) MiniLM in lower precision, next to fp32
# Three ways to run the same encoder: fp32, `torch.autocast` (matmuls in bf16, sums and norms kept in fp32), and
# the weights themselves cast to bf16. Each must give embeddings within bf16's rounding of fp32's (cosine ≥ 1 − ε),
# and a logistic head fitted on fp32 embeddings of the nlp stop's corpus must score within one point. In full mode
# a fourth way compiles the bf16 copy with Inductor's freezing (the weights become constants: prepacked AMX kernels
# with GELU and adds fused in); its compile takes ~30 s cold, so quick mode lists it as skipped.

# %%
from tour.core.models import load_encoder

tokenizer, minilm = load_encoder(device=device)
found_encoder = encoder.measure(cfg, device, low, tokenizer, minilm)  # its roofs timed beside it
print("held-out accuracy per way:", found_encoder.accuracy)

# %% [markdown]
# ## 3) Decoding SmolLM2 in bf16 and int8 weights, one prompt and 16 at once
# Each decode step reads every weight once. Half the bytes (bf16) or a quarter (int8 weight-only, via torchao)
# raise the bandwidth limit two- or fourfold; whether the kernels reach it is what we measure. At batch 1 each step
# is a matrix-vector product, where bf16 is no faster than fp32 on a CPU; a batch of 16 makes it a small matmul,
# where bf16's matrix units pay (the "fp32 batch 16" way separates the batching gain from the dtype's). In full
# mode, int8 weights on a bf16 copy with a static cache and generate's own compile run on Inductor's int8 kernel.
# A batched way's replies are checked on the very batch that is timed (bf16's rounding depends on it). The replies must
# stay the same as fp32's, and the perplexity on held-out corpus text within 3%. The copy bandwidth that sets each
# limit is timed in the same rounds as the decodes, so a neighbour's load hits both alike. Each way is one entry
# of `decode.WAYS`: how to build its model from the fp32 one, and how to generate with it.

# %%
print("decode ways:", list(decode.WAYS))
found_decode = decode.measure(cfg, device, low)
print("bandwidth limit, tokens/s:", {k: round(v) for k, v in found_decode.limits.items()})

# %% [markdown]
# ## 4) Why compile's fusion gains little or much here
# Fusing saves passes over memory. While a tensor fits in a cache, eager's extra passes are cheap; once it spills
# to DRAM each pass costs bandwidth. The sweep below times the same elementwise block at growing sizes.

# %%
caches = dev.cache_sizes()
print({k: fusion.size_text(v) for k, v in caches.items()})
found_fusion = fusion.measure(cfg, device)

# %% [markdown]
# ## 5) What to use: the fastest variant that keeps its check
# Per model, the fastest way that kept its check, and how much faster than fp32 eager it is.

# %%
parts = precision.Parts(found_roofs, found_encoder, precision.Training(), precision.Vision(), found_decode,
                        found_fusion)  # the parts not run here stand as their records' defaults
result = precision.result_of(device, list(dtypes.fast_paths(device)), low, why_not, parts, {})
print(precision.table(result.best))
print("failed checks:", result.failed_checks() or "none", "| bf16 eps:", variants.tolerance(torch.bfloat16))
result
