"""The doctor's asset probes: the tour's own offline models and data load and hold what they should (a tokenizer's
ids, a parameter count, a sha256, a file header). See probes_core.py for the contract.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tour.core.errors import TourError
from tour.tools.doctor.rows import NOT_INSTALLED, Skip, expect


# -- the tour's own offline assets --------------------------------------------------------------------------------
def minilm_probe():
    from safetensors import safe_open
    from transformers import AutoTokenizer

    from tour.core import assets

    folder = assets.minilm_dir()
    ids = AutoTokenizer.from_pretrained(folder)("hello world")["input_ids"]
    expect(ids == [101, 7592, 2088, 102], f"the tokenizer gave {ids}, expected [101, 7592, 2088, 102]")
    with safe_open(folder / "model.safetensors", framework="pt") as f:  # the header only: fast, no tensors read
        params = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    expect(20e6 < params < 25e6, f"model.safetensors holds {params / 1e6:.1f}M parameters, expected ~22.7M")
    return f"tokenizer encodes 'hello world' as [CLS] hello world [SEP]; weights {params / 1e6:.1f}M params"


def _numel(shape) -> int:
    return functools.reduce(lambda a, b: a * b, shape, 1)


def chatterbot_probe():
    from tour.core import chatterbot  # the reader the nlp and generate stops use

    topics = chatterbot.topics()
    expect(len(topics) >= 15, f"only {len(topics)} topic files in the English corpus (21 expected)")
    talks = chatterbot.conversations(topics[0])
    expect(bool(talks), f"{topics[0]}.yml has no conversations")
    return f"{len(topics)} topic files; {topics[0]}.yml parses to {len(talks)} conversations"


def efficientnet_probe():
    import torch

    from tour.core import assets

    state = torch.load(assets.efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    params = sum(v.numel() for v in state.values() if hasattr(v, "numel"))
    expect(4.5e6 < params < 4.8e6, f"the state dict holds {params / 1e6:.2f}M values, expected ~4.69M")
    return f"EfficientNet-Lite0 state dict loads (weights_only): {len(state)} tensors, {params / 1e6:.2f}M values"


def labels_probe():
    from tour.core import assets

    names = json.loads(assets.imagenet_labels_file().read_text(encoding="utf-8"))
    expect(len(names) == 1000, f"{len(names)} ImageNet class names, expected 1000")
    return f"1000 ImageNet class names ({names[0]!r} ... {names[-1]!r})" if isinstance(names, list) else \
        "1000 ImageNet class names"


def silero_probe():
    import torch

    from tour.core import assets

    # torch.jit.load, not `import silero_vad`: that import sets torch's threads to 1 for the whole process.
    model = torch.jit.load(str(assets.silero_vad_jit()), map_location="cpu")
    with torch.no_grad():
        prob = float(model(torch.zeros(512), 16000))
    expect(prob < 0.5, f"Silero VAD calls silence speech (p={prob:.2f})")
    return f"TorchScript model loads; 32 ms of silence scores speech p={prob:.3f}"


def speech_clip_probe():
    import soundfile as sf

    from tour.core import assets

    finder = getattr(assets, "speech_clip", None)
    if finder is None:
        raise Skip("this version of the tour ships no speech clip", NOT_INSTALLED)
    try:
        path = finder()
    except TourError as e:
        raise Skip(f"not shipped yet: {e}", NOT_INSTALLED) from None
    info = sf.info(path)
    expect(info.frames > 0, f"{path.name} is empty")
    return f"{path.name}: {info.duration:.2f} s at {info.samplerate} Hz"


def _converted_note(name: str, stop: str) -> str:
    """Whether a stop has built its converted copy in the tour's cache (the doctor looks, it does not build)."""
    from tour.core import assets

    folder = assets.cached(name)
    return f"converted copy cached at {folder}" if folder else f"converted on the first `tour run {stop}`"


def smollm2_probe():
    from tour.core import assets
    from tour.core.asset_headers import read_gguf_header

    path = assets.smollm2_gguf()
    version, tensors, keys = read_gguf_header(path)
    arch = keys.get("general.architecture", "?")
    expect(arch == "llama" and tensors == 272, f"{path.name}: architecture {arch!r} with {tensors} tensors, "
                                              "expected 'llama' with 272")
    note = _converted_note(assets.SMOLLM2_CACHE, "generate")
    return f"{path.name}: GGUF v{version}, {arch}, {tensors} tensors; {note}"


def mobilenet_weights_probe():
    import torch.hub
    from torchvision.models import MobileNet_V2_Weights

    from tour.core import assets

    name = MobileNet_V2_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    prefix = torch.hub.HASH_REGEX.search(name).group(1)  # what torch.hub's check_hash would compare
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    path = cached if cached.exists() else assets.mobilenet_v2_weights()  # the doctor looks, it does not write
    expect(assets.sha256_hex(path).startswith(prefix), f"{path} fails its sha256 check (want {prefix}...)")
    where = f"in torch's cache at {cached}" if path == cached else "packaged; staged on first `tour run vision`"
    return f"{name}: sha256 starts {prefix}, {where}"


def whisper_probe():
    from tour.core import assets
    from tour.core.asset_headers import read_ctranslate2_header

    path = assets.whisper_tiny_en_dir() / "model.bin"
    head = read_ctranslate2_header(path)  # the speech stop's converter reads the same header
    expect(head.spec == "WhisperSpec", f"{path.name}: a CTranslate2 {head.spec}, want a WhisperSpec")
    return (f"{path.name}: CTranslate2 v{head.version} {head.spec}, {head.variables} variables; "
            f"{_converted_note(assets.WHISPER_CACHE, 'speech')}")
