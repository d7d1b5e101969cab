"""Config dataclasses become command lines, check themselves, and know their quick-mode values.

Every stop declares `@dataclass class Config(BaseConfig)` with `arg(default, "help", min=, max=, choices=,
quick=)` fields. The field metadata is the one source of truth:

- **Validation at construction.** `BaseConfig.__post_init__` checks every field against its metadata (type,
  finite, `min`/`max`, `choices`, also for each item of a list), so `basics.run(basics.Config(epochs=0))` in a
  notebook and `tour run basics --epochs 0` fail with the same one-line `TourError`.
- **One quick mode.** `arg(40, "...", quick=15)`: with `quick=True`, a field the caller did not set takes its quick
  value; a value the caller set explicitly (a keyword or a flag) always wins. `--help` shows both values.
- **Flags.** `stop_main` turns the dataclass into an argparse parser (one flag per field, help showing the
  default), runs the stop, prints its Result and writes `result.json` into the stop's output folder.

Imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from tour.core.errors import TourError


class _Unset:
    """The default of a field that has a quick value: resolved in __post_init__, so an explicit value is known."""

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


# The float dtypes a stop's --dtype chooses between (tour.core.device.choose_dtype turns a name into a torch dtype
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


def _check_value(name: str, value: Any, kind: Any, meta: Mapping[str, Any], entry: int | None = None) -> None:
    """One field against its metadata; raises a one-line TourError naming the flag and what would be accepted.
    `entry`: the 1-based place of a list's item, named where it helps (argparse checks items one at a time)."""
    flag = "--" + name.replace("_", "-")
    if typing.get_origin(kind) is list:
        if not isinstance(value, (list, tuple)):
            raise TourError(f"{flag} must be a list, got {value!r}")
        (item,) = typing.get_args(kind) or (Any,)
        for i, v in enumerate(value):
            _check_value(name, v, item, meta, i + 1)
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
            _check_value(f.name, value, hints[f.name], f.metadata)
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


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage stays in --help)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _typed(kind: type, name: str, meta: Mapping[str, Any]) -> Callable[[str], Any]:
    """A converter for one flag: the right type, and inside the field's metadata (the checks Config runs)."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = {int: "an integer", float: "a number"}.get(kind, f"a {kind.__name__}")
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        try:
            _check_value(name, value, kind, meta)
        except TourError as e:
            raise argparse.ArgumentTypeError(str(e).split(" ", 1)[1]) from None  # argparse names the flag itself
        return value

    convert.__name__ = kind.__name__
    return convert


def _names(convert: Callable[[str], Any]) -> Callable[[str], list]:
    """A converter for one word of a names list (`--only nlp,vision audio`): the names it holds, each checked."""

    def names(text: str) -> list:
        return [convert(name) for name in split_names(text)]

    names.__name__ = convert.__name__
    return names


class _Flatten(argparse.Action):
    """Gathers a names list's words, each already split into its names, into one list."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, [name for word in values for name in word])


def field_default(f: dataclasses.Field) -> Any:
    if "default" in f.metadata:
        return f.metadata["default"]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def build_parser(cls: type, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """One flag per field. Defaults are SUPPRESSed: only the flags a user typed reach the Config, so quick mode
    can tell an explicit value from a default (an explicit one always wins)."""
    parser = _Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                     argument_default=argparse.SUPPRESS)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        quick = f" quick: {f.metadata['quick']}" if "quick" in f.metadata else ""
        help_text = f"{f.metadata.get('help', '')} (default: {field_default(f)}{';' if quick else ''}{quick})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            convert = _typed(item, f.name, f.metadata)
            if "choices" in f.metadata:  # names: space- or comma-separated, the same on every command
                names = f"; space- or comma-separated, from: {', '.join(f.metadata['choices'])}"
                parser.add_argument(flag, nargs="*", type=_names(convert), action=_Flatten,
                                    help=help_text[:-1] + names + ")", metavar=f.name.upper())
            else:
                parser.add_argument(flag, nargs="*", type=convert, help=help_text, metavar=f.name.upper())
        else:
            # Optional[X] -> X; None stays the default.
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            base = args[0] if args else kind
            parser.add_argument(flag, type=_typed(base, f.name, f.metadata), help=help_text,
                                choices=f.metadata.get("choices"))
    return parser


def parse_config(cls: type, argv: list[str] | None, prog: str, description: str | None = None) -> Any:
    """Flags -> Config. A flag argparse can't convert exits 2 with a usage line; a TourError from Config's own checks
    (the same one a notebook gets) propagates to `guarded`, which prints it in one line and returns 2."""
    ns = build_parser(cls, prog, description).parse_args(argv)
    return cls(**vars(ns))


def _not_no_cuda_runtime(record) -> bool:
    """torch's cpp_extension, imported by torchao and Inductor, warns on every CPU machine that has a CUDA_HOME
    folder: "No CUDA runtime is found, using CUDA_HOME=...". Nothing there is for a tour user to do."""
    return not str(record.msg).startswith("No CUDA runtime is found")


def quiet_libraries() -> None:
    """Output that tells a learner nothing, quieted where the tour makes the call: the command line only (importers
    keep their own logging and warnings); errors still show, and so does the tour's own progress.

    - torchao, which transformers imports whenever it is installed, registers enums that torch now handles
      natively, and torch logs a deprecation warning per enum (torch.utils._pytree).
    - transformers draws a "Loading weights" bar for every model it loads (13 in a tour): the stops say what they
      load. Its bars follow huggingface_hub's switch, read when transformers is imported (children inherit it).
    - torch's cpp_extension says "No CUDA runtime is found" on a CPU machine (see `_not_no_cuda_runtime`).
    - torch's AOT autograd cache asks torchao's Int8Tensor to implement `_stable_hash_for_caching`: a note to
      torchao's authors (the cache still works, with a default hash).
    """
    import logging
    import os
    import warnings

    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (a notebook, a test): its switch was read then
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    cpp = logging.getLogger("torch.utils.cpp_extension")
    if _not_no_cuda_runtime not in cpp.filters:
        cpp.addFilter(_not_no_cuda_runtime)
    warnings.filterwarnings("ignore", message=r".*does not implement _stable_hash_for_caching", category=UserWarning)


def guarded(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body, the one place user errors become exit codes: a TourError (something the user can
    fix) is one line on stderr and exit 2 (1 for a write that failed mid-run: tour.core.files), Ctrl-C is exit 130;
    an error only a write has (a full disk inside a library's writer) that reached here unwrapped is one line,
    exit 1. Anything else is a bug and keeps its traceback."""
    from tour.core.files import FIXES, is_write_error, os_error

    quiet_libraries()
    try:
        return body()
    except TourError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except Exception as e:
        if not is_write_error(e, anywhere=True):
            raise
        cause = os_error(e)
        where = f" {cause.filename}" if cause.filename else " the tour's files"
        print(f"{prog}: error: cannot write{where}: {cause.strerror}; {FIXES[cause.errno]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def stop_main(name: str, cls: type, run: Callable[[Any], Any], argv: list[str] | None = None,
              doc: str | None = None) -> int:
    """Parse flags into `cls`, run the stop, print its Result and save it as result.json; exit 1 when one of the
    Result's checks failed."""
    from tour.core.assets import RANDOM_LABEL, watching_random_weights
    from tour.core.results import write_result
    prog = f"tour run {name}"

    def body() -> int:
        cfg = parse_config(cls, argv, prog, doc)
        start = time.perf_counter()
        with watching_random_weights() as random:
            result = run(cfg)
        took = time.perf_counter() - start
        path = write_result(result, out_dir(cfg, name))
        print(f"\n== {name}: result ({took:.1f} s, saved to {path})")
        print(result)
        if random:  # last, beside the checks: which of them could not say anything about pretrained weights
            print(f"  {RANDOM_LABEL} ({', '.join(sorted(random))})")
        failed = result.failed_checks()
        if failed:  # the stop ran, but a claim it checks did not hold here: that is a failed stop (exit 1)
            print(f"{prog}: FAILED check(s): {', '.join(failed)}", file=sys.stderr)
            return 1
        return 0

    return guarded(prog, body)
