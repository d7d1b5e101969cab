"""`tour run all`: every stop in order; a failing stop is reported and the rest still run."""

from __future__ import annotations

import importlib
import sys
import time

from tour.stops import STOPS


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    failed = []
    start = time.perf_counter()
    for name, (module, text) in STOPS.items():
        print(f"\n=== tour run {name}: {text}", flush=True)
        t0 = time.perf_counter()
        try:
            code = importlib.import_module(module).main(argv)
        except Exception as e:  # noqa: BLE001 - one broken stop must not stop the tour
            print(f"[{name}] failed: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1
        print(f"=== {name}: {'ok' if code == 0 else 'FAILED'} in {time.perf_counter() - t0:.1f} s", flush=True)
        if code != 0:
            failed.append(name)
    print(f"\ntour finished in {time.perf_counter() - start:.1f} s: {len(STOPS) - len(failed)} ok, "
          f"{len(failed)} failed{': ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0
