"""`make gpu-check`: everything in the tour that needs a GPU, in one command, gathered into one folder.

    python -m tour.tools.gpu_check [--out DIR]      (DIR default: gpu-check)

On a machine with a usable CUDA GPU it runs, each in its own process with a time limit, its output in DIR:
    1. tour doctor --device cuda --json          doctor.json, doctor.txt (the table and the diagnoses)
    2. pytest -m needs_cuda                      pytest.log, pytest.xml
    3. tour run all --quick --device cuda        run-all.log, run-all/ (the report)
    4. tour bench --quick --device cuda          bench.log, bench/ (bench.md)
then writes DIR/summary.md: each step's exit code and time, the GPU figures the doctor measured (SDPA backends,
flash among them; bf16; nccl), the diagnoses, the tests' summary line and the bench table.

Without a CUDA GPU it prints one line saying so and exits 0. Where an NVIDIA GPU is present but torch cannot use it,
it runs the doctor alone (its diagnosis says why) and exits 1. Exit code: 0 every step passed (or no GPU), 1 a step
failed or ran past its limit, 2 a usage error. A step fails also when its files record a failure its exit code may
not: a stop whose check failed (parity False) in run-all/results.json, a bench section or parity in bench.json.
Imports no torch: a child process answers "is there a GPU?".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PROG = "gpu-check"
PROBE_TIMEOUT = 120.0  # importing torch and asking CUDA on a cold machine
ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests/ lives here when run from a clone


@dataclass
class Step:
    name: str
    cmd: list[str]
    timeout: float  # seconds
    log: str  # file name in the output folder


@dataclass
class Outcome:
    step: Step
    code: int | None  # None: cut off at the time limit
    seconds: float
    # what the step's own files say failed, one line each: a stop with a failed check (parity False), a bench
    # section that raised or a bench row whose parity is False. Any of them fails the step, whatever its exit code.
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        # pytest's 5: no test selected (a checkout without needs_cuda tests) is not a failure
        exited_ok = self.code == 0 or (self.code == 5 and self.step.name == "needs_cuda tests")
        return exited_ok and not self.failures

    @property
    def state(self) -> str:
        if self.code is None:
            return f"TIMED OUT after {self.step.timeout:g} s"
        if self.failures:
            return f"FAILED ({len(self.failures)} failed: {'; '.join(self.failures)[:300]})"
        return "ok" if self.ok else f"FAILED (exit code {self.code})"


def run_step(step: Step, out: Path) -> Outcome:
    """Run one step in its own session with its output in out/step.log; past its limit the whole group is killed
    (the doctor's worker, torchrun ranks and Inductor's compile workers with it)."""
    start = time.monotonic()
    # A JSON report keeps stdout to itself; library warnings go to a log beside it.
    err_path = out / f"{Path(step.log).stem}.stderr.log" if step.log.endswith(".json") else None
    with open(out / step.log, "w") as log, open(err_path or os.devnull, "w") as err:
        proc = subprocess.Popen(step.cmd, stdout=log, stderr=err if err_path else subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                cwd=ROOT if (ROOT / "tests").is_dir() else None, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=step.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait(timeout=30)
            code = None
    return Outcome(step, code, round(time.monotonic() - start, 1))


def run_all_failures(out: Path) -> list[str]:
    """The stops `tour run all` recorded as failed in run-all/results.json (an error or a failed check)."""
    from tour.tools.report import stop_failures

    _, failed = stop_failures(out / "run-all") or (0, {})
    return [f"{name}: {reason}" for name, reason in failed.items()]


def bench_failures(out: Path) -> list[str]:
    """What bench/bench.json records as failed: a section that raised, a row whose parity is False."""
    try:
        data = json.loads((out / "bench" / "bench.json").read_text())
    except (OSError, ValueError):
        return []
    found = [f"bench {name}: {why}" for name, why in (data.get("failed") or {}).items()]
    return found + [f"bench {r['section']} {r['what']}: parity False" for r in data.get("rows", [])
                    if r.get("parity") is False]


FAILURES_OF = {"run all": run_all_failures, "bench": bench_failures}  # step -> what its files say failed


def gpu_state() -> dict:
    """{"cuda": bool, "count", "names", "torch", "build", "error"} from a child process (torch may be broken)."""
    code = ("import json, torch; c = torch.cuda.is_available(); n = torch.cuda.device_count() if c else 0; "
            "print(json.dumps({'cuda': c, 'count': n, 'names': [torch.cuda.get_device_name(i) for i in range(n)], "
            "'torch': torch.__version__, 'build': torch.version.cuda}))")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
        state = json.loads(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        state = {"cuda": False, "error": f"asking torch for a GPU took over {PROBE_TIMEOUT:g} s"}
    except (ValueError, IndexError):
        err = (done.stderr.strip().splitlines() or ["no output"])[-1]
        state = {"cuda": False, "error": f"torch did not answer: {err[:200]}"}
    state["nvidia"] = bool(list(Path("/dev").glob("nvidia[0-9]*")))
    return state


def steps(out: Path) -> list[Step]:
    py = sys.executable
    doctor = Step("doctor", [py, "-m", "tour.tools.doctor", "--device", "cuda", "--json"], 900, "doctor.json")
    found = [doctor]
    if (ROOT / "tests").is_dir():
        found.append(Step("needs_cuda tests", [py, "-m", "pytest", "-m", "needs_cuda", "-q", "-rA", "-p",
                                               "no:cacheprovider", f"--junitxml={out / 'pytest.xml'}", "tests"],
                          1800, "pytest.log"))
    found.append(Step("run all", [py, "-m", "tour.tools.cli", "run", "all", "--quick", "--device", "cuda", "--out",
                                  str(out / "run-all")], 3600, "run-all.log"))
    found.append(Step("bench", [py, "-m", "tour.tools.cli", "bench", "--quick", "--device", "cuda", "--out",
                                str(out / "bench")], 1800, "bench.log"))
    return found


# -- summary ------------------------------------------------------------------------------------------------------
def doctor_section(out: Path) -> list[str]:
    from tour.tools.doctor import Diagnosis, ProbeResult, Report, format_diagnoses, format_table

    try:
        data = json.loads((out / "doctor.json").read_text())
    except (OSError, ValueError):
        return ["The doctor gave no JSON report; see doctor.json (its output)."]
    report = Report([ProbeResult.from_dict(p) for p in data["probes"]], data["seconds"], data["quick"], data["device"],
                    [Diagnosis(**d) for d in data.get("diagnoses", [])], data.get("facts"))
    (out / "doctor.txt").write_text(format_table(report) + "\n")
    lines = ["| probe | status | detail |", "|---|---|---|"]
    for p in report.probes:
        if p.group in ("device", "distributed") or (p.device or "").startswith("cuda"):
            lines.append(f"| {p.group} {p.name} | {p.status} | {p.detail.replace('|', '/')} |")
    return lines + ["", "```", format_diagnoses(report.diagnoses, [p for p in report.probes if p.status == "failed"]),
                    "```"]


def _tail(path: Path, pick) -> list[str]:
    try:
        return [ln for ln in path.read_text(errors="replace").splitlines() if pick(ln)][-5:]
    except OSError:
        return []


def write_summary(out: Path, state: dict, outcomes: list[Outcome]) -> Path:
    gpus = ", ".join(state.get("names", [])) or "none usable"
    versions = f"torch {state.get('torch', '?')} (CUDA {state.get('build')} build); python {sys.version.split()[0]}"
    lines = [f"# gpu-check: {gpus}", "", versions, "", "| step | result | seconds | output |", "|---|---|---|---|"]
    lines += [f"| {o.step.name} | {o.state} | {o.seconds:.0f} | {o.step.log} |" for o in outcomes]
    lines += ["", "## doctor --device cuda", "", *doctor_section(out)]
    names = {o.step.name for o in outcomes}
    if "needs_cuda tests" in names:
        lines += ["", "## pytest -m needs_cuda", "", "```",
                  *_tail(out / "pytest.log", lambda ln: ln.startswith(("PASSED", "FAILED", "SKIPPED", "ERROR", "="))),
                  "```"]
    if "run all" in names:
        lines += ["", "## tour run all --quick --device cuda", "", "```",
                  *_tail(out / "run-all.log", lambda ln: ln.startswith(("tour finished", "  ", "report:"))), "```"]
    failures = [f for o in outcomes for f in o.failures]
    if failures:
        lines += ["", "## failed (errors and failed checks)", "", *[f"- {f}" for f in failures]]
    found = next(iter(sorted((out / "bench").rglob("bench.md"))), None) if (out / "bench").is_dir() else None
    if "bench" in names:
        lines += ["", "## tour bench --quick --device cuda", ""]
        lines += found.read_text().splitlines()[1:] if found else ["no bench.md; see bench.log"]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tour.tools.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu-check", help="folder for the logs and summary.md, relative to the current "
                        "folder (default: gpu-check)")
    args = parser.parse_args(argv)
    state = gpu_state()
    if not state["cuda"] and not state["nvidia"]:
        why = state.get("error") or f"torch {state.get('torch')} " + (
            f"(CUDA {state['build']} build) sees no GPU" if state.get("build") else "is a CPU-only build")
        print(f"{PROG}: no CUDA GPU on this machine ({why}); nothing to check")
        return 0
    out = Path(args.out).resolve()  # from the caller's folder: the steps run in the checkout's
    out.mkdir(parents=True, exist_ok=True)
    plan = steps(out) if state["cuda"] else steps(out)[:1]  # a GPU torch cannot use: the doctor says why
    outcomes = []
    for step in plan:
        print(f"{PROG}: {step.name} ...", flush=True)
        outcome = run_step(step, out)
        outcome.failures = FAILURES_OF.get(step.name, lambda _: [])(out)
        print(f"{PROG}: {step.name}: {outcome.state} in {outcome.seconds:.0f} s ({out / step.log})", flush=True)
        outcomes.append(outcome)
    summary = write_summary(out, state, outcomes)
    failed = [o for o in outcomes if not o.ok] or ([] if state["cuda"] else outcomes)
    print(f"{PROG}: {len(outcomes) - len(failed)} of {len(outcomes)} steps ok; summary: {summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
