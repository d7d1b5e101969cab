"""gpu-check's summary.md and summary.json, rewritten after every step so a run cut off still leaves one."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from tour.tools.gpu_check.evaluate import read_json


def _replace(path: Path, text: str) -> None:
    """Write beside, then rename: a reader (or a kill mid-write) never leaves half a summary."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def header(context: dict) -> list[str]:
    state = context.get("state") or {}
    gpus = ", ".join(state.get("names") or []) or "no GPU"
    lines = [f"# gpu-check on {context['device']}: {gpus}", "",
             f"torch {state.get('torch', '?')} (CUDA {state.get('build')} build), python {context.get('python')}; "
             f"budget {context.get('budget', 0):.0f} s", "", f"- carried: {context.get('kit')}"]
    if context.get("skeletons"):
        lines.append("- models whose weights could not travel run on seeded random weights from their configs "
                     "(random weights: agreement checks only; accuracy floors not run)")
    if context.get("hidden"):
        lines.append(f"- rehearsal: made unimportable in the steps: {', '.join(context['hidden'])}")
    return lines


def steps_table(outcomes: list) -> list[str]:
    lines = ["| step | result | seconds | what it says | log |", "|---|---|---:|---|---|"]
    for o in outcomes:
        said = "; ".join([o.detail, *o.notes]).strip("; ").replace("|", "/")
        lines.append(f"| {o.name} | {o.state} | {o.seconds:.0f} | {said[:400]} | {o.log} |")
    return lines


def unchecked(outcomes: list) -> list[str]:
    """Everything the run could not check, and why: the part of the summary a reader needs most."""
    lines = []
    for o in outcomes:
        if o.state in ("skipped", "not reached", "cut off"):
            lines.append(f"- {o.name}: {o.state}" + (f" ({o.detail})" if o.detail else ""))
        lines += [f"- {o.name}: {note}" for note in o.notes]
    return ["", "## Not checked here", "", *(lines or ["- nothing: every step ran in full"])]


def sanity_section(out: Path) -> list[str]:
    parts = read_json(out / "sanity.json")
    if not parts:
        return []
    lines = ["", "## The device, straight through torch", ""]
    facts = parts.get("facts") or {}
    if facts:
        lines.append("- " + ", ".join(f"{k} {v}" for k, v in facts.items() if v not in (None, "", {})))
    for name, row in (parts.get("matmul") or {}).items():
        if isinstance(row, dict) and "relative_error" in row:
            lines.append(f"- matmul {name} vs float64: relative error {row['relative_error']:.1e} "
                         f"({'ok' if row['ok'] else 'OVER'} {row['tolerance']:g})")
    roofs = parts.get("roofs") or {}
    if roofs.get("rates"):
        lines += ["", "| dtype | n | rate | unit |", "|---|---:|---:|---|"]
        for dtype, rate in roofs["rates"].items():
            unit = "TOP/s" if dtype == "int8" else "TFLOP/s"
            lines.append(f"| {dtype} | {(roofs.get('sizes') or {}).get(dtype, '')} | {rate / 1e3:.1f} | {unit} |")
        for dtype, why in (roofs.get("skipped") or {}).items():
            lines.append(f"| {dtype} | | not measured: {why} | |")
        if roofs.get("bandwidth_gb_s"):
            lines.append(f"| copy | | {roofs['bandwidth_gb_s']:.0f} | GB/s (read + written) |")
    for name in ("compile", "sdpa", "roofs"):
        if isinstance(parts.get(name), dict) and "error" in parts[name]:
            lines.append(f"- {name}: {parts[name]['error']}")
    if isinstance(parts.get("compile"), dict) and "cold_compile_s" in parts["compile"]:
        c = parts["compile"]
        lines.append(f"- torch.compile: cold {c['cold_compile_s']} s, max |compiled - eager| {c['max_abs_error']:.1e}")
    ran = [k for k, v in (parts.get("sdpa") or {}).items() if isinstance(v, dict) and v.get("ran")]
    if parts.get("sdpa") and "error" not in parts["sdpa"]:
        lines.append(f"- SDPA backends that ran: {', '.join(ran) or 'none but math'}")
    return lines


def doctor_section(out: Path) -> list[str]:
    data = read_json(out / "doctor.json")
    if not data:
        return []
    try:
        from tour.tools.doctor import Diagnosis, ProbeResult, Report, format_diagnoses, format_table

        report = Report([ProbeResult.from_dict(p) for p in data["probes"]], data["seconds"], data["quick"],
                        data["device"], [Diagnosis(**d) for d in data.get("diagnoses", [])], data.get("facts"))
    except (KeyError, TypeError):
        return ["", "## doctor", "", "doctor.json is not a doctor report; see it and doctor.stderr.log"]
    _replace(out / "doctor.txt", format_table(report) + "\n")
    lines = ["", "## doctor", "", "| probe | status | detail |", "|---|---|---|"]
    for p in report.probes:
        if p.group in ("device", "distributed") or (p.device or "").startswith(("cuda", "xpu", "mps")):
            lines.append(f"| {p.group} {p.name} | {p.status} | {p.detail.replace('|', '/')} |")
    failed = [p for p in report.probes if p.status == "failed"]
    return lines + ["", "```", format_diagnoses(report.diagnoses, failed), "```"]


def bench_section(out: Path) -> list[str]:
    found = sorted((out / "bench").rglob("bench.md")) if (out / "bench").is_dir() else []
    return ["", "## bench", "", *found[0].read_text().splitlines()[1:]] if found else []


def write(out: Path, context: dict, outcomes: list) -> Path:
    """summary.md (for a person) and summary.json (for a program), both from the outcomes so far."""
    counts = {}
    for o in outcomes:
        counts[o.state] = counts.get(o.state, 0) + 1
    lines = [*header(context), "", ", ".join(f"{n} {s}" for s, n in counts.items()), "", *steps_table(outcomes),
             *unchecked(outcomes), *sanity_section(out), *doctor_section(out), *bench_section(out)]
    _replace(out / "summary.json", json.dumps({"context": context, "counts": counts,
                                                "steps": [asdict(o) for o in outcomes]}, indent=1) + "\n")
    path = out / "summary.md"
    _replace(path, "\n".join(lines) + "\n")
    return path
