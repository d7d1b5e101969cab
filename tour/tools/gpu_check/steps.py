"""gpu-check's steps: what each one runs, in which order, with what environment, and how it is cut off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PROG = "gpu-check"
ROOT = Path(__file__).resolve().parents[3]  # the checkout (tests/ lives here when run from a clone)
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
    found = sorted((kit / "wheels").glob("*.whl")) if kit else []
    wheels = [w for w in found if installs_here(w)]
    if not wheels:
        return None, (f"no carried wheel is for this Python ({len(found)} in {kit / 'wheels'})" if found else
                      "no carried wheels" + (f" in {kit / 'wheels'}" if kit else ""))
    site = out / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        return None, f"carried wheels did not install: {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    others = f"; {len(found) - len(wheels)} not for this Python" if len(found) > len(wheels) else ""
    names = ", ".join(w.name.split("-")[0] for w in wheels)
    return site, f"{len(wheels)} carried wheels installed for the steps ({names}){others}"


def installs_here(wheel: Path) -> bool:
    """Is this wheel for this interpreter and platform? (A kit made for the node's 3.12 on a 3.11 rehearsal.)"""
    from packaging.tags import sys_tags
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        tags = parse_wheel_filename(wheel.name)[3]
    except InvalidWheelFilename:
        return False
    return not tags.isdisjoint(set(sys_tags()))
