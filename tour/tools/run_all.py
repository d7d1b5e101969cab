"""`tour run all`: every stop in order, then a report page to look at.

A stop that fails is reported with its one-line reason and the rest still run; the exit code says whether all
passed. The output folder gets each stop's files, `results.json` (every stop's Result) and `index.html`, both
rewritten after every stop: a tour stopped by Ctrl-C (or killed) leaves the report of what finished, the stop it
was in marked interrupted and the rest not run.
Run: `tour run all [--quick] [--only nlp,vision] [--skip distributed]` (names comma- or space-separated).
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.assets import RANDOM_LABEL
from tour.core.cli import guarded, parse_config
from tour.core.config import BaseConfig, arg, out_dir
from tour.core.files import make_folder
from tour.core.render import to_jsonable
from tour.core.results import write_result
from tour.core.errors import TourError
from tour.tools.registry import STOPS, load


@dataclass
class Config(BaseConfig):
    # choices: the registry itself, so a stop registered later (a test's fake one) is a choice too
    only: list[str] = arg([], "stops to run, in tour order (default: all)", choices=STOPS)
    skip: list[str] = arg([], "stops to leave out", choices=STOPS)
    doctor: bool = arg(True, "add `tour doctor --quick`'s summary to the report")


# A stop's state on the report: it ran (ok / failed), Ctrl-C came while it ran, or the tour ended before it.
OK, FAILED, INTERRUPTED, NOT_RUN = "ok", "failed", "interrupted", "not run"


@dataclass
class StopOutcome:
    name: str
    ok: bool
    seconds: float
    doc: str = ""  # the stop's docstring: what it teaches
    error: str = ""  # one line: why it failed
    result: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)  # the Result's declared checks: name -> True / False / None (not run)
    state: str = ""  # OK, FAILED, INTERRUPTED or NOT_RUN; empty: read from `ok`
    kind: str = ""  # the TourError's kind when it had one: "missing_library" is a stop this stack cannot run
    # models that ran with random weights (tour.core.assets' stand-ins): only its agreement checks say anything
    random_weights: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = self.state or (OK if self.ok else FAILED)


def selected(cfg: Config) -> list[str]:
    chosen = [n for n in STOPS if (not cfg.only or n in cfg.only) and n not in cfg.skip]
    if not chosen:
        raise TourError("--only/--skip leave no stop to run; see `tour list`")
    return chosen


def run_stop(name: str, cfg: Config) -> StopOutcome:
    """Import and run one stop with the tour's shared settings; never raises."""
    from tour.core.assets import watching_random_weights

    start = time.perf_counter()
    doc, kind = "", ""
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
        reason, kind = str(e), e.kind or ""
    except Exception as e:  # noqa: BLE001 - one broken stop must not end the tour
        where = traceback.extract_tb(e.__traceback__)[-1]
        reason = f"{type(e).__name__}: {e} ({Path(where.filename).name}:{where.lineno})"
    return StopOutcome(name, False, time.perf_counter() - start, doc, error=reason.splitlines()[0], kind=kind)


def doctor_summary(cfg: Config) -> dict | None:
    """The doctor's quick report, or None when it cannot run (it is never worth failing the tour for)."""
    try:
        from tour.tools import doctor

        return to_jsonable(doctor.collect(quick=True, device=None if cfg.device == "auto" else cfg.device))
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}


def not_run(name: str) -> StopOutcome:
    return StopOutcome(name, False, 0.0, error="not run: the tour ended before it", state=NOT_RUN)


def run(cfg: Config) -> list[StopOutcome]:
    """Every selected stop in tour order; the report is rewritten after each one, so an interrupt (re-raised
    once the report says so), a crash or a kill leaves the report of everything that finished."""
    from tour.tools import report

    names = selected(cfg)
    out = make_folder(cfg.out)  # a bad --out (a file, read-only) is one line, exit 2, before any stop runs
    outcomes = [not_run(name) for name in names]
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        print(f"\n[{i + 1}/{len(names)}] {name}: {STOPS[name].summary}  (tour time {time.perf_counter() - t0:.0f} s)",
              flush=True)
        start = time.perf_counter()
        ends_here = True  # an interrupt or a crash: this report is the last, so it draws the chart
        try:
            outcomes[i] = run_stop(name, cfg)
            ends_here = False  # main() writes the last report, with the doctor's summary and the chart
        except KeyboardInterrupt:
            took = time.perf_counter() - start
            outcomes[i] = StopOutcome(name, False, took, error=f"interrupted (Ctrl-C) after {took:.0f} s",
                                      state=INTERRUPTED)
            raise
        finally:
            report.write(out, outcomes, None, cfg, time.perf_counter() - t0, chart=ends_here)
        state = "ok" if outcomes[i].ok else f"FAILED: {outcomes[i].error}"
        if outcomes[i].random_weights:
            state += f" ({RANDOM_LABEL}: {', '.join(outcomes[i].random_weights)})"
        print(f"[{i + 1}/{len(names)}] {name}: {state} in {outcomes[i].seconds:.1f} s", flush=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    from tour.tools import report

    def body() -> int:
        cfg = parse_config(Config, argv, "tour run all", __doc__)
        start = time.perf_counter()
        try:
            outcomes = run(cfg)
        except KeyboardInterrupt:
            page = Path(cfg.out).resolve() / "index.html"
            if page.exists():
                print(f"\nthe report of the stops that finished: {page}", file=sys.stderr)
            raise
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
