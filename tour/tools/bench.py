"""`tour bench`: the tour's performance claims measured side by side in one process, on this machine.

Eager vs torch.compile, naive attention vs SDPA, eager vs an AOTInductor package, batched vs naive throughput, and
this machine's fp32 matmul roof with the fraction of it MiniLM and EfficientNet inference reach. Ratios from one
run are what count (shared machines are noisy). Writes bench.json and bench.md into OUT/bench.
Run: `tour bench [--quick] [--device D] [--out DIR] [--only roof compile ...]`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.config import BaseConfig, arg, guarded, out_dir, parse_config, to_jsonable
from tour.core.errors import TourError, optional_import

NAME = "bench"
SECTIONS = ("roof", "compile", "attention", "export", "flops", "throughput")


@dataclass
class Config(BaseConfig):
    only: list[str] = arg([], f"sections to run, default all: {' '.join(SECTIONS)}")
    models: list[str] = arg([], "models for the compile section: fusion vision encoder (default: the compile stop's)")
    reps: int = arg(10, "timed repetitions per measurement after warm-up; medians are reported (quick: 5)", min=1)
    roof_n: int = arg(2048, "size n of the n x n fp32 matmul that measures the roof (quick: 1024)", min=1)
    batch: int = arg(8, "images / sentences per call for the FLOP and compile measurements (quick: 2)", min=1)


@dataclass
class Row:
    section: str
    what: str
    baseline: str
    variant: str
    baseline_ms: float | None
    variant_ms: float | None
    ratio: float | None  # baseline_ms / variant_ms: above 1 the variant is faster, below 1 it lost
    parity: bool | None  # allclose(baseline, variant); None where the row has nothing to compare
    note: str = ""


@dataclass
class Result:
    device: str
    sections: list[str]
    roof_gflops: float = 0.0  # median fp32 matmul GFLOP/s
    rows: list[Row] = field(default_factory=list)
    flops: list[dict] = field(default_factory=list)  # model, GFLOP per call, ms, GFLOP/s, fraction of the roof
    skipped: dict[str, str] = field(default_factory=dict)  # section -> why it did not run
    json_path: str = ""
    md_path: str = ""


# 1) the roof ----------------------------------------------------------------------------------------------------
def matmul_roof(n: int, device, reps: int) -> float:
    """GFLOP/s of an n x n fp32 matmul (2 n^3 flops): about the best dense math this device does."""
    import torch

    from tour.core.device import median_ms

    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    ms = median_ms(lambda: a @ b, device, reps, warmup=2)
    return 2 * n**3 / ms / 1e6


# 2) compile, 3) attention, 4) export: the stops' own comparisons -------------------------------------------------
def compile_rows(cfg: Config, device) -> list[Row]:
    from tour import compile as comp

    ccfg = comp.Config(quick=cfg.quick, device=cfg.device, out=cfg.out, reps=cfg.reps, batch=cfg.batch)
    if cfg.models:
        ccfg.models = cfg.models
    problem = comp.compile_problem(device)
    rows = []
    for c in comp.comparisons(ccfg, device, problem):
        note = (f"compile {c.first_compile_s:.1f} s (cache {c.first_compile_cache}), warm {c.warm_compile_s:.1f} s"
                if c.compiled_ms is not None else f"not compiled: {problem}")
        rows.append(Row("compile", f"{c.model}, {c.mode}", "eager", "torch.compile", c.eager_ms, c.compiled_ms,
                        c.speedup, c.parity, note))
    return rows


def attention_rows(cfg: Config, device) -> list[Row]:
    attention = optional_import("tour.attention")
    res = attention.run(attention.Config(quick=cfg.quick, device=cfg.device, out=cfg.out))
    rows = [Row("attention", f"L={r['seq_len']}, {res.dtype}", "naive softmax(QK^T)V", "F.sdpa", r["naive_ms"],
                r["sdpa_ms"], r["ratio"], r["allclose"],
                f"peak {r['naive_peak_mb']:.0f} -> {r['sdpa_peak_mb']:.0f} MiB") for r in res.rows]
    rows.append(Row("attention", f"MiniLM {res.hf_shape}", 'attn "eager"', 'attn "sdpa"', res.hf_eager_ms,
                    res.hf_sdpa_ms, res.hf_ratio, res.hf_max_abs_err <= 1e-3, f"max diff {res.hf_max_abs_err:.1e}"))
    return rows


def export_rows(cfg: Config, device) -> list[Row]:
    export = optional_import("tour.export")
    ecfg = export.Config(quick=cfg.quick, device=cfg.device, out=cfg.out)
    res = export.run(ecfg)
    if res.aoti_skipped:
        return [Row("export", f"{res.model}", "eager", "AOTInductor .pt2", res.eager_ms, None, None, None,
                    f"skipped: {res.aoti_skipped}")]
    note = f"package built in {res.aoti_compile_s:.1f} s, loaded in {res.load_s:.2f} s in a fresh process"
    return [Row("export", f"{res.model}, batch {ecfg.batch}", "eager",
                "AOTInductor .pt2 (fresh process)", res.eager_ms, res.aoti_ms, res.ratio,
                bool(res.parity) and all(res.parity.values()), note)]


# 5) achieved FLOP/s as a fraction of the roof -------------------------------------------------------------------
def achieved(spec, device, reps: int, roof: float) -> dict:
    """FLOPs of one inference call counted by FlopCounterMode (matmuls, convs, attention), over its median time."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tour.core.device import median_ms

    spec.model.eval()
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            spec.model(*spec.inputs)
        ms = median_ms(lambda: spec.model(*spec.inputs), device, reps, warmup=2)
    gflop = counter.get_total_flops() / 1e9
    rate = gflop / ms * 1e3
    print(f"  {spec.label}: {gflop:.2f} GFLOP per call in {ms:.1f} ms = {rate:.1f} GFLOP/s, "
          f"{rate / roof:.0%} of the roof" if roof else "")
    return {"model": spec.label, "input": [list(t.shape) for t in spec.inputs][0], "gflop_per_call": gflop,
            "ms": ms, "gflops": rate, "fraction_of_roof": rate / roof if roof else None}


def flops_rows(cfg: Config, device, roof: float) -> list[dict]:
    from tour import compile as comp
    from tour.compile_models import encoder_spec, vision_spec

    mcfg = comp.Config(quick=False, device=cfg.device, batch=cfg.batch)  # the real models, also in quick mode
    return [achieved(make(mcfg, device), device, cfg.reps, roof) for make in (encoder_spec, vision_spec)]


# 6) the NLP and vision stops' own throughput comparisons ------------------------------------------------------
def throughput_rows(cfg: Config, device) -> list[Row]:
    rows = []
    nlp, nlp_data, vision = (optional_import(m) for m in ("tour.nlp", "tour.nlp_data", "tour.vision"))
    if nlp and nlp_data and hasattr(nlp, "throughput"):
        from tour.core.assets import chatterbot_english_dir

        texts = [r["text"] for r in nlp_data.corpus_rows(chatterbot_english_dir(), 1)][:64 if cfg.quick else 256]
        tokenizer, encoder = nlp.load_encoder(device=device)
        naive, fast, diff = nlp.throughput(texts, tokenizer, encoder, device, 3 if cfg.quick else cfg.reps)
        rows.append(Row("throughput", f"MiniLM, {len(texts)} texts", "pipeline per sentence", "batched embed()",
                        1e3 / naive, 1e3 / fast, fast / naive, diff < 1e-3, "ms per text"))
    if vision and hasattr(vision, "throughput"):
        from tour.core.models import load_efficientnet_lite0, preprocess

        photos = preprocess()(vision.builtin_photo("chelsea")).unsqueeze(0)
        rates = vision.throughput(load_efficientnet_lite0(device), photos, vision.Config(quick=cfg.quick), device)
        base = next(iter(rates))
        rows += [Row("throughput", "EfficientNet-Lite0", base, label, 1e3 / rates[base], 1e3 / rate,
                     rate / rates[base], None, "ms per image") for label, rate in list(rates.items())[1:]]
    return rows


# running, table, files ------------------------------------------------------------------------------------------
def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def table(result: Result) -> str:
    """A Markdown table: readable in a terminal, renders on GitHub."""
    lines = ["| section | what | baseline | variant | baseline ms | variant ms | ratio | parity | note |",
             "|---|---|---|---|---:|---:|---:|---|---|"]
    for r in result.rows:
        lines.append(f"| {r.section} | {r.what} | {r.baseline} | {r.variant} | {_num(r.baseline_ms, '.2f')} | "
                     f"{_num(r.variant_ms, '.2f')} | {_num(r.ratio, '.2f')}x | {_num(r.parity, '')} | {r.note} |")
    return "\n".join(lines)


def flops_table(result: Result) -> str:
    if not result.roof_gflops:
        return ""
    lines = [f"matmul roof: {result.roof_gflops:.1f} GFLOP/s (fp32)", "",
             "| model | input | GFLOP/call | ms | GFLOP/s | of roof |", "|---|---|---:|---:|---:|---:|"]
    for f in result.flops:
        lines.append(f"| {f['model']} | {f['input']} | {f['gflop_per_call']:.2f} | {f['ms']:.2f} | "
                     f"{f['gflops']:.1f} | {_num(f['fraction_of_roof'], '.0%')} |")
    return "\n".join(lines)


def sections(cfg: Config) -> list[str]:
    unknown = sorted(set(cfg.only) - set(SECTIONS))
    if unknown:
        raise TourError(f"--only {' '.join(unknown)}: unknown section; choose from {', '.join(SECTIONS)}")
    wanted = set(cfg.only) | ({"roof"} if "flops" in cfg.only else set())  # a fraction needs its roof
    return [s for s in SECTIONS if not cfg.only or s in wanted]


def run_section(name: str, cfg: Config, device, result: Result) -> None:
    module = {"attention": "tour.attention", "export": "tour.export"}.get(name)
    if module and optional_import(module) is None:
        result.skipped[name] = f"{module} is not installed"
        print(f"  skipped: {result.skipped[name]}")
    elif name == "roof":
        result.roof_gflops = matmul_roof(cfg.roof_n, device, cfg.reps)
        print(f"  {cfg.roof_n} x {cfg.roof_n} fp32 matmul: {result.roof_gflops:.1f} GFLOP/s")
    elif name == "flops":
        result.flops = flops_rows(cfg, device, result.roof_gflops)
    else:
        fn = {"compile": compile_rows, "attention": attention_rows, "export": export_rows,
              "throughput": throughput_rows}[name]
        rows = fn(cfg, device)
        if not rows:
            result.skipped[name] = "no stop exposes a throughput comparison here"
        result.rows += rows


def quick_sized(cfg: Config) -> Config:
    from dataclasses import replace

    if not cfg.quick:
        return cfg
    return replace(cfg, reps=min(cfg.reps, 5), roof_n=min(cfg.roof_n, 1024), batch=min(cfg.batch, 2))


def run(cfg: Config) -> Result:
    from tour.core import device as dev
    from tour.compile import inductor_cache_dir

    cfg = quick_sized(cfg)
    names = sections(cfg)
    device = dev.get_device(cfg.device)
    folder = out_dir(cfg, NAME)
    inductor_cache_dir()  # compiled kernels land in the tour's cache, so a second bench compiles fast
    dev.seed_everything(cfg.seed)
    print(f"[bench] {dev.describe(cfg.device)}\n[bench] sections: {' '.join(names)}")
    result = Result(str(device), names)
    for i, name in enumerate(names, 1):
        print(f"{i}) {name}")
        run_section(name, cfg, device, result)
    write(result, folder)
    return result


def write(result: Result, folder: Path) -> None:
    result.json_path, result.md_path = str(folder / "bench.json"), str(folder / "bench.md")
    Path(result.json_path).write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    skipped = "".join(f"\n- {k} skipped: {v}" for k, v in result.skipped.items())
    Path(result.md_path).write_text(f"# tour bench on {result.device}\n\nratio = baseline ms / variant ms "
                                    f"(above 1: the variant is faster)\n\n{table(result)}\n\n"
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
        print(f"\nsaved {result.json_path} and {result.md_path}")
        return 0

    return guarded(prog, body)


if __name__ == "__main__":
    raise SystemExit(main())
