"""How a Result shows itself: plain text for the CLI, an HTML table with inline pictures for Jupyter and the report.

Every stop's `Result` is a dataclass that subclasses `BaseResult`. In a notebook, a cell that ends with
`basics.run(cfg)` renders `_repr_html_`: the numbers as a table and the PNGs the stop wrote, inlined as data URIs.
`str(result)` is the aligned `key: value` text the CLI prints. `tour run all`'s report uses the same functions,
so a stop looks the same in a notebook and on the report page. `BenchRow` is the one row shape the stops hand to
`tour bench` (through their `bench_rows(settings)`). Imports no torch.
"""

from __future__ import annotations

import base64
import html
import json
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def check(help: str, default: Any = dataclasses.MISSING) -> Any:
    """A Result field that is a check: True passed, False failed (the stop fails), None not run here (a skip).

    Declared beside the field, so `run all`, the report, `tour bench` and gpu-check read the same list:
    `parity: bool | None = check("compiled output allclose to eager (fp32, atol 1e-4)", None)`.
    """
    meta = {"check": True, "help": help}
    return field(metadata=meta) if default is dataclasses.MISSING else field(default=default, metadata=meta)


def _checks_of(obj: Any, prefix: str) -> dict[str, bool | None]:
    """Check fields of a dataclass instance, and of dataclasses nested in its fields and lists (key.path[i])."""
    found: dict[str, bool | None] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if f.metadata.get("check"):
            found[key] = None if value is None else bool(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            found.update(_checks_of(value, key + "."))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item) and not isinstance(item, type):
                    label = getattr(item, "name", None) or getattr(item, "what", None) or i
                    found.update(_checks_of(item, f"{key}[{label}]."))
    return found


class BaseResult:
    """Mixin for a stop's Result dataclass (no fields of its own)."""

    def checks(self) -> dict[str, bool | None]:
        """Every check this Result declares (fields made with `check()`), by name: True, False, or None (not run)."""
        return _checks_of(self, "")

    def failed_checks(self) -> list[str]:
        """The names of the checks that failed; a stop whose list is not empty has failed, on any device."""
        return [name for name, ok in self.checks().items() if ok is False]

    def __str__(self) -> str:
        from tour.core.config import format_result

        return format_result(self)

    def pictures(self) -> list[Path]:
        """The PNG files this Result names (fields whose value is a path ending in .png)."""
        from tour.core.config import to_jsonable

        found = []
        for value in to_jsonable(self).values():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str) and v.endswith(".png"):
                    found.append(Path(v))
        return found

    def _repr_html_(self) -> str:
        from tour.core.config import to_jsonable

        title = f"<b>{html.escape(type(self).__module__)}.{type(self).__name__}</b>"
        return f"<div>{title}{result_table(to_jsonable(self))}{pictures_html(self.pictures())}</div>"


@dataclass
class BenchRow:
    """One side-by-side measurement for `tour bench`: a baseline and a variant timed in the same run."""

    section: str
    what: str
    baseline: str
    variant: str
    baseline_ms: float | None
    variant_ms: float | None
    ratio: float | None  # baseline_ms / variant_ms: above 1 the variant is faster, below 1 it lost
    parity: bool | None  # allclose(baseline, variant); None where the row has nothing to compare
    note: str = ""


@dataclass
class BenchSettings:
    """What `tour bench` asks of a stop's `bench_rows(settings)`: its shared flags, nothing stop-specific."""

    device: str = "auto"
    quick: bool = False
    out: str = "tour-output"
    seed: int = 0
    repeats: int = 10  # timed repetitions after warm-up (medians are reported)
    batch_size: int = 8  # images / sentences per call


def short(value: Any) -> str:
    """A Result value as a short, readable cell."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        if len(value) > 8:
            return f"{len(value)} values: {short(value[0])} … {short(value[-1])}"
        return ", ".join(short(v) for v in value)
    if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
        return ", ".join(f"{k}: {short(v)}" for k, v in value.items())
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 300 else text[:297] + "…"


def rows_table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(short(r.get(c, '')))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def result_table(result: dict) -> str:
    rows = []
    for key, value in result.items():
        if isinstance(value, str) and value.endswith(".png"):
            continue  # shown as a picture
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and len(value) <= 30:
            cell = rows_table(value)
        else:
            cell = html.escape(short(value))
        rows.append(f"<tr><td class=k>{html.escape(key)}</td><td>{cell}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def pictures_html(pngs) -> str:
    """PNG files inlined as data URIs: the page (or notebook cell) needs no files beside it."""
    figs = []
    for png in map(Path, pngs):
        if not png.is_file():
            continue
        data = base64.b64encode(png.read_bytes()).decode()
        figs.append(f'<figure><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(png.name)}</figcaption></figure>")
    return f'<div class="pics">{"".join(figs)}</div>' if figs else ""


