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
import sys
import time
from pathlib import Path

from tour.tools.gpu_check.evaluate import evaluate as judge, gpu_state
from tour.tools.gpu_check.steps import (MIN_STEP, PROG, RESERVE, ROOT, STOP_ORDER, Outcome, Step, child_env,
                                        install_kit, plan, run_step)
from tour.tools.gpu_check.summary import write

DEFAULT_BUDGET = 420.0

# -- the whole run --------------------------------------------------------------------------------------------------
def execute(steps: list[Step], out: Path, budget: float, env: dict | None, context: dict) -> list[Outcome]:
    """Run the steps in order within `budget` seconds, rewriting the summary after each one."""
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
        outcomes[i] = judge(step, code, seconds, out, cut_by_budget=step.cap > left)
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
    # what the kit carries is installed there, so a rehearsal of the node does not hide it
    carried = {p.name.split(".")[0] for p in site.iterdir()} if site else set()
    hidden = tuple(m for m in hide.modules(args.hide) if m not in carried)
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


__all__ = ["ROOT", "STOP_ORDER", "Outcome", "Step", "execute", "gpu_state", "main", "plan", "run_step"]
