"""Config dataclasses become command lines; results become printable, JSON-able dicts.

Every stop declares `@dataclass class Config(BaseConfig)` with `arg(default, "help")` fields; `stop_main` turns
that into an argparse parser (one flag per field, help showing the default), runs the stop, prints its Result
and writes `result.json` into the stop's output folder. Imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from tour.errors import TourError


def arg(default: Any, help: str, **kw: Any) -> Any:
    """A Config field with its help text (lists get a default_factory so instances don't share one).

    `min=` / `max=` bound a number (inclusive): the command line refuses values outside them in one line.
    """
    meta = {"help": help, **kw}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class BaseConfig:
    device: str = arg("auto", "device to run on: auto, cpu, cuda, mps, xpu (or set TOUR_DEVICE)")
    quick: bool = arg(False, "short run on less (still real) data; what the tests use")
    out: str = arg("tour-output", "folder the stop writes its files into (a subfolder per stop)")
    seed: int = arg(0, "random seed for Python, NumPy and torch")


def out_dir(cfg: BaseConfig, stop: str) -> Path:
    """The stop's own output folder, created on demand; absolute, so subprocesses started elsewhere find it."""
    path = (Path(cfg.out) / stop).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TourError(f"cannot create output folder {path}: {e.strerror}; pass --out with a writable folder") from None
    return path


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage stays in --help)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _typed(kind: type, meta: Mapping[str, Any]) -> Callable[[str], Any]:
    """A converter for one flag: the right type, finite, and inside the field's bounds."""
    lo, hi = meta.get("min"), meta.get("max")

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = {int: "an integer", float: "a number"}.get(kind, f"a {kind.__name__}")
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        checks = [(lo, ">=", lambda b: value >= b), (hi, "<=", lambda b: value <= b)]
        broken = [f"{op} {bound}" for bound, op, ok in checks if bound is not None and not ok(bound)]
        if broken:
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {' and '.join(broken)}")
        return value

    convert.__name__ = kind.__name__
    return convert


def build_parser(cls: type, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        choices = f.metadata.get("choices")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            parser.add_argument(flag, nargs="*", type=_typed(item, f.metadata), default=default, help=help_text,
                                metavar=f.name.upper())
        else:
            # Optional[X] -> X; None stays the default.
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            base = args[0] if args else kind
            parser.add_argument(flag, type=_typed(base, f.metadata), default=default, help=help_text, choices=choices)
    return parser


def parse_config(cls: type, argv: list[str] | None, prog: str, description: str | None = None) -> Any:
    ns = build_parser(cls, prog, description).parse_args(argv)
    return cls(**vars(ns))


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


def format_result(result: Any) -> str:
    """The Result as aligned `key: value` lines, long lists shortened."""
    data = to_jsonable(result)
    width = max((len(k) for k in data), default=0)
    lines = []
    for key, value in data.items():
        text = json.dumps(value) if not isinstance(value, str) else value
        if len(text) > 160:
            text = text[:157] + "..."
        lines.append(f"  {key:<{width}}  {text}")
    return "\n".join(lines)


def write_result(result: Any, folder: Path) -> Path:
    path = folder / "result.json"
    path.write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    return path


def guarded(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body, the one place user errors become exit codes: a TourError (something the user can
    fix) is one line on stderr and exit 2, Ctrl-C is exit 130. Anything else is a bug and keeps its traceback."""
    try:
        return body()
    except TourError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def stop_main(name: str, cls: type, run: Callable[[Any], Any], argv: list[str] | None = None,
              doc: str | None = None) -> int:
    """Parse flags into `cls`, run the stop, print its Result and save it as result.json."""
    prog = f"tour run {name}"

    def body() -> int:
        cfg = parse_config(cls, argv, prog, doc)
        start = time.perf_counter()
        result = run(cfg)
        took = time.perf_counter() - start
        path = write_result(result, out_dir(cfg, name))
        print(f"\n== {name}: result ({took:.1f} s, saved to {path})")
        print(format_result(result))
        return 0

    return guarded(prog, body)
