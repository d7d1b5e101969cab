"""examples/ are the lesson: every example is a jupytext percent-format walkthrough, and two of them, turned into
notebooks, run top to bottom on a real Jupyter kernel (nbclient) in quick mode, printing what they teach and
rendering a stop's Result as HTML (with its pictures inline)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_is_a_percent_format_walkthrough(script):
    nb = jupytext.read(script)
    kinds = [cell.cell_type for cell in nb.cells]
    assert kinds[0] == "markdown", "open with the story: what we are about to see and why"
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 3, kinds
    text = script.read_text()
    assert "TOUR_QUICK" in text, "quick mode comes from the environment (examples/run_all.sh, notebooks)"
    assert not re.search(r"\bmain\(", text), "a walkthrough, not a wrapper around main()"


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A `python3` kernelspec for this very interpreter, found first through JUPYTER_PATH: a clean venv needs no
    `ipykernel install`, and a user's own python3 kernel (perhaps another Python) is not picked. The kernel process
    inherits the environment, so quick mode and the output folder reach the notebook as they reach a script."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (torch-tour tests)", "language": "python"}))
    for var, sub in (("JUPYTER_PATH", "jupyter"), ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("TOUR_QUICK", "1")
    monkeypatch.setenv("TOUR_OUT", str(tmp_path / "out"))
    return tmp_path


def execute(name: str, cwd: Path):
    nb = jupytext.read(EXAMPLES / f"{name}.py")
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})  # the kernel's working folder
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    return nb


def outputs(nb, kind: str) -> list:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
            if out["output_type"] == kind]


def result_html(nb) -> str:
    """The HTML of the last cell that displayed a Result (its `_repr_html_`)."""
    found = [out["data"]["text/html"] for out in outputs(nb, "execute_result") if "text/html" in out["data"]]
    assert found, "no cell displayed HTML: the last cell should end with the Result"
    return found[-1]


# example, the line its last cell prints (with one number to check), what that number must satisfy, the Result it
# displays, and whether that Result has pictures. basics and attention: the cheapest two that end with a Result.
NOTEBOOKS = [
    ("basics", r"basics: held-out accuracy (0\.\d+), gradcheck True", lambda acc: acc > 0.8, "tour.basics.Result",
     True),
    ("attention", r"attention: (\d+) lengths, all allclose: True", lambda n: n == 3, "tour.attention.Result", False),
]


@pytest.mark.parametrize("name, line, check, result_class, pictures", NOTEBOOKS, ids=[n[0] for n in NOTEBOOKS])
def test_notebook_runs_on_a_kernel(kernel, name, line, check, result_class, pictures):
    if name == "attention":
        pytest.importorskip("transformers")
    nb = execute(name, kernel)
    text = "".join(out["text"] for out in outputs(nb, "stream") if out["name"] == "stdout")
    match = re.search(line, text)
    assert match, f"expected a line like {line!r} in the notebook's output:\n{text[-2000:]}"
    assert check(float(match.group(1))), match.group(0)
    html = result_html(nb)
    assert result_class in html and "<table>" in html  # the Result's _repr_html_, not its plain-text repr
    if pictures:
        assert 'src="data:image/png;base64,' in html, "the Result's pictures are inlined"
        assert list((kernel / "out").iterdir()), "TOUR_OUT reached the kernel: the stop wrote its files there"
