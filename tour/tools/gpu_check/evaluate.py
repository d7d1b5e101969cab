"""What each gpu-check step's exit code and files say: passed, failed, skipped (and why), or cut off."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tour.core.errors import MISSING_LIBRARY
from tour.tools.gpu_check.steps import Outcome

PROBE_TIMEOUT = 120.0  # importing torch and asking CUDA on a cold machine


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


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def last_line(path: Path) -> str:
    """The log's last non-empty line: where a step that wrote no report stopped."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:240] if lines else ""


def sanity(out: Path) -> tuple[list[str], str]:
    """(failures, one line of figures) from sanity.json."""
    from tour.tools.gpu_check.sanity import failed

    parts = read_json(out / "sanity.json") or {}
    roofs = parts.get("roofs") or {}
    rates = roofs.get("rates") or {}
    figures = [f"{k} {v / 1e3:.1f} T{'OP' if k == 'int8' else 'FLOP'}/s" for k, v in rates.items() if v]
    if roofs.get("bandwidth_gb_s"):
        figures.append(f"copy {roofs['bandwidth_gb_s']:.0f} GB/s")
    return failed(parts), ", ".join(figures)


def bench(out: Path) -> list[str]:
    """What bench/bench.json records as failed: a section that raised, a row whose parity is False."""
    data = read_json(out / "bench" / "bench.json") or {}
    found = [f"bench {name}: {why}" for name, why in (data.get("failed") or {}).items()]
    return found + [f"bench {r['section']} {r['what']}: parity False" for r in data.get("rows", [])
                    if r.get("parity") is False]


def random_weights(stop: dict) -> list[str]:
    """The models a stop ran on seeded random weights (no pretrained weights here), as `tour run all` records them."""
    return list(stop.get("random_weights") or [])


def stop(name: str, code: int | None, out: Path):
    """(state, detail, notes) of one stop from its results.json."""
    data = read_json(out / "stops" / name / "results.json")
    entry = (data or {}).get("stops", {}).get(name)
    if entry is None:
        if code is None:
            return "cut off", "", []
        return "failed", f"no results.json (exit code {code}): {last_line(out / 'stops' / f'{name}.log')}", []
    checks = entry.get("checks") or {}
    not_run = [k for k, v in checks.items() if v is None]
    notes = []
    models = random_weights(entry)
    if models:
        notes.append(f"random weights ({', '.join(models)}): agreement checks only")
    if not_run:
        notes.append(f"not run: {', '.join(not_run)}")
    passed = [k for k, v in checks.items() if v is True]
    if entry.get("kind") == MISSING_LIBRARY:
        return "skipped", entry.get("error", ""), notes
    if not entry.get("ok") or any(v is False for v in checks.values()):
        return "failed", entry.get("error") or "failed check(s)", notes
    return "passed", f"{len(passed)} check(s) held" + (f", {len(not_run)} not run" if not_run else ""), notes


def evaluate(step, code: int | None, seconds: float, out: Path, cut_by_budget: bool = False):
    """The step's Outcome, from its exit code and what its files record (a failed check fails a step whose exit code
    may not say so)."""
    def outcome(state: str, detail: str = "", notes: list[str] | None = None):
        return Outcome(step.name, state, seconds, detail, step.log, code, notes or [])

    if step.kind == "stop":
        state, detail, notes = stop(step.name, code, out)
        if state == "cut off":
            detail = f"killed after {seconds:.0f} s ({'the budget' if cut_by_budget else 'its limit'})"
        return outcome(state, detail, notes)
    if code is None:
        return outcome("cut off", f"killed after {seconds:.0f} s ({'the budget' if cut_by_budget else 'its limit'})")
    if step.kind == "sanity":
        bad, figures = sanity(out)
        return outcome("failed" if bad or code else "passed", "; ".join(bad) or figures or last_line(out / step.log))
    if step.kind == "bench":
        bad = bench(out)
        return outcome("failed" if bad or code else "passed", "; ".join(bad)[:300] or f"exit code {code}")
    if step.kind == "pytest":
        line = last_line(out / step.log)
        if code == 5:  # no test selected: a checkout without needs_cuda tests, or none for this device
            return outcome("skipped", "no needs_cuda test was selected")
        return outcome("passed" if code == 0 else "failed", line)
    if step.kind == "doctor":
        report = read_json(out / step.log) or {}
        diagnoses = report.get("diagnoses") or []
        errors = [d for d in diagnoses if d.get("severity") == "error"]
        detail = "; ".join(f"{d['rule']}: {d['cause']}" for d in errors)[:300] or f"{len(diagnoses)} diagnoses"
        return outcome("passed" if code == 0 else "failed", detail)
    return outcome("passed" if code == 0 else "failed", f"exit code {code}")
