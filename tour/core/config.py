"""Config dataclasses become command lines, check themselves, and know their quick-mode values.

Every stop declares `@dataclass class Config(BaseConfig)` with `arg(default, "help", min=, max=, choices=,
quick=)` fields. The field metadata is the one source of truth:

- **Validation at construction.** `BaseConfig.__post_init__` checks every field against its metadata (type,
  finite, `min`/`max`, `choices`, also for each item of a list), so `basics.run(basics.Config(epochs=0))` in a
  notebook and `tour run basics --epochs 0` fail with the same one-line `TourError`.
- **One quick mode.** `arg(40, "...", quick=15)`: with `quick=True`, a field the caller did not set takes its quick
  value; a value the caller set explicitly (a keyword or a flag) always wins. `--help` shows both values.
- **Flags.** tour.core.cli turns the dataclass into an argparse parser (one flag per field, help showing the
  default); its `stop_main` runs the stop, prints its Result and writes `result.json` into the stop's output folder.

Imports no torch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tour.core.errors import TourError


class _Unset:
    """The default of a field that has a quick value: resolved in __post_init__, so an explicit value is known."""

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


# The float dtypes a stop's --dtype chooses between (tour.core.dtypes.choose_dtype turns a name into a torch dtype
# and says why). Here, not in device.py, because a Config's flags are read before torch is imported.
FLOAT_DTYPES = ("auto", "fp32", "bf16", "fp16")


def arg(default: Any, help: str, *, quick: Any = None, **kw: Any) -> Any:
    """A Config field with its help text (lists get a default_factory so instances don't share one).

    `min=` / `max=` bound a number, or each number of a list (inclusive); `gt=` / `lt=` bound it exclusively (a
    learning rate: `gt=0`); `choices=` lists the allowed values; `nonblank=True` refuses an empty or blank text
    (a query, prompt or sentence of nothing gives an answer that means nothing);
    `quick=` is the value quick mode uses when the caller does not set the field.
    A list with `choices=` (names of things: stops, sections) takes them space- or comma-separated, or both:
    `--only nlp,vision`, `--only nlp vision` and, in Python, `only="nlp,vision"` are the same.
    """
    meta = {"help": help, "default": default, **kw}
    if quick is not None:
        meta["quick"] = quick
        return field(default=UNSET, metadata=meta)  # resolved to `default` or `quick` by __post_init__
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def unwrap_optional(kind: Any) -> Any:
    """`list[int] | None` -> `list[int]`: the type a set value has (None is every field's "unset")."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1 else kind


def validate_value(name: str, value: Any, kind: Any, meta: Mapping[str, Any], entry: int | None = None) -> None:
    """One field against its metadata; raises a one-line TourError naming the flag and what would be accepted.
    `entry`: the 1-based place of a list's item, named where it helps (argparse checks items one at a time)."""
    flag = "--" + name.replace("_", "-")
    if value is None and type(None) in typing.get_args(kind):
        return  # unset: the stop derives the value (a list of sizes from this machine's caches ...)
    kind = unwrap_optional(kind)
    if typing.get_origin(kind) is list:
        if not isinstance(value, (list, tuple)):
            raise TourError(f"{flag} must be a list, got {value!r}")
        (item,) = typing.get_args(kind) or (Any,)
        for i, v in enumerate(value):
            validate_value(name, v, item, meta, i + 1)
        return
    base = [a for a in typing.get_args(kind) if a is not type(None)] if typing.get_origin(kind) else [kind]
    if value is None and type(None) in typing.get_args(kind):
        return
    want = base[0] if base else kind
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want in (int, float, bool, str) and not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise TourError(f"{flag} must be {want.__name__}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise TourError(f"{flag} must be a finite number, got {value!r}")
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if lo is not None and value < lo:
        raise TourError(f"{flag} {value} is out of range: it must be >= {lo}")
    if hi is not None and value > hi:
        raise TourError(f"{flag} {value} is out of range: it must be <= {hi}")
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise TourError(f"{flag} {value} is out of range: it must be > {meta['gt']}")
    if meta.get("lt") is not None and not value < meta["lt"]:
        raise TourError(f"{flag} {value} is out of range: it must be < {meta['lt']}")
    if meta.get("nonblank") and isinstance(value, str) and not value.strip():
        raise TourError(f"{flag} got an empty text{f' (entry {entry})' if entry else ''}; each one needs some words")
    if choices is not None and value not in choices:
        raise TourError(f"{flag} {value!r} is not one of: {', '.join(map(str, choices))}")


@dataclass
class BaseConfig:
    device: str = arg("auto", "device to run on: auto, cpu, cuda, mps, xpu (or set TOUR_DEVICE)")
    quick: bool = arg(False, "short run on less (still real) data; what the tests use")
    out: str = arg("tour-output", "folder the stop writes its files into (a subfolder per stop)")
    seed: int = arg(0, "random seed for Python, NumPy and torch")

    def __post_init__(self) -> None:
        """Resolve quick-mode values, then check every field: the same one-line TourError for every entry point."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is UNSET:
                value = _copy(f.metadata["quick"] if self.quick else f.metadata["default"])
            if "choices" in f.metadata and typing.get_origin(hints[f.name]) is list:
                value = split_names(value)  # "nlp,vision" or ["nlp", "vision,audio"]: the names it lists
            setattr(self, f.name, value)
            validate_value(f.name, value, hints[f.name], f.metadata)
        self.validate()

    def validate(self) -> None:
        """Checks that involve several fields (e.g. n_mfcc <= n_mels): a stop overrides this and raises TourError."""

    def stock(self, *names: str) -> bool:
        """The named fields hold the tour's own values (each its default or its quick value): the settings a
        Result's floor (accuracy >= 0.93) was measured with. On settings the user chose, that check is None."""
        meta = {f.name: f.metadata for f in dataclasses.fields(self)}
        return all(getattr(self, n) in (meta[n]["default"], meta[n].get("quick", meta[n]["default"])) for n in names)


@dataclass
class DigitsConfig(BaseConfig):
    """The digits MLP's training settings, shared by the stops that train it (basics, lightning)."""

    TRAINING = ("epochs", "batch_size", "lr", "hidden", "test_fraction")  # what `stock(*TRAINING)` asks about

    epochs: int = arg(40, "passes over the digits training set", min=1, quick=15)
    batch_size: int = arg(64, "digits per training step", min=1)
    lr: float = arg(1e-3, "Adam learning rate", gt=0)
    hidden: int = arg(128, "width of the MLP's hidden layers", min=1)
    test_fraction: float = arg(0.2, "share of the 1,797 digits held out for testing (10 per class at least)",
                               min=0.06, max=0.9)


def split_names(value: Any) -> Any:
    """A list of names as typed: each item may hold several, comma-separated ("nlp,vision"); blanks dropped.
    A string is one such item. Anything else is left for the type check to refuse."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return value
    return [name.strip() for item in value for name in item.split(",") if name.strip()]


def out_dir(cfg: BaseConfig, stop: str) -> Path:
    """The stop's own output folder, created on demand; absolute, so subprocesses started elsewhere find it. One
    that cannot be made (a file in the way, read-only) is a one-line error, exit 2."""
    from tour.core.files import make_folder

    return make_folder(Path(cfg.out) / stop)


def field_default(f: dataclasses.Field) -> Any:
    if "default" in f.metadata:
        return f.metadata["default"]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
