"""Writing the tour's outputs and caches: whole files or nothing, and a full disk is one line, not a traceback.

`writing(path)` hands out a temporary name beside `path` and renames it into place only once the write finished,
so a write that fails (a full disk, a kill) never leaves a file that looks complete. Every `OSError` of a write
(no space, read-only, no permission, not a folder) becomes a `WriteError`: one line naming the path and the fix,
exit 1, because the run was under way; a bad `--out` found before any work stays a plain TourError (exit 2).
Imports no torch.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tour.core.errors import TourError

# errno -> what the user can do about it. A write that fails for another reason is a bug and keeps its traceback.
FIXES = {
    errno.ENOSPC: "free some space there, or pass --out with a folder on another disk",
    errno.EDQUOT: "free some space within your quota, or pass --out with a folder on another disk",
    errno.EROFS: "that file system is read-only; pass --out with a writable folder",
    errno.EACCES: "you may not write there; pass --out with a folder you own",
    errno.EPERM: "you may not write there; pass --out with a folder you own",
    errno.ENOTDIR: "a file stands where a folder is needed; pass --out with a folder",
    errno.EEXIST: "a file stands where a folder is needed; pass --out with a folder",
    errno.EISDIR: "a folder stands where a file is needed; move it away or pass --out with another folder",
}


class WriteError(TourError):
    """A write that failed mid-run: the command exits 1 (what ran is real; the failure is the machine's)."""

    exit_code = 1


def cannot_write(path: Path | str, e: OSError, fix: str | None = None) -> WriteError:
    """The one-line error for an OSError while writing `path` (raise it `from None`)."""
    reason = e.strerror or type(e).__name__
    return WriteError(f"cannot write {path}: {reason}; {fix or FIXES.get(e.errno, 'check that folder')}",
                      kind="write_failed")


# Causes only a write has: an OSError with one of these is a failed write wherever it was raised.
ONLY_WRITES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def os_error(e: BaseException) -> OSError | None:
    """The OSError behind `e`: itself, or the one a Rust writer reports in words (safetensors' SafetensorError
    says "... No space left on device (os error 28)" and carries no errno), else None."""
    if isinstance(e, OSError):
        return e
    found = re.search(r"\(os error (\d+)\)", str(e))
    return OSError(int(found.group(1)), os.strerror(int(found.group(1)))) if found else None


def is_write_error(e: BaseException, *, anywhere: bool = False) -> bool:
    """An OSError of a write that a user can act on (FIXES' causes), as opposed to a bug. `anywhere`: raised by
    code not known to be writing, so only the causes no read can have count."""
    found = os_error(e)
    return found is not None and found.errno in (ONLY_WRITES if anywhere else FIXES)


@contextmanager
def writing(path: Path | str, fix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it replaces `path` (an atomic rename), on any
    failure it is removed, so `path` is either the old file or the whole new one. An OSError is a WriteError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as e:
        if not is_write_error(e):
            raise
        raise cannot_write(path, os_error(e), fix) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder itself is gone or unwritable: nothing was left there
            pass


def write_text(path: Path | str, text: str, fix: str | None = None) -> Path:
    with writing(path, fix) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: Path | str, data: bytes, fix: str | None = None) -> Path:
    with writing(path, fix) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextmanager
def writes_to(folder: Path | str, fix: str | None = None, *, owned: bool = False) -> Iterator[None]:
    """For a library's writer that fills a folder (save_pretrained): an OSError becomes a one-line WriteError.
    `owned`: the folder holds only what this writer writes, so a failed write removes it (a half-written model
    must not look like a saved one)."""
    try:
        yield
    except Exception as e:
        if not is_write_error(e):
            raise
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
        raise cannot_write(getattr(e, "filename", None) or folder, os_error(e), fix) from None


def make_folder(path: Path | str, flag: str = "--out") -> Path:
    """Create an output folder before any work: a path that cannot be one is a usage error (exit 2)."""
    path = Path(path).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fix = FIXES.get(e.errno, f"pass {flag} with a writable folder").replace("--out", flag)
        raise TourError(f"cannot create output folder {path}: {e.strerror or type(e).__name__}; {fix}") from None
    return path
