"""Every private torch / transformers API the tour uses, behind one version-guarded module.

Private APIs move between releases. Each function here detects what it needs and degrades to a stated fallback
(None, an empty count) instead of breaking a stop, so a torch upgrade breaks at most this file, and its tests say
which piece moved. Imports no torch at the top.
"""

from __future__ import annotations

import os
from contextlib import nullcontext


def inductor_cpp_compiler() -> str | None:
    """The compiler Inductor's own search picks (torch._inductor.cpp_builder: its cpp.cxx setting, $CXX, g++...):
    its name, "" when that search finds none (Inductor will fail), None when this torch has no such API."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:
        return None
    try:
        return get_cpp_compiler()
    except Exception:  # noqa: BLE001 - InvalidCxxCompiler when none of its candidates exists
        return ""


def inductor_default_cache_dir() -> str | None:
    """The folder Inductor falls back to when TORCHINDUCTOR_CACHE_DIR is unset (/tmp/torchinductor_<user>). Inductor
    writes that fallback into os.environ itself on first use, so a set variable may not be the user's choice."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:
        return None
    except OSError:  # importing torch._inductor makes $TORCHINDUCTOR_CACHE_DIR (torch 2.14) and fails where it can't:
        return None  # then the variable is the user's, and the one to report
    return os.path.abspath(default_cache_dir())


def inductor_counters() -> dict[str, int]:
    """A copy of Inductor's counters (fxgraph_cache_hit / _miss ...), {} where torch no longer has them."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return {}
    return dict(counters["inductor"])


def inductor_config_patch(**settings):
    """torch._inductor.config.patch(...) as a context manager that restores the settings; a no-op context where a
    setting does not exist in this torch."""
    try:
        import torch._inductor.config as config
    except ImportError:
        return nullcontext()
    known = {k: v for k, v in settings.items() if hasattr(config, k)}
    return config.patch(**known) if known else nullcontext()


def fresh_inductor_cache():
    """A throwaway, empty Inductor cache for the duration (torch._inductor.utils.fresh_cache; older: fresh_inductor_cache)."""
    import torch._inductor.utils as utils

    fresh = getattr(utils, "fresh_cache", None) or getattr(utils, "fresh_inductor_cache")
    return fresh()


def profiler_memory_events(prof) -> list[tuple[int, int]]:
    """(start_ns, bytes) of every allocation (+) and free (-) a torch.profiler run recorded with profile_memory=True.
    Uses the kineto results object, which is not public API; [] when it is missing."""
    results = getattr(getattr(prof, "profiler", None), "kineto_results", None)
    if results is None:
        return []
    return [(e.start_ns(), e.nbytes()) for e in results.events() if e.name() == "[memory]"]


def attn_implementation(model) -> str | None:
    """The attention implementation a transformers model runs (config._attn_implementation), or None."""
    return getattr(model.config, "_attn_implementation", None)


def aoti_compile_and_package(ep, path: str) -> str:
    from torch._inductor import aoti_compile_and_package as compile_and_package

    return compile_and_package(ep, package_path=path)


def int_mm():
    """torch._int_mm (int8 x int8 -> int32 matmul, the kernel int8 quantisation runs on), or None where this torch
    lacks it."""
    import torch

    return getattr(torch, "_int_mm", None)


def fused_optimizer_devices() -> list[str]:
    """The device types torch's fused optimizer kernels (AdamW(fused=True), ...) run on, from torch's own list
    (torch.utils._foreach_utils); [] where this torch lacks that list, so callers keep the default kernel."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices as supported
    except ImportError:
        return []
    return list(supported())


def generate_compile_config(device):
    """The CompileConfig for generate's own torch.compile of a static-cache decode step on `device`. On CUDA,
    transformers compiles by itself and its default is what it intends there: CompileConfig() (mode
    "reduce-overhead", CUDA graphs: a decode step of small kernels is launch-bound without them). Elsewhere
    transformers 5.x compiles only when its private class attribute `_compile_all_devices` is set, and mode
    "default" (a CPU has no CUDA graphs); fullgraph, so a graph break is an error, not a silently eager step.
    None where this transformers lacks CompileConfig, or off CUDA that attribute (the caller skips its way)."""
    try:
        from transformers import CompileConfig
    except ImportError:
        return None
    if device.type == "cuda":
        return CompileConfig()
    if not hasattr(CompileConfig, "_compile_all_devices"):
        return None
    config = CompileConfig(mode="default", fullgraph=True)
    config._compile_all_devices = True
    return config
