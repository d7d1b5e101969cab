"""The export stop's fresh process: a new interpreter that imports only torch and safetensors, loads the .pt2 and
runs it, so the package is shown to work without the tour's Python code. Imported by the export stop only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from dataclasses import dataclass, field

from tour.core.errors import TourError
from tour.core.results import labelled

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
# What runner_code pastes from tour.core.timing and tour.core.dtypes, with the constants they read.
SHARED = ("synchronize", "_cuda_sample", "cuda_median_ms", "median_ms", "_precision_slots", "ieee_fp32")
SHARED_CONSTANTS = ("MIN_SAMPLE_MS", "MAX_CALLS_PER_SAMPLE")


def runner_code() -> str:
    """RUNNER with the source of tour.core.timing's timer (median_ms) and tour.core.dtypes' ieee_fp32 in place of its
    marker line."""
    import inspect

    from tour.core import dtypes, timing

    constants = "".join(f"{name} = {getattr(timing, name)!r}\n" for name in SHARED_CONSTANTS)
    pasted = "\n".join(inspect.getsource(getattr(timing, name, None) or getattr(dtypes, name)) for name in SHARED)
    return RUNNER.replace("# the tour's timer\n", constants + pasted)


@dataclass
class Fresh:
    """What the fresh process reported (fresh_process.json); all zeros and empty when it did not run."""

    import_s: float = labelled("fresh process: import torch", "s", 0.0)  # import torch + safetensors
    load_s: float = labelled("fresh process: load the .pt2", "s", 0.0)  # aoti_load_package of the .pt2
    # median .pt2 forward at the timing batch (same thread count as this process)
    aoti_ms: float = labelled(".pt2 forward, fresh process", "ms", 0.0)
    tour_modules: list[str] = field(default_factory=list)  # tour modules it imported: none


def run_fresh(folder: Path, pt2: Path, inputs: dict, device, repeats: int) -> tuple[Fresh, dict]:
    """Run the .pt2 in a new interpreter, exchanging tensors through safetensors files in the output folder: what
    it reported, and its outputs (input name -> the .pt2's output tensor)."""
    import torch
    from safetensors.torch import load_file, save_file

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
    got = json.loads(report.read_text())
    return Fresh(got["import_s"], got["load_s"], got["aoti_ms"], got["tour_modules"]), load_file(files["outputs"])
