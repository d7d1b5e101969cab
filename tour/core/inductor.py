"""Inductor's needs, in one place: the C++ compiler it calls on CPU, Triton on GPUs, and the cache it writes to.

Used by the compile and export stops, the bench and the doctor. Imports no torch at the top.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

CACHE_VAR = "TORCHINDUCTOR_CACHE_DIR"


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor will call (its own search: $CXX, else g++, clang++ on macOS), as a path, or None."""
    from tour.core.torch_private import inductor_cpp_compiler

    cxx = inductor_cpp_compiler()
    if cxx is None:  # this torch's search moved: look where it used to (CXX, then the usual names)
        cxx = os.environ.get("CXX") or next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), "")
    return shutil.which(cxx) if cxx else None


def compile_problem(device) -> str | None:
    """Why torch.compile (or AOTInductor) cannot build code on `device` here, or None. Inductor writes C++ on CPU
    and Triton on GPUs."""
    import torch

    from tour.core.device import TRITON_TYPES

    if not torch._dynamo.is_dynamo_supported():
        return "TorchDynamo does not support this Python version"
    if device.type == "cpu" and cxx_compiler() is None:
        return ("no C++ compiler found; Inductor needs one on CPU: install g++ (Debian/Ubuntu: apt install g++, "
                "macOS: xcode-select --install) or set CXX")
    if device.type in TRITON_TYPES:
        from torch.utils._triton import has_triton

        if not has_triton():
            return "Triton is not installed; Inductor needs it on this GPU: pip install triton"
    return None


def default_cache_dir() -> Path:
    """Where the tour keeps Inductor's artefacts: the user's TORCHINDUCTOR_CACHE_DIR, else a user cache folder that
    survives reboots (Inductor's own fallback is in /tmp, and Inductor sets the variable to it on first use: that
    value is not a user's choice, so it does not count)."""
    from tour.core.torch_private import inductor_default_cache_dir

    chosen = os.environ.get(CACHE_VAR)
    if chosen and os.path.abspath(chosen) != inductor_default_cache_dir():
        return Path(chosen)
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "torch-tour" / "inductor"


@contextmanager
def inductor_cache(folder: Path | None = None):
    """Point Inductor's cache at `folder` (default: `default_cache_dir()`) for the duration, so a second run reuses
    compiled kernels, then put the caller's setting back. Inductor reads the variable when it compiles, and child
    processes started inside (a fresh AOTInductor runner) inherit it."""
    folder = Path(folder or default_cache_dir())
    before = os.environ.get(CACHE_VAR)
    os.environ[CACHE_VAR] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(CACHE_VAR, None)
        else:
            os.environ[CACHE_VAR] = before
