"""The doctor's types: a probe (what to run), its row (what came out), a diagnosis, the report, and the error kinds.

A row carries structured fields beside its human text: the device it ran on, the distributions it loads and, when it
failed or was skipped, an error kind from `KINDS`. The rules (the rules package) select rows by these fields only; the
`detail` text is for people and may be reworded freely.
"""

from __future__ import annotations

import errno
import re
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tour.core.errors import TourError

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
ERROR, WARNING, NOTE = "error", "warning", "note"  # a diagnosis' severity; only an error fails the doctor
CALLER_PYTHONPATH = "TOUR_DOCTOR_CALLER_PYTHONPATH"  # a child's PYTHONPATH as the user set it (the worker appends)

# Error kinds: why a probe failed or was skipped, for the rules to select on.
DEVICE_ABSENT = "device_absent"  # the device is not present or torch cannot use it
PERMISSION = "permission"  # a file or folder cannot be read or written
MISSING_COMPILER = "missing_compiler"  # no C/C++ compiler where Inductor or Triton needs one
MISSING_PYTHON_HEADERS = "missing_python_headers"  # no Python.h for Triton's launcher
MISSING_TRITON = "missing_triton"  # a GPU torch.compile needs Triton and there is none
MISSING_CUDA_TOOLKIT = "missing_cuda_toolkit"  # AOTInductor on CUDA needs CUDA_HOME, cuda.h, crt/, libcuda.so
MISSING_SHARED_LIBRARY = "missing_shared_library"  # a .so the loader cannot find; data["missing_libraries"]
LIBRARY_LOAD = "library_load"  # a library's native part did not load (no named .so: torchcodec's own message)
IMPORT_ERROR = "import_error"  # the library raised while being imported
NOT_INSTALLED = "not_installed"  # an optional package is absent (skipped)
QUICK = "quick"  # skipped by --quick
NOT_APPLICABLE = "not_applicable"  # the fact does not apply here (skipped)
WRONG_RESULT = "wrong_result"  # the operation ran and gave the wrong answer
TIMEOUT = "timeout"  # cut off after the time limit
CRASH = "crash"  # the worker process died during the probe
USAGE = "usage"  # a bad flag value (an unknown --only group)
ERROR_KIND = "error"  # any other exception
KINDS = (DEVICE_ABSENT, PERMISSION, MISSING_COMPILER, MISSING_PYTHON_HEADERS, MISSING_TRITON, MISSING_CUDA_TOOLKIT,
         MISSING_SHARED_LIBRARY, LIBRARY_LOAD, IMPORT_ERROR, NOT_INSTALLED, QUICK, NOT_APPLICABLE,
         WRONG_RESULT, TIMEOUT, CRASH, USAGE, ERROR_KIND)


@dataclass
class ProbeResult:
    """One row of the report."""

    name: str
    group: str
    status: str  # ok, failed or skipped
    detail: str  # the fact checked, or the one-line reason it failed or was skipped (for people, not for rules)
    seconds: float
    required: bool  # a required probe that failed makes the exit code 1
    data: dict = field(default_factory=dict)  # numbers behind the detail (versions, memory, ...) for --json
    device: str | None = None  # the device it ran on ("cpu", "cuda:0"); None: no device of its own
    libraries: tuple[str, ...] = ()  # the distributions it loads (canonical names): a broken one fails this probe
    kind: str | None = None  # why it failed or was skipped, one of KINDS; None when it passed

    def __post_init__(self) -> None:
        self.libraries = tuple(self.libraries)  # JSON brings a list back

    @classmethod
    def from_dict(cls, data: dict) -> ProbeResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def key(self) -> dict:
        return {"group": self.group, "name": self.name}


@dataclass(frozen=True)
class Probe:
    """What to run: `func()` returns its detail line (or `(detail, data)`), raises `Skip` when the fact does not apply,
    and raises anything else to fail."""

    name: str
    group: str
    func: Callable[[], Any]
    required: bool = True  # False: a failure is reported but never fails the doctor (GPU, torchcodec)
    needs: tuple[str, ...] = ()  # import names; absent -> skipped with the install line, present but broken -> failed
    libraries: tuple[str, ...] = ()  # the distributions it loads, for the rules (see ProbeResult.libraries)
    device: str | None = None


class Skip(Exception):
    """The probe does not apply here (no GPU, a slow probe in --quick, an optional package absent)."""

    def __init__(self, message: str, kind: str = NOT_APPLICABLE):
        super().__init__(message)
        self.kind = kind


class Fact(Exception):
    """A concrete check came out wrong, or a need is missing; `kind` says which (default: a wrong result)."""

    def __init__(self, message: str, kind: str = WRONG_RESULT, data: dict | None = None):
        super().__init__(message)
        self.kind = kind
        self.data = data or {}


def expect(ok: bool, message: str, kind: str = WRONG_RESULT) -> None:
    if not ok:
        raise Fact(message, kind)


@dataclass
class Diagnosis:
    rule: str  # a stable id, one of the rules listed in the rules package
    severity: str  # "error": the doctor exits 1; "warning" and "note": reported only
    cause: str  # one line: what is wrong
    evidence: str  # one line: the facts that show it
    fix: str  # the exact command to type
    explains: list[dict] = field(default_factory=list)  # the failed probes it explains: {"group", "name"}

    def to_dict(self) -> dict:
        return asdict(self)


class PlanRefused(TourError):
    """The worker refused the plan (a bad --device or --only) before every probe ran; `diagnoses` says what the facts
    alone show about why (a CUDA build that cannot see the GPU makes `--device cuda` a usage error)."""

    def __init__(self, message: str, diagnoses: list[Diagnosis], kind: str | None = None):
        super().__init__(message, kind=kind)
        self.diagnoses = diagnoses


def truthy(value: str | None) -> bool:
    """An environment flag set the way libraries read them (HF_HUB_OFFLINE=1, ON, yes, true)."""
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@dataclass
class Report:
    probes: list[ProbeResult]
    seconds: float  # the whole run, wall clock
    quick: bool
    device: str | None
    diagnoses: list[Diagnosis] = field(default_factory=list)
    facts: dict | None = None  # the snapshot the diagnoses read (None when it could not be taken)

    @property
    def failed_required(self) -> list[ProbeResult]:
        return [p for p in self.probes if p.status == FAILED and p.required]

    @property
    def errors(self) -> list[Diagnosis]:
        return [d for d in self.diagnoses if d.severity == ERROR]

    @property
    def ok(self) -> bool:
        return bool(self.probes) and not self.failed_required and not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        return {s: sum(p.status == s for p in self.probes) for s in (OK, FAILED, SKIPPED)}


MIN_FREE_GB = 5.0  # a few models and their compiled kernels: below this, the low-disk warning


@dataclass
class Facts:
    """What the rules look at besides the rows (facts.py gathers it). Every field is plain JSON, so the doctor can
    carry it from its child process; tests plant it."""

    python: str = sys.executable
    platform: str = sys.platform
    user_site: str | None = None  # the user site-packages folder when it is on sys.path
    path: list[str] = field(default_factory=list)  # sys.path, in order
    dists: dict[str, dict] = field(default_factory=dict)  # paired wheel -> version, location, requires (on torch)
    torch_installs: list[dict] = field(default_factory=list)  # every torch dist on the path: version, location, loaded
    torch_version: str | None = None  # the torch `import torch` loads
    torch_cuda: str | None = None  # its build's CUDA version, read from torch/version.py; None: CPU-only (or ROCm)
    torch_hip: str | None = None
    torch_triton_req: str | None = None  # torch's own requirement on triton, e.g. "triton~=3.8.0"
    triton: str | None = None  # installed triton version
    declared: list[str] | None = None  # torch-tour's Requires-Dist lines (with extras markers); None: not installed
    extras: list[str] = field(default_factory=list)  # torch-tour's Provides-Extra names
    installed: dict[str, str] = field(default_factory=dict)  # canonical name -> version, for every declared dist
    tested: dict[str, list[str]] | None = None  # name -> the versions the tested sets pin; None: none found
    tested_files: list[str] = field(default_factory=list)  # constraints.txt (newest set), stacks/*.txt (oldest, ...)
    gpu: dict = field(default_factory=dict)  # dev_nodes, nvidia_smi, driver, driver_cuda, gpus, smi_error
    env: dict[str, str] = field(default_factory=dict)
    caches: list[dict] = field(default_factory=list)  # name, path, var, writable, why, free_bytes, device
    min_free_bytes: int = int(MIN_FREE_GB * 1e9)
    cpu: dict = field(default_factory=dict)  # count, usable, running (other threads runnable now: threads.observe)
    compilers: dict[str, str | None] = field(default_factory=dict)  # g++, c++, clang++ -> path
    ffmpeg_libs: list[str] = field(default_factory=list)  # FFmpeg shared libraries the loader finds
    models: list[dict] = field(default_factory=list)  # from --model: name, kind (folder/hub), cached
    # a declared library's module that `import` finds outside its installed dist (./datasets.py, a PYTHONPATH
    # folder): module, origin (what import would load), dist, version, location (where the dist is installed)
    shadowed: list[dict] = field(default_factory=list)
    device: str | None = None  # the doctor's --device
    has_apt: bool = False
    root: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> Facts:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


# -- from an exception to a kind -------------------------------------------------------------------------------------
# The dynamic loader's own message ("libnvrtc.so.13: cannot open shared object file") is the only place the name of
# a missing library exists; it is read here, once, at the source, into data["missing_libraries"].
_MISSING_SO = re.compile(r"(lib[\w.+-]+?\.so(?:\.\d+)*): cannot open shared object file")


def missing_libraries(error: BaseException) -> list[str]:
    """The shared libraries the loader could not find, from the error and the errors it was raised from."""
    found: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        found += [m for m in _MISSING_SO.findall(str(error)) if m not in found]
        error = error.__cause__ or error.__context__
    return found


def classify(error: BaseException) -> tuple[str, dict]:
    """(kind, data) for an exception a probe raised."""
    if isinstance(error, (Fact, Skip)):
        return error.kind, dict(getattr(error, "data", {}))
    libs = missing_libraries(error)
    if libs:
        return MISSING_SHARED_LIBRARY, {"missing_libraries": libs}
    # the file or folder an OSError names (a cache folder that cannot be made): rules match it against the caches
    where = {"path": str(error.filename)} if isinstance(error, OSError) and error.filename else {}
    if isinstance(error, PermissionError) or isinstance(error, OSError) and error.errno == errno.EROFS:
        return PERMISSION, where
    if where:
        return ERROR_KIND, where
    if isinstance(error, ImportError):
        return IMPORT_ERROR, {}
    kind = getattr(error, "kind", None)  # a TourError may say what it is
    return (kind if kind in KINDS else ERROR_KIND), {}


def one_line(error: BaseException) -> str:
    """`ImportError: broken on purpose (raised in torchvision/__init__.py:1)`: what broke, and where."""
    text = str(error).strip().splitlines()
    reason = text[0] if text else ""
    from tour.core.errors import TourError

    if isinstance(error, (Fact, Skip, TourError)):
        return reason
    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    if frames and Path(frames[-1].filename).parent != Path(__file__).parent:  # the library frame that raised
        parts = Path(frames[-1].filename).parts[-2:]
        where = f" (raised in {'/'.join(parts)}:{frames[-1].lineno})"
    return f"{type(error).__name__}: {reason[:240]}{where}"
