"""The probe worker: a child process that runs the probes, and the parent half that drives it. Both halves of the
protocol live here.

Why a process and not a thread: a broken install fails at import time, and a hung import holds Python's import lock,
so a thread could neither be stopped nor leave the next probe a clean import; a compiled extension can also
segfault. A child process can be killed. One worker runs the probes in order (torch is imported once); when a probe
hangs or the worker dies, the parent records that probe as failed (kind `timeout` or `crash`) and starts a fresh
worker at the next probe.

Protocol. The parent starts `python -m tour.tools.doctor.worker [--quick] [--device D] [--only G,H] [--skip N]`.
The child keeps the real stdout for the protocol (anything a library prints goes to stderr, the worker's log) and
writes one JSON object per line:

    {"event": "error", "message": str, "kind": str|null}   the plan was refused (a bad --device or --only); exit 2
    {"event": "plan", "probes": [{"name", "group", "required"}, ...]}   always first otherwise: the whole plan
    {"event": "start", "index": int}                        probe `index` starts (from N = --skip on)
    {"event": "result", "index": int, "result": {...}}      its row: the fields of rows.ProbeResult
    {"event": "done"}                                       every probe ran; exit 0

Before each probe the child also writes `PROBE_MARK + index` to its log, so a crash's last words belong to the probe
that died. Lines that are not JSON are ignored by the parent. The parent waits STARTUP_TIMEOUT for the plan and the
per-probe limit for each result; silence past it, or the end of the stream, ends that probe and that worker.

The facts child (`python -m tour.tools.doctor.facts`) prints one JSON line, the facts snapshot; `FactsChild` here
starts it beside the worker and waits for it with a limit (a wedged driver can hang nvidia-smi).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from tour.core.errors import TourError, require
from tour.tools.doctor.rows import (CALLER_PYTHONPATH, CRASH, FAILED, NOT_INSTALLED, OK, SKIPPED, TIMEOUT, Probe,
                                    ProbeResult, Skip, classify, one_line)

PROBE_MARK = "[tour doctor] probe "  # written to the worker's log as each probe starts
STARTUP_TIMEOUT = 120.0  # the worker's start: importing torch and finding the devices
FACTS_TIMEOUT = 60.0  # the facts child: metadata, nvidia-smi (15 s limit per call), disk usage


# -- the child half -------------------------------------------------------------------------------------------------
def run_probe(probe: Probe) -> dict:
    """Run one probe and turn whatever happens into a row: ok, skipped or failed, with a one-line reason and a kind."""
    start = time.perf_counter()
    status, detail, data, kind = OK, "", {}, None
    try:
        require(*probe.needs, stop=f"the {probe.group} {probe.name} probe")
    except TourError as e:
        status, detail, kind = SKIPPED, str(e), NOT_INSTALLED
    else:
        try:
            out = probe.func()
            detail, data = out if isinstance(out, tuple) else (out, {})
        except Skip as e:
            status, detail, kind = SKIPPED, one_line(e), e.kind
        except BaseException as e:  # noqa: BLE001 - a probe must never take the doctor down, whatever it raises
            status, detail = FAILED, one_line(e)
            kind, data = classify(e)
            if os.environ.get("TOUR_DOCTOR_DEBUG"):
                traceback.print_exc()  # to the worker's log, never to the doctor's output
    row = ProbeResult(probe.name, probe.group, status, detail, round(time.perf_counter() - start, 3), probe.required,
                      data, probe.device, probe.libraries, kind)
    return row.__dict__ | {"libraries": list(row.libraries)}


def _protocol_stream():
    """Keep the real stdout for our JSON lines; anything a library prints goes to stderr (the worker's log)."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def worker_main(argv: list[str] | None = None) -> int:
    from tour.tools.doctor.plan import plan

    parser = argparse.ArgumentParser(prog="python -m tour.tools.doctor.worker")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device")
    parser.add_argument("--skip", type=int, default=0, help="start after this many probes (a restart)")
    parser.add_argument("--only", default="", help="comma-separated probe groups (the system group always runs)")
    args = parser.parse_args(argv)
    out = _protocol_stream()
    faulthandler.enable()  # a crash in a compiled extension leaves its Python stack in the log for the doctor

    def emit(**event: Any) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    try:
        probes = plan(args.quick, args.device, tuple(g.strip() for g in args.only.split(",") if g.strip()))
    except TourError as e:
        emit(event="error", message=str(e), kind=e.kind)
        return 2
    emit(event="plan", probes=[{"name": p.name, "group": p.group, "required": p.required} for p in probes])
    for index in range(args.skip, len(probes)):
        emit(event="start", index=index)
        print(f"{PROBE_MARK}{index}: {probes[index].group} {probes[index].name}", file=sys.stderr, flush=True)
        emit(event="result", index=index, result=run_probe(probes[index]))
    emit(event="done")
    return 0


# -- the parent half ------------------------------------------------------------------------------------------------
_TIMED_OUT = object()


def child_env() -> dict[str, str]:
    """The children's environment: the caller's, with this tour package at the end of PYTHONPATH
    (tour.core.startup.child_env)."""
    from tour.core import startup

    env = startup.child_env()
    env[CALLER_PYTHONPATH] = os.environ.get("PYTHONPATH", "")  # the user's own, for the facts (and their fix lines)
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no pool of compile workers for one tiny function
    return env


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:  # its own process group: Inductor's compile workers and NCCL ranks go with it
            os.killpg(proc.pid, signal.SIGKILL)
        except (AttributeError, ProcessLookupError, PermissionError):
            proc.kill()


class _Worker:
    def __init__(self, quick: bool, device: str | None, skip: int, only: tuple[str, ...] = ()):
        cmd = [sys.executable, "-m", "tour.tools.doctor.worker", "--skip", str(skip)]
        cmd += ["--quick"] if quick else []
        cmd += ["--device", device] if device else []
        cmd += ["--only", ",".join(only)] if only else []
        self.log = tempfile.TemporaryFile()  # the worker's stderr: library warnings, crash messages
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log,
                                     env=child_env(), text=True, start_new_session=True)
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
        _kill(self.proc)
        self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


def _short_frame(line: str) -> str:
    """'File "/long/path/pkg/mod.py", line 3 in f' -> 'pkg/mod.py:3 in f'."""
    path, _, rest = line[len('File "'):].partition('"')
    return "/".join(Path(path).parts[-2:]) + rest.replace(", line ", ":", 1)


def _cut_off(spec: dict, reason: str, seconds: float, kind: str) -> ProbeResult:
    return ProbeResult(spec["name"], spec["group"], FAILED, reason, round(seconds, 3), spec["required"], kind=kind)


def run_worker(quick, device, skip, timeout, plan, emit: Callable[[ProbeResult], None],
               only=()) -> tuple[list | None, int]:
    """One worker from probe `skip` on. Returns the plan and the index to restart at (len(plan) when done).
    Raises TourError (with the child's kind) when the child refuses the plan."""
    worker = _Worker(quick, device, skip, only)
    try:
        event = worker.read(max(timeout, STARTUP_TIMEOUT))
        if event is None or event is _TIMED_OUT:
            reason = worker.why_dead() if event is None else "the probe worker did not start in time"
            kind = CRASH if event is None else TIMEOUT
            worker_plan = plan or [{"name": "probe worker", "group": "system", "required": True}]
            for spec in worker_plan[skip:]:
                emit(_cut_off(spec, reason, 0.0, kind))
            return worker_plan, len(worker_plan)
        if event["event"] == "error":
            raise TourError(event["message"], kind=event.get("kind"))
        plan = event["probes"]
        for index in range(skip, len(plan)):
            started = time.monotonic()
            event = worker.read(timeout)
            if event is not None and event is not _TIMED_OUT and event["event"] == "start":
                event = worker.read(max(0.0, timeout - (time.monotonic() - started)))
            if event is None or event is _TIMED_OUT:
                took = time.monotonic() - started
                if event is None:
                    emit(_cut_off(plan[index], worker.why_dead(), took, CRASH))
                else:
                    emit(_cut_off(plan[index], f"timed out after {timeout:g} s (cut off)", took, TIMEOUT))
                return plan, index + 1
            emit(ProbeResult.from_dict(event["result"]))
        return plan, len(plan)
    finally:
        worker.stop()


class FactsChild:
    """`python -m tour.tools.doctor.facts` in its own process, started beside the probe worker: it imports no torch,
    but a wedged driver can hang nvidia-smi, and a child can be killed."""

    def __init__(self, device: str | None = None, models: tuple[str, ...] = ()):
        cmd = [sys.executable, "-m", "tour.tools.doctor.facts"]
        cmd += ["--device", device] if device else []
        for model in models:
            cmd += ["--model", model]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=child_env(), text=True, start_new_session=True)

    def result(self, limit: float = FACTS_TIMEOUT) -> dict | None:
        try:
            out, _ = self.proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill(self.proc)
            self.proc.communicate()
            return None
        try:
            return json.loads(out.strip().splitlines()[-1]) if self.proc.returncode == 0 else None
        except (ValueError, IndexError):
            return None


if __name__ == "__main__":
    raise SystemExit(worker_main())
