"""7) The table the user acts on: per model, the fastest variant that keeps its check, against fp32 eager."""

from __future__ import annotations


def best_rows(variants: list[dict]) -> list[dict]:
    best: dict[str, dict] = {}
    for v in variants:
        if v["keeps"] and (v["model"] not in best or v["ms"] < best[v["model"]]["ms"]):
            best[v["model"]] = v
    return [{"model": m, "fastest that keeps its check": v["variant"], "ms": round(v["ms"], 2),
             "speed-up over fp32 eager": round(v["speedup"], 2)} for m, v in best.items()]


def table(best: list[dict]) -> str:
    lines = ["| model | fastest that keeps its check | ms | vs fp32 eager |", "|---|---|---:|---:|"]
    lines += [f"| {b['model']} | {b['fastest that keeps its check']} | {b['ms']:.1f} | "
              f"{b['speed-up over fp32 eager']:.2f}x |" for b in best]
    return "\n".join(lines)
