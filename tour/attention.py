"""Attention, measured: naive softmax(QK^T/sqrt(d))V vs F.scaled_dot_product_attention (SDPA, the Flash path).

Times both across sequence lengths, measures their peak memory, checks they agree (also with a causal mask),
lists which SDPA backends run on this device, and flips the same switch inside transformers (MiniLM).
Run: `tour run attention` (or `python -m tour.attention`, `python examples/attention.py`); `--quick` for short.
"""

from __future__ import annotations

import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

from tour.core.cli import stop_main
from tour.core.config import BaseConfig, arg
from tour.core.errors import TourError, require
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state

NAME = "attention"
HF_TOL = 1e-3  # MiniLM's last_hidden_state, eager vs sdpa attention (fp32; padded rows masked both ways)
BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")  # SDPBackend names, fastest first


@dataclass
class Config(BaseConfig):
    seq_lens: list[int] = arg([256, 512, 1024, 2048, 4096], "sequence lengths to compare", min=1,
                              quick=[128, 256, 512])
    batch_size: int = arg(1, "sequences per call", min=1)
    heads: int = arg(8, "attention heads", min=1)
    head_dim: int = arg(64, "size of each head's query/key/value vectors", min=1)
    repeats: int = arg(5, "timed calls per measurement after one warm-up; the median is reported", min=1, quick=3)
    model: str | None = arg(None, "MiniLM for the transformers half: a path or hub name (unset: the offline copy)")
    eval_batch_size: int = arg(8, "texts per MiniLM call", min=1, quick=2)
    hf_seq_len: int = arg(256, "tokens per MiniLM text (MiniLM takes at most 512)", min=1, max=512, quick=64)


# the parts: each section's typed record, its labels and checks declared beside its fields ---------------------------
@dataclass
class Lengths:
    # one row per length (shortest first): the columns below, and memory_source
    rows: list[dict] = labelled("naive attention vs SDPA by sequence length", default_factory=list,
                                columns={"seq_len": ("sequence length", "tokens"), "naive_ms": ("naive", "ms"),
                                         "sdpa_ms": ("SDPA", "ms"), "ratio": ("naive / SDPA", "x", "allclose"),
                                         "naive_peak_mb": ("naive peak", "MB"), "sdpa_peak_mb": ("SDPA peak", "MB"),
                                         "max_abs_err": ("max |error|", ""), "allclose": ("allclose", "")})
    memory_source: str = ""  # how the peak_mb figures were obtained (measured by which tool, or estimated)
    allclose: bool | None = check("SDPA equals naive attention at every length (max |error| <= 1e-4 in fp32, "
                                  "3e-2 in bf16/fp16)", None)


@dataclass
class Causal:
    max_abs_err: float = labelled("causal mask vs is_causal=True, max |error|", "", 0.0)
    allclose: bool | None = check("is_causal=True equals naive attention with a triangular mask at every "
                                  "element within the same atol + 2 eps(dtype) x |naive| (early rows "
                                  "average few values: |output| ~4, where one bf16 step is 0.031)", None)


@dataclass
class Backends:
    found: dict[str, dict] = field(default_factory=dict)  # SDPBackend name -> {ran, ms, max_abs_err, reason}
    allclose: bool | None = check("every SDPA backend that ran here equals naive attention (same tolerance; "
                                  "a backend this device lacks is skipped)", None)


@dataclass
class MiniLM:
    eager_ms: float = labelled('MiniLM forward, attn "eager"', "ms", 0.0)
    sdpa_ms: float = labelled('MiniLM forward, attn "sdpa"', "ms", 0.0)  # same weights, attn_implementation="sdpa"
    ratio: float = labelled("MiniLM SDPA (eager / sdpa)", "x", 0.0, parity="allclose")
    max_abs_err: float = labelled("MiniLM eager vs sdpa, max |error|", "", 0.0)  # between the two last_hidden_states
    shape: list[int] = field(default_factory=list)  # batch, tokens of the MiniLM input
    allclose: bool | None = check(f'MiniLM gives the same hidden states with attn "eager" and "sdpa" (max |diff| '
                                  f"<= {HF_TOL:g})", None)


@dataclass
class Result(BaseResult):
    """The run's device and shapes, then one part per section (`result.lengths.rows`, `result.minilm.ratio`)."""

    device: str
    dtype: str
    shape: list[int]  # batch, heads, head_dim of every run
    lengths: Lengths  # 1) naive vs SDPA across lengths: time, peak memory, parity
    causal: Causal  # 2) naive with a triangular mask vs is_causal=True
    backends: Backends  # 3) each SDPA backend forced in turn with sdpa_kernel: which run on this device
    minilm: MiniLM  # 4) the same switch inside transformers: MiniLM with attn_implementation "eager" vs "sdpa"


# 0) helpers: memory and the memory guard (timing is tour.core.timing.median_ms: one warm-up, then the median) ---------
def available_bytes(device) -> int | None:
    """Memory a new tensor could still get: free accelerator memory, or the OS's MemAvailable for the CPU."""
    import torch

    from tour.core.device import memory_bytes

    if device.type != "cpu":
        try:
            return torch.accelerator.get_memory_info(device)[0]  # (free, total)
        except (AttributeError, RuntimeError, TypeError):
            return memory_bytes(device)
    try:
        with open("/proc/meminfo") as f:  # Linux: counts reclaimable cache, unlike SC_AVPHYS_PAGES
            line = next(line for line in f if line.startswith("MemAvailable:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        return memory_bytes(device)  # total memory: a looser bound, but still catches the absurd


def check_fits(cfg: Config, device, itemsize: int) -> None:
    """Refuse, before allocating anything, a length whose naive score matrices would not fit in memory."""
    if not cfg.seq_lens:  # each length, batch_size, heads... are already checked >= 1 by the Config
        raise TourError("--seq-lens needs at least one length, e.g. --seq-lens 256 512")
    longest = max(cfg.seq_lens)
    per_head = cfg.batch_size * cfg.heads * itemsize
    # naive keeps the scores and their softmax alive together (2 x L x L per head), beside q, k, v and the output
    need = per_head * (2 * longest * longest + 4 * longest * cfg.head_dim)
    have = available_bytes(device)
    if have is not None and need > 0.8 * have:
        fits = int(math.sqrt(0.8 * have / (2 * per_head)))
        raise TourError(f"--seq-lens {longest} with batch {cfg.batch_size} x {cfg.heads} heads needs "
                        f"~{need / 2**30:.1f} GiB for the naive L x L scores, but only {have / 2**30:.1f} GiB is free "
                        f"on {device}; use lengths up to ~{fits} or a smaller --batch-size/--heads")


@contextmanager
def _quiet_stderr():
    """The profiler's C++ side (Kineto) prints start/stop lines straight to fd 2; hide them while it runs."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def peak_mb(fn, device) -> tuple[float, str]:
    """Peak memory one call allocates, in MiB, and how it was measured."""
    import torch

    if device.type != "cpu" and hasattr(torch.accelerator, "max_memory_allocated"):
        # The device's own counters (cuda:1's, not the current GPU's); fn() queues kernels, the sync lets them run.
        from tour.core.timing import synchronize

        torch.accelerator.reset_peak_memory_stats(device)
        before = torch.accelerator.memory_allocated(device)
        fn()
        synchronize(device)
        return ((torch.accelerator.max_memory_allocated(device) - before) / 2**20,
                "torch.accelerator.max_memory_allocated")
    # CPU: torch has no allocator counters, so replay the profiler's record of every allocation and free.
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    from tour.core.torch_private import profiler_memory_events

    live = peak = 0
    for _, nbytes in sorted(profiler_memory_events(prof)):
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20, "torch.profiler allocation record (profile_memory=True)"


# 1) naive vs SDPA across lengths --------------------------------------------------------------------------------
def naive_attention(q, k, v, causal: bool = False):
    """The textbook formula: materialises the full L x L score matrix, then its softmax."""
    import torch

    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:  # position i may only look at positions <= i
        length = q.shape[-2]
        future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(dim=-1) @ v


def qkv(cfg: Config, length: int, device, dtype):
    import torch

    shape = (cfg.batch_size, cfg.heads, length, cfg.head_dim)
    return tuple(torch.randn(shape, device=device, dtype=dtype) for _ in range(3))


def tolerance(dtype) -> float:
    import torch

    return 1e-4 if dtype == torch.float32 else 3e-2  # bf16/fp16 keep ~3 significant digits


def relative_tolerance(dtype) -> float:
    """Two units of the dtype's last place (2 eps: 0.016 for bf16, what torch.testing allows it)."""
    import torch

    return 2 * torch.finfo(dtype).eps


def within_tolerance(ref, got, dtype) -> bool:
    """|got - ref| <= atol + rtol * |ref| at every element (torch.allclose's rule), atol `tolerance(dtype)`, rtol
    `relative_tolerance(dtype)`. An absolute bound alone fails on large outputs: at |o| ~ 4 one bf16 step is 0.031,
    above any atol that is tight near 0."""
    import torch

    return torch.allclose(got.float(), ref.float(), rtol=relative_tolerance(dtype), atol=tolerance(dtype))


def compare_length(cfg: Config, length: int, device, dtype) -> dict:
    import torch
    import torch.nn.functional as F

    from tour.core.timing import median_ms

    q, k, v = qkv(cfg, length, device, dtype)
    with torch.inference_mode():
        naive_out, sdpa_out = naive_attention(q, k, v), F.scaled_dot_product_attention(q, k, v)
        err = (naive_out.float() - sdpa_out.float()).abs().max().item()
        del naive_out, sdpa_out
        naive_ms = median_ms(lambda: naive_attention(q, k, v), device, cfg.repeats)
        sdpa_ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v), device, cfg.repeats)
        naive_mb, source = peak_mb(lambda: naive_attention(q, k, v), device)
        sdpa_mb, _ = peak_mb(lambda: F.scaled_dot_product_attention(q, k, v), device)
    return {"seq_len": length, "naive_ms": naive_ms, "sdpa_ms": sdpa_ms, "ratio": naive_ms / sdpa_ms,
            "naive_peak_mb": naive_mb, "sdpa_peak_mb": sdpa_mb, "max_abs_err": err,
            "allclose": err <= tolerance(dtype), "memory_source": source}


def lengths_part(cfg: Config, device, dtype) -> Lengths:
    """Section 1: every length of --seq-lens, shortest first, printed as a table."""
    rows = [compare_length(cfg, n, device, dtype) for n in sorted(set(cfg.seq_lens))]
    print(f"  {'L':>6} {'naive ms':>10} {'SDPA ms':>10} {'naive/SDPA':>10} {'naive MiB':>10} {'SDPA MiB':>10}"
          f" {'max |diff|':>10}")
    for r in rows:
        print(f"  {r['seq_len']:>6} {r['naive_ms']:>10.2f} {r['sdpa_ms']:>10.2f} {r['ratio']:>9.2f}x "
              f"{r['naive_peak_mb']:>10.1f} {r['sdpa_peak_mb']:>10.1f} {r['max_abs_err']:>10.1e}")
    source = rows[0]["memory_source"]
    print(f"  peak memory per call measured with {source}; naive holds 2 x L x L scores per head, SDPA tiles them")
    return Lengths(rows, source, all(r["allclose"] for r in rows))


# 2) causal mask, 3) backends ------------------------------------------------------------------------------------
def causal_part(cfg: Config, length: int, device, dtype) -> Causal:
    """Section 2: max |naive - is_causal| at one length, and whether every element is within `within_tolerance`.
    Row i averages i+1 values of v, so the first rows are as large as v itself (~4 in a randn draw): the check is
    relative there."""
    import torch
    import torch.nn.functional as F

    q, k, v = qkv(cfg, length, device, dtype)
    with torch.inference_mode():
        naive = naive_attention(q, k, v, causal=True)
        fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        err, close = (naive.float() - fused.float()).abs().max().item(), within_tolerance(naive, fused, dtype)
    print(f"  max |diff| {err:.1e}; within {tolerance(dtype):g} + {relative_tolerance(dtype):.2g} x |naive| "
          f"everywhere: {close}")
    return Causal(err, close)


def try_backend(name: str, cfg: Config, length: int, device, dtype) -> dict:
    """Force one SDPA kernel; a kernel that cannot run here raises, and we keep its reason."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from tour.core.timing import median_ms

    q, k, v = qkv(cfg, length, device, dtype)
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
        warnings.simplefilter("always")  # CUDA explains each refused kernel in a UserWarning
        try:
            with sdpa_kernel(getattr(SDPBackend, name)):
                out = F.scaled_dot_product_attention(q, k, v)
                ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v), device, cfg.repeats)
        except RuntimeError as e:
            why = [str(w.message).splitlines()[0] for w in caught if "kernel not used" in str(w.message)]
            first = str(e).splitlines()[0]
            reason = "; ".join(why) or (f"this build has no {name} kernel for these {device.type} inputs"
                                        if "No viable backend" in first else first)
            return {"ran": False, "ms": None, "max_abs_err": None, "reason": reason[:200]}
        err = (out.float() - naive_attention(q, k, v).float()).abs().max().item()
    return {"ran": True, "ms": ms, "max_abs_err": err, "reason": ""}


def backends_close(backends: dict[str, dict], dtype) -> bool | None:
    """Every backend that ran within the dtype's tolerance of naive attention; None when none ran."""
    ran = [info["max_abs_err"] for info in backends.values() if info["ran"]]
    return all(e <= tolerance(dtype) for e in ran) if ran else None


def backends_part(cfg: Config, length: int, device, dtype) -> Backends:
    """Section 3: every SDPA backend this torch names, forced in turn, and whether those that ran agree."""
    from torch.nn.attention import SDPBackend

    found = {}
    for name in BACKENDS:
        if not hasattr(SDPBackend, name):  # older torch: no cuDNN entry
            continue
        found[name] = info = try_backend(name, cfg, length, device, dtype)
        text = f"ran, {info['ms']:.2f} ms, max |diff| vs naive {info['max_abs_err']:.1e}" if info["ran"] else \
            f"not available: {info['reason']}"
        print(f"  {name:<20} {text}")
    return Backends(found, backends_close(found, dtype))


# 4) the same switch inside transformers -------------------------------------------------------------------------
def minilm_inputs(tokenizer, cfg: Config, device):
    """Texts of different lengths padded to one size, so the attention mask matters in both implementations."""
    sentence = "Attention lets every token look at every other token and weigh what it sees. "
    texts = [sentence * (4 * (i + 1)) for i in range(cfg.eval_batch_size)]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=cfg.hf_seq_len, return_tensors="pt")
    return {k: v.to(device) for k, v in enc.items()}


def minilm_switch(cfg: Config, device) -> MiniLM:
    require("transformers", stop="the attention stop")
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tour.core.timing import median_ms
    from tour.core.models import from_pretrained, resolve_model
    from tour.core.torch_private import attn_implementation

    source = resolve_model(cfg.model)  # a folder, or a hub name; a mistyped path is a one-line error
    tokenizer = from_pretrained(AutoTokenizer, source)
    inputs = minilm_inputs(tokenizer, cfg, device)
    times, hidden = {}, {}
    for impl in ("eager", "sdpa"):
        model = from_pretrained(AutoModel, source, attn_implementation=impl).to(device).eval()
        with torch.inference_mode():
            hidden[impl] = model(**inputs).last_hidden_state.float()
            times[impl] = median_ms(lambda: model(**inputs), device, cfg.repeats)
        print(f"  attn_implementation={impl!r} (model reports {attn_implementation(model)!r}): "
              f"{times[impl]:.1f} ms per batch")
    err = (hidden["eager"] - hidden["sdpa"]).abs().max().item()
    print(f"  eager/sdpa = {times['eager'] / times['sdpa']:.2f}x; last_hidden_state max |diff| {err:.1e}")
    return MiniLM(times["eager"], times["sdpa"], times["eager"] / times["sdpa"], err,
                  list(inputs["input_ids"].shape), err <= HF_TOL)


def prepare(cfg: Config):
    """(device, dtype) for a run, seeded, after refusing what would fail later: a length that can't fit, a typo."""
    from tour.core import device as dev
    from tour.core import dtypes
    from tour.core.models import resolve_model

    device = dev.get_device(cfg.device)
    dtype = dtypes.get_dtype(device)  # bf16 on accelerators (what the Flash kernels want), fp32 on the CPU
    check_fits(cfg, device, itemsize=dtype.itemsize)
    resolve_model(cfg.model)  # a mistyped --model path fails now, not after three sections of work
    dev.seed_everything(cfg.seed)
    return device, dtype


@keeps_caller_state
def run(cfg: Config) -> Result:
    from tour.core import device as dev

    device, dtype = prepare(cfg)
    print(f"[attention] {dev.describe(cfg.device)}")
    print(f"1) naive softmax(QK^T/sqrt(d))V vs F.scaled_dot_product_attention, batch {cfg.batch_size} x {cfg.heads} "
          f"heads x head_dim {cfg.head_dim}, median of {cfg.repeats}")
    lengths = lengths_part(cfg, device, dtype)
    mid = lengths.rows[len(lengths.rows) // 2]["seq_len"]
    print(f"2) causal mask at L={mid}: naive triangular mask vs is_causal=True")
    causal = causal_part(cfg, mid, device, dtype)
    print(f"3) SDPA backends on {device}, each forced with sdpa_kernel at L={mid}")
    backends = backends_part(cfg, mid, device, dtype)
    print("4) the same switch inside transformers: MiniLM eager vs sdpa attention")
    minilm = minilm_switch(cfg, device)
    return Result(device=str(device), dtype=str(dtype).removeprefix("torch."),
                  shape=[cfg.batch_size, cfg.heads, cfg.head_dim], lengths=lengths, causal=causal, backends=backends,
                  minilm=minilm)


@keeps_caller_state
def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s attention rows: naive vs SDPA per length, and MiniLM's eager vs sdpa attention (sections 1
    and 4 of the stop, the same part functions run() calls)."""
    cfg = Config(quick=settings.quick, device=settings.device, out=settings.out, seed=settings.seed)
    device, dtype = prepare(cfg)
    lengths, hf = lengths_part(cfg, device, dtype), minilm_switch(cfg, device)
    name = str(dtype).removeprefix("torch.")
    rows = [BenchRow("attention", f"L={r['seq_len']}, {name}", "naive softmax(QK^T)V", "F.sdpa", r["naive_ms"],
                     r["sdpa_ms"], r["ratio"], r["allclose"],
                     f"peak {r['naive_peak_mb']:.0f} -> {r['sdpa_peak_mb']:.0f} MiB") for r in lengths.rows]
    rows.append(BenchRow("attention", f"MiniLM {hf.shape}", 'attn "eager"', 'attn "sdpa"', hf.eager_ms, hf.sdpa_ms,
                         hf.ratio, hf.allclose, f"max diff {hf.max_abs_err:.1e}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
