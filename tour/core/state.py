"""Leave the caller's world as it was: a stop imported in a notebook must not change its RNG, threads or settings.

`@keeps_caller_state` on a stop's `run()` snapshots what a stop may change on the way (Python's, NumPy's and
torch's random state on every device, torch's CPU thread counts, the environment variables the tour sets, e.g.
Inductor's cache folder) and puts it all back when `run()` returns or raises. Inside, a stop seeds freely, so its
own numbers stay reproducible; on a busy machine it runs on the idle cores' threads (tour.core.threads). Imports no torch at the top.
"""

from __future__ import annotations

import functools
import os
import random
import sys
from contextlib import contextmanager


@contextmanager
def caller_state_restored():
    """Snapshot the global state a stop may touch; restore it on exit."""
    py_state = random.getstate()
    np_state = _numpy_state()
    torch = sys.modules.get("torch")  # only what is loaded can change; a stop that loads torch starts it fresh
    torch_state = _torch_state(torch) if torch else None
    env = dict(os.environ)
    try:
        yield
    finally:
        random.setstate(py_state)
        if np_state is not None:
            import numpy as np

            np.random.set_state(np_state)
        torch = sys.modules.get("torch")
        if torch is not None:
            _restore_torch(torch, torch_state)
        for key in set(os.environ) - set(env):
            del os.environ[key]
        os.environ.update({k: v for k, v in env.items() if os.environ.get(k) != v})


def keeps_caller_state(fn):
    """Decorator form of `caller_state_restored`, for a stop's `run(cfg)`; also the one place every stop's run
    passes through, so it applies the threading policy there (tour.core.threads.during_run: on a busy machine,
    the idle cores' threads for the run, the caller's count after), through the import API as on the CLI, and
    checks first what would otherwise fail with a traceback deep inside (an unwritable Inductor cache)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tour.core import inductor, threads

        inductor.check_cache_var()  # before anything imports torch._dynamo, which would fail with a traceback
        with caller_state_restored(), threads.during_run():
            return fn(*args, **kwargs)

    return wrapper


def _numpy_state():
    np = sys.modules.get("numpy")
    return np.random.get_state() if np is not None else None


def _torch_state(torch) -> dict:
    state = {"cpu": torch.random.get_rng_state(), "threads": torch.get_num_threads(),
             "interop": torch.get_num_interop_threads()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_torch(torch, state: dict | None) -> None:
    if state is None:  # torch was first imported inside the stop: reseed it as a fresh process would be
        torch.seed()
        return
    torch.random.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
    if torch.get_num_threads() != state["threads"]:
        torch.set_num_threads(state["threads"])
