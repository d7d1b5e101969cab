"""Version rules: the tour's declared ranges, the wheels paired with one torch, the tested set."""

from __future__ import annotations

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tour.tools.doctor import fixes
from tour.tools.doctor.facts import PAIRED, parse_requirement
from tour.tools.doctor.rows import ERROR, MISSING_SHARED_LIBRARY, NOTE, WARNING, Diagnosis, Facts
from tour.tools.doctor.rules.common import contains, cuda_libs, failed, keys, loading


def declared_ranges(facts: Facts) -> dict[str, tuple[Requirement, list[str]]]:
    """canonical name -> (its requirement, the extras that bring it, "core" for none) from torch-tour's Requires-Dist
    lines. A requirement whose marker excludes this platform for every extra does not apply."""
    ranges: dict[str, tuple[Requirement, list[str]]] = {}
    for text in facts.declared or []:
        req = parse_requirement(text)
        if req is None or canonicalize_name(req.name) == "torch-tour" or not str(req.specifier):
            continue
        extras = [e for e in facts.extras if req.marker is None or req.marker.evaluate({"extra": e})]
        core = req.marker is None or req.marker.evaluate({"extra": ""})
        if core or extras:
            known = ranges.setdefault(canonicalize_name(req.name), (req, []))
            known[1].extend(["core"] if core else extras)
    return ranges


def _declared_torch(facts: Facts) -> str | None:
    found = declared_ranges(facts).get("torch")
    return str(found[0].specifier) if found else None


def paired_installed(facts: Facts, names: tuple[str, ...] = ("torchvision", "torchaudio")) -> tuple[str, ...]:
    return tuple(n for n in names if n in facts.installed or n in facts.dists)


def _keep(facts: Facts, torch_version: str, names: tuple[str, ...]) -> dict[str, str]:
    """The installed versions among `names` that already pair with `torch_version`: a fix line keeps them."""
    keep = {}
    for name in names:
        info = facts.dists.get(name) or {}
        installed = info.get("version") or facts.installed.get(name)
        if installed and fixes.pairs(name, installed, torch_version, info.get("requires", [])):
            keep[name] = fixes.public(installed)
    return keep


def torch_fix(facts: Facts, torch_version: str, names: tuple[str, ...], force: bool = False,
               loaded: bool = False) -> str:
    """Pin this torch and the paired libraries among `names` that are installed, or all of them when a row `loaded`
    them (a library without metadata still loads); the ones that pair already stay."""
    installed = names if loaded else paired_installed(facts, names)
    return fixes.pip_line(torch_version, installed, _keep(facts, torch_version, installed),
                          index=fixes.local_index(facts.torch_version or ""), force=force)


def driver_fix(facts: Facts, build: str | None) -> str:
    torch, names = facts.torch_version or "?", paired_installed(facts)
    return fixes.driver_fix(torch, build, facts.gpu.get("driver_cuda"), _declared_torch(facts), names,
                            _keep(facts, torch, names))


def _newest_tested(facts: Facts, name: str) -> str | None:
    return ((facts.tested or {}).get(name) or [None])[0]  # constraints.txt's pin comes first


def _target(facts: Facts, name: str, req: Requirement) -> str | None:
    """The version a fix should pin for `name`: a tested one in range (newest first), else the newest known release
    (torch) in range."""
    tested = [v for v in (facts.tested or {}).get(name, []) if contains(req.specifier, v)]
    if tested:
        return tested[0]
    if name == "torch":
        return next((r for r in sorted(fixes.TORCHVISION, key=Version, reverse=True)
                     if contains(req.specifier, r)), None)
    return None


def _is_tested(facts: Facts, name: str, installed: str) -> bool:
    return fixes.public(installed) in (facts.tested or {}).get(name, [])


def rule_version_range(facts: Facts, probes) -> list[Diagnosis]:
    out = []
    for name, (req, extras) in declared_ranges(facts).items():
        installed = facts.installed.get(name)
        if installed is None or contains(req.specifier, installed) is not False or _wrong_torch(facts, name):
            continue  # in range, or a wheel built for another torch: rule_torch_pair names that cause
        where = "below the floor" if _below(req, installed) else "above the ceiling"
        target = _target(facts, name, req)
        if name == "torch" and target:
            fix = torch_fix(facts, target, ("torchvision", "torchaudio"))
        elif name in PAIRED and facts.torch_version:
            fix = torch_fix(facts, facts.torch_version, (name,))  # its pair for the torch that stays
        else:
            fix = f'pip install "{name}=={target}"' if target else f'pip install "{name}{req.specifier}"'
        out.append(Diagnosis(
            "version-range", ERROR,
            f"{name} {installed} is {where} of the range the tour supports ({name}{req.specifier})",
            f"torch-tour declares {name}{req.specifier} for: {', '.join(sorted(set(extras)))}", fix,
            keys(loading(probes, name))))
    return out


def _below(req: Requirement, installed: str) -> bool:
    v = Version(installed)
    return any(v < Version(s.version) for s in req.specifier if s.operator in (">=", ">", "~=", "==", "==="))


def _declares_torch(facts: Facts, name: str) -> bool:
    return bool((facts.dists.get(name) or {}).get("requires"))


def _wrong_torch(facts: Facts, name: str) -> list[str]:
    """The paired wheel's requirements on torch (its own metadata) that the loaded torch does not meet. A torchaudio
    that declares none (2.11.0 does not) was built against the torch release of its own number: an older torch
    cannot load it."""
    info = facts.dists.get(name) or {}
    if not facts.torch_version or not info:
        return []
    requires = info.get("requires") or []
    built = fixes.version(fixes.public(info["version"])) if name == "torchaudio" and not requires else None
    if built is not None:
        requires = [f"torch>={built.major}.{built.minor}"]
    return [r for r in requires if parse_requirement(r) is not None
            and contains(parse_requirement(r).specifier, facts.torch_version) is False]


def rule_torch_pair(facts: Facts, probes) -> list[Diagnosis]:
    out = []
    for name in PAIRED:
        info, wrong = facts.dists.get(name), _wrong_torch(facts, name)
        if not wrong:
            continue
        said = "requires" if _declares_torch(facts, name) else "declares no torch; its release number means"
        out.append(Diagnosis(
            "torch-pair", ERROR,
            f"{name} {info['version']} was built for {wrong[0]}, but torch {facts.torch_version} is installed",
            f"{name}'s metadata in {info['location']} {said} {', '.join(wrong)}",
            torch_fix(facts, facts.torch_version, (name,)), keys(loading(probes, name))))
    return out


def rule_cuda_library(facts: Facts, probes) -> list[Diagnosis]:
    """A row whose library could not load a CUDA runtime .so: the library was built for another torch / CUDA."""
    rows = [p for p in failed(probes, MISSING_SHARED_LIBRARY) if cuda_libs(p)]
    if not rows or not facts.torch_version:
        return []
    libs = sorted({lib for p in rows for lib in cuda_libs(p)})
    paired = tuple(n for n in PAIRED if any(n in p.libraries for p in rows))
    build = f"CUDA {facts.torch_cuda}" if facts.torch_cuda else "CPU-only"
    return [Diagnosis(
        "cuda-library", ERROR if any(p.required for p in rows) else WARNING,
        f"{', '.join(paired) or 'a library'} was built for another torch/CUDA than torch {facts.torch_version} "
        f"({build} build): the loader cannot find {', '.join(libs)}",
        f"{', '.join(f'{p.group} {p.name}' for p in rows)} failed loading {', '.join(libs)}",
        torch_fix(facts, facts.torch_version, paired, force=True, loaded=True), keys(rows))]


def version_summary(facts: Facts) -> str:
    """One line: how many installed packages are within the supported (declared) ranges, how many at a tested
    version. Printed on every run, so a clean stack still says that its versions were checked."""
    ranges = declared_ranges(facts)
    checked = [n for n in ranges if n in facts.installed]
    inside = [n for n in checked if contains(ranges[n][0].specifier, facts.installed[n]) is not False]
    line = f"versions: {len(inside)} of the {len(checked)} installed packages the tour declares are supported " \
           "(within its ranges)"
    if facts.declared is None:
        return "versions: supported ranges unknown (the torch-tour distribution is not installed)"
    if facts.tested is None:
        return f"{line}; tested set unknown"
    judged = [n for n in checked if n in facts.tested]
    tested = [n for n in judged if _is_tested(facts, n, facts.installed[n])]
    return f"{line}; {len(tested)} of the {len(judged)} the tested sets pin are at a tested version"


def rule_version_untested(facts: Facts, probes) -> list[Diagnosis]:
    ranges = declared_ranges(facts)
    if facts.declared is None:
        return [Diagnosis("version-untested", NOTE, "declared ranges unknown: the torch-tour distribution is not "
                          "installed, so its supported versions cannot be read", "no torch-tour metadata on the path",
                          "pip install -e .   # from the tour's checkout")]
    if facts.tested is None:
        return [Diagnosis("version-untested", NOTE, "tested set unknown: versions were checked against the supported "
                          "(declared) ranges only", "the tour's package holds no tested sets "
                          "(tour/tools/doctor/tested/constraints.txt)", "")]
    off = {n: v for n, v in facts.installed.items() if n in ranges and n in facts.tested
           and not _is_tested(facts, n, v) and contains(ranges[n][0].specifier, v)}
    if not off:
        return []
    listed = ", ".join(f"{n} {v} (tested: {', '.join(facts.tested[n])})" for n, v in sorted(off.items()))
    pins = [f'"{n}=={_newest_tested(facts, n)}"' for n in sorted(off) if n not in ("torch", *PAIRED)]
    if "torch" in off or any(n in off for n in PAIRED):
        torch = _newest_tested(facts, "torch") or facts.torch_version or ""
        keep = {n: _newest_tested(facts, n) for n in PAIRED if n in facts.tested}
        pins = fixes.pins(torch, paired_installed(facts), keep) + pins
    return [Diagnosis("version-untested", NOTE, f"supported (within the declared range) but not tested: {listed}",
                      f"the tested sets are {', '.join(facts.tested_files)}",
                      f"pip install {' '.join(pins)}   # the newest tested set")]
