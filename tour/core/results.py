"""A stop's Result: the `BaseResult` mixin every stop's Result dataclass subclasses (its checks, its text and
notebook views), `BenchRow` (the one row shape the stops hand to `tour bench`, through their
`bench_rows(settings)`) and result.json. A field declares how it reads with `check()` and `labelled()`
(tour.core.labels; imported here too, the names a stop uses); tour.core.render draws it. Imports no torch.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tour.core.labels import check, checks_of, flat, labelled, labels_of
from tour.core.render import as_text, captions, checks_html, pictures_html, result_table, to_jsonable

__all__ = ["BaseResult", "BenchRow", "BenchSettings", "check", "labelled", "write_result"]


class BaseResult:
    """Mixin for a stop's Result dataclass (no fields of its own)."""

    def checks(self) -> dict[str, bool | None]:
        """Every check this Result declares (fields made with `check()`), by name: True, False, or None (not run)."""
        return checks_of(self, "")

    def failed_checks(self) -> list[str]:
        """The names of the checks that failed; a stop whose list is not empty has failed, on any device."""
        return [name for name, ok in self.checks().items() if ok is False]

    def __str__(self) -> str:
        return as_text(self)

    def pictures(self) -> list[Path]:
        """The PNG files this Result names (fields whose value is a path ending in .png)."""
        found = []
        for value in flat(to_jsonable(self), self).values():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str) and v.endswith(".png"):
                    found.append(Path(v))
        return found

    def _repr_html_(self) -> str:
        labels, data = labels_of(self), flat(to_jsonable(self), self)
        title = f"<b>{html.escape(type(self).__module__)}.{type(self).__name__}</b>"
        return (f"<div>{title}{checks_html(self.checks(), labels)}{result_table(data, labels)}"
                f"{pictures_html(self.pictures(), captions(data, labels))}</div>")


@dataclass
class BenchRow:
    """One side-by-side measurement for `tour bench`: a baseline and a variant timed in the same run."""

    section: str
    what: str
    baseline: str
    variant: str
    baseline_ms: float | None = labelled("baseline", "ms")
    variant_ms: float | None = labelled("variant", "ms")
    # baseline_ms / variant_ms: above 1 the variant is faster, below 1 it lost
    ratio: float | None = labelled("baseline / variant", "x", parity="parity")
    parity: bool | None = labelled("same answer")  # allclose(baseline, variant); None: nothing to compare
    note: str = ""
    roof: bool = False  # the baseline is a limit, not a rival: the ratio is the share of it reached


@dataclass
class BenchSettings:
    """What `tour bench` asks of a stop's `bench_rows(settings)`: its shared flags, nothing stop-specific."""

    device: str = "auto"
    quick: bool = False
    out: str = "tour-output"
    seed: int = 0
    repeats: int = 10  # timed repetitions after warm-up (medians are reported)
    batch_size: int = 8  # images / sentences per call


def write_result(result: Any, folder: Path) -> Path:
    """The Result as `result.json` in the stop's folder (what `tour run all` gathers and the tests may read)."""
    from tour.core.files import write_text

    return write_text(folder / "result.json", json.dumps(to_jsonable(result), indent=2) + "\n")
