"""The compile stop's models: one built to show fusion, and the tour's own vision and text models.

Each comes as a `Spec` (model, example inputs, whether to time a training step too). A stop that is not
installed falls back to the basics stop's digits MLP, and the label says which model ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tour.compile.config import Config
from tour.core.errors import TourError



# the models ---------------------------------------------------------------------------------------------------
@dataclass
class Spec:
    label: str
    model: Any
    inputs: tuple
    train: bool  # time a training step too
    atol: float = 1e-4  # fp32: Inductor reorders sums (LayerNorm, matmul tiles), so bits differ a little


class FusionBlock(nn.Module):
    """Elementwise-heavy on purpose: per layer LayerNorm, GELU, scale/shift, tanh, residual. Eager runs every op as
    its own pass over memory; Inductor fuses each layer into one or two loops."""

    def __init__(self, depth: int = 4, width: int = 512):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.scale = nn.Parameter(torch.ones(depth, width))
        self.shift = nn.Parameter(torch.zeros(depth, width))

    def forward(self, x):
        for i, norm in enumerate(self.norms):
            h = nn.functional.gelu(norm(x)) * self.scale[i] + self.shift[i]
            x = x + 0.5 * torch.tanh(h)
        return x


class Hidden(nn.Module):
    """An encoder's last hidden state as a plain tensor, so eager and compiled outputs compare directly."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, ids, mask):
        return self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state


def _mlp_fallback(why: str, device) -> Spec:
    import torch

    from tour.core.models import make_mlp

    print(f"  ({why}: using the basics stop's digits MLP instead)")
    return Spec("digits MLP (fallback)", make_mlp(128).to(device), (torch.randn(64, 64, device=device),), True)


def vision_spec(cfg: Config, device) -> Spec:
    import torch

    from tour.core.models import SmallCNN, load_efficientnet_lite0

    if cfg.quick:
        return Spec("MNIST SmallCNN (untrained)", SmallCNN().to(device), (torch.randn(64, 1, 28, 28, device=device),),
                    True)
    try:
        model = load_efficientnet_lite0(device)
    except (TourError, ImportError) as e:  # torchvision or the weights package is missing: say so, keep going
        return _mlp_fallback(f"EfficientNet-Lite0 unavailable: {e}", device)
    # Inference only: its training step took 132 s to compile cold on 2 CPU cores (51 s even with the cache warm),
    # a third of the whole tour's time, and taught nothing the fusion block's training step (and quick mode's CNN)
    # does not show: that compiling covers the backward pass, and what it gains or loses there.
    return Spec("EfficientNet-Lite0 (pretrained)", model, (torch.randn(cfg.batch_size, 3, 224, 224, device=device),),
                False)


SENTENCES = ["torch.compile turns Python into fused kernels.", "The cat sat on the mat.",
             "Graph breaks fall back to eager Python.", "How fast is this machine?"]


def encoder_spec(cfg: Config, device) -> Spec:
    from tour.core.models import load_encoder

    try:
        tokenizer, encoder = load_encoder(device=device)
    except (TourError, ImportError) as e:  # transformers or the model package is missing
        return _mlp_fallback(f"MiniLM unavailable: {e}", device)

    texts = (SENTENCES * cfg.batch_size)[:cfg.batch_size]
    enc = tokenizer(texts, padding="max_length", max_length=128, truncation=True, return_tensors="pt").to(device)
    return Spec("MiniLM-L6 encoder (pretrained)", Hidden(encoder).eval(), (enc["input_ids"], enc["attention_mask"]), False)


def specs(cfg: Config, device) -> list[Spec]:
    import torch

    out = []
    for name in cfg.models:  # names checked by Config (choices=tour.compile.config.MODELS)
        if name == "fusion":
            x = torch.randn(2048 if cfg.quick else 8192, 512, device=device)  # 4 / 16 MB: memory-bound
            out.append(Spec("fusion block (4 x LayerNorm/GELU/tanh/residual)", FusionBlock().to(device), (x,),
                            not cfg.quick))
        else:
            out.append(vision_spec(cfg, device) if name == "vision" else encoder_spec(cfg, device))
    return out
