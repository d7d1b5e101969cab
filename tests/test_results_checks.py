"""A Result declares its checks, and a failed check fails the stop: in `run_stop`, in `tour run all`'s exit code
and summary line, on any device. A check that did not run here (None) is a skip, never a failure."""

import dataclasses
import importlib
import sys
import types
import typing
from dataclasses import dataclass, field

import pytest

from tour.core.config import BaseConfig
from tour.core.results import BaseResult, check
from tour.tools import run_all
from tour.tools.registry import STOPS, Stop


@dataclass
class Row:
    name: str
    same: bool | None = check("this row's two sides agree", None)


@dataclass
class Inner:
    exact: bool | None = check("the inner round trip is exact", None)


@dataclass
class FakeResult(BaseResult):
    device: str
    parity: bool | None = check("fake: eager equals compiled", None)
    skipped: bool | None = check("fake: a check this device does not run", None)
    inner: Inner = field(default_factory=Inner)
    rows: list[Row] = field(default_factory=list)
    figure: float = 0.0  # not a check: a number the stop prints


def fake_stop(result: FakeResult) -> types.ModuleType:
    """A stop module with the registry's interface whose run() returns `result`."""

    @dataclass
    class Config(BaseConfig):
        pass

    module = types.ModuleType("tour_test_fake_stop")
    module.__doc__ = "A fake stop for the checks tests."
    module.NAME, module.Config, module.Result = "fake", Config, FakeResult
    module.run = lambda cfg: result
    module.main = lambda argv=None: 0
    return module


@pytest.fixture
def register(monkeypatch):
    """Put a fake stop named `fake` in the registry, importable like a real one."""

    def put(result: FakeResult) -> None:
        monkeypatch.setitem(sys.modules, "tour_test_fake_stop", fake_stop(result))
        monkeypatch.setitem(STOPS, "fake", Stop("tour_test_fake_stop", "a fake stop"))

    return put


def test_checks_walk_nested_dataclasses_and_lists_by_name():
    r = FakeResult("cpu", parity=True, inner=Inner(exact=False), rows=[Row("mlp", True), Row("cnn", None)])
    assert r.checks() == {"parity": True, "skipped": None, "inner.exact": False, "rows[mlp].same": True,
                          "rows[cnn].same": None}
    assert r.failed_checks() == ["inner.exact"]


def test_a_failed_check_fails_the_stop_and_is_named(register, tmp_path):
    register(FakeResult("cpu", parity=False, skipped=None))
    outcome = run_all.run_stop("fake", run_all.Config(out=str(tmp_path)))
    assert outcome.ok is False
    assert outcome.error == "failed check(s): parity"
    assert outcome.checks == {"parity": False, "skipped": None, "inner.exact": None}
    assert outcome.result["parity"] is False  # the Result is still saved and shown


def test_a_check_that_did_not_run_is_not_a_failure(register, tmp_path):
    register(FakeResult("cpu", parity=True, skipped=None, rows=[Row("cnn", None)]))
    outcome = run_all.run_stop("fake", run_all.Config(out=str(tmp_path)))
    assert outcome.ok and outcome.error == ""


def test_a_failed_nested_check_fails_the_stop(register, tmp_path):
    register(FakeResult("cpu", parity=True, rows=[Row("mlp", True), Row("cnn", False)]))
    outcome = run_all.run_stop("fake", run_all.Config(out=str(tmp_path)))
    assert not outcome.ok and outcome.error == "failed check(s): rows[cnn].same"


def test_run_all_exits_1_and_names_the_failed_check(register, tmp_path, capsys):
    register(FakeResult("cpu", parity=False))
    code = run_all.main(["--only", "fake", "--no-doctor", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "fake: FAILED: failed check(s): parity" in out
    assert "0 ok, 1 failed" in out
    assert "fake: eager equals compiled" in (tmp_path / "index.html").read_text()  # the check's help, marked


def test_tour_run_all_quick_reports_a_stop_with_a_failed_check_as_failed(tmp_path, monkeypatch, capsys):
    """The real basics stop, quick, with one of its checks turned False after it ran: the tour fails it."""
    from tour import basics

    real = basics.run
    monkeypatch.setattr(basics, "run", lambda cfg: dataclasses.replace(real(cfg), gradcheck_passed=False))
    code = run_all.main(["--quick", "--only", "basics", "--device", "cpu", "--no-doctor", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "basics: FAILED: failed check(s): gradcheck_passed" in out
    assert "0 ok, 1 failed" in out


# Every stop says which of its fields are checks ---------------------------------------------------------------
def declared_checks(cls: type, prefix: str = "") -> dict[str, dataclasses.Field]:
    """The check fields of a Result class, and of the dataclasses its fields hold (directly or in a list)."""
    hints = typing.get_type_hints(cls)
    found = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("check"):
            found[prefix + f.name] = f
        inner = [a for a in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(a)]
        if inner:
            found.update(declared_checks(inner[0], f"{prefix}{f.name}[]."))
    return found


@pytest.mark.parametrize("name", list(STOPS))
def test_every_stop_declares_its_checks(name):
    module = importlib.import_module(STOPS[name].module)  # the Result class only: no stop is run
    found = declared_checks(module.Result)
    assert found, f"{name}'s Result declares no check() field"
    for key, f in found.items():
        assert len(f.metadata["help"]) > 20, f"{name}.{key}: say what it checks and within what tolerance"
        # A check that may not run (a skipped section, a device without the feature) defaults to None, not False.
        assert f.default is not False, f"{name}.{key} defaults to False: a check not run would read as failed"
