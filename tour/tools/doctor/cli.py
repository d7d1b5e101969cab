"""`tour doctor`: does this PyTorch stack really work, and if not, why and what to type.

    tour doctor                     every probe, on every device present, as a table, then the diagnoses
    tour doctor --quick             skips the slow probes (torch.compile, torch.export)
    tour doctor --json              the same report as JSON (schema below)
    tour doctor --device cuda       the device probes on that device only (and it must pass)
    tour doctor --only torchvision  the system probes plus these groups (comma-separated)
    tour doctor --model org/name    also check that this model can be loaded here (offline mode vs the cache)

Every probe does a real operation and checks a concrete fact, in a worker process, so a library that crashes, hangs
or breaks on import is one failed probe, never a crash. Then the rules find root causes: each diagnosis is one cause
with its evidence, one fix command, and the failed probes it explains (six failed rows from one torchvision built
for another torch are one diagnosis). Versions are compared with the ranges the tour declares ("supported") and
with the tested sets, constraints.txt and stacks/*.txt ("tested").

The package, by part: rows.py (types, error kinds), probes_core.py, probes_gpu.py, probes_stack.py, probes_assets.py
(the probes), plan.py (their order), worker.py (the worker process and its JSON-lines protocol), facts.py (the
install, read without torch), rules/ (facts + rows -> diagnoses, by subject), fixes.py (release tables and fix lines),
collect.py, cli.py (this command).

Exit code: 0 when every required probe passes and no diagnosis is an error; 1 when a required probe fails or a
diagnosis is an error (optional pieces such as a GPU or torchcodec never fail it unless named with --device);
2 on a usage error (a bad flag, an absent --device, an unknown --only group).

JSON (`--json`, schema 1; fields are only ever added):
    {"schema": 1, "ok": bool, "exit_code": 0|1, "seconds": float, "quick": bool, "device": str|null,
     "counts": {"ok": int, "failed": int, "skipped": int},
     "probes": [{"name", "group", "status": "ok"|"failed"|"skipped", "detail", "seconds", "required": bool,
                 "data": {...}, "device": str|null, "libraries": [str], "kind": str|null (see rows.KINDS)}],
     "diagnoses": [{"rule": str (a rule id, see rules/__init__.py), "severity": "error"|"warning"|"note",
                    "cause": str, "evidence": str, "fix": str (the command to type),
                    "explains": [{"group": str, "name": str}]}],
     "facts": {...} | null}     (the snapshot the rules read; its fields may change between versions)
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict

from tour.core.cli import guarded
from tour.core.cli import Parser
from tour.tools.doctor.collect import DEFAULT_TIMEOUT, collect
from tour.tools.doctor.rows import ERROR, FAILED, NOTE, OK, SKIPPED, Diagnosis, Facts, PlanRefused, ProbeResult, Report
from tour.tools.doctor.rules import version_summary

PROG = "tour doctor"
JSON_SCHEMA = 1


def format_diagnoses(diagnoses: list[Diagnosis], failed: list | None = None) -> str:
    """`diagnoses:` then, per cause: the cause and evidence on one line, the fix on the next, what it explains."""
    lines = ["diagnoses:" if diagnoses else "diagnoses: none"]
    for i, d in enumerate(diagnoses, 1):
        tag = {ERROR: "ERROR", NOTE: "note"}.get(d.severity, "warning")
        lines.append(f"  {i}. [{d.rule}] {tag}: {d.cause} ({d.evidence})")
        if d.fix:
            lines.append(f"     fix: {d.fix}")
        if d.explains:
            lines.append(f"     explains: {', '.join(k['group'] + ' ' + k['name'] for k in d.explains)}")
    if failed:
        claimed = {(k["group"], k["name"]) for d in diagnoses for k in d.explains}
        rest = [f"{p.group} {p.name}" for p in failed if (p.group, p.name) not in claimed]
        if rest:
            lines.append(f"  not explained by a known cause: {', '.join(rest)}")
    return "\n".join(lines)


# -- formatting ---------------------------------------------------------------------------------------------------
_HEADER = f"  {'GROUP':<13}{'PROBE':<22}{'STATUS':<10}{'TIME':>7}  DETAIL"


def format_row(p: ProbeResult) -> str:
    status = p.status.upper() if p.status == FAILED and p.required else p.status
    note = " (optional)" if p.status == FAILED and not p.required else ""
    return f"  {p.group:<13}{p.name:<22}{status:<10}{p.seconds:>6.1f}s  {p.detail}{note}"


def format_summary(report: Report) -> str:
    c = report.counts()
    line = (f"{len(report.probes)} probes: {c[OK]} ok, {c[FAILED]} failed, {c[SKIPPED]} skipped "
            f"in {report.seconds:.1f} s")
    parts = []
    if report.failed_required:
        parts.append("required probes failed: " + ", ".join(f"{p.group} {p.name}" for p in report.failed_required))
    if report.errors:
        parts.append("diagnosed errors: " + ", ".join(d.rule for d in report.errors))
    verdict = "; ".join(parts) or "every required probe passes"
    return "\n".join([line, *_versions(report), f"{verdict} (exit code {report.exit_code})"])


def _versions(report: Report) -> list[str]:
    """The versions line (supported / tested), when the facts were taken."""
    if not report.facts:
        return []
    try:
        return [version_summary(Facts.from_dict(report.facts))]
    except Exception:  # noqa: BLE001 - odd metadata must not take the doctor down; the rules report it
        return []


def format_diagnosis_block(report: Report) -> str:
    return format_diagnoses(report.diagnoses, [p for p in report.probes if p.status == FAILED])


def format_table(report: Report) -> str:
    return "\n".join([_HEADER, *map(format_row, report.probes), "", format_diagnosis_block(report), "",
                      format_summary(report)])


def to_json(report: Report) -> str:
    data = {"schema": JSON_SCHEMA, "ok": report.ok, "exit_code": report.exit_code, "seconds": report.seconds,
            "quick": report.quick, "device": report.device, "counts": report.counts(),
            "probes": [asdict(p) for p in report.probes], "diagnoses": [d.to_dict() for d in report.diagnoses],
            "facts": report.facts}
    return json.dumps(data, indent=2)


# -- command line -------------------------------------------------------------------------------------------------
def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        import argparse

        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _parser() -> Parser:
    import argparse

    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the report as JSON (default: a table)")
    p.add_argument("--quick", action="store_true", help="skip the slow probes: torch.compile, torch.export")
    p.add_argument("--device", default=None,
                   help="probe only this device, e.g. cpu or cuda:1 (default: every device present)")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"time limit per probe; a probe past it is cut off and failed (default: {DEFAULT_TIMEOUT:g})")
    p.add_argument("--only", type=_groups, default=(), metavar="GROUPS",
                   help="comma-separated probe groups to run (e.g. torchvision,transformers); system always runs")
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="a model you will load (hub name or folder): diagnosed if offline mode cannot load it")
    return p


def _groups(text: str) -> tuple[str, ...]:
    return tuple(g.strip() for g in text.split(",") if g.strip())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    shown: list[ProbeResult] = []

    def show(result: ProbeResult) -> None:  # rows appear as they finish; the header with the first one
        if not shown:
            skipped = "; --quick: compile and export skipped" if args.quick else ""
            print(f"{PROG}: the installed PyTorch stack, probe by probe (limit {args.timeout:g} s each{skipped})"
                  f"\n{_HEADER}")
        shown.append(result)
        print(format_row(result), flush=True)

    def body() -> int:
        try:
            report = collect(args.quick, args.device, args.timeout, on_result=None if args.json else show,
                             only=args.only, models=tuple(args.model))
        except PlanRefused as e:
            if e.diagnoses:  # e.g. --device cuda where torch cannot see the GPU: say why
                print(format_diagnoses(e.diagnoses), file=sys.stderr)
            raise
        if args.json:
            print(to_json(report), flush=True)
        else:
            print(f"\n{format_diagnosis_block(report)}\n\n{format_summary(report)}", flush=True)
        return report.exit_code

    try:
        return guarded(PROG, body)
    except BrokenPipeError:
        # The reader stopped reading (`tour doctor --json | head`): not the doctor's failure. Point stdout at
        # /dev/null so the interpreter's final flush does not fail too (Python's signal docs advise this), and exit
        # the way a process killed by SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13


if __name__ == "__main__":
    raise SystemExit(main())
