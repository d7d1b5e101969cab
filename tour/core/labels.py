"""What a Result field declares: `check(help)` makes it a check (a pass / fail mark), `labelled(label, unit)` gives
it a label and a unit (a ratio "x" with its parity field, a figure with its roof); a field with neither shows its
name. `labels_of`, `parts_of` and `flat` read the declarations back for the CLI, a notebook, the report and
`tour bench`. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any


def check(help: str, default: Any = dataclasses.MISSING) -> Any:
    """A Result field that is a check: True passed, False failed (the stop fails), None not run here (a skip).

    Declared beside the field, so `run all`, the report, `tour bench` and gpu-check read the same list:
    `parity: bool | None = check("compiled output allclose to eager (fp32, atol 1e-4)", None)`.
    """
    meta = {"check": True, "help": help}
    return field(metadata=meta) if default is dataclasses.MISSING else field(default=default, metadata=meta)


@dataclass(frozen=True)
class Label:
    """How one Result field reads on a page: what it is, in which unit (see `labelled`)."""

    text: str
    unit: str = ""
    parity: str | None = None  # unit "x": the sibling field saying whether both sides gave the same answer
    roof: str | None = None  # the sibling field holding the limit this figure is measured against
    columns: tuple = ()  # a table's (a list of dicts') columns: (key, label, unit[, parity column])
    check: bool = False  # a check() field: its label is the check's help


def labelled(label: str, unit: str = "", default: Any = dataclasses.MISSING, *,
             default_factory: Any = dataclasses.MISSING, parity: str | None = None, roof: str | None = None,
             columns: dict | None = None) -> Any:
    """A Result field with the label and unit the report, a notebook and the CLI show it with, declared beside it:
    `kv_ratio: float = labelled("KV cache speed-up", "x", 0.0, parity="kv_same")`. A field without one shows its name.

    Units: "x" is a side-by-side ratio (baseline time / variant time: above 1 the variant is faster); `parity=`
    names the field that says whether both sides gave the same answer (a bool or a dict of bools), and the report's
    chart draws every such ratio with its parity mark. "%" is a fraction shown as a percentage (0.97 -> 97 %).
    `roof=` names the field holding the limit this figure is measured against (same unit): the chart shows the
    share reached. `columns={"seq_len": ("sequence length", "tokens"), "ratio": ("naive / SDPA", "x", "allclose")}`
    labels a table's (a list of dicts') columns, a ratio column naming its parity column; a list of dataclasses
    takes its columns' labels from that dataclass's own fields.
    """
    cols = tuple((key, *spec) for key, spec in (columns or {}).items())
    meta = {"label": Label(label, unit, parity, roof, cols)}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(metadata=meta) if default is dataclasses.MISSING else field(default=default, metadata=meta)


def _label_of(f: dataclasses.Field) -> Label | None:
    if f.metadata.get("check"):
        return Label(f.metadata["help"], check=True)
    return f.metadata.get("label")


def _row_class(hint: Any) -> type | None:
    """The dataclass a field holds a list of (`list[Comparison]` -> Comparison), or None."""
    if typing.get_origin(hint) in (list, tuple):
        inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        return inner[0] if inner else None
    return None


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation costs the nested labels, never the page
        return {}


def parts_of(cls: Any) -> dict[str, type]:
    """The fields of a Result class (or instance) that hold a part: a dataclass of their own (`speed: Speed`)."""
    cls = cls if isinstance(cls, type) else type(cls)
    hints = _hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if isinstance(hints.get(f.name), type) and dataclasses.is_dataclass(hints[f.name])}


def _in_part(part: str, label: Label) -> Label:
    """A part's label as the Result reads it: its parity and roof name siblings inside the same part."""
    return dataclasses.replace(label, parity=label.parity and f"{part}.{label.parity}",
                               roof=label.roof and f"{part}.{label.roof}")


def labels_of(cls: Any) -> dict[str, Label]:
    """Every declared label of a Result class (or instance), by field path: `kv_ratio`, `comparisons[].speedup`
    (the fields of a list of dataclasses), `rows[].seq_len` (a table's declared columns), `speed.kv_ratio` (a
    part's field; its parity is `speed.kv_same`)."""
    cls = cls if isinstance(cls, type) else type(cls)
    hints, parts = _hints(cls), parts_of(cls)
    found: dict[str, Label] = {}
    for f in dataclasses.fields(cls):
        label = _label_of(f)
        if label:
            found[f.name] = label
            found.update({f"{f.name}[].{key}": Label(*spec) for key, *spec in label.columns})
        row = _row_class(hints.get(f.name))
        if row is not None:
            found.update({f"{f.name}[].{k}": v for k, v in labels_of(row).items()})
        if f.name in parts:  # a table inside a part keeps its columns' own parity names
            found.update({f"{f.name}.{k}": v if "[]." in k else _in_part(f.name, v)
                          for k, v in labels_of(parts[f.name]).items()})
    return found


def flat(data: dict, cls: Any) -> dict:
    """A Result as JSON with each part's fields lifted to `part.field` keys, in order: the shape labels_of names,
    so the CLI text, a notebook and the report show a part's figures as rows of their own."""
    parts = parts_of(cls) if cls is not None else {}
    found: dict = {}
    for key, value in data.items():
        if key in parts and isinstance(value, dict):
            found.update({f"{key}.{k}": v for k, v in flat(value, parts[key]).items()})
        else:
            found[key] = value
    return found


def checks_of(obj: Any, prefix: str) -> dict[str, bool | None]:
    """Check fields of a dataclass instance, and of dataclasses nested in its fields and lists (key.path[i])."""
    found: dict[str, bool | None] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if f.metadata.get("check"):
            found[key] = None if value is None else bool(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            found.update(checks_of(value, key + "."))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item) and not isinstance(item, type):
                    label = getattr(item, "name", None) or getattr(item, "what", None) or i
                    found.update(checks_of(item, f"{key}[{label}]."))
    return found
