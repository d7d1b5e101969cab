"""`make gpu-check`: the tour on a GPU node as it is, within a time budget, with a summary written as it goes.

    python -m tour.tools.gpu_check [--out DIR] [--budget SECONDS] [--device cuda] [--kit DIR] [--hide node]
                                   [--only STEP,...] [--pytest]

Runs on the Python it is started with (no venv, no network): the node's own python3 with the tour's source tree
beside it. Steps, in order of what they tell, each in its own process group with a time limit, the whole within
--budget (default 420 s: a job of 15 minutes with the node's start and the transfers):
  1. facts + sanity   the device, and a direct pass through torch: matmul right (vs float64) and fast per dtype at
                      sizes that reach the peak, copy bandwidth, torch.compile, SDPA backends  -> sanity.json
  2. doctor           tour doctor --quick --device D --json                                   -> doctor.json
  3. stops            tour run STOP --quick on the device, one process each, most telling first
                      (attention, compile, precision, export, generate, nlp, speech, vision, distributed, ...)
                                                                                             -> stops/STOP/
  4. bench            tour bench --quick --device D                                           -> bench/
  5. pytest           only with --pytest: pytest -m needs_cuda                                -> pytest.log
After EVERY step it rewrites DIR/summary.md and DIR/summary.json: what ran, passed, failed, was skipped (and why:
a library this Python lacks, no pretrained weights here) and was not reached. A step past its limit is killed with
its whole process group (torchrun ranks, compile workers) and listed as cut off; the budget holds even then.

--kit DIR (default: .gpu-kit in the checkout, where present) is what travelled with the job: DIR/wheels/*.whl are
installed with `pip install --no-index --no-deps --target` into DIR's site folder for the children, and
DIR/skeletons holds the configs and tokenizers of models whose weights could not travel (they run on seeded
random weights: agreement checks only). `make gpu-wheels` builds it on a machine with the network.
--hide node makes the libraries and weight packages such a node lacks unimportable in the children: a rehearsal
of the node on a full machine (with --device cpu where there is no GPU).

Exit code: 0 no step failed, 1 a step failed or was cut off, 2 a usage error. Without a GPU and without --device,
it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROG = "gpu-check"
ROOT = Path(__file__).resolve().parents[3]  # the checkout (tests/ lives here when run from a clone)
DEFAULT_BUDGET = 420.0
RESERVE = 5.0  # seconds kept back at the end for the last summary
MIN_STEP = 15.0  # a step with less than this left is not started: it could not even import torch and report
# The stops on an accelerator, most telling first: kernels only a GPU has (Flash SDPA, Triton, bf16/fp16/int8 GEMMs,
# AOTInductor's CUDA build), then the models, then the CPU-shaped ones.
STOP_ORDER = ("attention", "compile", "precision", "export", "generate", "nlp", "speech", "vision", "distributed",
              "lightning", "audio", "basics", "pyro")
CAPS = {"facts": 120.0, "sanity": 150.0, "doctor": 150.0, "stop": 150.0, "bench": 300.0, "pytest": 600.0}


@dataclass
class Step:
    name: str
    cmd: list[str]
    cap: float  # its own time limit, s; the budget may cut it shorter
    log: str  # file name in the output folder
    kind: str = "stop"


@dataclass
class Outcome:
    name: str
    state: str  # passed | failed | skipped | cut off | not reached (| running, while it runs)
    seconds: float = 0.0
    detail: str = ""  # one line: why it failed or was skipped, what it measured
    log: str = ""
    code: int | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "random weights: agreement checks only"

    @property
    def bad(self) -> bool:
        return self.state in ("failed", "cut off", "running")


# -- running one step -------------------------------------------------------------------------------------------
def child_env(site: Path | None, shim: Path | None, skeletons: Path | None) -> dict:
    """The children's environment: offline, the tour's tree importable, carried wheels and the hiding shim first."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    paths = [str(p) for p in (shim, site, ROOT) if p] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if skeletons is not None:
        env["TOUR_SKELETONS"] = str(skeletons)
    return env


def run_step(step: Step, out: Path, timeout: float, env: dict | None = None) -> tuple[int | None, float]:
    """(exit code or None when cut off at `timeout`, seconds). The step runs in its own session with its output in
    out/step.log; past its limit the whole group is killed, so a hung rank or compile worker cannot outlive it."""
    start = time.monotonic()
    # A JSON report keeps stdout to itself; library warnings go to a log beside it.
    err_path = out / f"{Path(step.log).with_suffix('')}.stderr.log" if step.log.endswith(".json") else None
    with open(out / step.log, "w") as log, open(err_path or os.devnull, "w") as err:
        proc = subprocess.Popen(step.cmd, stdout=log, stderr=err if err_path else subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=ROOT, env=env, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait(timeout=30)
            code = None
    return code, round(time.monotonic() - start, 1)


# -- the plan ---------------------------------------------------------------------------------------------------
def plan(out: Path, device: str, only: list[str] | None, pytest: bool) -> list[Step]:
    py, cli = sys.executable, [sys.executable, "-m", "tour.tools.cli"]
    steps = [Step("sanity", [py, "-m", "tour.tools.gpu_check.sanity", "--device", device, "--quick", "--json",
                             str(out / "sanity.json")], CAPS["sanity"], "sanity.log", "sanity"),
             Step("doctor", [py, "-m", "tour.tools.doctor", "--quick", "--device", device, "--json"], CAPS["doctor"],
                  "doctor.json", "doctor")]
    for name in STOP_ORDER:
        steps.append(Step(name, cli + ["run", "all", "--quick", "--device", device, "--only", name, "--no-doctor",
                                       "--out", str(out / "stops" / name)], CAPS["stop"], f"stops/{name}.log"))
    steps.append(Step("bench", cli + ["bench", "--quick", "--device", device, "--out", str(out / "bench")],
                      CAPS["bench"], "bench.log", "bench"))
    if pytest and (ROOT / "tests").is_dir():
        steps.append(Step("pytest", [py, "-m", "pytest", "-m", "needs_cuda", "-q", "-rA", "-p", "no:cacheprovider",
                                     f"--junitxml={out / 'pytest.xml'}", "tests"], CAPS["pytest"], "pytest.log",
                          "pytest"))
    if only:
        steps = [s for s in steps if s.name in only or s.kind in only]
    return steps


def install_kit(kit: Path | None, out: Path) -> tuple[Path | None, str]:
    """Install the carried wheels into out/site for the children: (that folder or None, one line saying what)."""
    wheels = sorted((kit / "wheels").glob("*.whl")) if kit else []
    if not wheels:
        return None, "no carried wheels" + (f" in {kit / 'wheels'}" if kit else "")
    site = out / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        return None, f"carried wheels did not install: {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    return site, f"{len(wheels)} carried wheels installed for the children ({', '.join(w.name.split('-')[0] for w in wheels)})"


def gpu_state() -> dict:
    """{"cuda": bool, "count", "names", "torch", "build", "error"} from a child process (torch may be broken)."""
    from tour.tools.gpu_check.evaluate import gpu_state as probe

    return probe()


# -- the whole run --------------------------------------------------------------------------------------------------
def execute(steps: list[Step], out: Path, budget: float, env: dict | None, context: dict) -> list[Outcome]:
    """Run the steps in order within `budget` seconds, rewriting the summary after each one."""
    from tour.tools.gpu_check.evaluate import evaluate
    from tour.tools.gpu_check.summary import write

    deadline = time.monotonic() + budget
    outcomes = [Outcome(s.name, "not reached", log=s.log) for s in steps]
    write(out, context, outcomes)
    for i, step in enumerate(steps):
        left = deadline - time.monotonic() - RESERVE
        if left < MIN_STEP:
            for rest in outcomes[i:]:
                rest.detail = f"the {budget:.0f} s budget was spent"
            write(out, context, outcomes)
            break
        (out / step.log).parent.mkdir(parents=True, exist_ok=True)
        print(f"{PROG}: {step.name} ... (limit {min(step.cap, left):.0f} s)", flush=True)
        outcomes[i] = Outcome(step.name, "running", log=step.log)  # what a kill of gpu-check itself leaves
        write(out, context, outcomes)
        code, seconds = run_step(step, out, min(step.cap, left), env)
        outcomes[i] = evaluate(step, code, seconds, out, cut_by_budget=step.cap > left)
        print(f"{PROG}: {step.name}: {outcomes[i].state} in {seconds:.0f} s"
              + (f" ({outcomes[i].detail})" if outcomes[i].detail else ""), flush=True)
        write(out, context, outcomes)
    return outcomes


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tour.tools.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu-check", help="folder for the logs and summary.md, from the current "
                        "folder (default: gpu-check)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                        help=f"seconds for the whole check, steps cut to fit (default: {DEFAULT_BUDGET:g})")
    parser.add_argument("--device", default=None, help="the device to check (default: cuda where torch sees a GPU); "
                        "--device cpu rehearses the whole flow on a machine without one")
    parser.add_argument("--kit", default=None, help="what travelled with the job: wheels/ and skeletons/ "
                        "(default: .gpu-kit in the checkout, where present)")
    parser.add_argument("--hide", default="", help="modules to make unimportable in the steps: 'node' (what the "
                        "GPU node lacks), 'weights' (the weight packages), or names, comma-separated")
    parser.add_argument("--only", default="", help="steps to run, comma-separated or spaced: sanity, doctor, "
                        "a stop's name, stop (every stop), bench, pytest")
    parser.add_argument("--pytest", action="store_true", help="also run pytest -m needs_cuda (long: opt-in)")
    args = parser.parse_args(argv)
    if args.budget <= RESERVE + MIN_STEP:
        parser.error(f"--budget {args.budget:g} is too short: it must be over {RESERVE + MIN_STEP:g} seconds")
    args.only = [n for part in args.only.replace(",", " ").split() for n in [part.strip()] if n]
    return args


def main(argv: list[str] | None = None) -> int:
    from tour.tools.gpu_check import hide

    args = parse(argv)
    start = time.monotonic()
    state = gpu_state()
    device = args.device or ("cuda" if state.get("cuda") else None)
    if device is None:
        why = state.get("error") or f"torch {state.get('torch')} " + (
            f"(CUDA {state['build']} build) sees no GPU" if state.get("build") else "is a CPU-only build")
        print(f"{PROG}: no CUDA GPU on this machine ({why}); nothing to check (--device cpu rehearses the flow)")
        return 0
    out = Path(args.out).resolve()  # from the caller's folder: the steps run in the checkout's
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"{PROG}: error: cannot make --out {out}: {e.strerror}; choose another folder", file=sys.stderr)
        return 2
    kit = Path(args.kit).resolve() if args.kit else (ROOT / ".gpu-kit" if (ROOT / ".gpu-kit").is_dir() else None)
    site, kit_note = install_kit(kit, out)
    hidden = hide.modules(args.hide)
    shim = hide.write_shim(out / "hide", hidden) if hidden else None
    skeletons = kit / "skeletons" if kit and (kit / "skeletons").is_dir() else None
    steps = plan(out, device, args.only, args.pytest)
    if not steps:
        print(f"{PROG}: error: --only {' '.join(args.only)} names no step; see --help", file=sys.stderr)
        return 2
    context = {"device": device, "state": state, "budget": args.budget, "python": sys.version.split()[0],
               "kit": kit_note, "hidden": list(hidden), "skeletons": str(skeletons) if skeletons else None}
    outcomes = execute(steps, out, args.budget - (time.monotonic() - start), child_env(site, shim, skeletons),
                       context)
    bad = [o for o in outcomes if o.bad]
    counts = {s: sum(o.state == s for o in outcomes) for s in ("passed", "failed", "cut off", "skipped", "not reached")}
    print(f"{PROG}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) +
          f" in {time.monotonic() - start:.0f} s; summary: {out / 'summary.md'}")
    return 1 if bad else 0


__all__ = ["Outcome", "Step", "asdict", "execute", "main", "plan", "run_step"]
