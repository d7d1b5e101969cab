"""`tour run all` and its report: sections, pictures, results.json, and the page as a real browser shows it."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import typing

import pytest

from tour.tools import report, run_all
from tour.tools.registry import STOPS, load

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


@pytest.mark.parametrize("args,needle", [(["--only", "nosuch"], "'nosuch' is not one of"),
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


# The page as a lesson: labels and units declared once, tables for tables, one chart of every ratio. ---------------
from dataclasses import dataclass, field  # noqa: E402

from tour.core.labels import flat, labels_of, parts_of  # noqa: E402
from tour.core.results import BaseResult, check, labelled  # noqa: E402


@dataclass
class _Row:
    model: str
    mode: str
    eager_ms: float = labelled("eager", "ms")
    speedup: float | None = labelled("speed-up (eager / compiled)", "x", None, parity="parity")
    parity: bool | None = check("compiled output allclose to eager", None)


@dataclass
class _Result(BaseResult):
    device: str
    accuracy: float = labelled("held-out accuracy", "%", 0.0)
    kv_ratio: float = labelled("KV cache (off / on)", "x", 0.0, parity="kv_same")
    kv_same: bool = False
    rows: list[_Row] = labelled("eager vs torch.compile", default_factory=list)
    hits: dict = labelled("search", default_factory=dict,
                          columns={"query": ("query", ""), "text": ("sentence", ""), "cosine": ("cosine", "")})
    learned: bool | None = check("accuracy above its floor", None)
    losses: list[float] = field(default_factory=list)


def _result() -> _Result:
    return _Result("cpu", 0.9722, 3.2, True, [_Row("mlp", "inference", 1.5, 2.0, True)],
                   {"a cat": [["The cat sat.", 0.81], ["Dogs bark.", 0.42]]}, True, [1.0, 0.5])


def test_labels_are_declared_once_and_read_everywhere():
    labels = labels_of(_Result)
    assert labels["accuracy"].unit == "%" and labels["rows[].speedup"].parity == "parity"
    assert labels["hits[].cosine"].text == "cosine" and labels["learned"].check and "losses" not in labels
    text = str(_result())
    assert re.search(r"held-out accuracy +97.22 %", text) and re.search(r"KV cache \(off / on\) +3.2×", text)
    assert re.search(r"learned +✓ pass", text)  # a check: its name and its mark
    assert "\n    model mlp, mode inference, eager 1.5 ms, speed-up (eager / compiled) 2×, parity ✓ pass" in text
    assert "\n    a cat: The cat sat., 0.81; Dogs bark., 0.42" in text  # a table: a line per row
    assert text.splitlines()[0].split() == ["device", "cpu"]  # no label: the field's name
    page = _result()._repr_html_()
    assert "held-out accuracy" in page and "97.22 %" in page and "<code>accuracy</code>" in page
    assert "✓ pass</b>" in page and "accuracy above its floor" in page  # the check, as a mark with its help
    assert "<th title=\"eager_ms\">eager (ms)</th>" in page and "2×" in page  # a list of dataclasses: a table
    assert "The cat sat." in page and "[[" not in page  # search hits: a table, not JSON


@dataclass
class _Timings:
    kv_ratio: float = labelled("KV cache (off / on)", "x", 0.0, parity="kv_same")
    kv_same: bool | None = check("same tokens with and without the cache", None)


@dataclass
class _WithParts(BaseResult):
    device: str
    speed: _Timings


def test_a_result_of_parts_reads_like_a_flat_one(tmp_path):
    """A Result may hold its sections as parts (`result.speed.kv_ratio`): labels, parity, checks, the CLI text,
    the notebook table and the report all reach a part's fields by `part.field`."""
    result = _WithParts("cpu", _Timings(3.2, False))
    labels = labels_of(_WithParts)
    assert labels["speed.kv_ratio"].parity == "speed.kv_same" and labels["speed.kv_same"].check
    assert result.checks() == {"speed.kv_same": False} and result.failed_checks() == ["speed.kv_same"]
    text = str(result)
    assert re.search(r"KV cache \(off / on\) +3.2×", text) and re.search(r"speed.kv_same +✗ FAIL", text)
    assert "KV cache (off / on)" in result._repr_html_() and '"kv_ratio"' not in result._repr_html_()
    data = flat({"device": "cpu", "speed": {"kv_ratio": 3.2, "kv_same": False}}, _WithParts)
    assert data == {"device": "cpu", "speed.kv_ratio": 3.2, "speed.kv_same": False}
    assert [(r.what, r.parity) for r in report.ratios_of("x", data, labels)] == [("x · KV cache (off / on)", False)]


def _lesson_outcomes() -> list:
    """A hand-made run: no stop runs, the shapes are what the stops' Results hold."""
    O = run_all.StopOutcome
    return [
        O("generate", True, 12.3, "A chat LM offline.", checks={"speed.kv_same": True}, result={
            "device": "cpu", "params_m": 134.5, "speed": {
                "kv_on_ms": 410.0, "kv_off_ms": 1310.0, "kv_ratio": 3.2, "kv_same": True, "batched_ratio": 2.14,
                "batched_same": True, "sdpa_ratio": 1.11, "sdpa_same": False, "decode_tokens_per_s": 21.5,
                "decode_limit_tokens_per_s": 60.2}}),
        O("compile", True, 30.1, "torch.compile vs eager", result={"device": "cpu", "comparisons": [
            {"model": "mlp", "mode": "inference", "eager_ms": 1.2, "compiled_ms": 0.6, "speedup": 2.0, "parity": True},
            {"model": "mlp", "mode": "training step", "eager_ms": 3.0, "compiled_ms": 3.6, "speedup": 0.83,
             "parity": None}]}),
        O("nlp", True, 95.0, "MiniLM.", result={"device": "cpu", "fine_tune": {"accuracy": 0.912}, "search_hits": {
            "a cat on a mat": [["The cat sat.", "pets", 0.81], ["Dogs bark.", "pets", 0.42]]},
            "throughput": {"speedup": 1.45}}),
        O("vision", True, 40.0, "vision", result={"device": "cpu", "pretrained": {"speedup": {
            "eager (no_grad)": 1.0, "channels_last": 1.3}}, "mnist": {"test_accuracy": 0.953}}),
        O("attention", True, 5.0, "attention", result={"device": "cpu", "lengths": {"rows": [
            {"seq_len": 256, "naive_ms": 2.0, "sdpa_ms": 1.0, "ratio": 2.0, "allclose": True}]}}),
        O("export", False, 3.0, "export", error="failed check(s): parity", result={
            "device": "cpu", "pt2": {"eager": {"ratio": 1.2, "parity": {"1": True, "8": False}}}}),
        O("precision", True, 60.0, "precision", result={"device": "cpu", "encoder": {"rows": [
            {"model": "MiniLM inference", "variant": "fp32 eager", "ms": 9.0, "speedup": 1.0, "keeps": True},
            {"model": "MiniLM inference", "variant": "bf16 autocast", "ms": 5.0, "speedup": 1.8, "keeps": True}]}}),
        O("pyro", False, 0.5, "pyro", error="ImportError: No module named 'pyro'"),
    ]


def _lesson_bench(out):
    (out / "bench").mkdir(exist_ok=True)
    rows = [{"section": "generate", "what": "decode ms/token", "baseline": "bandwidth limit", "variant": "measured",
             "baseline_ms": 16.0, "variant_ms": 46.0, "ratio": 0.35, "parity": None, "note": "21 vs 60 tok/s",
             "roof": True},
            {"section": "compile", "what": "mlp", "baseline": "eager", "variant": "torch.compile", "baseline_ms": 2.0,
             "variant_ms": 1.0, "ratio": 2.0, "parity": True}]
    flops = [{"model": "MiniLM-L6 encoder", "gflops": 40.0, "fraction_of_roof": 0.27}]
    (out / "bench" / "bench.json").write_text(json.dumps({"roof_gflops": 150.0, "rows": rows, "flops": flops}))


def test_every_ratio_is_read_with_its_parity_and_every_roof(tmp_path):
    _lesson_bench(tmp_path)
    ratios, roofs = report.measured(_lesson_outcomes(), tmp_path)
    got = {r.what: (round(r.value, 2), r.parity) for r in ratios}
    assert got["generate · KV cache (off / on)"] == (3.2, True)
    assert got["generate · SDPA attention (eager / sdpa)"] == (1.11, False)
    assert got["compile · speed-up (eager / compiled): mlp, inference"] == (2.0, True)
    assert got["compile · speed-up (eager / compiled): mlp, training step"] == (0.83, None)
    assert got["attention · naive / SDPA: sequence length 256"] == (2.0, True)
    assert got["export · AOTInductor .pt2 (eager / package)"] == (1.2, False)  # one batch size differed
    assert got["vision · EfficientNet-Lite0 vs eager: channels_last"] == (1.3, None)
    assert got["precision · speed-up over fp32 eager: MiniLM inference, bf16 autocast"] == (1.8, True)
    assert not any(w.endswith(("eager (no_grad)", "fp32 eager")) for w in got)  # a baseline over itself: no bar
    assert got["bench compile · eager → torch.compile"] == (2.0, True)
    shares = {r.what: round(r.share, 2) for r in roofs}
    assert shares == {"generate · decode rate, KV cache, batch 1": 0.36, "bench generate · decode ms/token": 0.35,
                      "bench · MiniLM-L6 encoder": 0.27}


def field_paths(cls, prefix: str = "") -> set[str]:
    """Every field of a Result class by path, a part's (and a part's part's) as `speed.kv_same`."""
    found = {prefix + f.name for f in dataclasses.fields(cls)}
    for part, part_class in parts_of(cls).items():
        found |= field_paths(part_class, f"{prefix}{part}.")
    return found


def hint_of(cls, path: str):
    """The type of the field at `path` (`lengths.rows`: the rows field of the lengths part)."""
    *parts, name = path.split(".")
    for part in parts:
        cls = parts_of(cls)[part]
    return typing.get_type_hints(cls)[name]


def test_every_declared_parity_and_roof_names_a_field():
    """A renamed field must not silently drop a parity mark or a roof from the chart."""
    for name in STOPS:
        try:
            result_class = load(name).Result
        except ImportError:
            continue  # an optional stack not installed here
        labels = labels_of(result_class)
        for path, label in labels.items():
            table, _, column = path.partition("[].")
            siblings = field_paths(result_class)  # a part's fields too, as `speed.kv_same`
            if column:  # a table's columns: declared ones, or the fields of the dataclass it lists
                row = next((a for a in typing.get_args(hint_of(result_class, table)) if dataclasses.is_dataclass(a)),
                           None)
                siblings = {f.name for f in dataclasses.fields(row)} if row else {c for c, *_ in labels[table].columns}
            for ref in (label.parity, label.roof):
                assert ref is None or ref in siblings, f"{name}.{path} names {ref!r}, which is not a field"


def test_page_opens_with_the_chart_and_reads_like_a_lesson(tmp_path):
    _lesson_bench(tmp_path)
    page = report.render(tmp_path, _lesson_outcomes(), None, run_all.Config(), 200.0)
    chart = page.index('id="ratios"')
    assert chart < page.index('id="stop-generate"')  # at the top, before the stops
    assert page[chart:].index("data:image/png;base64,") < page[chart:].index("</section>")  # inlined
    assert "3.20×" in page and "✓ same answer" in page and "✗ answers differ" in page  # the numbers beneath it
    assert "KV cache (off / on)" in page and "3.2×" in page and "21.5 tokens/s" in page and "91.2 %" in page
    assert "<th>cosine similarity</th>" in page.replace(' title="cosine"', "") and "The cat sat." in page
    assert "[[" not in page  # no raw JSON for a table
    assert "http://" not in page and "https://" not in page
    running = report.render(tmp_path, _lesson_outcomes(), None, run_all.Config(), 200.0, chart=False)
    assert "data:image/png;base64," not in running and "drawn when the tour ends" in running
    assert "3.20×" in running and "✓ same answer" in running  # the numbers so far, without the picture


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make setup installs it as root)")
def test_lesson_page_in_headless_chromium(tmp_path):
    from PIL import Image

    out = tmp_path / "tour"
    out.mkdir()
    _lesson_bench(out)
    report.write(out, _lesson_outcomes(), None, run_all.Config(), 200.0)
    url, profile = (out / "index.html").as_uri(), f"--user-data-dir={tmp_path / 'profile'}"
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, profile, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r'data-images-total="(\d+)" data-images-loaded="(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2) == "1", dom[:300]  # the chart decoded (the only picture)
    shot = tmp_path / "lesson.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, profile, f"--screenshot={shot}", "--window-size=1200,2000", url],
                   capture_output=True, timeout=120)
    assert shot.exists(), "chromium wrote no screenshot"
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "the page rendered blank"  # text, bars, marks: many shades
    top = image.crop((0, 0, 1200, 1400)).getcolors(maxcolors=1 << 20)
    assert any(rgb == (59, 111, 212) for _, rgb in top), "the chart's bars are not on screen"  # plots' #3b6fd4
    if os.environ.get("TOUR_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["TOUR_KEEP_SCREENSHOT"] + ".lesson.png")
