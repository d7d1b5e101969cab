"""The tour's cache of converted assets: each built once into the user's cache folder, atomically.

A conversion (SmolLM2's GGUF file to safetensors, Whisper from CTranslate2, a random-weight stand-in) writes into a
temporary folder that is renamed into place, so a crash or two runs at once never leave a half-written folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

from tour.core.errors import TourError

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
