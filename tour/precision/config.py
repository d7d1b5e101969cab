"""The precision stop's Config, its Result, and the small typed records each part returns (their labels and checks
declared beside their fields); every part imports them from here, and the Result nests those records."""

from __future__ import annotations

from dataclasses import dataclass, field

from tour.core.config import FLOAT_DTYPES, BaseConfig, arg
from tour.core.results import BaseResult, check, labelled

NAME = "precision"
PARTS = ("roofs", "encoder", "train", "vision", "generate", "compile")
# The generate stop's prompts and system prompt (a stop imports no other stop, so they are repeated here)
PROMPTS = ["What is the capital of France?", "What is the capital of Japan?", "Name a primary colour."]
SYSTEM = "You are a helpful assistant. Answer in one short sentence."


@dataclass
class Config(BaseConfig):
    dtype: str = arg("auto", "lower precision compared with fp32: auto (the device helper's pick: bf16 where the "
                     "hardware has it), bf16, fp16, or fp32 (the fp32 path only)", choices=FLOAT_DTYPES)
    parts: list[str] = arg(list(PARTS), "what to measure", choices=PARTS)
    repeats: int = arg(3, "timed repetitions per measurement after warm-up; medians are reported", min=1, quick=2)
    # the roofs are the core's (tour.core.roofs), shared in one process with `tour bench` and the generate stop
    roof_n: int | None = arg(None, "an n also tried for each dtype's matmul roof, beside the core's sizes (CPU "
                             "1024/2048/3072, GPU 4096/8192); a roof is the peak over them", min=64)
    copy_mb: int | None = arg(None, "MiB copied to measure memory bandwidth (default: the core's, 256 on a CPU, "
                              "1024 on a GPU; keep it past the last-level cache)", min=8)
    batch_size: int = arg(32, "texts per MiniLM batch (inference: padded to 128 tokens; training: corpus texts "
                          "padded to the batch's longest)", min=1, quick=8)
    # All 963 texts also in quick mode: embedding them is cheap, and 193 held out make one flip half a point
    max_per_topic: int | None = arg(None, "at most this many corpus texts per topic for the classifier (unset: all)",
                                    min=10)
    train_steps: int = arg(6, "MiniLM training steps compared (the loss curve): the same batches in both "
                           "precisions", min=1, quick=3)
    images: int = arg(16, "images per vision timing batch (the tour's six photos, repeated)", min=1, quick=6)
    prompts: list[str] = arg(PROMPTS, "questions SmolLM2 answers greedily in each precision", quick=PROMPTS[:2],
                             nonblank=True)
    new_tokens: int = arg(24, "new tokens per reply and per decode timing", min=2, max=512, quick=6)
    # as the generate stop's decode timings (2, quick 1): one decode is seconds, a batch of 16 in fp32 ~3.5 s
    decode_repeats: int = arg(2, "timed decodes per SmolLM2 way after its replies; the median is reported", min=1,
                              quick=1)
    heldout: int = arg(16, "held-out corpus sentences SmolLM2's perplexity is computed on (one padded batch; "
                       "every 50th of the corpus: 32 at most)", min=2, max=32, quick=8)
    fusion_mb: list[int] | None = arg(None, "tensor sizes (MB) of compile's fusion sweep (unset: from 1 MB, x4 per "
                                      "step, to the first size past this CPU's last-level cache; quick: the two "
                                      "ends, the far one at most 64 MB)", min=1)


@dataclass(frozen=True)
class Variant:
    """One way of running a model, timed beside its fp32 eager baseline."""

    model: str = labelled("model")  # "MiniLM inference", "SmolLM2 decode", ...
    # "fp32 eager", "bf16 autocast", "bf16 weights", "int8 weight-only (torchao)"
    variant: str = labelled("variant")
    ms: float = labelled("time", "ms")
    # fp32 eager ms / this ms (a batched decode: its tokens/s / fp32 batch 1's): above 1 faster
    speedup: float = labelled("speed-up over fp32 eager", "x", 1.0, parity="keeps")
    keeps: bool | None = labelled("keeps its check", "", True)  # keeps the model's check (accuracy, top-1, loss, reply)
    detail: str = ""  # what the check measured


# what each part returns; a part not asked for stands as its record's defaults (nothing measured, checks not run)
@dataclass(frozen=True)
class Roofs:
    # dtype -> matmul G(FL)OP/s (int8: GOP/s)
    gflops: dict[str, float] = labelled("matmul roof per dtype", "G(FL)OP/s", default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)  # dtype -> median ms of one matmul at its peak's n
    n: dict[str, int] = field(default_factory=dict)  # dtype -> the n x n size that reached its peak
    # (read + written) bytes / time of a large copy: the core's, shared with `tour bench` and the generate stop
    bandwidth_gb_s: float = labelled("memory bandwidth", "GB/s", 0.0)
    skipped: dict[str, str] = field(default_factory=dict)  # "bf16 roof" -> why it was not measured


@dataclass(frozen=True)
class Encoder:
    rows: list[Variant] = labelled("MiniLM inference, each way beside fp32 eager", default_factory=list)
    # lowest cosine of a sentence's embedding with fp32's, over variants
    min_cosine: float | None = labelled("MiniLM: lowest cosine with fp32's embedding", "", None)
    max_diff: float | None = None  # max |hidden state - fp32's|
    # way -> the classifier's held-out accuracy
    accuracy: dict[str, float] = labelled("classifier's held-out accuracy", "%", default_factory=dict)
    close: bool | None = check("MiniLM in the lower precision: each sentence's embedding has cosine >= 1 - eps(dtype) "
                               "with fp32's", None)  # None: no lower precision here
    accuracy_kept: bool | None = check("the classifier's held-out accuracy in the lower precision within 1 point of "
                                       "fp32's", None)
    skipped: dict[str, str] = field(default_factory=dict)  # a variant that could not run here -> why


@dataclass(frozen=True)
class Training:
    rows: list[Variant] = labelled("a MiniLM classifier's training step, each way beside fp32 eager",
                                   default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)  # way -> loss per step
    close: bool | None = check("autocast training losses within 4 eps(dtype) (relative) of fp32's", None)


@dataclass(frozen=True)
class Vision:
    rows: list[Variant] = labelled("the vision models, each way beside fp32 eager", default_factory=list)
    top1: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # model -> way -> top-1 id per photo
    agree: bool | None = check("EfficientNet-Lite0 and MobileNetV2 in the lower precision: same top-1 as fp32 on every "
                               "photo", None)


@dataclass(frozen=True)
class Decode:
    rows: list[Variant] = labelled("SmolLM2 decoding, each way beside fp32 eager", default_factory=list)
    replies: dict[str, list[str]] = field(default_factory=dict)  # way -> greedy reply per prompt
    # way -> held-out perplexity
    perplexity: dict[str, float] = labelled("SmolLM2 held-out perplexity", default_factory=dict)
    # way -> measured decode tokens/s over all the rows of its batch
    tokens_s: dict[str, float] = labelled("SmolLM2 decode rate", "tokens/s", default_factory=dict)
    # way -> bandwidth / weight bytes, tokens/s
    limits: dict[str, float] = labelled("decode limit (bandwidth / weight bytes)", "tokens/s", default_factory=dict)
    # the core's copy bandwidth the limits use (measured again if a decode beat it)
    bandwidth_gb_s: float | None = labelled("memory bandwidth the decode limits use", "GB/s", None)
    # An exact token match across dtypes (no tolerance): short greedy replies, where only a near-tied token flips with
    # the rounding. Another device's kernels round differently, so a GPU may flip a tie a CPU kept: the row's detail
    # then shows which reply moved, and perplexity_close says whether the model drifted or only a tie broke.
    greedy_same: bool | None = check("SmolLM2's greedy replies in bf16 / int8 weights (a batched way: every row of its "
                                     "timed batch) equal fp32's at batch 1, token for token (an exact match across "
                                     "dtypes: a near-tied token flipped by rounding fails it)", None)
    perplexity_close: bool | None = check("SmolLM2's held-out perplexity in bf16 / int8 weights within 3% of fp32's",
                                          None)
    skipped: dict[str, str] = field(default_factory=dict)  # a way that could not be built here -> why


@dataclass(frozen=True)
class Fusion:
    rows: list[dict] = field(default_factory=list)  # size MB, eager ms, compiled ms, ratio, parity, cache level
    parity: bool | None = check("compiled fusion block allclose to eager at every size (atol 1e-4)", None)
    reason: str = ""
    skipped: dict[str, str] = field(default_factory=dict)  # "compile" -> why Inductor can't build here


def variants_of(*parts) -> list[Variant]:
    """Every way the parts timed beside fp32 eager, part by part: the rows of the stop's table."""
    return [row for part in parts for row in part.rows]


@dataclass
class Result(BaseResult):
    """What this hardware has, then one part per section (`result.decode.tokens_s`, `result.encoder.close`), and
    the table built from every part's rows: per model, the fastest variant that keeps its check."""

    device: str
    fast_paths: list[str]  # what this hardware has (AMX-BF16, AVX512-BF16, tensor cores, TF32, ...)
    low_dtype: str  # the lower precision compared with fp32 ("fp32": none on this hardware)
    low_skipped: str  # why no lower precision is compared here (one line); each part lists what it skipped itself
    roofs: Roofs  # 1) matmul per dtype, memory bandwidth
    encoder: Encoder  # 2) MiniLM inference
    training: Training  # 3) a MiniLM classifier's training steps
    vision: Vision  # 4) EfficientNet-Lite0 and MobileNetV2 on the tour's photos
    decode: Decode  # 5) SmolLM2 greedy decoding
    fusion: Fusion  # 6) torch.compile's fusion gain vs tensor size
    best: list[dict] = field(default_factory=list)  # 7) per model: the fastest variant that keeps its check
    part_seconds: dict[str, float] = field(default_factory=dict)  # part -> wall time (model loads included)

    def variants(self) -> list[Variant]:
        """Every variant beside fp32 eager, from the parts' rows (what `best` was chosen from)."""
        return variants_of(self.encoder, self.training, self.vision, self.decode)
