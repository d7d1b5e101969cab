"""Runs at the start of every Python child of the test session (this folder is first on PYTHONPATH): installs the
tests' network guard, then the sitecustomize this one hides, if any, so the child behaves as it would otherwise."""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))

if os.environ.get("TOUR_NETGUARD", "1") != "0":
    sys.path.insert(0, _HERE)
    try:
        import tour_netguard

        tour_netguard.install()
    finally:
        sys.path.remove(_HERE)


def _chain() -> None:
    rest = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None and os.path.dirname(os.path.abspath(spec.origin)) != _HERE:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_chain()
