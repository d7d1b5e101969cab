"""`tour bench --only load`: a few stops' core steps, quiet and beside N competing torch processes, with OpenMP's
default threading and with the tour's policy (tour.core.threads), side by side in one run.

Each measurement runs in a fresh process: the wait policy is read once, when OpenMP starts. The competitors are
the usual neighbour: a small matmul loop each with torch's default threads and wait policy, time-bounded, and
always killed at the end. Also `python -m tour.tools.bench_load STEP REPS` (one measurement, JSON on stdout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager

from tour.core import threads
from tour.core.results import BenchRow, BenchSettings

# A neighbour: torch's defaults, a 256 x 256 matmul loop (short parallel regions, so its threads spin between
# them the way a training loop's do), and its own deadline in case nothing is left to kill it.
COMPETITOR = ("import time, torch\n"
              "a = torch.randn(256, 256)\n"
              "end = time.time() + {seconds}\n"
              "while time.time() < end:\n"
              "    a @ a\n")
CHILD_TIMEOUT_S = 300
STEPS = ("basics", "efficientnet", "minilm")


# the steps, run inside the fresh process ------------------------------------------------------------------------
def _basics(repeats: int) -> float:
    import torch

    from tour.core.config import DigitsConfig  # the basics stop's training settings, from the core
    from tour.core.data import digits_split
    from tour.core.timing import median_ms
    from tour.core.models import train_mlp

    cfg = DigitsConfig(quick=True)
    train, _ = digits_split(cfg.test_fraction, cfg.seed)
    return median_ms(lambda: train_mlp(cfg, torch.device("cpu"), train, 2), torch.device("cpu"), repeats)


def _efficientnet(repeats: int) -> float:
    import torch

    from tour.core.timing import median_ms
    from tour.core.models import load_efficientnet_lite0

    model, x = load_efficientnet_lite0("cpu"), torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        return median_ms(lambda: model(x), torch.device("cpu"), repeats)


def _minilm(repeats: int) -> float:
    import torch

    from tour.core.timing import median_ms
    from tour.core.models import load_encoder

    tok, enc = load_encoder(device="cpu")
    batch = tok(["How busy is this machine?"] * 8, padding="max_length", max_length=128, return_tensors="pt")
    with torch.inference_mode():
        return median_ms(lambda: enc(**batch), torch.device("cpu"), repeats)


WHAT = {"basics": "basics: digits MLP, 2 training epochs", "efficientnet": "vision: EfficientNet-Lite0, 2 images",
        "minilm": "nlp: MiniLM-L6 encoder, 8 sentences"}


def measure_here(step: str, repeats: int) -> dict:
    import torch

    ms = {"basics": _basics, "efficientnet": _efficientnet, "minilm": _minilm}[step](repeats)
    return {"step": step, "ms": ms, "threads": torch.get_num_threads(),
            "wait": {k: os.environ[k] for k in threads.WAIT_VARS if k in os.environ}}


# the parent: competitors and fresh processes --------------------------------------------------------------------
@contextmanager
def competing(n: int, seconds: float):
    """N torch processes with default threading, each its own session so all its threads die with it."""
    env = defaults_env()
    procs = [subprocess.Popen([sys.executable, "-c", COMPETITOR.format(seconds=seconds)], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
             for _ in range(n)]
    try:
        time.sleep(2.0)  # their torch is imported and their loops running before anything is measured
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def defaults_env() -> dict[str, str]:
    """This environment without any threading variable, the tour's or the user's: torch's and OpenMP's defaults."""
    drop = {*threads.WAIT_VARS, *threads.COUNT_VARS, threads.SET_VAR, threads.REASON_VAR}
    return {k: v for k, v in os.environ.items() if k not in drop}


def arm_env(arm: str) -> dict[str, str]:
    """'default': torch's and OpenMP's defaults; 'tour': the policy the tour chooses on this machine right now
    (keeping what the user set); or explicit variables 'NAME=VALUE,NAME=VALUE' (for side-by-side trials)."""
    base = defaults_env()
    if arm == "default":
        return base
    if arm == "tour":
        user = threads.without_tour(os.environ)
        base = {k: user[k] for k in user if k in (*threads.WAIT_VARS, *threads.COUNT_VARS)} | base
        threads.apply(threads.choose_threads(env=base, machine=threads.observe()), env=base)  # into the copy, not ours
        return base
    return {**base, **dict(kv.split("=", 1) for kv in arm.split(","))}


def measure(step: str, arm: str, repeats: int) -> dict:
    env = arm_env(arm)
    cmd = [sys.executable, "-m", "tour.tools.bench_load", step, str(repeats)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                          stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"the {step} measurement failed: {tail}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "reason": env.get(threads.REASON_VAR, "")}


def race_arms(steps, arms, n: int, repeats: int) -> dict:
    """{(step, arm, 'quiet'|'loaded'): result}. Quiet first: the load average lags a minute behind."""
    out = {}
    for step in steps:
        for arm in arms:
            out[step, arm, "quiet"] = measure(step, arm, repeats)
    with competing(n, seconds=CHILD_TIMEOUT_S * len(steps) * len(arms)):
        for step in steps:
            for arm in arms:
                out[step, arm, "loaded"] = measure(step, arm, repeats)
                print(f"  {step:<12} {arm:<8} quiet {out[step, arm, 'quiet']['ms']:8.1f} ms, beside {n} torch "
                      f"processes {out[step, arm, 'loaded']['ms']:8.1f} ms", flush=True)
    return out


def _arm_text(r: dict) -> str:
    return ", ".join([f"{r['threads']} threads", *(f"{k}={v}" for k, v in r["wait"].items())])


def bench_rows(settings: BenchSettings, n: int = 2) -> list[BenchRow]:
    """Per step two rows, default vs the tour's policy: quiet, and beside `n` torch processes."""
    steps = ("basics", "minilm") if settings.quick else STEPS
    repeats = 3 if settings.quick else 5
    print(f"  {', '.join(steps)}: each in a fresh process, quiet then beside {n} torch processes")
    got = race_arms(steps, ("default", "tour"), n, repeats)
    rows = []
    for step in steps:
        quiet = {a: got[step, a, "quiet"]["ms"] for a in ("default", "tour")}
        for when, label in (("quiet", "quiet"), ("loaded", f"beside {n} torch processes")):
            d, t = got[step, "default", when], got[step, "tour", when]
            note = (f"x quiet: default {d['ms'] / quiet['default']:.1f}x, tour {t['ms'] / quiet['tour']:.1f}x; "
                    f"tour: {t['reason'] or 'default'}")
            rows.append(BenchRow("load", f"{WHAT[step]}, {label}", f"default ({d['threads']} threads, spin)",
                                 f"tour ({_arm_text(t)})", d["ms"], t["ms"], d["ms"] / t["ms"], None, note))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Child mode: `python -m tour.tools.bench_load STEP REPS` prints one JSON line; or parent mode
    `python -m tour.tools.bench_load --compare STEP[,STEP] ARM[;ARM] N REPS` for side-by-side trials."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--compare":
        steps, arms, n, repeats = argv[1].split(","), argv[2].split(";"), int(argv[3]), int(argv[4])
        got = race_arms(steps, arms, n, repeats)
        for (step, arm, when), r in got.items():
            print(json.dumps({"step": step, "arm": arm, "when": when, "ms": round(r["ms"], 1),
                              "threads": r["threads"], "wait": r["wait"], "reason": r["reason"]}))
        return 0
    print(json.dumps(measure_here(argv[0], int(argv[1]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
