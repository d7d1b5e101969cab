"""7) The table the user acts on: per model, the fastest variant that keeps its check, against fp32 eager."""

from __future__ import annotations

from tour.precision.config import Variant

BASE = "fp32 eager"


def own_baseline(chosen: Variant, first: Variant) -> str:
    """'1.76x fp32 batch 16': a model whose first variant is not fp32 eager (a batched decode, held to fp32 eager
    at batch 1 in tokens/s) also reads against that first variant, its fp32 at the same batch, so the batching gain
    and the dtype's own gain stand apart. "" otherwise."""
    if first.variant == BASE or chosen is first:
        return ""
    return f"{chosen.speedup / first.speedup:.2f}x {first.variant}"


def best_rows(variants: list[Variant]) -> list[dict]:
    best: dict[str, Variant] = {}
    first: dict[str, Variant] = {}
    for v in variants:
        first.setdefault(v.model, v)
        if v.keeps and (v.model not in best or v.ms < best[v.model].ms):
            best[v.model] = v
    return [{"model": m, "fastest that keeps its check": v.variant, "ms": round(v.ms, 2),
             "speed-up over fp32 eager": round(v.speedup, 2)}
            | ({"against its own fp32": own} if (own := own_baseline(v, first[m])) else {}) for m, v in best.items()]


def table(best: list[dict]) -> str:
    lines = ["| model | fastest that keeps its check | ms | vs fp32 eager |", "|---|---|---:|---:|"]
    for b in best:
        own = b.get("against its own fp32")
        variant = b["fastest that keeps its check"] + (f" ({own})" if own else "")
        lines.append(f"| {b['model']} | {variant} | {b['ms']:.1f} | {b['speed-up over fp32 eager']:.2f}x |")
    return "\n".join(lines)
