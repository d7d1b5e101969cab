"""Inductor's needs, in one place: the C++ compiler it calls on CPU, Triton (with a C compiler and Python.h) on
GPUs, AOTInductor's CUDA toolkit, and the cache it writes to.

Used by the compile and export stops, the bench and the doctor. Imports no torch at the top.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

CACHE_VAR = "TORCHINDUCTOR_CACHE_DIR"
DEFAULT_CUDA_HOME = "/usr/local/cuda"  # where NVIDIA's installers put the toolkit; torch's last guess too
NO_CXX = ("no C++ compiler found (Inductor compiles C++ on CPU, and AOTInductor on every device): install g++ "
          "(Debian/Ubuntu: apt install g++, macOS: xcode-select --install) or set CXX")


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor will call (its own search: $CXX, else g++, clang++ on macOS), as a path, or None."""
    from tour.core.torch_private import inductor_cpp_compiler

    cxx = inductor_cpp_compiler()
    if cxx is None:  # this torch's search moved: look where it used to (CXX, then the usual names)
        cxx = os.environ.get("CXX") or next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), "")
    return shutil.which(cxx) if cxx else None


def c_compiler() -> str | None:
    """The C compiler Triton builds its kernel launcher with (its own search: $CC, else gcc, else clang), as a path,
    or None."""
    cc = os.environ.get("CC") or next((c for c in ("gcc", "clang") if shutil.which(c)), "")
    return shutil.which(cc) if cc else None


def python_header() -> Path | None:
    """Python.h where Triton looks for it (sysconfig's include folder, as triton/runtime/build.py picks it), or None.
    Triton compiles its launcher as a Python extension, so it needs this interpreter's headers."""
    import sysconfig

    scheme = sysconfig.get_default_scheme()
    scheme = "posix_prefix" if scheme == "posix_local" else scheme  # Debian's custom scheme, as Triton maps it
    header = Path(sysconfig.get_paths(scheme=scheme)["include"]) / "Python.h"
    return header if header.is_file() else None


def triton_problem() -> str | None:
    """Why Triton cannot build kernels here (the package, a C compiler, Python.h), or None."""
    from torch.utils._triton import has_triton

    if not has_triton():
        return "Triton is not installed; Inductor needs it on this GPU: pip install triton"
    if c_compiler() is None:
        return ("no C compiler found; Triton builds its kernel launcher with one: apt install gcc (macOS: "
                "xcode-select --install) or set CC")
    if python_header() is None:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return (f"Python.h for Python {version} not found; Triton compiles its launcher against it: "
                f"apt install python3-dev (or python{version}-dev)")
    return None


def compile_problem(device) -> str | None:
    """Why torch.compile cannot build code on `device` here, or None. Inductor writes C++ on CPU and Triton on
    GPUs."""
    import torch

    from tour.core.device import TRITON_TYPES

    if not torch._dynamo.is_dynamo_supported():
        return "TorchDynamo does not support this Python version"
    if device.type == "cpu" and cxx_compiler() is None:
        return NO_CXX
    if device.type in TRITON_TYPES:
        return triton_problem()
    return None


def cuda_home() -> Path | None:
    """The CUDA toolkit torch's extension builder would use (its search: $CUDA_HOME, $CUDA_PATH, nvcc on PATH,
    /usr/local/cuda), or None."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if not home and shutil.which("nvcc"):
        home = str(Path(shutil.which("nvcc")).resolve().parent.parent)
    if not home and os.path.exists(DEFAULT_CUDA_HOME):
        home = DEFAULT_CUDA_HOME
    return Path(home) if home else None


def libcuda_dev(home: Path) -> Path | None:
    """The unversioned libcuda.so the linker needs for -lcuda: the toolkit's stub, else the driver's (found in
    LIBRARY_PATH or the ldconfig cache). A driver alone often ships only libcuda.so.1, which -lcuda does not find."""
    folders = [home / sub for sub in ("lib64/stubs", "lib/stubs", "lib64", "lib")]
    folders += [Path(p) for p in os.environ.get("LIBRARY_PATH", "").split(os.pathsep) if p]
    found = next((f / "libcuda.so" for f in folders if (f / "libcuda.so").exists()), None)
    return found or _ldconfig_path("libcuda.so")


def _ldconfig_path(name: str) -> Path | None:
    """Where the dynamic linker's cache has exactly `name` (not a versioned .so.N), or None."""
    import subprocess

    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in listing.splitlines():
        if line.strip().startswith(f"{name} ") and "=>" in line:
            return Path(line.split("=>")[-1].strip())
    return None


def toolkit_fix() -> str:
    """The fix line for a missing or partial toolkit, naming the CUDA version this torch was built with."""
    import torch

    cuda = torch.version.cuda or "?"
    package = "cuda-toolkit-" + cuda.replace(".", "-")
    return (f"install the CUDA {cuda} toolkit (NVIDIA's apt package {package}, or conda's cuda-toolkit={cuda}) "
            "and set CUDA_HOME to it")


def cuda_toolkit_problem() -> str | None:
    """Why AOTInductor cannot build a CUDA package here: it compiles a C++ wrapper that includes cuda.h and
    cuda_runtime_api.h (which pulls in crt/), and links -lcuda. pip's CUDA wheels ship no crt/ and no nvcc."""
    fix = toolkit_fix()
    home = cuda_home()
    if home is None:
        return f"no CUDA toolkit found (CUDA_HOME, CUDA_PATH, nvcc on PATH); AOTInductor on CUDA needs one: {fix}"
    include = home / "include"
    missing = [p for p in ("cuda.h", "crt") if not (include / p).exists()]
    if missing:
        return f"the CUDA toolkit at {home} lacks include/{' and include/'.join(missing)}: {fix}"
    if libcuda_dev(home) is None:
        return (f"no libcuda.so to link against (neither {home}/lib64/stubs/libcuda.so nor the driver's): {fix}, "
                "or link the driver's libcuda.so.1 as libcuda.so in a folder on LIBRARY_PATH")
    return None


def aoti_problem(device) -> str | None:
    """Why AOTInductor cannot build a package for `device` here, or None: a C++ compiler always (it compiles a C++
    wrapper, whatever the device), what torch.compile needs on the device, and on CUDA a CUDA toolkit."""
    import torch

    if cxx_compiler() is None:
        return NO_CXX
    problem = compile_problem(device)
    if problem is None and device.type == "cuda" and torch.version.hip is None:
        problem = cuda_toolkit_problem()
    return problem


def check_cache_var() -> None:
    """A TORCHINDUCTOR_CACHE_DIR that cannot be made or written is a one-line TourError. torch 2.14 makes that
    folder while importing torch._dynamo (which transformers, torchvision and every compile import), so otherwise
    each stop dies there with a traceback, or with a stranger one on the next import of the same module."""
    import tempfile

    from tour.core.errors import TourError

    chosen = os.environ.get(CACHE_VAR)
    if not chosen:
        return
    try:
        os.makedirs(chosen, exist_ok=True)
        with tempfile.TemporaryFile(dir=chosen):
            pass
    except OSError as e:
        raise TourError(f"{CACHE_VAR}={chosen} cannot be written ({e.strerror or e}); unset it or point it at a "
                        "writable folder") from None


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


def _open_anywhere(paths: set[str]) -> set[str]:
    """Which of `paths` some live process has open (Linux /proc; elsewhere: all of them, so none is touched)."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return set(paths)
    found = set()
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                target = os.readlink(fd)
                if target in paths:
                    found.add(target)
        except OSError:  # a process that ended meanwhile, or one we may not look into
            continue
    return found


def drop_truncated_builds(folder: Path) -> list[Path]:
    """Remove the compiled kernels a killed compile left half-written. The C++ compiler writes its .so in place, so
    a run killed mid-build (Ctrl-C, a time limit) leaves an empty or cut-off file under its final name, which
    Inductor later finds and fails to load ("file too short") on every run until it is deleted. A file some live
    process is still writing is left alone."""
    suspects = set()
    for lib in folder.glob("**/*.so") if folder.is_dir() else []:
        try:
            with open(lib, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    suspects.add(str(lib))
        except OSError:
            continue
    dropped = []
    for path in sorted(suspects - _open_anywhere(suspects)):
        try:
            os.remove(path)
            dropped.append(Path(path))
        except OSError:
            continue
    return dropped


@contextmanager
def inductor_cache(folder: Path | None = None):
    """Point Inductor's cache at `folder` (default: `default_cache_dir()`) for the duration, so a second run reuses
    compiled kernels, then put the caller's setting back. Inductor reads the variable when it compiles, and child
    processes started inside (a fresh AOTInductor runner) inherit it."""
    folder = Path(folder or default_cache_dir())
    drop_truncated_builds(folder)
    before = os.environ.get(CACHE_VAR)
    os.environ[CACHE_VAR] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(CACHE_VAR, None)
        else:
            os.environ[CACHE_VAR] = before


# AOTInductor packages, kept like Inductor's kernels: the same program, weights and build give the same .pt2 ---------
PACKAGES = "aoti-packages"  # under the Inductor cache folder


def package_key(ep, device) -> str:
    """A digest of everything an AOTInductor package is built from: the exported program (its graph's code, its
    signature, its dynamic ranges, every weight and constant), this torch build, the device (a CPU's instruction
    set: the package's C++ uses its vector extensions; a GPU's model), the C++ compiler and
    the fp32 matmul precision in force. Inductor's own cache keeps kernels, not the linked package: a warm
    aoti_compile_and_package still spent ~6 s in g++ here, so the tour keeps the .pt2 itself under this key."""
    import hashlib
    import platform

    import torch

    from tour.core.device import device_name
    from tour.core.dtypes import fast_paths

    # the device helper's name (a GPU's model) and fast paths, and the host CPU's instruction set torch dispatches on
    target = f"{device_name(device)} {fast_paths(device)} {torch.backends.cpu.get_cpu_capability()}"
    digest = hashlib.sha256()
    for part in (ep.graph_module.code, ep.graph_signature, ep.range_constraints, torch.__version__,
                 torch.version.git_version, platform.machine(), device.type, target, cxx_compiler(),
                 torch.get_float32_matmul_precision()):
        digest.update(f"{part}\0".encode())
    tensors = {**ep.state_dict, **ep.constants}
    for name, t in sorted((n, t) for n, t in tensors.items() if isinstance(t, torch.Tensor)):
        digest.update(f"{name} {t.dtype} {tuple(t.shape)}\0".encode())
        digest.update(t.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def cached_package(key: str, path: Path) -> float | None:
    """Copy the .pt2 an earlier run built under `key` to `path` (atomically); returns the seconds that build took
    cold, or None when there is none (or it cannot be read)."""
    import json

    from tour.core.files import writing

    kept = default_cache_dir() / PACKAGES / f"{key}.pt2"
    try:
        cold = float(json.loads(kept.with_suffix(".json").read_text())["compile_s"])
        with writing(path) as tmp:
            shutil.copyfile(kept, tmp)
        return cold
    except (OSError, ValueError, KeyError, TypeError):
        return None


def keep_package(key: str, path: Path, compile_s: float) -> None:
    """Keep the .pt2 just built at `path` under `key` for the next run; a cache that cannot be written only means
    the next run compiles again."""
    import json

    from tour.core.files import WriteError, writing

    folder = default_cache_dir() / PACKAGES
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with writing(folder / f"{key}.pt2") as tmp:
            shutil.copyfile(path, tmp)
        with writing(folder / f"{key}.json") as tmp:  # written last: a .pt2 without it is never used
            tmp.write_text(json.dumps({"compile_s": compile_s}))
    except (OSError, WriteError):
        pass
