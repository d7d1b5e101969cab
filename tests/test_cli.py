"""The `tour` command: fast start-up without torch, one-line errors with exit code 2, no tracebacks."""

import os
import subprocess
import sys
import time

import pytest

from tour.tools import cli
from tour.tools.registry import STOPS

PY = sys.executable


def tour(*args, env=None, timeout=300):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([PY, "-m", "tour", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def test_import_tour_imports_no_torch():
    code = "import sys, tour, tour.tools.cli, tour.core.config, tour.tools.registry, tour.core.errors; print('torch' in sys.modules)"
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_help_and_list_are_fast():
    for args in (["--help"], ["list"]):
        start = time.perf_counter()
        res = tour(*args)
        took = time.perf_counter() - start
        assert res.returncode == 0, res.stderr
        assert took < 5, f"`tour {' '.join(args)}` took {took:.1f}s: it must not import torch"
    assert all(name in res.stdout for name in STOPS)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert "torch-tour" in capsys.readouterr().out


@pytest.mark.parametrize("args,env,needle", [
    (["run", "nosuch"], {}, "unknown stop 'nosuch'"),
    (["run", "basics", "--epochs", "many"], {}, "expected an integer, got 'many'"),
    (["run", "basics", "--no-such-flag"], {}, "unrecognized arguments"),
    (["run", "basics", "--device", "tpu9"], {}, "unknown device 'tpu9'"),
    (["run", "basics"], {"TOUR_DEVICE": "tpu9"}, "TOUR_DEVICE=tpu9"),
    (["nosuchcommand"], {}, "invalid choice"),
])
def test_user_errors_are_one_line_exit_2(args, env, needle):
    res = tour(*args, env=env)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU error")
def test_absent_gpu_is_one_line_exit_2():
    res = tour("run", "basics", "--device", "cuda")
    assert res.returncode == 2
    assert "not available on this machine" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_stop_help_shows_defaults():
    res = tour("run", "basics", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())  # argparse wraps lines
    assert "--epochs EPOCHS" in text and "(default: 40; quick: 15)" in text


def test_quick_mode_never_overrides_an_explicit_flag():
    from tour import attention, basics

    assert basics.Config(quick=True).epochs == 15 and basics.Config(quick=True, epochs=100).epochs == 100
    assert basics.Config(quick=True, epochs=40).epochs == 40  # explicitly the default: still the user's choice
    assert attention.Config(quick=True, seq_lens=[4096]).seq_lens == [4096]
    assert attention.Config(quick=True).seq_lens == [128, 256, 512]


def test_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = tour("run", "basics", "--quick", "--out", str(blocker / "sub"))
    assert res.returncode == 2
    assert "cannot create output folder" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("command", ["bench", "doctor"])
def test_commands_take_their_own_flags(command):
    # `tour bench --quick` must reach the command's own parser, not the top-level one.
    res = tour(command, "--help")
    assert res.returncode == 0 and "--quick" in res.stdout, res.stderr
    bad = tour(command, "--no-such-flag")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.parametrize("flag,value,needle", [("--epochs", "0", "must be >= 1"),
                                               ("--test-fraction", "1.5", "must be <= 0.9"),
                                               ("--lr", "inf", "finite number"),
                                               ("--lr", "0", "must be > 0")])
def test_out_of_range_values_are_refused_by_the_parser(flag, value, needle, capsys):
    from tour import basics

    with pytest.raises(SystemExit) as exc:
        basics.main([flag, value])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("stop,flag", [("nlp", "--queries"), ("generate", "--prompts"), ("speech", "--sentences"),
                                       ("precision", "--prompts")])
def test_an_empty_query_prompt_or_sentence_is_refused(stop, flag, capsys):
    """A search for nothing or a question of nothing answers with something that means nothing: refuse it."""
    import importlib

    from tour.core.errors import TourError

    module = importlib.import_module(f"tour.{stop}")
    with pytest.raises(SystemExit) as exc:
        module.main([flag, "fine words", "  ", "--quick"])
    assert exc.value.code == 2 and f"argument {flag}: got an empty text" in capsys.readouterr().err
    with pytest.raises(TourError, match=f"{flag} got an empty text"):  # the import API says the same
        module.Config(**{flag[2:]: [""]})


def test_guarded_turns_user_errors_and_ctrl_c_into_exit_codes(capsys):
    from tour.core.cli import guarded
    from tour.core.errors import TourError

    def user_error():
        raise TourError("what was wrong; what to do")

    def ctrl_c():
        raise KeyboardInterrupt

    assert guarded("tour x", lambda: 0) == 0
    assert guarded("tour x", user_error) == 2
    assert guarded("tour x", ctrl_c) == 130
    assert capsys.readouterr().err == "tour x: error: what was wrong; what to do\ntour x: interrupted\n"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        guarded("tour x", lambda: 1 // 0)


def test_one_name_per_concept_across_the_stops_flags():
    """Timed repetitions are `repeats` and items per call `batch_size` in every stop; no old synonyms remain."""
    import dataclasses

    from tour.tools.registry import STOPS, load

    synonyms = {"reps", "bench_iters", "batch", "bench_batch", "hf_batch"}
    for name in STOPS:
        fields = {f.name for f in dataclasses.fields(load(name).Config)}
        assert not fields & synonyms, f"{name} still has {fields & synonyms}"
    from tour.tools import bench

    assert not {f.name for f in dataclasses.fields(bench.Config)} & synonyms


def test_a_stop_whose_check_fails_exits_1(tmp_path, capsys):
    """`tour run STOP` ran, but a claim it checks did not hold: the stop failed, said in one line, exit 1."""
    from dataclasses import dataclass

    from tour.core.cli import stop_main
    from tour.core.config import BaseConfig
    from tour.core.results import BaseResult, check

    @dataclass
    class Result(BaseResult):
        parity: bool = check("both sides agree")

    assert stop_main("fake", BaseConfig, lambda cfg: Result(parity=False), ["--out", str(tmp_path)]) == 1
    assert "FAILED check(s): parity" in capsys.readouterr().err
    assert (tmp_path / "fake" / "result.json").exists()  # the numbers are still saved, to see what went wrong
    assert stop_main("fake", BaseConfig, lambda cfg: Result(parity=True), ["--out", str(tmp_path)]) == 0


def test_an_optional_list_flag_is_unset_by_default_and_checked_when_given(capsys):
    """`list[int] | None`: None means "derive it here" (precision's fusion sizes from the caches); given, each entry
    is checked like any list's, and a bad one is one line, exit 2."""
    from tour.core.cli import parse_config
    from tour.precision.config import Config

    assert parse_config(Config, [], "precision").fusion_mb is None
    assert parse_config(Config, ["--fusion-mb", "1", "8"], "precision").fusion_mb == [1, 8]
    with pytest.raises(SystemExit) as e:
        parse_config(Config, ["--fusion-mb", "0"], "precision")
    assert e.value.code == 2 and "--fusion-mb: 0 is out of range" in capsys.readouterr().err


def test_model_unset_is_none_in_every_stop_and_the_flag_sets_it():
    """One meaning of "unset" for --model: None (the stop's own offline model), whichever stop takes the flag."""
    import dataclasses

    from tour.core.cli import parse_config
    from tour.tools import registry

    taking = [name for name in STOPS if "model" in {f.name for f in dataclasses.fields(registry.load(name).Config)}]
    assert {"nlp", "generate", "attention"} <= set(taking)
    for name in taking:
        config = registry.load(name).Config
        assert parse_config(config, [], name).model is None, name
        assert parse_config(config, ["--model", "org/some-model"], name).model == "org/some-model", name
