"""`tour run all` and its report: sections, pictures, results.json, and the page as a real browser shows it."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tour.tools import report, run_all
from tour.tools.registry import STOPS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def tour_out(tmp_path_factory):
    """A real quick tour of the basics stop, plus a stop that fails, through the CLI."""
    out = tmp_path_factory.mktemp("tour")
    res = subprocess.run([sys.executable, "-m", "tour", "run", "all", "--quick", "--only", "basics",
                          "--out", str(out), "--no-doctor", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "[1/1] basics: ok" in res.stdout and "tour finished in" in res.stdout
    return out


def test_results_json_has_every_stop_result(tour_out):
    data = json.loads((tour_out / "results.json").read_text())
    assert data["quick"] is True and data["versions"]["torch"] != "not installed"
    basics = data["stops"]["basics"]
    assert basics["ok"] and basics["result"]["test_accuracy"] >= 0.95


def test_page_has_sections_numbers_and_inlined_pictures(tour_out):
    page = (tour_out / "index.html").read_text()
    assert 'id="stop-basics"' in page and "test_accuracy" in page
    assert "data:image/png;base64," in page  # the loss curve, inlined
    assert "http://" not in page and "https://" not in page  # self-contained: no CDN, no network
    assert 'name="viewport"' in page  # readable on a phone


def test_failed_stop_is_reported_and_others_run(tmp_path, monkeypatch, capsys):
    def boom(name, cfg):
        if name == "basics":
            return run_all.StopOutcome(name, False, 0.1, "doc", error="RuntimeError: broken on purpose")
        raise AssertionError("only basics was selected")

    monkeypatch.setattr(run_all, "run_stop", boom)
    code = run_all.main(["--only", "basics", "--out", str(tmp_path), "--no-doctor"])
    assert code == 1
    assert "basics: RuntimeError: broken on purpose" in capsys.readouterr().out
    assert "broken on purpose" in (tmp_path / "index.html").read_text()


def test_a_stop_that_raises_does_not_end_the_tour(tmp_path, monkeypatch):
    import tour.basics

    monkeypatch.setattr(tour.basics, "run", lambda cfg: 1 / 0)
    outcome = run_all.run_stop("basics", run_all.Config(out=str(tmp_path)))
    assert not outcome.ok and outcome.error.startswith("ZeroDivisionError: division by zero")


@pytest.mark.parametrize("args,needle", [(["--only", "nosuch"], "unknown stop(s) nosuch"),
                                         (["--only", "basics", "--skip", "basics"], "leave no stop")])
def test_bad_selection_is_one_line(args, needle):
    res = subprocess.run([sys.executable, "-m", "tour", "run", "all", *args], capture_output=True, text=True)
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr


def test_selection_keeps_tour_order():
    cfg = run_all.Config(only="pyro,basics,nlp")
    assert run_all.selected(cfg) == ["basics", "nlp", "pyro"]
    assert run_all.selected(run_all.Config(skip="basics")) == [n for n in STOPS if n != "basics"]


def test_report_renders_bench_and_doctor(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.json").write_text(json.dumps({"rows": [{"what": "x", "ratio": 1.5}]}))
    doctor = {"probes": [{"group": "torch", "name": "matmul", "status": "ok", "detail": "matches"}]}
    outcome = run_all.StopOutcome("basics", True, 1.0, "doc", result={"acc": 0.97, "losses": list(range(20))})
    page = report.render(tmp_path, [outcome], doctor, run_all.Config(), 2.0)
    assert "tour bench" in page and "1.5" in page and "1 ok, 0 failed, 0 skipped" in page
    assert "20 values: 0 … 19" in page


def test_report_lists_the_doctors_diagnoses(tmp_path):
    doctor = {"probes": [], "diagnoses": [{"rule": "no-cxx", "severity": "error", "cause": "no C++ compiler found",
                                           "fix": "apt-get install -y g++", "explains": []}]}
    page = report.render(tmp_path, [], doctor, run_all.Config(), 1.0)
    assert "no C++ compiler found" in page and "<code>apt-get install -y g++</code>" in page


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make setup installs it as root)")
def test_page_in_headless_chromium(tour_out, tmp_path):
    url = (tour_out / "index.html").as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *profile, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stderr[-2000:]
    total = re.search(r'data-images-total="(\d+)"', body.group(1))
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(1))
    assert total and loaded, body.group(1)
    assert int(total.group(1)) >= 1 and loaded.group(1) == total.group(1)  # every picture decoded
    assert 'id="stop-basics"' in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *profile, "--window-size=420,900", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    if os.environ.get("TOUR_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["TOUR_KEEP_SCREENSHOT"])


def test_docstrings_reflow_and_number_dicts_round(tmp_path):
    doc = "First line\nof one paragraph.\n\nSecond paragraph."
    outcome = run_all.StopOutcome("basics", True, 1.0, doc, result={"rates": {"eager": 76.28150873, "cl": 113.3599}})
    page = report.render(tmp_path, [outcome], None, run_all.Config(), 1.0)
    assert '<p class="doc">First line of one paragraph.</p><p class="doc">Second paragraph.</p>' in page
    assert "eager: 76.28, cl: 113.4" in page
