"""The version rule: the installed stack against the ranges torch-tour declares (its own metadata) and the tested sets
(constraints.txt, stacks/*.txt); "supported" and "tested" are separate words. Versions are read, never written."""

from __future__ import annotations

import importlib.metadata

from doctor_helpers import TORCH, facts, row, torch_row
from packaging.requirements import Requirement
from packaging.version import Version

from tour.tools.doctor import facts as doctor_facts
from tour.tools.doctor import fixes
from tour.tools.doctor.rows import ERROR, NOTE
from tour.tools.doctor.rules import declared_ranges, diagnose


def _declared(name: str) -> Requirement:
    reqs = [Requirement(r) for r in importlib.metadata.requires("torch-tour") or []]
    return next(r for r in reqs if r.name == name)


def _below(name: str) -> str:
    """A version just under the declared floor of `name`."""
    floor = next(Version(s.version) for s in _declared(name).specifier if s.operator == ">=")
    return f"{floor.major}.{floor.minor - 1}.0" if floor.minor else f"{floor.major - 1}.99.0"


def _rules(found, rule: str):
    return [d for d in found if d.rule == rule]


def test_facts_read_the_declared_ranges_and_the_tested_sets():
    f = doctor_facts.collect_facts()
    assert f.declared == importlib.metadata.requires("torch-tour")
    assert "nlp" in f.extras and f.installed["torch"] == TORCH
    assert str(declared_ranges(f)["transformers"][0].specifier) == str(_declared("transformers").specifier)
    assert "nlp" in declared_ranges(f)["transformers"][1]
    assert f.tested_files[0].endswith("constraints.txt")  # this checkout is installed editable
    assert f.tested["torch"][0] == doctor_facts.read_pins(doctor_facts.tested_files()[0])["torch"]


def test_below_the_floor_is_an_error_naming_what_it_breaks():
    old = _below("transformers")
    broken = row("tiny model", "transformers", AttributeError("x"), ("torch", "transformers", "torchvision"))
    f = facts(installed={**facts().installed, "transformers": old})
    (d,) = _rules(diagnose(f, [torch_row(), broken]), "version-range")
    assert d.severity == ERROR and f"transformers {old} is below the floor" in d.cause
    assert "supports" in d.cause and "nlp" in d.evidence
    assert d.explains == [{"group": "transformers", "name": "tiny model"}]
    tested = f.tested["transformers"][0]
    assert d.fix == f'pip install "transformers=={tested}"'


def test_torch_below_the_floor_pins_torch_and_its_pairs():
    f = facts(torch_version=_below("torch"), installed={**facts().installed, "torch": _below("torch")})
    (d,) = _rules(diagnose(f, [torch_row()]), "version-range")
    tested = f.tested["torch"][0]
    assert d.fix.startswith(f'pip install "torch=={tested}" "torchvision==')
    assert '"torchaudio==' in d.fix


def test_untested_but_supported_is_a_note_with_both_words():
    f = facts()
    newer = f"{Version(TORCH).major}.{Version(TORCH).minor + 1}.0"
    found = diagnose(facts(torch_version=newer, installed={**f.installed, "torch": newer}), [torch_row()])
    (d,) = _rules(found, "version-untested")
    assert d.severity == NOTE and "supported" in d.cause and "not tested" in d.cause and newer in d.cause
    assert not [x for x in found if x.severity == ERROR and x.rule.startswith("version")]


def test_the_installed_stack_is_supported_and_a_note_names_only_untested_versions():
    f = facts()
    found = diagnose(f, [torch_row()])
    assert not _rules(found, "version-range"), found
    for d in _rules(found, "version-untested"):  # on a stack other than the tested sets (make compat)
        untested = [n for n, v in f.installed.items() if n in (f.tested or {}) and v not in f.tested[n]]
        assert untested and all(f"{n} {f.installed[n]} (tested" in d.cause for n in untested), d


def test_unknown_tested_set_and_unknown_ranges_are_said():
    (d,) = _rules(diagnose(facts(tested=None, tested_files=[]), []), "version-untested")
    assert d.severity == NOTE and "tested set unknown" in d.cause
    (d,) = _rules(diagnose(facts(declared=None), []), "version-untested")
    assert "declared ranges unknown" in d.cause


def test_pair_tables_agree_with_the_installed_wheels():
    """The installed torchvision pairs with the installed torch in the table, as its own metadata says."""
    tv = importlib.metadata.version("torchvision")
    requires = [r for r in importlib.metadata.requires("torchvision") or [] if Requirement(r).name == "torch"]
    assert fixes.pairs("torchvision", tv, TORCH, requires)
    assert fixes.companion("torchvision", TORCH) is not None
    assert not fixes.pairs("torchvision", "0.0.1", TORCH)


def test_a_driver_too_old_gets_a_torch_it_runs_or_the_driver_the_build_needs():
    floor = str(_declared("torch").specifier)
    found = fixes.torch_for_driver(TORCH, "12.2", floor)
    if found is not None:
        release, cuda = found
        assert _declared("torch").specifier.contains(release) and Version(cuda).major == 12
        assert fixes.carries(cuda, release)
    assert fixes.driver_fix(TORCH, "13.0", "10.2", floor, ()).startswith("install an NVIDIA driver >= 580.65.06")
    assert fixes.CHECKED.startswith("checked 2026-11-30")


def test_every_run_says_how_many_versions_are_supported_and_tested():
    from tour.tools.doctor.rules import version_summary

    f = facts()
    n = len([name for name in declared_ranges(f) if name in f.installed])
    pinned = len([name for name in declared_ranges(f) if name in f.installed and name in f.tested])
    assert version_summary(f) == (f"versions: {n} of the {n} installed packages the tour declares are supported "
                                  f"(within its ranges); {pinned} of the {pinned} the tested sets pin are at a "
                                  "tested version")
    newer = f"{Version(TORCH).major}.{Version(TORCH).minor + 1}.0"
    assert f"{pinned - 1} of the {pinned}" in version_summary(facts(installed={**f.installed, "torch": newer}))
    assert version_summary(facts(tested=None)).endswith("; tested set unknown")
