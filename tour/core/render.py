"""How a Result shows itself: plain text for the CLI, an HTML table with inline pictures for Jupyter and the report,
plain JSON for result.json.

In a notebook, a cell that ends with `basics.run(cfg)` renders `_repr_html_`: the numbers as a table and the PNGs
the stop wrote, inlined as data URIs. `str(result)` is the aligned `label  value unit` text the CLI prints.
`tour run all`'s report uses the same functions, so a stop looks the same in a notebook and on the report page.
Each value reads with the label and unit its field declares (tour.core.labels). Imports no torch.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
from pathlib import Path
from typing import Any

from tour.core.labels import Label, flat, labels_of


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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


def with_unit(value: Any, unit: str = "") -> str:
    """A value in its unit: 0.9722 "%" -> "97.22 %", 3.214 "x" -> "3.21×", 12.5 "ms" -> "12.5 ms"; numbers in a
    list or a dict each get theirs. None is "–" (not measured here), a bool is yes / no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if is_number(value):
        if unit == "%":
            return f"{value * 100:.4g} %"
        return f"{value:.3g}×" if unit == "x" else f"{short(value)} {unit}".rstrip()
    if isinstance(value, list) and value and all(is_number(v) for v in value):
        if len(value) > 8:
            return f"{len(value)} values: {with_unit(value[0], unit)} … {with_unit(value[-1], unit)}"
        return ", ".join(with_unit(v, unit) for v in value)
    if isinstance(value, dict) and value and all(is_number(v) or isinstance(v, bool) for v in value.values()):
        return ", ".join(f"{k}: {with_unit(v, unit)}" for k, v in value.items())
    return short(value)


MARKS = {True: ("ok", "✓ pass"), False: ("failed", "✗ FAIL"), None: ("skipped", "– not run")}
_MARK_COLOURS = {"ok": "#137333", "failed": "#c5221f", "skipped": "#8a6d00"}  # inline: a notebook has no CSS


def _name(key: str, label: Label | None) -> str:
    """A row's heading: the label, with the field's name small beside it (what `result.<name>` reads)."""
    if label is None:
        return f"<code>{html.escape(key)}</code>"
    return f'{html.escape(label.text)} <small class="f" style="color:#777"><code>{html.escape(key)}</code></small>'


def checks_html(checks: dict[str, bool | None], labels: dict[str, Label] | None = None) -> str:
    """Checks as pass / fail / not-run marks, each with what it checks (the check's help)."""
    if not checks:
        return ""
    items = []
    for name, ok in checks.items():
        css, mark = MARKS[None if ok is None else bool(ok)]
        label = (labels or {}).get(_path(name))
        items.append(f'<li class="{css}" style="color:{_MARK_COLOURS[css]}"><b>{mark}</b> '
                     f'<span style="color:#1b1f24">{_name(name, label)}</span></li>')
    return f'<ul class="checks">{"".join(items)}</ul>'


def _path(name: str) -> str:
    """A check's name as its label's path: `comparisons[mlp, inference].parity` -> `comparisons[].parity`."""
    head, bracket, rest = name.partition("[")
    return f"{head}[]{rest.partition(']')[2]}" if bracket else name


def _columns(key: str, labels: dict[str, Label]) -> dict[str, Label]:
    prefix = f"{key}[]."
    return {path[len(prefix):]: label for path, label in labels.items() if path.startswith(prefix)}


def _head(col: str, label: Label | None) -> str:
    if label is None:
        return f"<th>{html.escape(col)}</th>"
    if label.check:  # a check's help is a sentence: the column keeps its short name, the help shows on hover
        return f'<th title="{html.escape(label.text)}">{html.escape(col)} (check)</th>'
    unit = f" ({label.unit})" if label.unit and label.unit not in ("%", "x") else ""
    return f'<th title="{html.escape(col)}">{html.escape(label.text + unit)}</th>'


def _cell(value: Any, label: Label | None) -> str:
    """A table cell; units sit in the column's heading, except × and %, which read better on the number."""
    if label is not None and label.check:
        css, mark = MARKS[None if value is None else bool(value)]
        return f'<td class="{css}" style="color:{_MARK_COLOURS[css]}">{mark}</td>'
    unit = label.unit if label is not None and label.unit in ("%", "x") else ""
    return f"<td>{html.escape(with_unit(value, unit) if value != '' else '')}</td>"


def rows_table(rows: list[dict], columns: dict[str, Label] | None = None) -> str:
    """A list of dicts as a table: one row each, headed by the columns' labels and units where declared."""
    columns = columns or {}
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(_head(c, columns.get(c)) for c in cols)
    body = "".join("<tr>" + "".join(_cell(r.get(c, ""), columns.get(c)) for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def grouped_table(groups: dict[str, list], columns: dict[str, Label] | None = None) -> str:
    """A dict of lists of rows (query -> [[text, label, cosine], ...]) as one table: the key heads its group.
    Declared columns name the key first, then each position of a row."""
    labels = list((columns or {}).items())
    width = max(len(r) for rows in groups.values() for r in rows)
    names = [(k, v) for k, v in labels] or [("", None)]
    names += [(f"#{i + 1}", None) for i in range(len(names) - 1, width)]
    head = "".join(_head(k, v) for k, v in names)
    body = []
    for key, rows in groups.items():
        for i, row in enumerate(rows):
            first = f'<th rowspan="{len(rows)}" scope="rowgroup">{html.escape(str(key))}</th>' if i == 0 else ""
            cells = "".join(_cell(v, names[j + 1][1] if j + 1 < len(names) else None) for j, v in enumerate(row))
            body.append(f"<tr>{first}{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


SHOWN_ROWS = 30  # a longer table shows its first rows on the page; result.json keeps them all


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _is_groups(value: Any) -> bool:
    return (isinstance(value, dict) and bool(value) and all(isinstance(v, list) and v for v in value.values())
            and all(isinstance(r, list) for v in value.values() for r in v))


def _is_keyed_rows(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())


def value_html(key: str, value: Any, labels: dict[str, Label]) -> str:
    """One Result value: a table for a table (a list of dicts, a dict of lists of rows, a dict of dicts), else text."""
    columns = _columns(key, labels)
    if _is_rows(value):
        more = len(value) - SHOWN_ROWS
        return rows_table(value[:SHOWN_ROWS], columns) + (f"<p>… and {more} more rows (result.json has them all)</p>"
                                                          if more > 0 else "")
    if _is_groups(value):
        return grouped_table(value, columns)
    if _is_keyed_rows(value):
        first = next(iter(columns.items()), ("", None))
        return rows_table([{first[0]: k, **v} for k, v in value.items()], columns)
    label = labels.get(key)
    return html.escape(with_unit(value, label.unit if label else ""))


def result_table(result: dict, labels: dict[str, Label] | None = None) -> str:
    """A Result (as JSON) as a table of labelled figures; checks are left out (`checks_html` shows them as marks)
    and so are pictures (`pictures_html` inlines them)."""
    labels = labels or {}
    rows = []
    for key, value in result.items():
        label = labels.get(key)
        if (label is not None and label.check) or (isinstance(value, str) and value.endswith(".png")):
            continue
        rows.append(f"<tr><td class=k>{_name(key, label)}</td><td>{value_html(key, value, labels)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def as_text(result: Any) -> str:
    """A Result as aligned `label  value unit` lines for the terminal; checks as ✓ / ✗ marks, long values cut."""
    is_result = dataclasses.is_dataclass(result)
    data = flat(to_jsonable(result), result) if is_result else to_jsonable(result)
    labels = labels_of(result) if is_result else {}
    names = {k: k if labels.get(k) is None or labels[k].check else labels[k].text for k in data}
    width = min(max((len(n) for n in names.values()), default=0), 44)
    lines = []
    for key, value in data.items():
        label = labels.get(key)
        if label is not None and label.check:
            text = MARKS[None if value is None else bool(value)][1]
        elif isinstance(value, (str, int, float)) or value is None or _is_number_list(value):
            text = value if isinstance(value, str) else with_unit(value, label.unit if label else "")
        elif _is_rows(value) or _is_groups(value):
            text = "".join(f"\n    {_cut(row)}" for row in _text_rows(key, value, labels))  # a line per row
        else:
            text = json.dumps(value)
        lines.append(f"  {names[key]}{text}" if text.startswith("\n") else f"  {names[key]:<{width}}  {_cut(text)}")
    return "\n".join(lines)


def _cut(text: str, most: int = 160) -> str:
    return text if len(text) <= most else text[:most - 3] + "..."


def _text_rows(key: str, value: Any, labels: dict[str, Label]) -> list[str]:
    """A table for the terminal: a line per row (the first 12), each cell as `label value unit`."""
    columns = _columns(key, labels)

    def cell(col: str, v: Any) -> str:
        label = columns.get(col)
        if label is not None and label.check:
            return f"{col} {MARKS[None if v is None else bool(v)][1]}"
        return f"{label.text if label else col} {with_unit(v, label.unit if label else '')}"

    if isinstance(value, dict):  # key -> rows: the key, then each row's cells
        return [f"{k}: " + "; ".join(", ".join(with_unit(v) if not isinstance(v, str) else v for v in row)
                                     for row in rows) for k, rows in list(value.items())[:12]]
    more = [f"... and {len(value) - 12} more rows"] if len(value) > 12 else []
    return [", ".join(cell(c, v) for c, v in row.items()) for row in value[:12]] + more


def _is_number_list(value: Any) -> bool:
    return isinstance(value, (list, dict)) and bool(value) and all(
        is_number(v) for v in (value.values() if isinstance(value, dict) else value))


def captions(result: dict, labels: dict[str, Label]) -> dict[str, str]:
    """PNG file name -> the label of the Result field that names it (a picture's caption)."""
    found = {}
    for key, value in result.items():
        for v in value if isinstance(value, list) else [value]:
            if key in labels and isinstance(v, str) and v.endswith(".png"):
                found[Path(v).name] = labels[key].text
    return found


def pictures_html(pngs, captions: dict[str, str] | None = None) -> str:
    """PNG files inlined as data URIs: the page (or notebook cell) needs no files beside it. A caption is the
    label of the field that names the file (`captions`), else the file's name."""
    figs = []
    for png in map(Path, pngs):
        if not png.is_file():
            continue
        data = base64.b64encode(png.read_bytes()).decode()
        caption = (captions or {}).get(png.name, png.name)
        figs.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return f'<div class="pics">{"".join(figs)}</div>' if figs else ""


# plain JSON for result.json, results.json and the report -----------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """Results hold dataclasses, Paths, tuples, numpy/torch scalars: make them plain JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):  # numpy / torch scalars and small arrays
        return to_jsonable(obj.tolist())
    return str(obj)
