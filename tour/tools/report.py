"""The tour's report: `index.html` (self-contained: pictures inlined, no network, readable on a phone) and
`results.json` with every stop's Result. Written by `tour run all`; imports no torch.
"""

from __future__ import annotations

import html
import importlib.metadata
import json
import platform
import time
from pathlib import Path

from tour.core.results import pictures_html, result_table, rows_table, short

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
th{background:#f0f1f3}td.k{font-family:ui-monospace,monospace;white-space:nowrap}
.pics{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:.8rem;margin-top:.8rem}
figure{margin:0;max-width:720px}figure img{width:100%;height:auto;border:1px solid #e3e5e8;border-radius:6px}
figcaption{font-size:.8rem;color:#555}code{font-size:.85rem}
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


def _checks_list(checks: dict) -> str:
    """The stop's declared checks as pass / fail / not-run marks."""
    if not checks:
        return ""
    mark = {True: ("ok", "✓ pass"), False: ("failed", "✗ FAIL"), None: ("skipped", "– not run")}
    items = "".join(f'<li class="{mark[ok][0]}">{mark[ok][1]} {html.escape(name)}</li>' for name, ok in checks.items())
    return f'<ul class="checks">{items}</ul>'


def _stop_section(outcome, out: Path) -> str:
    state = "ok" if outcome.ok else "failed"
    error = "" if outcome.ok else f'<p class="failed">{html.escape(outcome.error)}</p>'
    body = error + _checks_list(getattr(outcome, "checks", {})) + (result_table(outcome.result) if outcome.result
                                                                 else "")
    return (f'<section id="stop-{outcome.name}" class="stop"><h2>{html.escape(outcome.name)}'
            f'<span class="badge {state}">{state.upper()} · {outcome.seconds:.1f} s</span></h2>'
            f"{_paragraphs(outcome.doc)}{body}{pictures_html(sorted((out / outcome.name).glob('*.png')))}</section>")


def _paragraphs(doc: str) -> str:
    """A docstring's paragraphs, re-flowed: its line breaks are for the source, not the page."""
    paras = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
    return "".join(f'<p class="doc">{html.escape(p)}</p>' for p in paras)


def _bench_section(out: Path) -> str:
    path = out / "bench" / "bench.json"
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    rows = data.get("rows", data) if isinstance(data, dict) else data
    table = rows_table(rows) if isinstance(rows, list) and rows and isinstance(rows[0], dict) else \
        f"<pre>{html.escape(json.dumps(data, indent=1)[:4000])}</pre>"
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


def render(out: Path, outcomes: list, doctor: dict | None, cfg, seconds: float) -> str:
    versions = _versions()
    device = next((o.result.get("device") for o in outcomes if o.ok and o.result.get("device")), cfg.device)
    n_ok = sum(o.ok for o in outcomes)
    nav = "".join(f'<a href="#stop-{o.name}" class="{"ok" if o.ok else "failed"}">{o.name}</a>' for o in outcomes)
    head = (f"<header><h1>torch-tour report</h1><p>{n_ok}/{len(outcomes)} stops ok · "
            f"{'quick' if cfg.quick else 'full'} tour in {seconds:.0f} s · device {html.escape(str(device))} · "
            f"{time.strftime('%Y-%m-%d %H:%M')}</p></header>")
    env = ", ".join(f"{k} {v}" for k, v in versions.items())
    machine = f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    sections = "".join(_stop_section(o, out) for o in outcomes)
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>torch-tour report</title><style>{CSS}</style></head><body>{head}<main>"
            f"<p><code>{html.escape(machine)}; {html.escape(env)}</code></p><nav>{nav}</nav>{sections}"
            f"{_bench_section(out)}{_doctor_section(doctor)}</main><script>{SCRIPT}</script></body></html>")


def write(out: Path, outcomes: list, doctor: dict | None, cfg, seconds: float) -> dict[str, Path]:
    """Write results.json and index.html into `out`; returns their paths."""
    results = {
        "seconds": seconds,
        "quick": cfg.quick,
        "versions": _versions(),
        "stops": {o.name: {"ok": o.ok, "seconds": o.seconds, "error": o.error, "result": o.result}
                  for o in outcomes},
        "doctor": doctor,
    }
    json_path, html_path = out / "results.json", out / "index.html"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    html_path.write_text(render(out, outcomes, doctor, cfg, seconds))
    return {"json": json_path, "html": html_path}
