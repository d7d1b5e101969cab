"""The `tour` command: list the stops, run one (or all), check the installed stack, benchmark.

    tour list                      the stops, one line each
    tour run STOP [--quick] ...    one stop; `tour run STOP --help` shows its flags
    tour run all [--quick]         every stop in order
    tour doctor [--json]           smoke-test the installed PyTorch stack
    tour bench                     side-by-side performance ratios

Start-up imports no torch: each command imports only what it runs. Before any of them, the tour chooses its CPU
threading for what the machine is doing (tour.core.threads): the wait policy only takes effect if it is in the
environment when torch starts OpenMP, and child processes inherit it from there.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tour import __version__
from tour.core.cli import Parser
from tour.tools.registry import STOPS, load

# Commands beyond `list` and `run`, each a module with main(argv) -> int.
COMMANDS = {
    "doctor": ("tour.tools.doctor", "smoke-test the installed PyTorch ecosystem"),
    "bench": ("tour.tools.bench", "measure eager vs compiled, naive vs SDPA, ... side by side"),
}


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="tour", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"torch-tour {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.add_parser("list", help="list the tour's stops")
    run = sub.add_parser("run", help="run a stop (or 'all'); flags after STOP go to the stop", add_help=False)
    run.add_argument("stop", metavar="STOP", nargs="?", help=f"one of: all, {', '.join(STOPS)}")
    run.add_argument("args", nargs=argparse.REMAINDER)
    for name, (_, text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=text, add_help=False)
        cmd.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _list() -> int:
    width = max(map(len, STOPS))
    for name, stop in STOPS.items():
        print(f"  {name:<{width}}  {stop.summary}")
    print("\nrun one with `tour run NAME` (add --quick for a short run), or all with `tour run all`")
    return 0


def _run(stop: str | None, args: list[str]) -> int:
    if stop in (None, "-h", "--help"):
        print("usage: tour run STOP [flags]   (STOP: all, " + ", ".join(STOPS) + ")\n"
              "       tour run STOP --help    shows that stop's flags")
        return 0 if stop else 2
    if stop == "all":
        from tour.tools.run_all import main as run_all

        return run_all(args)
    if stop not in STOPS:
        print(f"tour run: error: unknown stop {stop!r}; choose one of: all, {', '.join(STOPS)} "
              "(see tour list)", file=sys.stderr)
        return 2
    return load(stop).main(args)


def main(argv: list[str] | None = None) -> int:
    # Only as the `tour` command: a notebook or test calling main([...]) keeps its own process's threading.
    if argv is None and sys.argv[1:2] and sys.argv[1] in ("run", *COMMANDS):
        from tour.core.startup import start_up

        start_up()
    argv = sys.argv[1:] if argv is None else list(argv)
    # Commands that pass their flags on are dispatched by hand: argparse's REMAINDER would not capture a
    # leading flag (`tour bench --quick`). The parser below still gives help, version and one-line errors.
    if argv and argv[0] in COMMANDS:
        return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])
    if argv and argv[0] == "run":
        return _run(argv[1] if len(argv) > 1 else None, argv[2:])
    ns = _parser().parse_args(argv)
    if ns.command is None:
        _parser().print_help()
        return 0
    return _list()  # `list` is the only command left for the parser


if __name__ == "__main__":
    sys.exit(main())
