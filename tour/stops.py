"""The tour's stops, in order, with one-line descriptions. Plain data: `tour list` must not import torch."""

from __future__ import annotations

# name -> (module, what it shows). The order is the tour's order (`tour run all`).
STOPS: dict[str, tuple[str, str]] = {
    "basics": ("tour.basics", "tensors, autograd, nn.Module on real digits, dynamic graphs"),
    "nlp": ("tour.nlp", "transformers + datasets: fine-tune MiniLM on a real corpus, reload, semantic search"),
    "vision": ("tour.vision", "torchvision: pretrained EfficientNet on real photos, a CNN trained on real MNIST"),
    "audio": ("tour.audio", "torchaudio transforms on real speech, Silero VAD finds the speech"),
    "compile": ("tour.compile", "torch.compile vs eager on the tour's models: speed, parity, graph breaks"),
    "attention": ("tour.attention", "naive attention vs scaled_dot_product_attention (Flash): time, memory"),
    "export": ("tour.export", "torch.export + AOTInductor: a .pt2 package run in a fresh process"),
    "distributed": ("tour.distributed", "DDP and tensor parallel under torchrun, checkpoint and resume"),
    "lightning": ("tour.lightning", "the same model as a LightningModule with a Trainer"),
    "pyro": ("tour.pyro", "Bayesian inference with Pyro checked against the closed-form posterior"),
}


def module_for(name: str) -> str:
    return STOPS[name][0]
