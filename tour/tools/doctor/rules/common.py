"""What every rule shares: selecting probe rows by their structured fields, the facts a rule asks about
the machine, and the install lines fixes are made of."""

from __future__ import annotations

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from tour.tools.doctor.rows import FAILED, MISSING_COMPILER, OK, Facts

# The CUDA runtime's own libraries: a library that cannot find one of these was built for another CUDA than the
# torch installed (its wheel links the CUDA its torch shipped), not for a missing system package.
CUDA_LIBRARIES = ("libnvrtc", "libcudart", "libcublas", "libcudnn", "libcufft", "libcurand", "libcusparse",
                  "libcusolver", "libnvjpeg", "libnpp", "libnccl", "libcuda.")


# -- selecting rows by their fields ------------------------------------------------------------------------------------
def failed(probes, kind: str | None = None) -> list:
    return [p for p in probes if p.status == FAILED and (kind is None or p.kind == kind)]


def loading(probes, name: str) -> list:
    """Failed rows that load the distribution `name`."""
    return [p for p in failed(probes) if canonicalize_name(name) in p.libraries]


def on_gpu(p) -> bool:
    return (p.device or "").startswith("cuda")


def lacks_compiler(p, compiler: str) -> bool:
    """Did this row fail for want of the C ("c", Triton's launcher) or C++ ("c++", Inductor) compiler?"""
    return p.kind == MISSING_COMPILER and p.data.get("compiler", "c++") == compiler


def keys(probes) -> list[dict]:
    return [{"group": p.group, "name": p.name} for p in probes]


def torch_data(probes) -> dict:
    p = next((p for p in probes if p.group == "system" and p.name == "torch"), None)
    return p.data if p is not None and p.status == OK else {}


def install(facts: Facts, sudo_cmd: str) -> str:
    return sudo_cmd if facts.root else f"sudo {sudo_cmd}"


def system_fix(facts: Facts, apt: str, conda: str, mac: str | None = None) -> str:
    """The command that installs a system package here: `mac` on macOS, apt where it exists, else conda."""
    if mac and facts.platform == "darwin":
        return mac
    return install(facts, f"apt-get install -y {apt}") if facts.has_apt else f"conda install {conda}"


def contains(spec, version: str) -> bool | None:
    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return None


def named_gpu(facts: Facts) -> bool:
    return (facts.device or "").startswith("cuda")


def cuda_libs(p) -> list[str]:
    return [lib for lib in p.data.get("missing_libraries", []) if lib.startswith(CUDA_LIBRARIES)]
