"""bf16, fp16 and int8 against this machine's real roofs (matmul per dtype, memory bandwidth), each checked side by
side with fp32 on the tour's models: MiniLM, the vision models, SmolLM2 decoding, compile's fusion across cache sizes;
then the fastest variant per model that keeps its check. Run: `tour run precision` (or `python -m tour.precision`)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import NamedTuple

from tour.core.cli import stop_main
from tour.core.errors import require
from tour.core.results import BenchRow, BenchSettings
from tour.core.state import keeps_caller_state
from tour.precision.config import (NAME, PARTS, Config, Decode, Encoder, Fusion, Result, Roofs,  # noqa: F401
                                   Training, Variant, Vision, variants_of)
from tour.precision.table import best_rows, table


class Clock:
    """Runs the parts asked for, each under its printed title, and keeps each one's wall time (model loads
    included): where the stop's own time goes."""

    def __init__(self, wanted: list[str]):
        self.wanted, self.seconds = set(wanted), {}

    def part(self, key: str, title: str, measure, empty):
        """`measure()`'s record, or `empty` (the record's defaults: nothing measured) when the part is not asked for."""
        if key not in self.wanted:
            return empty
        print(title)
        start = time.perf_counter()
        found = measure()
        self.seconds[key] = round(time.perf_counter() - start, 1)
        return found


class Parts(NamedTuple):
    """Every part's record, as `measure_parts` returns them; a part not asked for is its record's defaults."""

    roofs: Roofs
    encoder: Encoder
    training: Training
    vision: Vision
    decode: Decode
    fusion: Fusion


def measure_parts(cfg: Config, device, low, clock: Clock) -> Parts:
    """Sections 1-6, the parts `cfg.parts` asks for, each timed by `clock`: what run() and `tour bench` measure."""
    from tour.core.models import load_encoder
    from tour.precision import decode, encoder, fusion, roofs, training, vision

    if {"encoder", "train"} & set(cfg.parts):
        require("transformers", "datasets", "yaml", "sklearn", stop="the precision stop's MiniLM parts")
        tokenizer, minilm = load_encoder(device=device)
    return Parts(
        clock.part("roofs", "1) roofs per dtype: matmul and memory bandwidth",
                   lambda: roofs.measure(cfg, device, low), Roofs()),
        clock.part("encoder", "2) MiniLM inference: fp32 vs autocast vs weights in the lower precision",
                   lambda: encoder.measure(cfg, device, low, tokenizer, minilm), Encoder()),
        clock.part("train", "3) a MiniLM classifier's training steps, fp32 vs autocast",
                   lambda: training.measure(cfg, device, low, tokenizer), Training()),
        clock.part("vision", "4) EfficientNet-Lite0 and MobileNetV2 on the tour's photos",
                   lambda: vision.measure(cfg, device, low), Vision()),
        clock.part("generate", "5) SmolLM2 greedy decoding: fp32, lower-precision, int8 and int4 weights, batch 1 "
                   "and 16",
                   lambda: decode.measure(cfg, device, low), Decode()),
        clock.part("compile", "6) torch.compile's fusion gain vs tensor size (cache sizes)",
                   lambda: fusion.measure(cfg, device), Fusion()))


def pretrained_only(ok: bool | None, name: str, *finds) -> bool | None:
    """A check whose verdict needs pretrained weights: not run where its model is a random-weights stand-in
    (tour.core.assets.floor). A trained classifier's decisions have margins that rounding does not flip; a random
    one's top two logits are near ties (MobileNetV2's top-1 flipped under bf16 on one of six photos), its held-out
    accuracy is that of a random encoder, and a random LM's perplexity is the vocabulary's size, where 3% says
    nothing. `finds` (the models' asset lookups) are asked only when the check ran, so its model was found."""
    from tour.core import assets

    return ok if ok is None else assets.floor(ok, name, *(find() for find in finds))


def result_of(device, paths: list[str], low, low_skipped: str, parts: Parts, seconds: dict[str, float]) -> Result:
    """The stop's Result: the parts' records nested as they are (the checks that need pretrained weights read "not
    run" on a random-weights stand-in), and the table of the fastest variant per model built from their rows."""
    from tour.core import assets, models
    from tour.core.dtypes import dtype_name

    enc, vision, dec = parts.encoder, parts.vision, parts.decode
    enc = replace(enc, accuracy_kept=pretrained_only(enc.accuracy_kept, "encoder.accuracy_kept", assets.minilm_dir))
    vision = replace(vision, agree=pretrained_only(vision.agree, "vision.agree", models.mobilenet_v2_weights,
                                                   models.efficientnet_lite0_weights))
    dec = replace(dec, perplexity_close=pretrained_only(dec.perplexity_close, "decode.perplexity_close",
                                                        assets.smollm2_dir))
    return Result(device=str(device), fast_paths=paths, low_dtype=dtype_name(low) if low is not None else "fp32",
                  low_skipped=low_skipped, roofs=parts.roofs, encoder=enc, training=parts.training, vision=vision,
                  decode=dec, fusion=parts.fusion, best=best_rows(variants_of(enc, parts.training, vision, dec)),
                  part_seconds=seconds)


def prepare(cfg: Config):
    """(device, the lower precision or None, why none) for a run, seeded, with what this hardware has printed."""
    from tour.core import device as dev
    from tour.core import dtypes
    from tour.precision import roofs

    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    print(f"[precision] {dev.describe(cfg.device)}\n  fast paths: {', '.join(dtypes.fast_paths(device)) or 'none'}; "
          f"the device helper would run inference in "
          f"{str(dtypes.inference_dtype(device)).removeprefix('torch.')}")
    low, low_skipped = roofs.low_dtype(cfg, device)
    return device, low, low_skipped


@keeps_caller_state
def run(cfg: Config) -> Result:
    from tour.core import dtypes

    device, low, low_skipped = prepare(cfg)
    clock = Clock(cfg.parts)
    parts = measure_parts(cfg, device, low, clock)
    result = result_of(device, list(dtypes.fast_paths(device)), low, low_skipped, parts, clock.seconds)
    print("7) per model, the fastest variant that keeps its check\n" + table(result.best))
    return result


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


@keeps_caller_state
def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s precision rows: each dtype's matmul roof against fp32's, every model's variants against its
    fp32 eager run (parity: the variant keeps the model's check), and each decode against its own bandwidth limit.
    The parts run() measures, but compile's fusion sweep, which makes no bench row."""
    cfg = Config(device=settings.device, quick=settings.quick, out=settings.out, seed=settings.seed,
                 repeats=settings.repeats, parts=[p for p in PARTS if p != "compile"])
    device, low, _ = prepare(cfg)
    parts = measure_parts(cfg, device, low, Clock(cfg.parts))
    return (roof_rows(parts.roofs) + variant_rows(variants_of(parts.encoder, parts.training, parts.vision, parts.decode))
            + decode_roof_rows(parts.decode))


def variant_rows(variants: list[Variant]) -> list[BenchRow]:
    """Each variant against its model's first one, its baseline: fp32 eager, or fp32 at the same batch for a batched
    decode (whose ms per call of 16 rows is not comparable with batch 1's)."""
    base: dict[str, Variant] = {}
    for v in variants:
        base.setdefault(v.model, v)
    return [BenchRow("precision", v.model, base[v.model].variant, v.variant, base[v.model].ms, v.ms,
                     v.speedup / base[v.model].speedup, v.keeps, v.detail[:80])
            for v in variants if v is not base[v.model]]


def roof_rows(roofs: Roofs) -> list[BenchRow]:
    """Each dtype's matmul peak against fp32's: the ms of the same n x n matmul (the dtype's peak n) at each one's
    peak rate, so the ratio is the rates' ratio even where the two peaks were reached at different sizes."""
    rates, fp32 = roofs.gflops, roofs.gflops.get("fp32")
    return [BenchRow("precision roof", f"matmul peak ({n}² at each peak rate)", "fp32", k, 2 * n**3 / fp32 / 1e6,
                     2 * n**3 / rates[k] / 1e6, rates[k] / fp32, None,
                     f"{rates[k]:.0f} vs {fp32:.0f} G(FL)OP/s")
            for k, n in roofs.n.items() if k != "fp32" and fp32]


def decode_roof_rows(decode: Decode) -> list[BenchRow]:
    """Per decode way, ms per token at its bandwidth limit vs measured: the ratio is the share of its roof reached
    (the core's copy bandwidth), at most 1."""
    from tour.core.roofs import share, share_text

    return [BenchRow("precision decode", f"SmolLM2 ms/token, {way}", "bandwidth limit", "measured",
                     1e3 / limit, 1e3 / decode.tokens_s[way], share(decode.tokens_s[way], limit), None,
                     roof=True, note=f"{decode.tokens_s[way]:.1f} tok/s vs {limit:.1f} tok/s at "
                                     f"{decode.bandwidth_gb_s:.1f} GB/s copy bandwidth: "
                                     f"{share_text(decode.tokens_s[way], limit, 'of it')}")
            for way, limit in decode.limits.items()]
