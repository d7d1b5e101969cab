"""A peer's own process: `python -m tour.tools.peers.child MODULE IN.json OUT.json` runs MODULE.child(payload)
and writes what it returns. A segfault or a hang here ends only this process (tour.tools.peers.run_child)."""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str]) -> int:
    module, inp, out = argv
    payload = json.loads(open(inp, encoding="utf-8").read())
    found = importlib.import_module(module).child(payload)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(found, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
