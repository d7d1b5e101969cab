"""`tour doctor`: does this PyTorch stack really work, and if not, why and what to type.

    tour doctor                     every probe, on every device present, as a table, then the diagnoses
    tour doctor --quick             skips the slow probes (torch.compile, torch.export)
    tour doctor --json              the same report as JSON (schema below)
    tour doctor --device cuda       the device probes on that device only (and it must pass)
    tour doctor --only torchvision  the system probes plus these groups (comma-separated)
    tour doctor --model org/name    also check that this model can be loaded here (offline mode vs the cache)

Every probe does a real operation and checks a concrete fact. The probes live in tour/tools/doctor_probes.py and run
in a worker process, so a library that crashes, hangs or breaks on import is one failed probe, never a crash. Then
the diagnoses (tour/tools/diagnose.py) find root causes: each is one cause with its evidence, one fix command, and
the failed probes it explains (four failed rows from one torchvision built for another torch are one diagnosis).

Exit code: 0 when every required probe passes and no diagnosis is an error; 1 when a required probe fails or a
diagnosis is an error (optional pieces such as a GPU or torchcodec never fail it unless named with --device);
2 on a usage error (a bad flag, an absent --device, an unknown --only group).

JSON (`--json`, schema 1; fields are only ever added):
    {"schema": 1, "ok": bool, "exit_code": 0|1, "seconds": float, "quick": bool, "device": str|null,
     "counts": {"ok": int, "failed": int, "skipped": int},
     "probes": [{"name", "group", "status": "ok"|"failed"|"skipped", "detail", "seconds", "required": bool,
                 "data": {...}}],
     "diagnoses": [{"rule": str (a rule id, see tour/tools/diagnose.py), "severity": "error"|"warning",
                    "cause": str, "evidence": str, "fix": str (the command to type),
                    "explains": [{"group": str, "name": str}]}],
     "facts": {...} | null}     (the snapshot the rules read; its fields may change between versions)
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tour.core.config import _Parser, guarded
from tour.core.errors import TourError
from tour.tools.diagnose import ERROR, Diagnosis, Facts, diagnose, format_diagnoses
from tour.tools.doctor_probes import PROBE_MARK

PROG = "tour doctor"
DEFAULT_TIMEOUT = 180.0  # per probe; a cold torch.compile on a busy 2-core machine took ~35 s
STARTUP_TIMEOUT = 120.0  # the worker's start: importing torch and finding the devices
FACTS_TIMEOUT = 60.0  # the facts child: metadata, nvidia-smi (15 s limit per call), disk usage
JSON_SCHEMA = 1
OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass
class ProbeResult:
    name: str
    group: str
    status: str  # ok, failed or skipped
    detail: str  # the fact checked, or the one-line reason it failed or was skipped
    seconds: float
    required: bool  # a required probe that failed makes the exit code 1
    data: dict = field(default_factory=dict)  # numbers behind the detail (versions, memory, ...) for --json


@dataclass
class Report:
    probes: list[ProbeResult]
    seconds: float  # the whole run, wall clock
    quick: bool
    device: str | None
    diagnoses: list[Diagnosis] = field(default_factory=list)
    facts: dict | None = None  # the snapshot the diagnoses read (None when it could not be taken)

    @property
    def failed_required(self) -> list[ProbeResult]:
        return [p for p in self.probes if p.status == FAILED and p.required]

    @property
    def errors(self) -> list[Diagnosis]:
        return [d for d in self.diagnoses if d.severity == ERROR]

    @property
    def ok(self) -> bool:
        return bool(self.probes) and not self.failed_required and not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        return {s: sum(p.status == s for p in self.probes) for s in (OK, FAILED, SKIPPED)}


# -- the worker: probes run in a child process --------------------------------------------------------------------
# Why a process and not a thread: a broken install fails at import time, and a hung import holds Python's
# import lock, so a thread could neither be stopped nor leave the next probe a clean import; a compiled
# extension can also segfault. A child process can be killed. One worker runs the probes in order (torch is
# imported once); when a probe hangs or the worker dies, the doctor records that probe as failed and starts a
# fresh worker at the next probe.
_TIMED_OUT = object()


def _worker_env() -> dict[str, str]:
    """The children's environment: the caller's, plus this tour package at the end of PYTHONPATH."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)  # so the worker imports this same tour package
    # Appended, not prepended: whatever the user put first on PYTHONPATH must still win (the fault-injection
    # tests rely on it, and so does a user checking a patched library).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), root) if p)
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no pool of compile workers for one tiny function
    return env


class _Worker:
    def __init__(self, quick: bool, device: str | None, skip: int, only: tuple[str, ...] = ()):
        cmd = [sys.executable, "-m", "tour.tools.doctor_probes", "--skip", str(skip)]
        cmd += ["--quick"] if quick else []
        cmd += ["--device", device] if device else []
        cmd += ["--only", ",".join(only)] if only else []
        self.log = tempfile.TemporaryFile()  # the worker's stderr: library warnings, crash messages
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log,
                                     env=_worker_env(), text=True, start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)  # end of stream: the worker exited

    def read(self, limit: float):
        """The next event, None when the worker has exited, _TIMED_OUT after `limit` seconds of silence."""
        deadline = time.monotonic() + limit
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return _TIMED_OUT
            if line is None:
                return None
            try:
                return json.loads(line)
            except ValueError:
                continue  # not ours (something printed before the worker took over stdout)

    def why_dead(self) -> str:
        code = self.proc.wait()
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        # Only what the dying probe wrote (the worker marks each probe's start), not earlier probes' warnings.
        lines = [ln.strip() for ln in text.split(PROBE_MARK)[-1].splitlines()[1:] if ln.strip()]
        # faulthandler's dump after a crash lists the crashing thread's innermost frames first: where it died.
        current = next((i for i, ln in enumerate(lines) if ln.startswith("Current thread")), None)
        if current is not None:
            frames = [_short_frame(ln) for ln in lines[current + 1:current + 3] if ln.startswith('File "')]
            return f"the probe worker died ({how}) in {' < '.join(frames)}"
        return f"the probe worker died ({how}){': ' + lines[-1][:200] if lines else ''}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:  # its own process group: Inductor's compile workers go with it
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (AttributeError, ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


def _short_frame(line: str) -> str:
    """'File "/long/path/pkg/mod.py", line 3 in f' -> 'pkg/mod.py:3 in f'."""
    path, _, rest = line[len('File "'):].partition('"')
    return "/".join(Path(path).parts[-2:]) + rest.replace(", line ", ":", 1)


def _from_event(result: dict) -> ProbeResult:
    return ProbeResult(**{k: result[k] for k in ProbeResult.__dataclass_fields__ if k in result})


def _cut_off(spec: dict, reason: str, seconds: float) -> ProbeResult:
    return ProbeResult(spec["name"], spec["group"], FAILED, reason, round(seconds, 3), spec["required"])


def _run_worker(quick, device, skip, timeout, plan, emit, only=()) -> tuple[list | None, int]:
    """One worker from probe `skip` on. Returns the plan and the index to restart at (len(plan) when done)."""
    worker = _Worker(quick, device, skip, only)
    try:
        event = worker.read(max(timeout, STARTUP_TIMEOUT))
        if event is None or event is _TIMED_OUT:
            reason = worker.why_dead() if event is None else "the probe worker did not start in time"
            worker_plan = plan or [{"name": "probe worker", "group": "system", "required": True}]
            for spec in worker_plan[skip:]:
                emit(_cut_off(spec, reason, 0.0))
            return worker_plan, len(worker_plan)
        if event["event"] == "error":
            raise TourError(event["message"])
        plan = event["probes"]
        for index in range(skip, len(plan)):
            started = time.monotonic()
            event = worker.read(timeout)
            if event is not None and event is not _TIMED_OUT and event["event"] == "start":
                event = worker.read(max(0.0, timeout - (time.monotonic() - started)))
            if event is None or event is _TIMED_OUT:
                took = time.monotonic() - started
                reason = worker.why_dead() if event is None else f"timed out after {timeout:g} s (cut off)"
                emit(_cut_off(plan[index], reason, took))
                return plan, index + 1
            emit(_from_event(event["result"]))
        return plan, len(plan)
    finally:
        worker.stop()


class FactsChild:
    """`python -m tour.tools.diagnose --facts` in its own process, started beside the probe worker: it imports no
    torch, but a wedged driver can hang nvidia-smi, and a child can be killed."""

    def __init__(self, device: str | None = None, models: tuple[str, ...] = ()):
        cmd = [sys.executable, "-m", "tour.tools.diagnose", "--facts"]
        cmd += ["--device", device] if device else []
        for model in models:
            cmd += ["--model", model]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_worker_env(), text=True, start_new_session=True)

    def result(self, limit: float = FACTS_TIMEOUT) -> dict | None:
        try:
            out, _ = self.proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (AttributeError, ProcessLookupError, PermissionError):
                self.proc.kill()
            self.proc.communicate()
            return None
        try:
            return json.loads(out.strip().splitlines()[-1]) if self.proc.returncode == 0 else None
        except (ValueError, IndexError):
            return None


def diagnoses_for(facts: dict | None, probes: list[ProbeResult]) -> list[Diagnosis]:
    return diagnose(Facts.from_dict(facts) if facts else None, probes)


def collect(quick: bool = False, device: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            on_result: Callable[[ProbeResult], None] | None = None, only: tuple[str, ...] = (),
            models: tuple[str, ...] = ()) -> Report:
    """Run every probe (in a worker process), gather the results and diagnose them. Raises TourError on a bad
    --device or --only; its `diagnoses` attribute then holds what the facts alone show (a CUDA build that cannot
    see the GPU makes `--device cuda` a usage error, and the diagnosis says why)."""
    start = time.perf_counter()
    results: list[ProbeResult] = []
    facts_child = FactsChild(device, models)

    def emit(result: ProbeResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    plan, index = None, 0
    try:
        while plan is None or index < len(plan):
            plan, index = _run_worker(quick, device, index, timeout, plan, emit, only)
    except TourError as e:
        refusal = ProbeResult(f"--device {device}", "usage", FAILED, str(e), 0.0, True)
        e.diagnoses = diagnoses_for(facts_child.result(), [*results, refusal])
        raise
    facts = facts_child.result()
    return Report(results, round(time.perf_counter() - start, 2), quick, device, diagnoses_for(facts, results), facts)


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
    return f"{line}\n{verdict} (exit code {report.exit_code})"


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


def _parser() -> _Parser:
    import argparse

    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        except TourError as e:
            if getattr(e, "diagnoses", None):  # e.g. --device cuda where torch cannot see the GPU: say why
                print(format_diagnoses(e.diagnoses), file=sys.stderr)
            raise
        if args.json:
            print(to_json(report))
        else:
            print(f"\n{format_diagnosis_block(report)}\n\n{format_summary(report)}")
        return report.exit_code

    return guarded(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
