"""`tour run all`: every stop in order, then a report page to look at.

A stop that fails is reported with its one-line reason and the rest still run; the exit code says whether all
passed. The output folder gets each stop's files, `results.json` (every stop's Result) and `index.html`.
Run: `tour run all [--quick] [--only nlp,vision] [--skip distributed]`.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.assets import RANDOM_LABEL
from tour.core.config import BaseConfig, arg, guarded, out_dir, parse_config
from tour.core.results import to_jsonable, write_result
from tour.core.errors import TourError
from tour.tools.registry import STOPS, load


@dataclass
class Config(BaseConfig):
    only: str = arg("", "comma-separated stops to run, in tour order (default: all)")
    skip: str = arg("", "comma-separated stops to leave out")
    doctor: bool = arg(True, "add `tour doctor --quick`'s summary to the report")


@dataclass
class StopOutcome:
    name: str
    ok: bool
    seconds: float
    doc: str = ""  # the stop's docstring: what it teaches
    error: str = ""  # one line: why it failed
    result: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)  # the Result's declared checks: name -> True / False / None (not run)
    # models that ran with random weights (tour.core.assets' stand-ins): only its agreement checks say anything
    random_weights: list[str] = field(default_factory=list)


def _names(text: str, flag: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STOPS]
    if unknown:
        raise TourError(f"{flag}: unknown stop(s) {', '.join(unknown)}; choose from: {', '.join(STOPS)}")
    return names


def selected(cfg: Config) -> list[str]:
    only, skip = _names(cfg.only, "--only"), _names(cfg.skip, "--skip")
    chosen = [n for n in STOPS if (not only or n in only) and n not in skip]
    if not chosen:
        raise TourError("--only/--skip leave no stop to run; see `tour list`")
    return chosen


def run_stop(name: str, cfg: Config) -> StopOutcome:
    """Import and run one stop with the tour's shared settings; never raises."""
    from tour.core.assets import watching_random_weights

    start = time.perf_counter()
    doc = ""
    try:
        module = load(name)
        doc = (module.__doc__ or "").strip()
        stop_cfg = module.Config(device=cfg.device, quick=cfg.quick, out=cfg.out, seed=cfg.seed)
        with watching_random_weights() as random:
            result = module.run(stop_cfg)
        write_result(result, out_dir(stop_cfg, name))
        checks, failed = result.checks(), result.failed_checks()
        # A stop that ran but whose check failed (parity False, accuracy under its floor) has failed, on any device.
        error = f"failed check(s): {', '.join(failed)}" if failed else ""
        return StopOutcome(name, not failed, time.perf_counter() - start, doc, error=error,
                           result=to_jsonable(result), checks=checks, random_weights=sorted(random))
    except TourError as e:
        reason = str(e)
    except Exception as e:  # noqa: BLE001 - one broken stop must not end the tour
        where = traceback.extract_tb(e.__traceback__)[-1]
        reason = f"{type(e).__name__}: {e} ({Path(where.filename).name}:{where.lineno})"
    return StopOutcome(name, False, time.perf_counter() - start, doc, error=reason.splitlines()[0])


def doctor_summary(cfg: Config) -> dict | None:
    """The doctor's quick report, or None when it cannot run (it is never worth failing the tour for)."""
    try:
        from tour.tools import doctor

        return to_jsonable(doctor.collect(quick=True, device=None if cfg.device == "auto" else cfg.device))
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}


def run(cfg: Config) -> list[StopOutcome]:
    names = selected(cfg)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    outcomes = []
    t0 = time.perf_counter()
    for i, name in enumerate(names, 1):
        print(f"\n[{i}/{len(names)}] {name}: {STOPS[name].summary}  (tour time {time.perf_counter() - t0:.0f} s)",
              flush=True)
        outcome = run_stop(name, cfg)
        state = "ok" if outcome.ok else f"FAILED: {outcome.error}"
        if outcome.random_weights:
            state += f" ({RANDOM_LABEL}: {', '.join(outcome.random_weights)})"
        print(f"[{i}/{len(names)}] {name}: {state} in {outcome.seconds:.1f} s", flush=True)
        outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    from tour.tools import report

    def body() -> int:
        cfg = parse_config(Config, argv, "tour run all", __doc__)
        start = time.perf_counter()
        outcomes = run(cfg)
        doctor = doctor_summary(cfg) if cfg.doctor else None
        paths = report.write(Path(cfg.out), outcomes, doctor, cfg, time.perf_counter() - start)
        failed = [o for o in outcomes if not o.ok]
        print(f"\ntour finished in {time.perf_counter() - start:.1f} s: {len(outcomes) - len(failed)} ok, "
              f"{len(failed)} failed" + "".join(f"\n  {o.name}: {o.error}" for o in failed))
        random = [f"{o.name} ({', '.join(o.random_weights)})" for o in outcomes if o.random_weights]
        if random:
            print(f"{RANDOM_LABEL}: {'; '.join(random)}")
        print(f"report: {paths['html']}\nresults: {paths['json']}")
        return 1 if failed else 0

    return guarded("tour run all", body)
