"""The shape of the code: three layers, one direction, and stops that can be imported without side effects.

- A stop is one file, tour/<stop>.py, while it fits; the day it needs a second it becomes a package,
  tour/<stop>/__init__.py with its parts inside; never a tour/<stop>_<what>.py sibling.
- core (tour/core/) imports neither stops nor tools; a stop imports the core only, never another stop or a tool; a
  module of a stop's package is imported by its own stop only; tools reach stops only through tour.tools.registry;
  no import cycles anywhere.
- No module over MAX_LINES lines: a file that grows past it does several jobs and is split by job.
- Importing a stop is cheap and changes nothing; running one leaves the caller's RNG, threads and environment as
  they were; its classes pickle (DataLoader workers under spawn); its Result renders as HTML in Jupyter.
"""

import ast
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import tour
from tour.tools.registry import STOPS

PKG = Path(tour.__file__).parent
PY = sys.executable


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every tour.* module a file imports, at the top or inside functions (from-imports of names resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tour"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tour":
            for a in node.names:  # `from tour import basics` imports the module tour.basics
                sub = f"{node.module}.{a.name}"
                found.add(sub if (PKG.parent / Path(*sub.split("."))).with_suffix(".py").exists()
                          or (PKG.parent / Path(*sub.split("."))).is_dir() else node.module)
    return found


GRAPH = {module_name(p): imports_of(p) for p in PKG.rglob("*.py")}
STOP_MODULES = {s.module for s in STOPS.values()}


def layer(mod: str) -> str:
    if mod.startswith("tour.core") or mod == "tour":
        return "core"
    if mod.startswith("tour.tools") or mod == "tour.__main__":
        return "tools"
    return "stops"


def owner(mod: str) -> str:
    """The stop a stop-layer module belongs to: a stop's package owns its modules, tour.generate.speed ->
    tour.generate. A leftover sibling tour.<stop>_<what> still maps to its stop here, so that the import tests stay
    about imports: test_every_stop_is_one_file_or_one_package is the one that forbids it."""
    stem = mod.removeprefix("tour.")
    return next((s for s in STOP_MODULES if stem == s.removeprefix("tour.") or
                 stem.startswith((s.removeprefix("tour.") + "_", s.removeprefix("tour.") + "."))), mod)


def test_every_stop_layer_file_belongs_to_a_stop():
    stray = [m for m in GRAPH if layer(m) == "stops" and owner(m) not in STOP_MODULES]
    assert not stray, f"files in tour/ that are neither a stop nor a module of a stop's package: {stray}"


def shape_problems(pkg: Path, stem: str) -> list[str]:
    """What breaks the one rule for the stop `stem` in the package folder `pkg`: it must be exactly one of
    <stem>.py and <stem>/__init__.py, and have no <stem>_<what>.py sibling."""
    one_file, package = pkg / f"{stem}.py", pkg / stem / "__init__.py"
    problems = [f"{p.name}: a sibling of the stop; move it into {stem}/ (e.g. {stem}/{p.name[len(stem) + 1:]})"
                for p in sorted(pkg.glob(f"{stem}_*.py"))]
    if one_file.exists() == package.exists():
        both, files = one_file.exists(), (f"{stem}.py", f"{stem}/__init__.py")
        problems.append(f"{stem}: both {files[0]} and {files[1]}" if both else
                        f"{stem}: neither {files[0]} nor {files[1]}")
    return problems


@pytest.mark.parametrize("name", list(STOPS))
def test_every_stop_is_one_file_or_one_package(name):
    stem = STOPS[name].module.removeprefix("tour.")
    assert not shape_problems(PKG, stem)


def test_the_shape_test_catches_a_sibling_and_a_double(tmp_path):
    (tmp_path / "talk.py").write_text("")
    assert shape_problems(tmp_path, "talk") == []
    (tmp_path / "talk_clips.py").write_text("")
    (tmp_path / "talk").mkdir()
    (tmp_path / "talk" / "__init__.py").write_text("")
    assert shape_problems(tmp_path, "talk") == [
        "talk_clips.py: a sibling of the stop; move it into talk/ (e.g. talk/clips.py)",
        "talk: both talk.py and talk/__init__.py"]
    assert shape_problems(tmp_path, "missing") == ["missing: neither missing.py nor missing/__init__.py"]


@pytest.mark.parametrize("mod", sorted(GRAPH))
def test_imports_go_one_way(mod):
    for dep in GRAPH[mod]:
        if dep == "tour":
            continue
        if layer(mod) == "core":
            assert layer(dep) == "core", f"{mod} (core) imports {dep}: the core must not know stops or tools"
        elif layer(mod) == "stops":
            assert layer(dep) != "tools", f"{mod} (a stop) imports the tool {dep}"
            if layer(dep) == "stops":
                assert owner(dep) == owner(mod), f"{mod} imports another stop's module {dep}"
        else:
            assert layer(dep) != "stops", f"{mod} (a tool) imports {dep}; tools reach stops via tour.tools.registry"


def test_no_import_cycles():
    seen, stack = set(), []

    def visit(mod):
        if mod in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(mod):] + [mod]))
        if mod in seen or mod not in GRAPH:
            return
        stack.append(mod)
        for dep in GRAPH[mod]:
            visit(dep)
        stack.pop()
        seen.add(mod)

    for mod in GRAPH:
        visit(mod)


def test_the_layering_test_catches_a_stop_importing_a_stop(tmp_path):
    # The check itself must bite: a planted `from tour.basics import x` inside another stop is found.
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from tour.basics import SoftPlus\n")
    assert "tour.basics" in imports_of(planted)
    assert owner("tour.basics") != owner("tour.nlp")
    assert owner("tour.generate.speed") == "tour.generate" != owner("tour.nlp")


@pytest.mark.parametrize("name", list(STOPS))
def test_importing_a_stop_is_cheap_and_changes_nothing(name):
    # A fresh interpreter, as in a notebook's first cell: at most torch comes in, never transformers & co, and
    # matplotlib's backend is not switched.
    code = ("import sys, os; import matplotlib; before = matplotlib.get_backend(); env = dict(os.environ); "
            f"import {STOPS[name].module}; "
            "heavy = sorted(m for m in ('transformers', 'torchvision', 'torchaudio', 'lightning', 'pyro', 'datasets', "
            "'matplotlib.pyplot') if m in sys.modules); "
            "print(heavy, matplotlib.get_backend() == before, dict(os.environ) == env)")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "True", "True"]


def test_a_stop_run_leaves_the_callers_state_alone(tmp_path):
    import random

    import numpy as np
    import torch

    from tour import basics

    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    threads = torch.get_num_threads()
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    env = dict(os.environ)
    basics.run(basics.Config(quick=True, device="cpu", epochs=1, out=str(tmp_path)))
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]
    assert torch.get_num_threads() == threads and dict(os.environ) == env


def test_bad_config_fails_in_one_line_from_any_entry_point():
    from tour import basics
    from tour.core.errors import TourError

    with pytest.raises(TourError, match=r"^--epochs 0 is out of range: it must be >= 1$"):
        basics.Config(epochs=0)
    out = subprocess.run([PY, "-c", "from tour import basics; basics.run(basics.Config(epochs=0))"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == "tour.core.errors.TourError: --epochs 0 is out of range: it must be >= 1"


def _first_item(loader_args):
    from torch.utils.data import DataLoader

    return next(iter(DataLoader(*loader_args, batch_size=4, num_workers=2, multiprocessing_context="spawn")))


def test_datasets_and_modules_pickle_for_spawned_workers():
    # Defined at module level, so DataLoader workers started with `spawn` (macOS, Linux from Python 3.14) can
    # unpickle them; a class defined inside a function fails here.
    import torch

    from tour import basics
    from tour.core.data import DigitsDataset

    x = torch.randint(0, 255, (8, 1, 28, 28), dtype=torch.uint8)
    xb, yb = _first_item((DigitsDataset(x, torch.arange(8), train=True),))
    assert xb.shape == (4, 1, 28, 28) and xb.dtype == torch.float32 and yb.tolist() == [0, 1, 2, 3]
    for obj in (basics.Halving(), basics.SoftPlus):
        assert pickle.loads(pickle.dumps(obj)) is not None


def test_result_renders_as_html_with_inline_pictures(tmp_path):
    from tour import basics

    res = basics.run(basics.Config(quick=True, device="cpu", epochs=2, out=str(tmp_path)))
    page = res._repr_html_()
    assert "<table>" in page and "test_accuracy" in page and 'src="data:image/png;base64,' in page
    assert str(res).splitlines()[0].strip().startswith("device")  # plain text stays what the CLI prints


MAX_LINES = 400


def test_no_module_is_over_the_line_limit():
    lengths = {str(path.relative_to(PKG)): len(path.read_text(encoding="utf-8").splitlines())
               for path in PKG.rglob("*.py")}
    long = {name: n for name, n in sorted(lengths.items()) if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split each by job): {long}"
