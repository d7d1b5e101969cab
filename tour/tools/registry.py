"""The one interface between the tools (cli, run all + report, bench, doctor) and the stops.

A stop is `tour/<name>.py` while it fits one file, else a package `tour/<name>/` (its face in `__init__.py`,
its settings in `config.py`, its parts beside them; never a `tour/<name>_<what>.py` sibling: tests/test_layers.py
checks). It imports only `tour.core` and offers:

    NAME                      its name in `tour run NAME`
    Config                    a dataclass subclassing tour.core.config.BaseConfig (its fields are the flags)
    Result                    a dataclass subclassing tour.core.results.BaseResult (what the tests assert)
    run(cfg) -> Result        the whole stop; leaves the caller's RNG, threads and environment as they were
    main(argv=None) -> int    parse flags, run, print (exit 0 ok, 2 for a usage error)

and, optionally:

    bench_rows(settings: tour.core.results.BenchSettings) -> list[tour.core.results.BenchRow]
                              its side-by-side measurements for `tour bench` (declared below with bench=True)

Tools import stops only through `load()` here; this file itself is plain data, so `tour list` imports no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Stop:
    module: str  # the import path of the stop (its file, or its package)
    summary: str  # one line: what it shows
    bench: bool = False  # offers bench_rows(settings) to `tour bench`


# The order is the tour's order (`tour run all`).
STOPS: dict[str, Stop] = {
    "basics": Stop("tour.basics", "tensors, autograd, nn.Module on real digits, dynamic graphs"),
    "nlp": Stop("tour.nlp", "transformers + datasets: fine-tune MiniLM on a real corpus, reload, semantic search",
                bench=True),
    "generate": Stop("tour.generate", "a chat LM offline (SmolLM2): generate, streaming, KV cache, LoRA with PEFT",
                     bench=True),
    "vision": Stop("tour.vision", "torchvision: MobileNetV2 via weights= (offline) and EfficientNet-Lite0 on real "
                   "photos, a CNN trained on real MNIST",
                   bench=True),
    "audio": Stop("tour.audio", "torchaudio transforms on real speech, Silero VAD finds the speech"),
    "speech": Stop("tour.speech", "Whisper speech recognition via transformers: transcripts, WER, timestamps, "
                   "batches, long-form", bench=True),
    "compile": Stop("tour.compile", "torch.compile vs eager on the tour's models: speed, parity, graph breaks",
                    bench=True),
    "attention": Stop("tour.attention", "naive attention vs scaled_dot_product_attention (Flash): time, memory",
                      bench=True),
    "export": Stop("tour.export", "torch.export + AOTInductor: a .pt2 package run in a fresh process", bench=True),
    "precision": Stop("tour.precision", "bf16, fp16, int8 against this machine's roofs: autocast, low-precision "
                      "weights, int8 decoding, each checked against fp32", bench=True),
    "distributed": Stop("tour.distributed", "DDP and tensor parallel under torchrun, checkpoint and resume"),
    "lightning": Stop("tour.lightning", "the same model as a LightningModule with a Trainer"),
    "pyro": Stop("tour.pyro", "Bayesian inference with Pyro checked against the closed-form posterior"),
}

REQUIRED = ("NAME", "Config", "Result", "run", "main")


def load(name: str) -> ModuleType:
    """Import a stop by name and check it offers the interface above."""
    module = importlib.import_module(STOPS[name].module)
    missing = [a for a in REQUIRED + (("bench_rows",) if STOPS[name].bench else ()) if not hasattr(module, a)]
    if missing:
        raise AttributeError(f"stop {name} ({module.__name__}) lacks {', '.join(missing)}")
    return module


def part(name: str, part: str) -> ModuleType:
    """A part of a stop's package (`part("precision", "decode")`), for a tool that holds the stop's own way against
    another tool (the bench's peers): it calls the stop's code instead of a copy. The stop is loaded first, so a
    stop that can't load here fails as it always does."""
    load(name)
    return importlib.import_module(f"{STOPS[name].module}.{part}")


def bench_stops() -> list[str]:
    return [name for name, stop in STOPS.items() if stop.bench]
