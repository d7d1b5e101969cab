"""torch.compile: eager vs compiled on the tour's own models, measured on this machine, parity checked.

For each model: compile time (first call, then again from a warm cache), steady-state medians, the speedup (or the
loss: some models get slower), allclose parity for inference and one training step; then where graph breaks happen
(torch._dynamo.explain) and recompiles vs `dynamic=True`.
Run: `tour run compile` (or `python -m tour.compile`, `python examples/compile.py`); `--quick` for a short run.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from tour.compile.config import MODELS, NAME, Config  # noqa: F401  (the stop's API)
from tour.core.cli import stop_main
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state


@dataclass
class Comparison:
    model: str  # which model really ran (a fallback says so)
    mode: str  # "inference" or "training step"
    eager_ms: float = labelled("eager", "ms")
    compiled_ms: float | None = labelled("compiled", "ms", None)  # None: compiling was not possible here
    # eager / compiled: < 1 means compiling made it slower
    speedup: float | None = labelled("speed-up (eager / compiled)", "x", None, parity="parity")
    parity: bool | None = check("torch.allclose(eager, compiled) in IEEE fp32 (outputs, and gradients for "
                                "training; the model's atol, rtol 1e-3); None: nothing compiled here", None)
    max_abs_diff: float | None = labelled("max |difference|", "", None)
    # first call of the compiled model: trace + codegen + C++ build
    first_compile_s: float | None = labelled("first compile", "s", None)
    first_compile_cache: str = ""  # "miss" (cold), "hit" (warm from an earlier run) or "mixed"
    # after torch._dynamo.reset(), same cache: what a second run pays
    warm_compile_s: float | None = labelled("compile again, warm cache", "s", None)

    @property
    def name(self) -> str:
        """How its checks are named: `comparisons[MNIST, training step].parity`."""
        return f"{self.model}, {self.mode}"


@dataclass
class Result(BaseResult):
    device: str
    compiler: str | None  # why compiling was skipped; None when it ran
    cache_dir: str
    comparisons: list[Comparison] = labelled("eager vs torch.compile", default_factory=list)
    # graphs torch._dynamo.explain found in the function with a deliberate break
    graph_count: int = labelled("graphs in the function with a deliberate break", "", 0)
    graph_breaks: int = labelled("graph breaks", "", 0)
    break_reasons: list[str] = field(default_factory=list)
    compiles: dict[str, int] = field(default_factory=dict)  # dynamic=False/None/True -> compiles for 4 batch sizes
    dynamic_shape: str = ""  # the input shape the dynamic=True graph was traced with (symbolic batch)
    break_found: bool | None = check("torch._dynamo.explain finds the deliberate .item() break: 2 graphs, 1 break",
                                     None)
    dynamic_compiles_once: bool | None = check("dynamic=True compiles once for 4 batch sizes, dynamic=False once "
                                               "per size", None)


# 1) whether Inductor can build here, and where it keeps its artefacts: tour.core.inductor. The models: models.py.


# 2) eager vs compiled: timing, compile time, parity --------------------------------------------------------------
def first_call(model, call, device) -> tuple[Any, float, str]:
    """torch.compile is lazy: the first call traces, generates and builds. Returns (compiled, seconds, cache)."""
    import torch

    from tour.core.timing import synchronize
    from tour.core.torch_private import inductor_counters

    before = inductor_counters()
    compiled = torch.compile(model)
    start = time.perf_counter()
    call(compiled)
    synchronize(device)
    seconds = time.perf_counter() - start
    after = inductor_counters()
    hits, misses = (after.get(k, 0) - before.get(k, 0) for k in ("fxgraph_cache_hit", "fxgraph_cache_miss"))
    return compiled, seconds, ("mixed" if hits and misses else "miss" if misses else "hit")


def infer(model, inputs):
    import torch

    with torch.no_grad():
        return model(*inputs)


def train_step(model, inputs):
    """Forward, a stand-in loss (mean square of the output) and backward; returns (loss, gradients)."""
    for p in model.parameters():
        p.grad = None
    loss = model(*inputs).float().square().mean()
    loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def _flat(out) -> list:
    return [t.float() for t in (out if isinstance(out, (list, tuple)) else [out]) if hasattr(t, "float")]


def eager_vs_compiled(spec, mode: str, device, repeats: int) -> Comparison:
    """Eager vs compiled in IEEE fp32 (TF32 off), compiling included: on a GPU cuDNN convolutions default to TF32,
    and a TF32 rounding gap (~1e-3) is not a compiler bug. Both sides are then timed doing the same maths."""
    from tour.core.dtypes import ieee_fp32

    with ieee_fp32():
        return _eager_vs_compiled(spec, mode, device, repeats)


def _eager_vs_compiled(spec, mode: str, device, repeats: int) -> Comparison:
    import torch

    from tour.core.device import seed_everything
    from tour.core.timing import medians_ms
    from tour.core.torch_private import inductor_config_patch

    spec.model.train(mode != "inference")  # dropout and BatchNorm behave as they would in that mode
    step = (lambda m: infer(m, spec.inputs)) if mode == "inference" else (lambda m: train_step(m, spec.inputs))
    seeded = lambda m: (seed_everything(0), step(m))[1]  # noqa: E731  same dropout draws on both sides (the caller's
    # RNG state comes back when run() returns: see keeps_caller_state)
    torch._dynamo.reset()  # nothing compiled before counts for this model
    with inductor_config_patch(fallback_random=True):  # eager's RNG inside compiled code: dropout matches
        compiled, first_s, cache = first_call(spec.model, seeded, device)
        torch._dynamo.reset()
        compiled, warm_s, _ = first_call(spec.model, seeded, device)
        pairs = list(zip(_flat(seeded(spec.model)), _flat(seeded(compiled))))
    diff = max(((a - b).abs().max().item() if a.numel() else 0.0) for a, b in pairs)
    parity = all(torch.allclose(a, b, atol=spec.atol, rtol=1e-3) for a, b in pairs)
    # side by side, interleaved; two warm-ups each: a compiled function may still settle on its first calls
    ms = medians_ms({"eager": lambda: step(spec.model), "compiled": lambda: step(compiled)}, device, repeats,
                    warmup=2)
    eager, fast = ms["eager"], ms["compiled"]
    return Comparison(spec.label, mode, eager, fast, eager / fast, parity, diff, first_s, cache, warm_s)


def show(c: Comparison) -> None:
    if c.compiled_ms is None:
        print(f"  {c.model}, {c.mode}: eager {c.eager_ms:.2f} ms (compiled side skipped)")
        return
    verdict = "faster" if c.speedup >= 1 else "SLOWER: compiling lost here"
    print(f"  {c.model}, {c.mode}: compile {c.first_compile_s:.1f} s (cache {c.first_compile_cache}), "
          f"warm {c.warm_compile_s:.1f} s; eager {c.eager_ms:.2f} ms vs compiled {c.compiled_ms:.2f} ms -> "
          f"{c.speedup:.2f}x {verdict}; allclose {c.parity} (max diff {c.max_abs_diff:.1e})")


def comparisons(cfg: Config, device, problem: str | None) -> list[Comparison]:
    from tour.compile.models import specs
    from tour.core.timing import median_ms

    out = []
    for spec in specs(cfg, device):
        modes = ["inference"] + (["training step"] if cfg.train and spec.train else [])
        for mode in modes:
            if problem:
                spec.model.train(mode != "inference")
                step = (lambda: infer(spec.model, spec.inputs)) if mode == "inference" else (
                    lambda: train_step(spec.model, spec.inputs))
                out.append(Comparison(spec.label, mode, median_ms(step, device, cfg.repeats, warmup=2)))
            else:
                out.append(eager_vs_compiled(spec, mode, device, cfg.repeats))
            show(out[-1])
    return out


# 3) graph breaks and 4) dynamic shapes ---------------------------------------------------------------------------
def rescale(x):
    """.item() leaves the graph: Dynamo compiles what comes before and after it as two graphs."""
    import torch

    x = torch.relu(x) * 2
    peak = x.abs().max().item()  # a Python float: data the graph cannot hold (by default)
    return x / peak


def graph_breaks() -> tuple[int, int, list[str]]:
    import logging

    import torch

    torch._dynamo.reset()
    log = logging.getLogger("torch._dynamo")
    level, _ = log.level, log.setLevel(logging.ERROR)  # explain reports the break; skip the long warning too
    try:
        report = torch._dynamo.explain(rescale)(torch.randn(16))
    finally:
        log.setLevel(level)
    reasons = [r.reason.splitlines()[0] for r in report.break_reasons]
    print(f"  explain(rescale): {report.graph_count} graphs, {report.graph_break_count} break(s): {reasons}")
    return report.graph_count, report.graph_break_count, reasons


def count_compiles(dynamic: bool | None, batches=(8, 16, 24, 32)) -> tuple[int, str]:
    """A backend is just a function (graph, example inputs) -> callable: this one counts and runs the graph."""
    import torch

    from tour.core.models import make_mlp

    shapes = []

    def counting(gm, example_inputs):
        # the graph's inputs are the weights and the batch (and, when dynamic, the symbol for its size)
        x = next(n for n in gm.graph.nodes if n.op == "placeholder" and "param" not in n.name
                 and hasattr(n.meta["example_value"], "shape"))
        shapes.append(str(tuple(x.meta["example_value"].shape)))
        return gm.forward

    torch._dynamo.reset()
    model = torch.compile(make_mlp(32), backend=counting, dynamic=dynamic)
    for b in batches:
        model(torch.randn(b, 64))
    return len(shapes), shapes[-1]


def dynamic_shapes() -> tuple[dict[str, int], str]:
    counts, shape = {}, ""
    for dynamic in (False, None, True):
        counts[f"dynamic={dynamic}"], shape = count_compiles(dynamic)
    print(f"  batches 8, 16, 24, 32 through one compiled MLP: {counts} compiles "
          f"(None = static first, then a recompile that marks the batch dynamic); dynamic=True traced {shape}")
    return counts, shape


@keeps_caller_state
def run(cfg: Config) -> Result:
    import torch

    from tour.core import device as dev
    from tour.core.inductor import compile_problem, inductor_cache
    from tour.core.torch_private import fresh_inductor_cache

    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    print(f"[compile] {dev.describe(cfg.device)}")
    with inductor_cache() as cache, fresh_inductor_cache() if cfg.fresh_cache else nullcontext():
        problem = compile_problem(device)
        print(f"1) can Inductor build here? {'no: ' + problem + ' (timing the eager half only)' if problem else 'yes'}; "
              f"cache {'a throwaway empty folder' if cfg.fresh_cache else cache}")
        print("2) eager vs torch.compile (fp32; medians after warm-up; speedup < 1 means slower)")
        results = comparisons(cfg, device, problem)
    if problem is not None:  # nothing compiles here: the graph-break and dynamic-shape lessons need Inductor
        torch._dynamo.reset()
        return Result(str(device), problem, str(cache), results)
    print("3) graph breaks: torch._dynamo.explain on a function that calls .item()")
    graph_count, n_breaks, reasons = graph_breaks()
    print("4) dynamic shapes: a new batch size recompiles unless the batch is symbolic")
    compiles, shape = dynamic_shapes()
    torch._dynamo.reset()
    return Result(str(device), problem, str(cache), results, graph_count=graph_count, graph_breaks=n_breaks,
                  break_reasons=reasons, compiles=compiles, dynamic_shape=shape,
                  break_found=(graph_count, n_breaks) == (2, 1),
                  dynamic_compiles_once=compiles["dynamic=True"] == 1 and compiles["dynamic=False"] == 4)


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s compile rows: eager vs torch.compile on this stop's models, inference and a training step."""
    from tour.core.device import get_device
    from tour.core.inductor import compile_problem

    cfg = Config(quick=settings.quick, device=settings.device, out=settings.out, seed=settings.seed,
                 repeats=settings.repeats, batch_size=settings.batch_size)
    device = get_device(cfg.device)
    problem = compile_problem(device)
    rows = []
    for c in comparisons(cfg, device, problem):
        note = (f"compile {c.first_compile_s:.1f} s (cache {c.first_compile_cache}), warm {c.warm_compile_s:.1f} s"
                if c.compiled_ms is not None else f"not compiled: {problem}")
        rows.append(BenchRow("compile", f"{c.model}, {c.mode}", "eager", "torch.compile", c.eager_ms,
                             c.compiled_ms, c.speedup, c.parity, note))
    return rows


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
