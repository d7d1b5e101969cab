"""`collect()`: run every probe in a worker process and the facts beside it, then diagnose. The one entry point
(`tour doctor`, `tour run all`'s report and gpu-check call it)."""

from __future__ import annotations

import time
from typing import Callable

from tour.core.errors import TourError
from tour.tools.doctor.rows import DEVICE_ABSENT, FAILED, USAGE, Diagnosis, Facts, PlanRefused, ProbeResult, Report
from tour.tools.doctor.rules import diagnose

DEFAULT_TIMEOUT = 180.0  # per probe; a cold torch.compile on a busy 2-core machine took ~35 s


def diagnoses_for(facts: dict | None, probes: list[ProbeResult]) -> list[Diagnosis]:
    return diagnose(Facts.from_dict(facts) if facts else None, probes)


def collect(quick: bool = False, device: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            on_result: Callable[[ProbeResult], None] | None = None, only: tuple[str, ...] = (),
            models: tuple[str, ...] = ()) -> Report:
    """Run every probe (in a worker process), gather the rows and diagnose them. Raises PlanRefused on a bad --device
    or --only; its `diagnoses` then hold what the facts alone show (a CUDA build that cannot see the GPU
    makes `--device cuda` a usage error, and the diagnosis says why)."""
    # The worker module is imported here, not at the top: `python -m tour.tools.doctor.worker` must not find itself
    # already imported by the package.
    from tour.tools.doctor.worker import FactsChild, run_worker

    start = time.perf_counter()
    results: list[ProbeResult] = []
    facts_child = FactsChild(device, models)

    def emit(result: ProbeResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    plan, index = None, 0
    try:
        while plan is None or index < len(plan):
            plan, index = run_worker(quick, device, index, timeout, plan, emit, only)
    except TourError as e:
        # The refusal becomes a row the rules can select: its kind (device_absent for a GPU torch cannot use) and
        # the device asked for.
        kind = e.kind if e.kind in (DEVICE_ABSENT, USAGE) else USAGE
        refusal = ProbeResult(f"--device {device}", "usage", FAILED, str(e), 0.0, True, device=device, kind=kind)
        raise PlanRefused(str(e), diagnoses_for(facts_child.result(), [*results, refusal]), kind=e.kind) from e
    facts = facts_child.result()
    return Report(results, round(time.perf_counter() - start, 2), quick, device, diagnoses_for(facts, results), facts)
