"""`tour bench`: the tour's performance claims measured side by side in one process, on this machine.

Eager vs torch.compile, naive attention vs SDPA, eager vs an AOTInductor package, batched vs naive throughput, and
this machine's fp32 matmul roof with the fraction of it MiniLM and EfficientNet inference reach. Ratios from one
run are what count (shared machines are noisy). Writes bench.json and bench.md into OUT/bench, always: a section
that raises is recorded with its one-line reason (exit code 1) and the others still run.
`--load N` adds the busy-machine section: a few stops' core steps quiet and beside N competing torch processes,
with OpenMP's default threading and with the tour's (tour.core.threads), each in a fresh process.
The peers section holds the tour's best ways against llama.cpp, faster-whisper and ONNX Runtime on the same weights,
each peer in its own process (tour.tools.peers; `pip install 'torch-tour[peers]'`, a missing peer is one skip row).
Run: `tour bench [--quick] [--device D] [--out DIR] [--only roof compile ...] [--load 2]`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.cli import guarded, parse_config
from tour.core.config import BaseConfig, arg, out_dir
from tour.core.errors import TourError, one_line
from tour.core.files import write_text
from tour.core.render import to_jsonable
from tour.core.results import BenchRow, BenchSettings
from tour.core.state import keeps_caller_state
from tour.tools.registry import bench_stops, load

NAME = "bench"
# The bench's own sections, then every stop that offers bench_rows() (tour.tools.registry), in tour order.
SECTIONS = ("roof", "flops", *bench_stops(), "peers", "load")  # load: only when asked (--load N or --only load)
# peers: the tour's best ways against llama.cpp, faster-whisper and ONNX Runtime (tour.tools.peers)


@dataclass
class Config(BaseConfig):
    only: list[str] = arg([], "sections to run (default: all)", choices=SECTIONS)
    repeats: int = arg(10, "timed repetitions per measurement after warm-up; medians are reported", min=1, quick=5)
    # the roof is the core's (tour.core.roofs): measured once per process, shared with the precision and generate rows
    roof_n: int | None = arg(None, "an n also tried for the fp32 matmul roof, beside the core's sizes (CPU "
                             "1024/2048/3072, GPU 4096/8192); the roof is the peak over them", min=64)
    batch_size: int = arg(8, "images / sentences per call for the FLOP and stop measurements", min=1, quick=2)
    load: int = arg(0, "competing torch processes for the 'load' section; 0: no load section unless --only load "
                    "(then 2)", min=0, max=16)




@dataclass
class Result:
    device: str
    sections: list[str]
    precision: str = ""  # the fp32 precision the rows ran in (TF32 on or off for matmuls and cuDNN convolutions)
    roof_n: int = 0  # the n of the n x n matmul that reached the roof
    roof_gflops: float = 0.0  # the core's fp32 matmul peak, GFLOP/s
    rows: list[BenchRow] = field(default_factory=list)  # one shape, declared in the core so stops build them
    flops: list[dict] = field(default_factory=list)  # model, GFLOP per call, ms, GFLOP/s, fraction of the roof
    skipped: dict[str, str] = field(default_factory=dict)  # section -> why it did not run (an optional piece missing)
    failed: dict[str, str] = field(default_factory=dict)  # section -> the error it raised, in one line
    interrupted: str = ""  # the section Ctrl-C stopped (the sections before it are kept)
    not_run: list[str] = field(default_factory=list)  # sections not reached (interrupted, or still running)
    json_path: str = ""
    md_path: str = ""


# 1) the roof: the core's fp32 peak ------------------------------------------------------------------------------
def fp32_roof(cfg: Config, device, at_least: float | None = None):
    """The core's fp32 matmul peak (tour.core.roofs.Peak), in IEEE fp32 like the FLOP rows held to it."""
    import torch

    from tour.core import roofs

    return roofs.peak(device, torch.float32, cfg.quick, cfg.roof_n, at_least)


# 2) flops: achieved FLOP/s as a fraction of the roof ------------------------------------------------------------
def achieved(spec, cfg: Config, device) -> dict:
    """FLOPs of one inference call (the core's count: matmuls, convs, attention) over its median time, and its
    share of the fp32 roof (measured again if this rate beat it; never above 100%)."""
    import torch

    from tour.core.timing import median_ms
    from tour.core.roofs import flops_per_call, share, share_text

    spec.model.eval()
    with torch.no_grad():
        gflop = flops_per_call(lambda: spec.model(*spec.inputs)) / 1e9
        ms = median_ms(lambda: spec.model(*spec.inputs), device, cfg.repeats, warmup=2)
    rate = gflop / ms * 1e3
    roof = fp32_roof(cfg, device, at_least=rate).rate
    print(f"  {spec.label}: {gflop:.2f} GFLOP per call in {ms:.1f} ms = {rate:.1f} GFLOP/s, {share_text(rate, roof)}")
    return {"model": spec.label, "input": [list(t.shape) for t in spec.inputs][0], "gflop_per_call": gflop,
            "ms": ms, "gflops": rate, "fraction_of_roof": share(rate, roof)}


def flops_rows(cfg: Config, device) -> list[dict]:
    """The tour's two pretrained models, also in quick mode (a FLOP rate needs real work to mean anything)."""
    import torch

    from tour.core.models import load_efficientnet_lite0, load_encoder

    tokenizer, encoder = load_encoder(device=device)
    texts = ["How fast is this machine?"] * cfg.batch_size
    enc = tokenizer(texts, padding="max_length", max_length=128, truncation=True, return_tensors="pt").to(device)
    specs = [Spec("MiniLM-L6 encoder (pretrained)", encoder, (enc["input_ids"], enc["attention_mask"])),
             Spec("EfficientNet-Lite0 (pretrained)", load_efficientnet_lite0(device),
                  (torch.randn(cfg.batch_size, 3, 224, 224, device=device),))]
    return [achieved(spec, cfg, device) for spec in specs]


@dataclass
class Spec:
    label: str
    model: object
    inputs: tuple


# running, table, files ------------------------------------------------------------------------------------------
def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def table(result: Result) -> str:
    """A Markdown table: readable in a terminal, renders on GitHub."""
    lines = ["| section | what | baseline | variant | baseline ms | variant ms | ratio | parity | note |",
             "|---|---|---|---|---:|---:|---:|---|---|"]
    for r in result.rows:
        lines.append(f"| {r.section} | {r.what} | {r.baseline} | {r.variant} | {_num(r.baseline_ms, '.2f')} | "
                     f"{_num(r.variant_ms, '.2f')} | {_num(r.ratio, '.2f')}x | {_num(r.parity, '')} | "
                     f"{r.note}{above_roof(r)} |")
    return "\n".join(lines)


def above_roof(row: BenchRow) -> str:
    """A roof row (a decode against its bandwidth limit) that reads above its roof never stands unexplained."""
    if row.roof and row.ratio is not None and row.ratio > 1:
        return f" ({row.ratio:.0%} of the roof: above 100%, so the roof was measured under load)"
    return ""


def flops_table(result: Result) -> str:
    if not result.roof_gflops:
        return ""
    lines = [f"matmul roof: {result.roof_gflops:.1f} GFLOP/s (fp32 peak, reached at n={result.roof_n})", "",
             "| model | input | GFLOP/call | ms | GFLOP/s | of roof |", "|---|---|---:|---:|---:|---:|"]
    for f in result.flops:
        lines.append(f"| {f['model']} | {f['input']} | {f['gflop_per_call']:.2f} | {f['ms']:.2f} | "
                     f"{f['gflops']:.1f} | {_num(f['fraction_of_roof'], '.0%')} |")
    return "\n".join(lines)


def sections(cfg: Config) -> list[str]:
    wanted = set(cfg.only) | ({"roof"} if "flops" in cfg.only else set())  # a fraction needs its roof
    wanted |= {"load"} if cfg.load else set()
    return [s for s in SECTIONS if (not cfg.only and s != "load") or s in wanted]


def settings_of(cfg: Config) -> BenchSettings:
    return BenchSettings(device=cfg.device, quick=cfg.quick, out=cfg.out, seed=cfg.seed, repeats=cfg.repeats,
                         batch_size=cfg.batch_size)


def run_section(name: str, cfg: Config, device, result: Result) -> None:
    """One section. A missing optional library skips it with the reason; any other error fails it with a one-line
    reason; either way the other sections still run."""
    from tour.core.dtypes import ieee_fp32

    try:
        if name == "roof":
            found = fp32_roof(cfg, device)  # in IEEE fp32, and the FLOP rows below in the same maths
            result.roof_n, result.roof_gflops = found.n, found.rate
            print(f"  fp32 matmul peak: {found.rate:.1f} GFLOP/s at n={found.n} (n tried: "
                  f"{', '.join(map(str, found.tried))})")
        elif name == "flops":
            with ieee_fp32():  # cuDNN's convolutions default to TF32 on a GPU: not the roof's maths
                result.flops = flops_rows(cfg, device)
            found = fp32_roof(cfg, device)  # the roof again: measured anew if a model's rate beat it
            result.roof_n, result.roof_gflops = found.n, found.rate
        elif name == "load":
            from tour.tools.bench_load import bench_rows as load_rows

            result.rows += load_rows(settings_of(cfg), n=cfg.load or 2)
        elif name == "peers":
            from tour.tools.peers import bench_rows as peer_rows

            result.rows += peer_rows(settings_of(cfg))
        else:
            result.rows += load(name).bench_rows(settings_of(cfg))
    except (TourError, ImportError) as e:  # e.g. `pip install 'torch-tour[nlp]'` not done: say so, go on
        result.skipped[name] = str(e).splitlines()[0]
        print(f"  skipped: {result.skipped[name]}")
    except Exception as e:  # noqa: BLE001 - Triton's RuntimeError, a linker's OSError: one section, not the bench
        result.failed[name] = one_line(e)
        print(f"  FAILED: {result.failed[name]}")


@keeps_caller_state
def run(cfg: Config) -> Result:
    from tour.core import device as dev
    from tour.core.inductor import inductor_cache

    names = sections(cfg)
    device = dev.get_device(cfg.device)
    folder = out_dir(cfg, NAME)
    dev.seed_everything(cfg.seed)
    print(f"[bench] {dev.describe(cfg.device)}\n[bench] sections: {' '.join(names)}")
    result = Result(str(device), names, precision=precision(device), not_run=list(names))
    with inductor_cache():  # compiled kernels land in the tour's cache, so a second bench compiles fast
        for i, name in enumerate(names, 1):
            print(f"{i}) {name}")
            try:
                run_section(name, cfg, device, result)
            except KeyboardInterrupt:
                result.interrupted = name
                raise
            finally:  # after every section: an interrupt or a kill keeps what was measured, marked as partial
                result.not_run.remove(name)
                write(result, folder)
    return result


def precision(device) -> str:
    from tour.core.dtypes import precision_note

    note = precision_note(device) or f"no TF32 on {device.type}"
    return f"fp32 in IEEE for the roof and FLOP rows; elsewhere {note}"


def write(result: Result, folder: Path) -> None:
    result.json_path, result.md_path = str(folder / "bench.json"), str(folder / "bench.md")
    write_text(result.json_path, json.dumps(to_jsonable(result), indent=2) + "\n")
    skipped = "".join(f"\n- {k} skipped: {v}" for k, v in result.skipped.items())
    skipped += "".join(f"\n- {k} FAILED: {v}" for k, v in result.failed.items())
    skipped += f"\n- {result.interrupted} interrupted (Ctrl-C) before it finished" if result.interrupted else ""
    skipped += f"\n- not run: {', '.join(result.not_run)}" if result.not_run else ""
    write_text(result.md_path, f"# tour bench on {result.device}\n\nratio = baseline ms / variant ms "
                               f"(above 1: the variant is faster); {result.precision}\n\n{table(result)}\n\n"
                               f"{flops_table(result)}\n{skipped}\n")


def main(argv: list[str] | None = None) -> int:
    prog = "tour bench"

    def body() -> int:
        cfg = parse_config(Config, argv, prog, __doc__)
        start = time.perf_counter()
        result = run(cfg)
        print(f"\n== bench ({time.perf_counter() - start:.0f} s; ratio = baseline ms / variant ms, below 1 = slower)")
        print(table(result))
        print("\n" + flops_table(result))
        for name, why in result.skipped.items():
            print(f"  {name} skipped: {why}")
        for name, why in result.failed.items():
            print(f"  {name} FAILED: {why}")
        print(f"\nsaved {result.json_path} and {result.md_path}")
        return 1 if result.failed else 0

    return guarded(prog, body)


if __name__ == "__main__":
    raise SystemExit(main())
