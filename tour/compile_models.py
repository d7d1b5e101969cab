"""The compile stop's models: one built to show fusion, and the tour's own vision and text models.

Each comes as a `Spec` (model, example inputs, whether to time a training step too). A stop that is not
installed falls back to the basics stop's digits MLP, and the label says which model ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tour.core.errors import TourError, optional_import

MODELS = ("fusion", "vision", "encoder")


# the models ---------------------------------------------------------------------------------------------------
@dataclass
class Spec:
    label: str
    model: Any
    inputs: tuple
    train: bool  # time a training step too
    atol: float = 1e-4  # fp32: Inductor reorders sums (LayerNorm, matmul tiles), so bits differ a little


def fusion_block(depth: int = 4, width: int = 512):
    """Elementwise-heavy on purpose: per layer LayerNorm, GELU, scale/shift, tanh, residual. Eager runs every op as
    its own pass over memory; Inductor fuses each layer into one or two loops."""
    import torch
    from torch import nn

    class FusionBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
            self.scale = nn.Parameter(torch.ones(depth, width))
            self.shift = nn.Parameter(torch.zeros(depth, width))

        def forward(self, x):
            for i, norm in enumerate(self.norms):
                h = nn.functional.gelu(norm(x)) * self.scale[i] + self.shift[i]
                x = x + 0.5 * torch.tanh(h)
            return x

    return FusionBlock()


def _optional(module: str, attr: str):
    """A public function or class of another stop, or None where its libraries are not installed."""
    return getattr(optional_import(module), attr, None)


def _mlp_fallback(why: str, device) -> Spec:
    import torch

    from tour.core.models import make_mlp

    print(f"  ({why}: using the basics stop's digits MLP instead)")
    return Spec("digits MLP (fallback)", make_mlp(128).to(device), (torch.randn(64, 64, device=device),), True)


def vision_spec(cfg, device) -> Spec:
    import torch

    if cfg.quick:
        cnn = _optional("tour.core.models", "SmallCNN")
        if cnn is None:
            return _mlp_fallback("the vision stop is not installed", device)
        return Spec("MNIST SmallCNN (untrained)", cnn().to(device), (torch.randn(64, 1, 28, 28, device=device),), True)
    load = _optional("tour.core.models", "load_efficientnet_lite0")
    try:
        model = load(device) if load else None
    except TourError as e:  # its weights package is missing: say so, keep going
        return _mlp_fallback(f"EfficientNet-Lite0 unavailable: {e}", device)
    if model is None:
        return _mlp_fallback("the vision stop is not installed", device)
    return Spec("EfficientNet-Lite0 (pretrained)", model, (torch.randn(cfg.batch, 3, 224, 224, device=device),), True)


SENTENCES = ["torch.compile turns Python into fused kernels.", "The cat sat on the mat.",
             "Graph breaks fall back to eager Python.", "How fast is this machine?"]


def encoder_spec(cfg, device) -> Spec:
    from torch import nn

    load = _optional("tour.core.models", "load_encoder")
    try:
        tokenizer, encoder = load(device=device) if load else (None, None)
    except TourError as e:  # transformers or the model package is missing
        return _mlp_fallback(f"MiniLM unavailable: {e}", device)
    if encoder is None:
        return _mlp_fallback("transformers is not installed", device)

    class Hidden(nn.Module):  # a plain tensor out, so eager and compiled outputs compare directly
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, ids, mask):
            return self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state

    texts = (SENTENCES * cfg.batch)[:cfg.batch]
    enc = tokenizer(texts, padding="max_length", max_length=128, truncation=True, return_tensors="pt").to(device)
    return Spec("MiniLM-L6 encoder (pretrained)", Hidden().eval(), (enc["input_ids"], enc["attention_mask"]), False)


def specs(cfg, device) -> list[Spec]:
    import torch

    out = []
    for name in cfg.models:  # names checked by Config (choices=MODELS)
        if name == "fusion":
            x = torch.randn(2048 if cfg.quick else 8192, 512, device=device)  # 4 / 16 MB: memory-bound
            out.append(Spec("fusion block (4 x LayerNorm/GELU/tanh/residual)", fusion_block().to(device), (x,),
                            not cfg.quick))
        else:
            out.append(vision_spec(cfg, device) if name == "vision" else encoder_spec(cfg, device))
    return out
