"""The tour's report: `index.html` (self-contained: pictures inlined, no network, readable on a phone) and
`results.json` with every stop's Result. Written by `tour run all`.

The page opens with one chart of every side-by-side ratio the run measured (with its parity mark) and the roofs;
then each stop's checks as marks and its figures under their labels and units, read from the labels its Result
class declares (`tour.core.results.labelled`). Imports no torch of its own (the stops it ran already did).
"""

from __future__ import annotations

import html
import importlib.metadata
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from tour.core.assets import RANDOM_LABEL
from tour.core.files import write_text
from tour.core.labels import Label, flat, labels_of
from tour.core.render import captions, checks_html, is_number, pictures_html, result_table, rows_table, short
from tour.core.results import BenchRow
from tour.core.roofs import share
from tour.tools.registry import STOPS, load

VERSIONED = ["torch", "torchvision", "torchaudio", "transformers", "datasets", "lightning", "pyro-ppl",
             "torch-tour"]

CSS = """
body{font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
main{max-width:980px;margin:auto;padding:1rem}
header{background:#812ce5;color:#fff;padding:1.2rem 1rem}header h1{margin:0;font-size:1.6rem}
header p{margin:.3rem 0 0}nav{display:flex;flex-wrap:wrap;gap:.4rem;margin:.8rem 0}
nav a{padding:.2rem .6rem;border-radius:1rem;background:#fff;color:#1b1f24;text-decoration:none;font-size:.9rem}
section{background:#fff;border-radius:10px;padding:1rem;margin:1rem 0;box-shadow:0 1px 3px #0002}
h2{margin:.2rem 0 .5rem;font-size:1.3rem}.ok{color:#137333}.failed{color:#c5221f}.skipped{color:#8a6d00}
.badge{font-size:.85rem;font-weight:600;margin-left:.5rem}.doc{color:#444}
table{border-collapse:collapse;width:100%;font-size:.9rem;display:block;overflow-x:auto}
td,th{border-bottom:1px solid #e3e5e8;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f1f3}td.k{min-width:12rem}
.pics{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:.8rem;margin-top:.8rem}
figure{margin:0;max-width:720px}figure img{width:100%;height:auto;box-sizing:border-box;border:1px solid #e3e5e8;border-radius:6px}
figcaption{font-size:.8rem;color:#555}code{font-size:.85rem}figure.chart{max-width:none;overflow-x:auto}
figure.chart img{min-width:640px}
ul.checks{list-style:none;padding-left:0}small.f code{font-size:.75rem}details{margin-top:.5rem}
td table{font-size:.85rem}th[scope]{background:#fafbfc;font-weight:600}
"""

# Lets a browser test (and a curious reader's console) see that every picture decoded.
SCRIPT = """
window.addEventListener('load',()=>{const imgs=[...document.images];
document.body.dataset.imagesTotal=imgs.length;
document.body.dataset.imagesLoaded=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;});
"""


def _versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _result_class(name: str) -> type | None:
    """A stop's Result class; None for a stop that cannot load (its section shows the field names)."""
    try:
        return load(name).Result if name in STOPS else None
    except Exception:  # noqa: BLE001 - a stop that failed to import still gets its section
        return None


def _labels(name: str) -> dict[str, Label]:
    """The labels a stop's Result class declares; none (so field names show) for a stop that cannot load."""
    cls = _result_class(name)
    return labels_of(cls) if cls is not None else {}


def _flat(name: str, result: dict | None) -> dict:
    """A stop's result.json with its parts' fields as `part.field` keys, the paths its labels use."""
    return flat(result or {}, _result_class(name))


@dataclass
class Ratio:
    what: str  # where it was measured and what: "generate · KV cache speed-up"
    value: float  # baseline time / variant time: above 1 the variant is faster
    parity: bool | None  # both sides gave the same answer; None: nothing compared


@dataclass
class Roof:
    what: str
    share: float  # of the limit this machine allows
    detail: str  # "12.3 of 45.6 tokens/s (memory-bandwidth limit)"


def _parity(value, key: str | None = None) -> bool | None:
    """A parity field as one mark: a bool, or a dict of them (per batch size...) that must all hold."""
    if isinstance(value, dict):
        if key in value:
            return _parity(value[key])
        return all(map(bool, value.values())) if value else None
    return None if value is None else bool(value)


def _row_name(row: dict, table: str, labels: dict[str, Label]) -> str:
    """A table row's name: its leading words and whole numbers (`mlp, inference`; `sequence length 512`)."""
    parts = []
    for key, value in row.items():
        if not isinstance(value, (str, int)) or isinstance(value, bool) or len(parts) == 2:
            break
        label = labels.get(f"{table}[].{key}")
        parts.append(value if isinstance(value, str) else f"{label.text if label else key} {value}")
    return ", ".join(parts)


def ratios_of(name: str, result: dict, labels: dict[str, Label]) -> list[Ratio]:
    """Every side-by-side ratio a Result holds: the fields (or table columns) its class labels with unit "x". A
    baseline over itself (exactly 1, the first row of a variants table) compares nothing and is left out."""
    found = []
    for path, label in labels.items():
        if label.unit != "x":
            continue
        table, _, column = path.partition("[].")
        if column:
            rows = [r for r in result.get(table) or [] if isinstance(r, dict) and is_number(r.get(column))]
            found += [Ratio(f"{name} · {label.text}: {_row_name(row, table, labels)}", row[column],
                            _parity(row.get(label.parity))) for row in rows if row[column] != 1.0]
            continue
        value, parity = result.get(path), result.get(label.parity) if label.parity else None
        if is_number(value):
            found.append(Ratio(f"{name} · {label.text}", value, _parity(parity)))
        elif isinstance(value, dict):  # variant -> ratio
            found += [Ratio(f"{name} · {label.text}: {k}", v, _parity(parity, k))
                      for k, v in value.items() if is_number(v) and v != 1.0]
    return found


def roofs_of(name: str, result: dict, labels: dict[str, Label]) -> list[Roof]:
    """Every figure a Result measures against a limit (`labelled(..., roof="field")`), as the share reached."""
    found = []
    for path, label in labels.items():
        value, limit = result.get(path), result.get(label.roof) if label.roof else None
        if is_number(value) and is_number(limit) and limit > 0:
            roof = labels[label.roof].text if label.roof in labels else label.roof
            found.append(Roof(f"{name} · {label.text}", share(value, limit),  # above 1: the roof was wrong
                              f"{short(float(value))} of {short(float(limit))} {label.unit} ({roof})"))
    return found


def _bench_data(out: Path) -> dict:
    path = out / "bench" / "bench.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    return data if isinstance(data, dict) else {"rows": data}


def bench_bars(data: dict) -> tuple[list[Ratio], list[Roof]]:
    """`tour bench`'s rows (BenchRow) as ratios, its roof rows and FLOP rates as roofs."""
    ratios, roofs = [], []
    for row in data.get("rows") or []:
        if not isinstance(row, dict) or not is_number(row.get("ratio")):
            continue
        what = f"bench {row.get('section', '')} · {row.get('baseline', '')} → {row.get('variant', '')}"
        if row.get("roof"):
            roofs.append(Roof(f"bench {row.get('section', '')} · {row.get('what', '')}", row["ratio"],
                              row.get("note") or f"limit {row.get('baseline', '')}"))
        else:
            ratios.append(Ratio(what, row["ratio"], _parity(row.get("parity"))))
    roof = data.get("roof_gflops")
    for f in data.get("flops") or []:
        if is_number(f.get("fraction_of_roof")) and roof:
            roofs.append(Roof(f"bench · {f.get('model', '')}", f["fraction_of_roof"],
                              f"{f.get('gflops', 0):.1f} of {roof:.1f} GFLOP/s (fp32 matmul)"))
    return ratios, roofs


def measured(outcomes: list, out: Path) -> tuple[list[Ratio], list[Roof]]:
    """The run's ratios and roofs, stop by stop in tour order, then `tour bench`'s if it wrote into `out`."""
    ratios, roofs = [], []
    for o in (o for o in outcomes if o.result):  # a stop that failed or never ran measured nothing
        labels = _labels(o.name)
        ratios += ratios_of(o.name, _flat(o.name, o.result), labels)
        roofs += roofs_of(o.name, _flat(o.name, o.result), labels)
    more = bench_bars(_bench_data(out))
    return ratios + more[0], roofs + more[1]


def _chart_section(outcomes: list, out: Path, chart: bool = True) -> str:
    """The top of the page: one chart of every ratio with its parity mark, and the roofs; the numbers beneath.
    chart=False (a report rewritten while the tour runs): the numbers so far, open, and no picture: drawing it
    took ~0.4 s a time, 5 s of a quick tour rewritten after each stop; the tour's last report draws it."""
    ratios, roofs = measured(outcomes, out)
    if not ratios and not roofs:
        return ""
    from tour.core import plots

    marks = {ok: mark for ok, (mark, _) in plots.PARITY_MARKS.items()}
    numbers = rows_table([{"measured": r.what, "ratio": f"{r.value:.2f}×", "parity": marks[r.parity]} for r in ratios]
                         + [{"measured": r.what, "ratio": f"{r.share:.0%} of the roof", "parity": r.detail}
                            for r in roofs])
    if not chart:
        return ('<section id="ratios"><h2>What each trick bought</h2><p>The chart is drawn when the tour ends; '
                "the side-by-side measurements so far (the baseline's time over the variant's):</p>"
                f"<details open><summary>the numbers</summary>{numbers}</details></section>")
    uri = plots.data_uri(plots.ratios_chart([(r.what, r.value, r.parity) for r in ratios],
                                            [(r.what, r.share, r.detail) for r in roofs]))
    return ('<section id="ratios"><h2>What each trick bought</h2><p>Each bar is one side-by-side measurement from '
            "this run: the baseline's time over the variant's, so right of 1× the variant was faster. The mark says "
            "whether both gave the same answer. Roofs are the share of this machine's limit a step reached.</p>"
            f'<figure class="chart"><img alt="chart of every side-by-side ratio and roof" src="{uri}"></figure>'
            f"<details><summary>the numbers</summary>{numbers}</details></section>")


def _state(outcome) -> str:
    """ok, failed, interrupted or not run (an outcome from before states were recorded: ok or failed)."""
    return getattr(outcome, "state", "") or ("ok" if outcome.ok else "failed")


# A state's colour: an interrupted stop and one never reached are neither passed nor failed.
_CSS = {"ok": "ok", "failed": "failed", "interrupted": "skipped", "not run": "skipped"}


def _stop_section(outcome, out: Path) -> str:
    state = _state(outcome)
    if state == "not run":  # nothing ran: no labels to load, no pictures to find (old ones are not this run's)
        return (f'<section id="stop-{outcome.name}" class="stop"><h2>{html.escape(outcome.name)}'
                f'<span class="badge skipped">NOT RUN</span></h2><p class="skipped">{html.escape(outcome.error)}</p>'
                "</section>")
    labels, pngs = _labels(outcome.name), sorted((out / outcome.name).glob("*.png"))
    error = "" if outcome.ok else f'<p class="{_CSS[state]}">{html.escape(outcome.error)}</p>'
    random = getattr(outcome, "random_weights", [])
    if random:
        error += f'<p class="skipped">{html.escape(RANDOM_LABEL)} ({html.escape(", ".join(random))})</p>'
    body = error + checks_html(getattr(outcome, "checks", {}), labels)
    data = _flat(outcome.name, outcome.result)
    body += result_table(data, labels) if outcome.result else ""
    return (f'<section id="stop-{outcome.name}" class="stop"><h2>{html.escape(outcome.name)}'
            f'<span class="badge {_CSS[state]}">{state.upper()} · {outcome.seconds:.1f} s</span></h2>'
            f"{_paragraphs(outcome.doc)}{body}{pictures_html(pngs, captions(data, labels))}</section>")


def _paragraphs(doc: str) -> str:
    """A docstring's paragraphs, re-flowed: its line breaks are for the source, not the page."""
    paras = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
    return "".join(f'<p class="doc">{html.escape(p)}</p>' for p in paras)


def _bench_section(out: Path) -> str:
    rows = _bench_data(out).get("rows")
    if not rows:
        return ""
    table = rows_table(rows, labels_of(BenchRow)) if all(isinstance(r, dict) for r in rows) else \
        f"<pre>{html.escape(json.dumps(rows, indent=1)[:4000])}</pre>"
    return f'<section id="bench"><h2>tour bench</h2><p>Ratios measured side by side in one run.</p>{table}</section>'


def _doctor_section(doctor: dict | None) -> str:
    if not doctor:
        return ""
    if "error" in doctor and len(doctor) == 1:
        return f'<section id="doctor"><h2>tour doctor</h2><p class="failed">{html.escape(doctor["error"])}</p></section>'
    probes = doctor.get("probes", [])
    cols = ["group", "name", "status", "detail"]
    rows = "".join("<tr>" + "".join(
        f'<td class="{html.escape(str(p.get("status", "")))}">{html.escape(short(p.get(c, "")))}</td>'
        for c in cols) + "</tr>" for p in probes)
    counts = {s: sum(p.get("status") == s for p in probes) for s in ("ok", "failed", "skipped")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    diagnoses = "".join(f'<li class="{"failed" if d.get("severity") == "error" else "skipped"}">'
                        f'{html.escape(d.get("cause", ""))}<br><code>{html.escape(d.get("fix", ""))}</code></li>'
                        for d in doctor.get("diagnoses") or [])
    diagnoses = f"<p>Diagnoses (one cause, one fix):</p><ul>{diagnoses}</ul>" if diagnoses else ""
    return (f'<section id="doctor"><h2>tour doctor (quick)</h2><p>{summary}</p>{diagnoses}'
            f'<table><tr>{"".join(f"<th>{c}</th>" for c in cols)}</tr>{rows}</table></section>')


def render(out: Path, outcomes: list, doctor: dict | None, cfg, seconds: float, chart: bool = True) -> str:
    versions = _versions()
    device = next((o.result.get("device") for o in outcomes if o.ok and o.result.get("device")), cfg.device)
    n_ok = sum(o.ok for o in outcomes)
    nav = "".join(f'<a href="#stop-{o.name}" class="{_CSS[_state(o)]}">{o.name}</a>' for o in outcomes)
    unfinished = [o.name for o in outcomes if _state(o) in ("interrupted", "not run")]
    partial = f" · <b>incomplete</b>: {html.escape(', '.join(unfinished))} not finished" if unfinished else ""
    head = (f"<header><h1>torch-tour report</h1><p>{n_ok}/{len(outcomes)} stops ok{partial} · "
            f"{'quick' if cfg.quick else 'full'} tour in {seconds:.0f} s · device {html.escape(str(device))} · "
            f"{time.strftime('%Y-%m-%d %H:%M')}</p></header>")
    env = ", ".join(f"{k} {v}" for k, v in versions.items())
    machine = f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    sections = "".join(_stop_section(o, out) for o in outcomes)
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>torch-tour report</title><style>{CSS}</style></head><body>{head}<main>"
            f"<p><code>{html.escape(machine)}; {html.escape(env)}</code></p><nav>{nav}</nav>"
            f"{_chart_section(outcomes, out, chart)}{sections}"
            f"{_bench_section(out)}{_doctor_section(doctor)}</main><script>{SCRIPT}</script></body></html>")


def write(out: Path, outcomes: list, doctor: dict | None, cfg, seconds: float,
          chart: bool = True) -> dict[str, Path]:
    """Write results.json and index.html into `out`; returns their paths. chart=False: a report rewritten while
    the tour runs (its chart is drawn by the last one)."""
    results = {
        "seconds": seconds,
        "quick": cfg.quick,
        "versions": _versions(),
        "complete": all(_state(o) in ("ok", "failed") for o in outcomes),  # False: interrupted, or still running
        "stops": {o.name: {"ok": o.ok, "state": _state(o), "seconds": o.seconds, "error": o.error,
                           "kind": getattr(o, "kind", ""), "checks": o.checks,
                           # models it ran with random weights: its checks that need pretrained ones read not run
                           "random_weights": getattr(o, "random_weights", []), "result": o.result}
                  for o in outcomes},
        "doctor": doctor,
    }
    json_path, html_path = out / "results.json", out / "index.html"
    write_text(json_path, json.dumps(results, indent=2) + "\n")
    write_text(html_path, render(out, outcomes, doctor, cfg, seconds, chart))
    return {"json": json_path, "html": html_path}


def stop_failures(out: Path) -> tuple[int, dict[str, str]] | None:
    """What `write` recorded in `out`/results.json: (how many stops ran, {failed stop: its one-line reason}), or None
    when there is no readable results.json (the run died before writing it). A stop failed when it is not ok (an
    error, or a failed check), or when any of its checks reads False."""
    try:
        stops = json.loads((out / "results.json").read_text())["stops"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    failed = {}
    for name, stop in stops.items():
        bad = [k for k, ok in (stop.get("checks") or {}).items() if ok is False]
        if not stop.get("ok") or bad:
            failed[name] = stop.get("error") or "failed check(s): " + ", ".join(bad)
    return len(stops), failed
