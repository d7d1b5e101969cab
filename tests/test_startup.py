"""One start-up for the `tour` command, `python -m tour.<stop>` and the examples (tour/core/startup.py)."""

import ast
import sys
from pathlib import Path

from tour import basics
from tour.core import startup

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_an_examples_config_reads_quick_mode_and_the_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["basics.py"])
    monkeypatch.delenv("TOUR_QUICK", raising=False)
    monkeypatch.delenv("TOUR_OUT", raising=False)
    cfg = startup.example_config(basics.Config)
    assert not cfg.quick and cfg.out == "tour-output"
    monkeypatch.setenv("TOUR_QUICK", "1")
    monkeypatch.setenv("TOUR_OUT", str(tmp_path))
    cfg = startup.example_config(basics.Config, epochs=3)
    assert cfg.quick and cfg.out == str(tmp_path) and cfg.epochs == 3  # what the example sets wins
    assert startup.example_config(basics.Config, quick=False).quick is False


def test_a_scripts_words_and_quick_flag_but_never_a_kernels_argv(monkeypatch):
    monkeypatch.delenv("TOUR_QUICK", raising=False)
    monkeypatch.setattr(sys, "argv", ["nlp.py", "--quick", "first sentence", "second"])
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert startup.script_args() == ["first sentence", "second"] and startup.quick()
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # a Jupyter kernel: its argv is a connection file
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "kernel-1.json", "--quick"])
    assert startup.script_args() == [] and not startup.quick()


def imported(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""] if isinstance(node, ast.ImportFrom) else []


def test_every_example_starts_up_before_torch():
    """The wait policy is read once, when torch starts OpenMP: the start-up must come first."""
    for script in sorted(EXAMPLES.glob("*.py")):
        body = ast.parse(script.read_text()).body
        calls = [i for i, node in enumerate(body) if ast.unparse(node) == "startup.start_up()"]
        imports = [i for i, node in enumerate(body) if any(name.split(".")[0] == "torch" for name in imported(node))]
        stops = [i for i, node in enumerate(body) if isinstance(node, ast.ImportFrom) and node.module == "tour"]
        if script.stem == "doctor":  # imports no torch: the doctor's probes run in worker processes
            assert not imports and not stops
            continue
        assert calls and all(calls[0] < i for i in imports + stops), script.name
