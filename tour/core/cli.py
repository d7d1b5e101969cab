"""A stop's command line: its Config dataclass as argparse flags (`build_parser`, `parse_config`), the one place
user errors become exit codes (`guarded`) and a stop's `main()` (`stop_main`: parse, run, print, save result.json).
`Parser` is the tour's argparse parser (a usage error is one line), for the tools' commands too. Imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from typing import Any, Callable, Mapping

from tour.core.config import field_default, out_dir, split_names, unwrap_optional, validate_value
from tour.core.errors import TourError


class Parser(argparse.ArgumentParser):
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
            validate_value(name, value, kind, meta)
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


def build_parser(cls: type, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """One flag per field. Defaults are SUPPRESSed: only the flags a user typed reach the Config, so quick mode
    can tell an explicit value from a default (an explicit one always wins)."""
    parser = Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                    argument_default=argparse.SUPPRESS)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = unwrap_optional(hints[f.name])  # Optional[X] -> X; None stays the default
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
            parser.add_argument(flag, type=_typed(kind, f.name, f.metadata), help=help_text,
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
    from tour.core.startup import start_up

    if argv is None:  # as a command (`python -m tour.<stop>`); a notebook or test calling main([...]) keeps its own
        start_up()
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
