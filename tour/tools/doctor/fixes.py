"""What to type: the release tables the fix lines need, in one place, and the functions that build the lines.

Every pip line pins the torch it means and the torchvision / torchaudio that pair with it, so following it never
swaps in an unpinned torch. The tables say what each PyTorch wheel index really carries; they change with each
release, so they carry the date they were checked. Pure functions: no I/O.
"""

from __future__ import annotations

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

CHECKED = "checked 2026-11-30 from public release notes"  # the date and source of every table below
INDEX_URL = "https://download.pytorch.org/whl/"

# The CUDA wheel indexes at download.pytorch.org/whl/cuXYZ: the first and last torch release each carries (None: still
# carried on the check date). cu121 stopped at 2.5.1, below the tour's floor; cu13x is where new releases go.
CUDA_INDEXES: dict[str, tuple[str, str | None]] = {
    "11.8": ("2.0.0", "2.7.1"),
    "12.1": ("2.1.0", "2.5.1"),
    "12.4": ("2.4.0", "2.6.0"),
    "12.6": ("2.6.0", "2.9.1"),
    "12.8": ("2.7.0", "2.9.1"),
    "12.9": ("2.8.0", "2.8.0"),
    "13.0": ("2.9.0", None),
}
# The oldest Linux driver each CUDA release needs (CUDA toolkit release notes, "toolkit driver version").
MIN_DRIVER = {"11.8": "520.61.05", "12.1": "530.30.02", "12.4": "550.54.14", "12.6": "560.28.03",
              "12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06"}
# CUDA minor-version compatibility: a driver of the same major runs any minor release of it from this driver on.
MIN_DRIVER_MAJOR = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}

# The torchvision release built for each torch release (each torchvision wheel's Requires-Dist names its torch).
TORCHVISION = {"2.6.0": "0.21.0", "2.7.0": "0.22.0", "2.7.1": "0.22.1", "2.8.0": "0.23.0", "2.9.0": "0.24.0",
               "2.9.1": "0.24.1", "2.10.0": "0.25.0", "2.11.0": "0.26.0", "2.12.0": "0.27.0", "2.12.1": "0.27.1",
               "2.13.0": "0.28.0", "2.14.0": "0.29.0", "2.14.1": "0.29.1", "2.15.0": "0.29.2"}
# torchaudio followed torch release for release up to 2.10; from 2.11 on one torchaudio (torch>=2.11) serves them.
TORCHAUDIO_SINCE_2_11 = "2.11.1"
# torchcodec's own compatibility table (its README): torch minor -> the torchcodec release that pairs with it;
# 0.12 and later declare torch >= 2.11, the newest documented one is used from 2.11 on.
TORCHCODEC = {"2.5": "0.1.1", "2.6": "0.2.1", "2.7": "0.5", "2.8": "0.7.0", "2.9": "0.9.1", "2.10": "0.10.0"}
TORCHCODEC_SINCE_2_11 = "0.16.0"


def version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def public(torch_version: str) -> str:
    """'2.14.1+cu126' -> '2.14.1': the version pip pins (a local tag comes from the index chosen)."""
    v = version(torch_version)
    return v.public if v else torch_version.split("+")[0]


def local_index(torch_version: str) -> str | None:
    """The PyTorch index a local-tagged torch came from ('2.14.1+cu126' -> .../whl/cu126); PyPI's torch has none."""
    v = version(torch_version)
    return f"{INDEX_URL}{v.local}" if v and v.local else None


def companion(name: str, torch_version: str) -> str | None:
    """The release of torchvision / torchaudio / torchcodec that pairs with this torch, or None when unknown."""
    v = version(public(torch_version))
    if v is None:
        return None
    minor = f"{v.major}.{v.minor}"
    new = (v.major, v.minor) >= (2, 11)
    if name == "torchvision":
        return TORCHVISION.get(v.base_version)
    if name == "torchaudio":
        return TORCHAUDIO_SINCE_2_11 if new else (v.base_version if (v.major, v.minor) >= (2, 6) else None)
    if name == "torchcodec":
        return TORCHCODEC_SINCE_2_11 if new else TORCHCODEC.get(minor)
    return None


def pairs(name: str, installed: str, torch_version: str, requires: list[str] | tuple[str, ...] = ()) -> bool:
    """Does this installed torchvision / torchaudio / torchcodec pair with `torch_version`? Same release series as the
    table's pair, and its own requirements on torch (from its metadata) accept that torch."""
    want, have = version(companion(name, torch_version)), version(public(installed))
    if want is None or have is None or want.release[:2] != have.release[:2]:
        return False
    specs = [Requirement(r).specifier for r in requires]
    return all(s.contains(public(torch_version), prereleases=True) for s in specs)


def pins(torch_version: str, names: tuple[str, ...], keep: dict[str, str] | None = None) -> list[str]:
    """`"torch==T"` then each of `names` pinned to its pair for T; a version in `keep` (one already known to pair)
    stays. A library with no known pair is named unpinned: pip then picks one whose own metadata accepts T."""
    keep = keep or {}
    out = [f'"torch=={public(torch_version)}"']
    for name in names:
        pinned = keep.get(name) or companion(name, torch_version)
        out.append(f'"{name}=={pinned}"' if pinned else name)
    return out


def pip_line(torch_version: str, names: tuple[str, ...], keep: dict[str, str] | None = None,
             index: str | None = None, force: bool = False) -> str:
    parts = ["pip install", *(["--force-reinstall"] if force else []), *pins(torch_version, names, keep)]
    return " ".join(parts + ([f"--index-url {index}"] if index else []))


# -- a driver too old for the build -----------------------------------------------------------------------------------
def carries(cuda: str, torch_version: str) -> bool:
    first, last = CUDA_INDEXES[cuda]
    v = version(public(torch_version))
    return v is not None and Version(first) <= v and (last is None or v <= Version(last))


def _runs(driver_cuda: str, cuda: str) -> bool:
    """Can a driver that reports `driver_cuda` (nvidia-smi's "CUDA Version") run wheels built for `cuda`? Up to its
    own version, and within its major through minor-version compatibility."""
    d, c = version(driver_cuda), version(cuda)
    return d is not None and c is not None and (c <= d or c.major == d.major)


def _releases() -> list[str]:
    return sorted(TORCHVISION, key=Version, reverse=True)  # every torch release the tables know, newest first


def torch_for_driver(torch_version: str, driver_cuda: str | None, declared: str | None) -> tuple[str, str] | None:
    """(torch release, CUDA index) the driver can run and the tour's declared range allows: the installed torch from
    another index if one carries it, else the newest release that fits. None when nothing fits."""
    if not driver_cuda:
        return None
    allowed = SpecifierSet(declared or "")
    fitting = sorted((c for c in CUDA_INDEXES if _runs(driver_cuda, c)), key=Version, reverse=True)
    fitting.sort(key=lambda c: not version(c) <= version(driver_cuda))  # those without minor-version compat first
    for cuda in fitting:
        if carries(cuda, torch_version):
            return public(torch_version), cuda
    for release in _releases():
        for cuda in fitting:
            if carries(cuda, release) and allowed.contains(release, prereleases=True):
                return release, cuda
    return None


def needed_driver(build_cuda: str | None) -> str | None:
    """The oldest driver that runs this CUDA build (its major's minor-version compatibility floor, else its own)."""
    v = version(build_cuda)
    if v is None:
        return None
    return MIN_DRIVER_MAJOR.get(str(v.major)) or MIN_DRIVER.get(f"{v.major}.{v.minor}")


def driver_fix(torch_version: str, build_cuda: str | None, driver_cuda: str | None, declared: str | None,
               names: tuple[str, ...], keep: dict[str, str] | None = None) -> str:
    """A pinned torch (and its pairs) from an index this driver runs, within the declared range; else the driver the
    installed build needs. `keep`: installed versions that pair with the installed torch (kept if it stays)."""
    found = torch_for_driver(torch_version, driver_cuda, declared)
    if found is not None:
        release, cuda = found
        kept = keep if release == public(torch_version) else None
        return pip_line(release, names, kept, index=f"{INDEX_URL}cu{cuda.replace('.', '')}", force=True)
    need = needed_driver(build_cuda)
    build = f"CUDA {build_cuda}" if build_cuda else "CUDA"
    return (f"install an NVIDIA driver >= {need or 'one for ' + build} (torch {torch_version} is a {build} build), "
            "then check: nvidia-smi")
