"""5) SmolLM2 greedy decoding in each way of WAYS (fp32, weights in the lower precision, int8 weight-only, int4
weight-only on the lower precision, a batch of 16, int8 weights on the lower precision with a static cache + compile):
the replies and held-out perplexity against fp32's, and tokens/s against the limit its own weight bytes set at the
core's copy bandwidth (tour.core.roofs). A new decode path (a batch, a static cache + compile, another
kernel) is one more entry in WAYS: how to build its model from the fp32 one, and how to generate with it."""

from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch

from tour.core import roofs
from tour.core.dtypes import dtype_name
from tour.core.timing import medians_ms
from tour.precision.config import SYSTEM, Config, Decode, Variant
from tour.precision.generation import batched_greedy, compiled_greedy, greedy
from tour.precision.variants import BASE, show

PERPLEXITY_TOL = 0.03  # a way keeps its check with perplexity within 3% of fp32's (and the same greedy replies)
MODEL = "SmolLM2 decode (batch {})"  # a batch size is its own row of the table: ms per call differ


def int8_weight_only(model, low=None):
    """A copy with every Linear's weights stored as int8 with a scale per output channel (torchao); with `low`, on
    a copy in `low` (bf16 activations: under compile Inductor lowers each Linear to torch._weight_int8pack_mm)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantised = copy.deepcopy(model) if low is None else copy.deepcopy(model).to(low)
    # set_inductor_config=False: True sets process-wide Inductor flags (coordinate descent tuning ...) for good
    quantize_(quantised, Int8WeightOnlyConfig(set_inductor_config=False))
    return quantised


def torchao_missing(device=None) -> str | None:
    from tour.core.errors import is_available

    return None if is_available("torchao") else "torchao is not installed: pip install 'torch-tour[precision]'"


def compiled_missing(device) -> str | None:
    """Why the static cache + compile way can't run here: torchao, generate's compile on this device, Inductor."""
    from tour.core.inductor import compile_problem
    from tour.core.torch_private import generate_compile_config

    if generate_compile_config(device) is None:
        return (f"this transformers has no CompileConfig._compile_all_devices, so generate will not compile on "
                f"{device.type}")
    return torchao_missing() or compile_problem(device)


INT4_GROUP = 32  # weights per int4 scale + zero: at 64 the perplexity rose 24% over fp32's here (32: 0.4%)
INT4_CPU_KERNEL = "_weight_int4pack_mm_for_cpu"  # the aten kernel torchao's CPU int4 layout calls per Linear


def int4_cpu_config():
    """torchao's config for its CPU int4 layout (Int4OpaqueTensor: weights packed by
    _convert_weight_to_int4pack_for_cpu, each Linear one _weight_int4pack_mm_for_cpu), or None where this torchao
    has none. torchao 0.18 moved it to torchao.prototype.quantization.int4 (Int4WeightOnlyConfig's packing formats
    no longer include it); 0.14-0.17 name it Int4WeightOnlyConfig(int4_packing_format="opaque")."""
    try:
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    except ImportError:
        from torchao.quantization import Int4WeightOnlyConfig

        formats = getattr(Int4WeightOnlyConfig, "__dataclass_fields__", {}).get("int4_packing_format")
        if formats is None or "OPAQUE" not in type(formats.default).__members__:
            return None
        opaque = type(formats.default).OPAQUE
        return Int4WeightOnlyConfig(group_size=INT4_GROUP, int4_packing_format=opaque, version=2,
                                    set_inductor_config=False)
    # set_inductor_config=False: True sets process-wide Inductor flags for good (as for int8 above)
    return PrototypeInt4WeightOnlyConfig(group_size=INT4_GROUP, set_inductor_config=False)


def int4_missing(device) -> str | None:
    """Why the int4 way can't run on `device`, in one line. Its layout is torchao's CPU one: a GPU has another
    (torchao's tile-packed tinygemm layout on CUDA), which this tour has not checked, so it is skipped there."""
    if device is not None and device.type != "cpu":
        return (f"int4 weight-only here uses torchao's CPU layout ({INT4_CPU_KERNEL}); torchao's {device.type} int4 "
                "layout is not wired into the tour")
    if torchao_missing():
        return torchao_missing()
    if not hasattr(torch.ops.aten, INT4_CPU_KERNEL):
        return f"this torch has no aten.{INT4_CPU_KERNEL}"
    if int4_cpu_config() is None:
        import torchao

        return (f"torchao {torchao.__version__} has no CPU int4 layout (neither torchao.prototype.quantization.int4 "
                "nor Int4WeightOnlyConfig's 'opaque' packing format)")
    return None


def keep_output_layer(module, fqn: str) -> bool:
    """quantize_'s filter: every Linear but the output layer (lm_head), which stays in the lower precision: in int4
    it alone moved the perplexity 3.6% over fp32's here (past PERPLEXITY_TOL), the rest together 0.4%."""
    return isinstance(module, torch.nn.Linear) and not fqn.endswith("lm_head")


def int4_weight_only(model, low):
    """A copy in `low` with every Linear but the output layer stored as int4, a scale and zero per INT4_GROUP
    weights (torchao's CPU layout): 0.625 bytes per weight read instead of int8's ~1."""
    from torchao.quantization import quantize_

    quantised = copy.deepcopy(model).to(low)
    quantize_(quantised, int4_cpu_config(), filter_fn=keep_output_layer)
    return quantised


EAGER_INT8 = ("slow here: torchao's eager path converts the whole int8 weight to the activation dtype on every call "
              "(2-6x slower than an fp32 GEMV); with bf16 activations under compile Inductor lowers it to "
              "torch._weight_int8pack_mm (the static cache + compile way)")
# Where its time goes (torch.profiler over 16 decode steps, 1 thread, this 2-core machine): the 210 int4 Linears
# ~47% (each ~0.1 ms: ~1/4 of the copy bandwidth, small calls), the output layer's lower-precision GEMV ~25% (~2/5 of
# it: 57 of the 123 MB), attention and ~40 small ops per layer the rest. llama.cpp reads its 97 MB in a few fused
# Q4 kernels per layer; static cache + compile of this way compiled ~1 min cold and ran no faster under load. With 2
# threads and a busy neighbour each int4 call's thread hand-off stalls (~1.6 ms a call): 210 calls a token amplify it.
INT4_NOTE = (f"group {INT4_GROUP}, the output layer in the lower precision (int4 there: perplexity +3.6%); eager, each "
             f"Linear one {INT4_CPU_KERNEL}: ~half the time in those small calls, a quarter in the output GEMV, the "
             "rest in attention and the per-layer small ops, so it stays well below its bandwidth limit")
FULL_ONLY = "full mode only: its compile takes ~1.5 min cold"
# the eager int8 way teaches what the compiled one fixes; in quick mode it was ~4 s of a 90 s tour for that alone
EAGER_INT8_FULL_ONLY = ("full mode only: slower than fp32 in eager here (torchao converts each weight per call), the "
                        "lesson its static cache + compile way completes")


@dataclass(frozen=True)
class Way:
    """One way to decode: how to build its model from the fp32 one, and how to generate with it."""

    build: Callable  # (fp32 model, lower dtype or None) -> the model this way decodes with
    generate: Callable = greedy  # (model, chats, n new tokens, exact) -> new token ids per prompt
    batch: int = 1  # prompts one timed call decodes together: each step reads the weights once for all of them
    needs_low: bool = False  # only where a lower precision is compared (its label's {low} names it)
    missing: Callable[[object], str | None] = lambda device: None  # why it can't run on `device` (a one-line skip)
    full_only: str = ""  # why quick mode skips it (a long compile), or "" where quick mode runs it
    compiles: bool = False  # runs Inductor: its compile time is printed, its kernels kept in the tour's cache
    note: str = ""  # why it is as fast as it is, added to its row's detail


def as_is(model, low):
    return model


def cast(model, low):
    return copy.deepcopy(model).to(low)


# label -> Way, in the order they are timed; the first is the baseline every other way is held to
WAYS: dict[str, Way] = {
    BASE: Way(as_is),
    "{low} weights": Way(cast, needs_low=True),
    "int8 weight-only (torchao)": Way(lambda model, low: int8_weight_only(model), missing=torchao_missing,
                                      full_only=EAGER_INT8_FULL_ONLY, note=EAGER_INT8),
    "int4 weight-only on {low} (torchao)": Way(int4_weight_only, needs_low=True, missing=int4_missing,
                                               note=INT4_NOTE),
    # the batching gain alone, then the dtype's own gain at the same batch
    "fp32 batch 16": Way(as_is, batched_greedy, batch=16),
    "{low} weights batch 16": Way(cast, batched_greedy, batch=16, needs_low=True),
    "int8 weights on {low}, static cache + compile": Way(int8_weight_only, compiled_greedy, needs_low=True,
                                                        missing=compiled_missing, full_only=FULL_ONLY,
                                                        compiles=True),
}


def build_ways(model, low, ways: dict[str, Way] = WAYS, device=None,
               quick: bool = False) -> tuple[dict[str, tuple[Way, object]], dict[str, str]]:
    """({label: (way, its model)}, {way: why it was skipped}); a way that needs a lower precision is left out
    without one, a way that can't run here (a missing library, no compiler) or only runs in full mode is skipped
    in one line."""
    built, skipped = {}, {}
    for label, way in ways.items():
        if way.needs_low and low is None:
            continue
        label = label.format(low=dtype_name(low) if low is not None else "")
        why = (way.full_only if quick else "") or way.missing(device)
        if why:
            key = label.split(" (")[0]
            skipped[key] = why
            print(f"  {key}: skipped ({why})")
            continue
        # ways that differ only in how they generate (a batch) share one model: built once, its perplexity once
        same = next((m for w, m in built.values() if w.build is way.build), None)
        built[label] = (way, same if same is not None else way.build(model, low))
    return built, skipped


def checked_rows(chats: list, batch: int) -> list:
    """The inputs a way's replies are checked on: the very batch it is timed on (bf16's rounding, and so which
    nearly tied reply flips, depends on the batch size: the GEMM blocking changes with the rows), the prompts
    repeated to fill it; a batch smaller than the prompts is checked on all of them at once."""
    return (chats * batch)[:max(batch, len(chats))]


def folded(rows: list[str], ref: list[str]) -> list[str]:
    """One reply per prompt from a batch whose row i answers prompt i % len(ref): the reference reply when every
    row of the prompt says it, else the first row that does not (so a flip in any row fails the prompt)."""
    return [next((r for r in rows[i::len(ref)] if r != want), want) for i, want in enumerate(ref)]


def weight_bytes(model) -> int:
    """Bytes a decode step reads: every weight once, a quantised tensor by its stored parts (int8 + scales). An
    embedding table is read one row per token, so it counts only through the output layer it may be tied to."""
    total, seen = 0, set()
    for p in (p for m in model.modules() if not isinstance(m, torch.nn.Embedding) for p in m.parameters(recurse=False)):
        if id(p) in seen:  # a tied weight is read once
            continue
        seen.add(id(p))
        flatten = getattr(p, "__tensor_flatten__", None)
        if flatten is not None and type(p) not in (torch.Tensor, torch.nn.Parameter):
            total += sum(getattr(p, n).numel() * getattr(p, n).element_size() for n in flatten()[0])
        else:
            total += p.numel() * p.element_size()
    return total


def perplexity(model, tokenizer, texts: list[str], device) -> float:
    """exp(mean next-token loss) over `texts` (held-out corpus sentences), padding ignored; the plain text only."""
    enc = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(device)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    with torch.inference_mode():
        return math.exp(model(**enc, labels=labels).loss.float().item())


def plain_text_differs(tokenizer) -> str | None:
    """Why perplexities on plain text are not comparable here, or None. transformers 4.x converts SmolLM2's GGUF
    tokenizer with <|im_start|> as its BOS and EOS: plain text then tokenizes unlike the model's own tokenizer, the
    model sees text it was not tuned on (perplexity ~200 vs ~38) and bf16 rounding moves that by ~9%."""
    if tokenizer.bos_token is not None and tokenizer.bos_token == tokenizer.eos_token:
        import transformers

        return (f"transformers {transformers.__version__} converts SmolLM2's GGUF tokenizer with "
                f"{tokenizer.bos_token} as both BOS and EOS, so plain-text perplexity is not the model's: the "
                "perplexity check needs transformers >= 5 (greedy replies are still compared)")
    return None


def same_batch_gain(label: str, batch: dict[str, int], tokens_s: dict[str, float]) -> str:
    """'; 1.76x fp32 batch 16's tokens/s (the dtype's own gain)': a batched way against fp32 at its own batch size,
    since its speed-up over fp32 eager (batch 1) also holds the batching gain. "" for batch 1 or fp32 itself."""
    fp32 = next((k for k in batch if k.startswith("fp32") and batch[k] == batch[label]), None)
    if batch[label] == 1 or fp32 in (None, label):
        return ""
    return f"; {tokens_s[label] / tokens_s[fp32]:.2f}x {fp32}'s tokens/s (the dtype's own gain)"


def judged(ms: dict[str, float], batch: dict[str, int], tokens_s: dict[str, float], limits: dict[str, float],
           weights: dict[str, int], replies: dict[str, list[str]], ppl: dict[str, float],
           differs: str | None, notes: dict[str, str] | None = None) -> list[Variant]:
    """A row per way: the same greedy replies as fp32 and perplexity within PERPLEXITY_TOL (unless `differs` says
    perplexity is not comparable here), tokens/s against the bandwidth limit of its own weight bytes. Its speed-up
    is in tokens/s over fp32 eager's at batch 1 (at batch 1 that is fp32's ms over its ms); a batched way also
    states its gain over fp32 at the same batch. `notes`: a way's own remark (why it is slow, its compile time)."""
    found = []
    for label, t in ms.items():
        same = replies[label] == replies[BASE]
        close = differs is not None or abs(ppl[label] / ppl[BASE] - 1) <= PERPLEXITY_TOL
        note = (notes or {}).get(label)
        of_limit = roofs.share_text(tokens_s[label], limits[label], "of it")
        found.append(Variant(MODEL.format(batch[label]), label, t, tokens_s[label] / tokens_s[BASE], same and close, (
            f"same greedy replies: {same}; {tokens_s[label]:.1f} tokens/s, {weights[label] / 1e6:.0f} MB of weights "
            f"-> limit {limits[label]:.0f} tokens/s ({of_limit}); perplexity "
            f"{ppl[label]:.2f}" + same_batch_gain(label, batch, tokens_s) + (f"; {note}" if note else ""))))
    return found


def load(device):
    """(tokenizer, fp32 model) of SmolLM2-135M-Instruct, converted from its GGUF file once (shared with generate)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tour.core.assets import smollm2_dir
    from tour.core.models import from_pretrained

    folder = smollm2_dir()
    tokenizer = from_pretrained(AutoTokenizer, str(folder))
    if tokenizer.pad_token is None:  # perplexity pads a batch; transformers 4.x leaves SmolLM2's pad token unset
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, from_pretrained(AutoModelForCausalLM, str(folder), dtype=torch.float32).to(device).eval()


def inputs(cfg: Config, tokenizer, device) -> tuple[list, list[str]]:
    """(one chat-templated input per prompt, `cfg.heldout` held-out corpus sentences for the perplexity)."""
    from tour.core.assets import chatterbot_english_dir
    from tour.core.data import corpus_rows

    chats = [tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True).to(device)
             for p in cfg.prompts]
    return chats, [r["text"] for r in corpus_rows(chatterbot_english_dir(), 1, ["conversations"])][::50][:cfg.heldout]


def replies_of(built: dict, chats: list, tokenizer, n: int) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({way: one reply per prompt}, {way: its compile time}): each way decodes the batch it is timed on, its rows
    folded to one verdict per prompt against fp32 eager's batch-1 reply (the first way, decoded first)."""
    replies, notes = {}, {}
    for label, (way, m) in built.items():
        start = time.perf_counter()
        rows = [tokenizer.decode(t, skip_special_tokens=True).strip()
                for t in way.generate(m, checked_rows(chats, way.batch), n)]
        replies[label] = folded(rows, replies[BASE]) if replies else rows
        seconds = time.perf_counter() - start
        if way.compiles:
            print(f"  {label}: compile + first replies {seconds:.0f} s")
        compiled = f"compile + first replies {seconds:.0f} s" if way.compiles else ""
        notes[label] = "; ".join(filter(None, [way.note, compiled]))
    return replies, notes


def measure(cfg: Config, device, low) -> Decode:
    from tour.core.inductor import inductor_cache

    tokenizer, model = load(device)
    chats, heldout = inputs(cfg, tokenizer, device)
    built, skipped = build_ways(model, low, device=device, quick=cfg.quick)
    with inductor_cache() if any(way.compiles for way, _ in built.values()) else nullcontext():
        replies, notes = replies_of(built, chats, tokenizer, cfg.new_tokens)
        models = {id(m): m for _, m in built.values()}  # a batched way's model is its batch-1 way's
        of_model = {key: perplexity(m, tokenizer, heldout, device) for key, m in models.items()}
        ppl = {label: of_model[id(m)] for label, (_, m) in built.items()}
        batch = {label: way.batch for label, (way, _) in built.items()}
        calls = {label: (lambda w=way, m=m: w.generate(m, (chats * w.batch)[:w.batch], cfg.new_tokens, True))
                 for label, (way, m) in built.items()}  # exactly new_tokens of the first prompt(s)
        # side by side: a neighbour's load slows every way alike. No warm-up call: replies_of just decoded the same
        # batch with every way (compiled, caches allocated), and a decode is seconds on a CPU
        ms = medians_ms(calls, device, cfg.decode_repeats, warmup=0)
    weights = {label: weight_bytes(m) for label, (_, m) in built.items()}
    tokens_s = {label: batch[label] * cfg.new_tokens * 1e3 / t for label, t in ms.items()}
    # the bandwidth a way's rate implies (each step reads its weights once per batch): a roof below it is re-measured
    implied = max(tokens_s[k] * weights[k] / batch[k] / 1e9 for k in ms)
    bandwidth = roofs.bandwidth_gb_s(device, cfg.copy_mb, cfg.quick, at_least=implied)
    limits = {label: batch[label] * bandwidth * 1e9 / weights[label] for label in ms}
    differs = plain_text_differs(tokenizer)  # this stack's tokenizer makes the perplexities incomparable
    if differs:
        print(f"  perplexity not compared: {differs}")
    found = judged(ms, batch, tokens_s, limits, weights, replies, ppl, differs, notes)
    for label, said in replies.items():
        print(f"  {label}: {said}")
    show(found)
    compared = len(found) > 1
    return Decode(rows=found, replies=replies, perplexity=ppl, tokens_s=tokens_s, limits=limits,
                  bandwidth_gb_s=bandwidth, skipped=skipped,
                  greedy_same=all(r == replies[BASE] for r in replies.values()) if compared else None,
                  perplexity_close=all(abs(p / ppl[BASE] - 1) <= PERPLEXITY_TOL for p in ppl.values())
                  if compared and not differs else None)
