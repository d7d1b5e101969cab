"""The precision stop: lower precision keeps each model's check against fp32 (embeddings within bf16's tolerance, the
classifier's accuracy within a point, the same greedy replies in int8 weights), a device without bf16 gets a
one-line skip and the fp32 path only, and a bad --dtype is a one-line error. Correctness only: no timing asserts."""

import importlib.util

import pytest

pytest.importorskip("transformers")
pytest.importorskip("datasets")

import torch  # noqa: E402

from tour import precision  # noqa: E402
from tour.core import device as dev
from tour.core import dtypes  # noqa: E402
from tour.core import roofs  # noqa: E402
from tour.core.errors import TourError  # noqa: E402
from tour.core.results import BenchSettings  # noqa: E402

CPU = torch.device("cpu")
HAS_BF16 = dtypes.supports_dtype(CPU, torch.bfloat16)
# For tests that run on this host's CPU themselves (not on the shared run's device)
needs_cpu_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 fast path (AMX / AVX512-BF16)")


def no_bf16_reason(stop_device: str) -> str | None:
    """Why the shared run compared no bf16 ways on the device it ran on, or None: the device's own fast paths
    (AMX / AVX512-BF16 on a CPU, tensor cores on a GPU), never this host CPU's flags for a GPU's run."""
    device = torch.device(stop_device)
    if dtypes.supports_dtype(device, torch.bfloat16):
        return None
    return f"{stop_device} has no bf16 fast path ({', '.join(dtypes.FAST_PATHS_FOR[torch.bfloat16])})"


@pytest.fixture
def bf16_on_the_stops_device(stop_device):
    if no_bf16_reason(stop_device):
        pytest.skip(no_bf16_reason(stop_device))


needs_bf16 = pytest.mark.usefixtures("bf16_on_the_stops_device")  # a test of the shared run's bf16 ways


@pytest.fixture(scope="module")
def result(tmp_path_factory, stop_device):
    """One quick run shared by the tests: everything but the compile sweep (its own test below)."""
    out = tmp_path_factory.mktemp("out")
    return precision.run(precision.Config(quick=True, device=stop_device, out=str(out),
                                          parts=["roofs", "encoder", "train", "vision", "generate"]))


def rows(result, model):
    return {v.variant: v for v in result.variants() if v.model == model}


@needs_bf16
def test_roofs_per_dtype_and_bandwidth(result, stop_device):
    assert {"fp32", "bf16"} <= set(result.roofs.gflops) and all(v > 0 for v in result.roofs.gflops.values())
    assert result.roofs.bandwidth_gb_s > 0
    # the fast paths of the device the stop ran on: AMX / AVX512-BF16 on a CPU, tensor cores (bf16) on a GPU
    wanted = dtypes.dtype_fast_paths(torch.device(stop_device), torch.bfloat16)
    assert wanted and set(wanted) <= set(result.fast_paths)


@needs_bf16
def test_autocast_and_bf16_weights_stay_within_bf16_tolerance(result):
    eps = torch.finfo(torch.bfloat16).eps
    assert result.low_dtype == "bf16"
    assert set(rows(result, "MiniLM inference")) == {"fp32 eager", "bf16 autocast", "bf16 weights"}
    assert result.encoder.min_cosine >= 1 - eps and result.encoder.close is True
    assert 0 < result.encoder.max_diff < 1.0  # hidden states reach ~10: a few bf16 roundings, not garbage


@needs_bf16
def test_classifier_accuracy_within_one_point(result):
    base = result.encoder.accuracy["fp32 eager"]
    assert base >= 0.85  # the logistic head on MiniLM embeddings really classifies the corpus topics
    assert all(abs(a - base) <= 0.01 for a in result.encoder.accuracy.values())
    assert result.encoder.accuracy_kept is True


@needs_bf16
def test_training_step_under_autocast_tracks_fp32(result):
    fp32, bf16 = result.training.losses["fp32 eager"], result.training.losses["bf16 autocast"]
    assert len(fp32) == len(bf16) == 3 and all(map(torch.isfinite, torch.tensor(fp32 + bf16)))
    assert max(abs(a - b) / b for a, b in zip(bf16, fp32)) <= 4 * torch.finfo(torch.bfloat16).eps
    assert result.training.close is True


@needs_bf16
def test_vision_top1_agrees_with_fp32_on_the_photos(result):
    for model, ways in result.vision.top1.items():
        assert len(ways["fp32 eager"]) == 6, model
        assert all(ids == ways["fp32 eager"] for ids in ways.values()), model
    assert result.vision.agree is True


def test_int8_weight_only_greedy_replies_equal_fp32(result):
    """Quick mode lists the eager int8 way as full mode only; its model, built here as full mode builds it, keeps
    fp32's greedy replies and perplexity."""
    from tour.precision import decode
    from tour.precision.generation import greedy

    assert result.decode.skipped["int8 weight-only"] == decode.EAGER_INT8_FULL_ONLY
    if importlib.util.find_spec("torchao") is None:
        pytest.skip("torchao not installed")
    assert decode.build_ways(None, None, {"int8 weight-only (torchao)": decode.WAYS["int8 weight-only (torchao)"]},
                             quick=True)[1] == {"int8 weight-only": decode.EAGER_INT8_FULL_ONLY}
    tokenizer, model = decode.load(CPU)
    chats, heldout = decode.inputs(precision.Config(quick=True), tokenizer, CPU)
    int8 = decode.int8_weight_only(model)
    said = {m: [tokenizer.decode(t, skip_special_tokens=True).strip() for t in greedy(m, chats, 6)]
            for m in (model, int8)}
    assert said[int8] == said[model] == result.decode.replies["fp32 eager"] and all(said[model])
    ppl = [decode.perplexity(m, tokenizer, heldout, CPU) for m in (model, int8)]
    assert abs(ppl[1] / ppl[0] - 1) <= decode.PERPLEXITY_TOL
    assert decode.weight_bytes(int8) < decode.weight_bytes(model) / 3  # int8 + scales: a quarter of fp32's bytes
    assert result.decode.greedy_same is True and result.decode.perplexity_close is True


INT4 = "int4 weight-only on bf16 (torchao)"


@needs_bf16
def test_int4_weight_only_keeps_fp32s_replies_and_is_held_to_its_own_bytes(result, stop_device):
    """The int4 row: fp32's greedy replies and perplexity, and a limit its own (int4 + scales) bytes set."""
    from tour.precision import decode

    why = decode.int4_missing(torch.device(stop_device))
    if why:
        assert result.decode.skipped[INT4.split(" (")[0]] == why  # a one-line skip
        pytest.skip(why)
    assert result.decode.replies[INT4] == result.decode.replies["fp32 eager"]
    assert abs(result.decode.perplexity[INT4] / result.decode.perplexity["fp32 eager"] - 1) <= decode.PERPLEXITY_TOL
    assert rows(result, "SmolLM2 decode (batch 1)")[INT4].keeps is True
    _, model = decode.load(torch.device(stop_device))
    int4, bf16 = decode.int4_weight_only(model, torch.bfloat16), decode.cast(model, torch.bfloat16)
    # torchao's CPU layout: every Linear but the output layer, their int4 + scale/zero counted by weight_bytes
    assert type(int4.model.layers[0].mlp.up_proj.weight).__name__ == "Int4OpaqueTensor"
    assert type(int4.lm_head.weight) is torch.nn.Parameter and int4.lm_head.weight.dtype == torch.bfloat16
    assert decode.weight_bytes(int4) < 0.7 * decode.weight_bytes(bf16)
    limit = result.decode.bandwidth_gb_s * 1e9 / decode.weight_bytes(int4)
    assert result.decode.limits[INT4] <= limit * 1.001
    assert result.decode.limits[INT4] > result.decode.limits["bf16 weights"]


def test_the_int4_way_skips_in_one_line_where_its_layout_is_missing(monkeypatch, capsys):
    """No GPU layout wired in (a faked CUDA device), a torchao without the CPU layout, no torchao: one line each."""
    from tour.precision import decode

    way = {"int4 weight-only on {low} (torchao)": decode.WAYS["int4 weight-only on {low} (torchao)"]}

    def skipped_on(device):
        built, skipped = decode.build_ways(torch.nn.Linear(2, 2), torch.bfloat16, way, device)
        assert built == {} and list(skipped) == ["int4 weight-only on bf16"]
        return skipped["int4 weight-only on bf16"]

    why = skipped_on(torch.device("cuda"))  # only asked for its type: no GPU needed
    assert "torchao's CPU layout" in why and "cuda" in why and "\n" not in why
    monkeypatch.setattr(decode, "torchao_missing", lambda device=None: "torchao is not installed: pip install x")
    assert skipped_on(CPU) == "torchao is not installed: pip install x"
    monkeypatch.undo()
    if importlib.util.find_spec("torchao") is None:
        return
    monkeypatch.setattr(decode, "int4_cpu_config", lambda: None)
    why = skipped_on(CPU)
    assert "has no CPU int4 layout" in why and "\n" not in why
    assert capsys.readouterr().out.count("skipped") == 3


def test_the_int4_config_falls_back_to_the_opaque_packing_format_of_older_torchao(monkeypatch):
    """torchao 0.14-0.17 have no torchao.prototype.quantization.int4: their Int4WeightOnlyConfig's 'opaque' packing
    format is the same CPU layout; a torchao with neither gives None (the way's `missing` then says so)."""
    pytest.importorskip("torchao")
    import sys

    from torchao.quantization import Int4WeightOnlyConfig
    from tour.precision import decode

    monkeypatch.setitem(sys.modules, "torchao.prototype.quantization.int4", None)  # its import now fails
    formats = Int4WeightOnlyConfig.__dataclass_fields__["int4_packing_format"]
    if "OPAQUE" in type(formats.default).__members__:
        assert decode.int4_cpu_config().int4_packing_format == "opaque"  # a str enum
    else:  # torchao 0.18: the prototype module is its only home
        assert decode.int4_cpu_config() is None


def test_the_table_picks_the_fastest_variant_that_keeps_its_check(result):
    assert not result.failed_checks()
    for best in result.best:
        ways = rows(result, best["model"])
        chosen = ways[best["fastest that keeps its check"]]
        assert chosen.keeps and all(w.ms >= chosen.ms for w in ways.values() if w.keeps)
    # a variant that fails its check is never chosen, however fast
    fake = [precision.Variant("m", "fp32 eager", 10.0, 1.0, True),
            precision.Variant("m", "fast but wrong", 1.0, 10.0, False)]
    assert precision.best_rows(fake)[0]["fastest that keeps its check"] == "fp32 eager"


def test_bench_rows_carry_roofs_variants_and_each_decode_against_its_own_limit(result, monkeypatch):
    # the part functions run() calls, on the shared run's records; never run() itself
    parts = precision.Parts(result.roofs, result.encoder, result.training, result.vision, result.decode, result.fusion)
    asked = []
    monkeypatch.setattr(precision, "measure_parts", lambda cfg, device, low, clock: (asked.append(cfg.parts), parts)[1])
    monkeypatch.setattr(precision, "run", lambda cfg: pytest.fail("bench_rows ran the whole stop"))
    got = precision.bench_rows(BenchSettings(device="cpu", quick=True))
    assert asked == [["roofs", "encoder", "train", "vision", "generate"]]  # compile's sweep makes no bench row
    assert {r.section for r in got} <= {"precision roof", "precision", "precision decode"}
    # a batched decode is held to fp32 at its own batch (its ms per call of 16 rows is not batch 1's)
    assert all(r.baseline in ("fp32", "fp32 eager", "fp32 batch 16", "bandwidth limit") and r.variant_ms > 0
               for r in got)
    models = {v.model for v in result.variants()}
    assert len([r for r in got if r.section == "precision"]) == len(result.variants()) - len(models)
    decode_rows = [r for r in got if r.section == "precision decode"]
    assert len(decode_rows) == len(result.decode.limits) >= 1 and all(r.roof for r in decode_rows)
    # the share of its roof, at most 1 (a decode above the roof has it measured again, then is clamped)
    assert all(abs(r.ratio - min(1.0, r.baseline_ms / r.variant_ms)) < 1e-9 for r in decode_rows)
    roof_rows = [r for r in got if r.section == "precision roof"]
    assert all(abs(r.ratio - r.baseline_ms / r.variant_ms) < 1e-9 for r in roof_rows)  # the rates' ratio
    assert {r.variant for r in roof_rows} == set(result.roofs.gflops) - {"fp32"}
    assert result.decode.bandwidth_gb_s > 0 and result.roofs.bandwidth_gb_s > 0


def test_no_variant_reads_above_its_roof(result):
    """Each MiniLM way's rate is held to its dtype's core roof: a share above 100% would mean a mis-measured roof."""
    import re

    shares = [int(m) for v in result.variants() for m in re.findall(r"(\d+)% of the \w+ roof", v.detail)]
    assert shares and all(0 <= p <= 100 for p in shares)
    assert result.roofs.n["fp32"] in roofs.sizes(result.device.split(":")[0])


def test_no_bf16_hardware_is_a_one_line_skip_and_fp32_only(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(dtypes, "fast_paths", lambda device: ())  # a CPU without AMX / AVX512-BF16
    assert dtypes.inference_dtype(CPU) == torch.float32 and not dtypes.supports_dtype(CPU, torch.bfloat16)
    res = precision.run(precision.Config(quick=True, device="cpu", out=str(tmp_path), parts=["roofs", "encoder"]))
    lines = [line for line in capsys.readouterr().out.splitlines() if "not on this hardware" in line]
    assert len(lines) == 1 and "fp32 path only" in lines[0]
    assert res.low_dtype == "fp32" and set(res.roofs.gflops) == {"fp32"}
    assert {v.variant for v in res.variants()} == {"fp32 eager"}
    assert res.encoder.close is None and res.encoder.accuracy_kept is None  # not run, not failed
    assert not res.failed_checks()


def test_bad_dtype_is_a_one_line_error(capsys):
    with pytest.raises(TourError, match=r"^--dtype 'int4' is not one of: auto, fp32, bf16, fp16$"):
        precision.Config(dtype="int4")
    with pytest.raises(TourError, match="not a dtype the tour knows"):
        dtypes.parse_dtype("int4", CPU)
    with pytest.raises(SystemExit) as exit_info:
        precision.main(["--dtype", "int4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dtype" in err[0] and "int4" in err[0]


def test_a_gpus_bf16_is_read_from_the_gpu_not_from_this_host(monkeypatch):
    # the bf16 gate of the shared run's tests: a GPU with tensor cores passes on a host CPU without AMX, and
    # neither passes where its own device lacks a bf16 fast path (faked: no GPU here)
    paths = {"cpu": (), "cuda": ("tensor cores (fp16)", "tensor cores (int8)", "tensor cores (bf16)", "TF32")}
    monkeypatch.setattr(dtypes, "fast_paths", lambda device: paths[device.type])
    assert no_bf16_reason("cuda") is None and "cpu has no bf16 fast path" in no_bf16_reason("cpu")
    paths.update(cpu=("AMX-BF16", "AMX-INT8"), cuda=("tensor cores (fp16)", "tensor cores (int8)"))  # a T4 on a Xeon
    assert no_bf16_reason("cpu") is None and "cuda has no bf16 fast path" in no_bf16_reason("cuda")
    assert dtypes.dtype_fast_paths(torch.device("cuda"), torch.bfloat16) == []


def test_fast_paths_and_cache_sizes_describe_this_machine():
    assert dtypes.supports_dtype(CPU, torch.float32)
    assert dtypes.inference_dtype(CPU) == (torch.bfloat16 if HAS_BF16 else torch.float32)
    caches = dev.cache_sizes()
    assert all(v > 0 for v in caches.values()) and (not caches or "L2" in caches)


@pytest.mark.slow
def test_compile_sweep_explains_its_ratio_with_the_cache_sizes(tmp_path):
    from tour.core.inductor import compile_problem

    if compile_problem(CPU):
        pytest.skip(compile_problem(CPU))
    res = precision.run(precision.Config(quick=True, device="cpu", out=str(tmp_path), parts=["compile"],
                                         fusion_mb=[1, 8], dtype="fp32"))
    assert [r["mb"] for r in res.fusion.rows] == [1, 8] and all(r["ratio"] > 0 for r in res.fusion.rows)
    assert res.fusion.parity is True
    assert "Fusing saves passes over memory" in res.fusion.reason
    if dev.cache_sizes():
        assert "L2" in res.fusion.reason and res.fusion.rows[0]["where"] in ("L2", "L3")


def test_a_tokenizer_that_makes_perplexity_incomparable_is_said_in_one_line():
    """transformers 4.x converts SmolLM2's GGUF tokenizer with one token as BOS and EOS: the perplexity check then
    reads "not run" with the reason, never a false failure; the model's own tokenizer is compared as usual."""
    from types import SimpleNamespace

    from tour.precision.decode import plain_text_differs

    assert "transformers >= 5" in plain_text_differs(SimpleNamespace(bos_token="<|im_start|>",
                                                                     eos_token="<|im_start|>"))
    assert plain_text_differs(SimpleNamespace(bos_token="<|im_start|>", eos_token="<|im_end|>")) is None


# the decode is held to the core's roof, never above 100% of it; one list of decode ways; fused AdamW from torch's list
def test_a_decode_above_its_roof_is_clamped_and_says_so():
    from tour.core.results import BenchRow
    from tour.precision import decode
    from tour.tools import bench

    ms = {"fp32 eager": 100.0, "bf16 weights": 100.0}
    rows = decode.judged(ms, {k: 1 for k in ms}, {"fp32 eager": 10.0, "bf16 weights": 10.0},
                         {"fp32 eager": 12.0, "bf16 weights": 8.0},
                         {"fp32 eager": 2_000_000, "bf16 weights": 1_000_000}, {k: ["Paris."] for k in ms},
                         {k: 38.0 for k in ms}, None)
    assert "(83% of it)" in rows[0].detail and "clamped" not in rows[0].detail
    assert "(100% of it (clamped: measured 125%, so the roof was measured under load))" in rows[1].detail
    above = BenchRow("precision decode", "SmolLM2", "bandwidth limit", "measured", 80.0, 100.0, 1.25, None, roof=True)
    within = BenchRow("precision decode", "SmolLM2", "bandwidth limit", "measured", 100.0, 80.0, 0.8, None, roof=True)
    md = bench.table(bench.Result("cpu", ["precision"], rows=[above, within])).splitlines()
    assert "above 100%, so the roof was measured under load" in md[2] and "under load" not in md[3]


def test_a_decode_way_is_one_entry(monkeypatch, capsys):
    """A new decode path is one more entry in WAYS: how to build its model and how to generate with it."""
    from tour.precision import decode

    def batched(model, chats, n, exact=False):
        return [[0] * n for _ in chats]

    ways = {"fp32 eager": decode.WAYS["fp32 eager"],
            "{low} batched": decode.Way(lambda model, low: model, batched, batch=4, needs_low=True),
            "needs a library": decode.Way(lambda m, low: m, missing=lambda device: "pip install x")}
    model = torch.nn.Linear(2, 2)
    built, skipped = decode.build_ways(model, torch.bfloat16, ways)
    assert list(built) == ["fp32 eager", "bf16 batched"] and built["bf16 batched"][0].generate is batched
    assert skipped == {"needs a library": "pip install x"} and "needs a library: skipped" in capsys.readouterr().out
    assert list(decode.build_ways(model, None, {"{low} batched": ways["{low} batched"]})[0]) == []  # fp32 only
    # a batch decodes 4 prompts per call: its own row of the table, its speed-up and limit in tokens/s
    ms, batch = {"fp32 eager": 100.0, "bf16 batched": 200.0}, {"fp32 eager": 1, "bf16 batched": 4}
    rows = decode.judged(ms, batch, {"fp32 eager": 10.0, "bf16 batched": 20.0}, {"fp32 eager": 20.0,
                         "bf16 batched": 160.0}, {"fp32 eager": 4, "bf16 batched": 2}, {k: ["Tokyo."] for k in ms},
                         {k: 38.0 for k in ms}, None)
    assert [r.model for r in rows] == ["SmolLM2 decode (batch 1)", "SmolLM2 decode (batch 4)"]
    assert rows[1].speedup == 2.0 and rows[1].keeps and "(12% of it)" in rows[1].detail


class Toy(torch.nn.Module):
    """A classifier's training interface (model(**batch).loss, input embeddings) around a dropout and a fp16 cast."""

    def __init__(self, fp16_gain: float = 1.0):
        super().__init__()
        self.emb, self.w, self.drop, self.gain = torch.nn.Embedding(2, 2), torch.nn.Parameter(torch.ones(8)), \
            torch.nn.Dropout(0.5), fp16_gain

    def get_input_embeddings(self):
        return self.emb

    def forward(self, k):
        from types import SimpleNamespace

        # d loss / d w passes through fp16 as gain x scale: past fp16's 65504 it is inf, as a GPU's big grads are
        return SimpleNamespace(loss=self.drop(self.w * k).sum() + (self.w.half() * self.gain).float().sum())


def test_each_training_way_draws_the_same_dropout_masks():
    # unseeded, fp32 and autocast drew other masks: their losses differed by ~0.5%, more than fp16's tolerance
    from tour.precision.training import training

    losses, _ = training(Toy(), [{"k": torch.tensor(1.0)}] * 3, torch.bfloat16, CPU, repeats=1)
    assert losses["bf16 autocast"] == losses["fp32 eager"] and len(set(losses["fp32 eager"])) > 1


def test_fp16_training_starts_its_grad_scaler_where_no_step_is_skipped(monkeypatch):
    """torch's scaler starts at 2^16 and skips each step whose gradients overflow while it halves; the warmed one
    starts at the largest scale whose gradients are finite (here 4 x 8192 = 32768 < 65504), so no step is lost."""
    from contextlib import nullcontext

    from tour.precision.training import training, warmed_scaler

    model, batch = Toy(fp16_gain=4.0), {"k": torch.tensor(1.0)}
    assert torch.amp.GradScaler("cpu").get_scale() == 2.0 ** 16
    scaler = warmed_scaler(model, batch, nullcontext, CPU)
    assert scaler.get_scale() == 8192.0 and model.w.grad is None  # found without touching the weights' grads
    scales, update = [], torch.amp.GradScaler.update
    monkeypatch.setattr(torch.amp.GradScaler, "update", lambda self, *a: (scales.append(self.get_scale()),
                                                                          update(self, *a))[1])
    training(model, [batch] * 3, torch.float16, CPU, repeats=1)
    assert len(scales) >= 3 and set(scales) == {8192.0}  # a skipped step would have halved the scale


def test_fused_adamw_follows_torchs_own_list_of_devices(monkeypatch):
    import torch.utils._foreach_utils as foreach

    from tour.core import torch_private
    from tour.precision.training import optimizer

    model = torch.nn.Linear(2, 2)
    monkeypatch.setattr(foreach, "_get_fused_kernels_supported_devices", lambda: ["cuda", "cpu"])
    assert torch_private.fused_optimizer_devices() == ["cuda", "cpu"]
    assert optimizer(model, CPU).defaults["fused"] is True
    monkeypatch.setattr(foreach, "_get_fused_kernels_supported_devices", lambda: ["cuda", "xpu"])
    assert optimizer(model, CPU).defaults["fused"] is False
    monkeypatch.delattr(foreach, "_get_fused_kernels_supported_devices")  # a torch without the private list
    assert torch_private.fused_optimizer_devices() == [] and optimizer(model, CPU).defaults["fused"] is False


# batch 16 and the compiled ways: the reply check runs on the timed batch; full-mode-only ways are listed ----------
class FlipsAtBatch:
    """A fake decode whose reply to prompt 1 changes in a batch of 4 (as bf16's rounding does with the GEMM
    blocking): the prompts are strings, a reply the prompt's text, "-flip" added to row 3 of a 4-row batch."""

    def __call__(self, model, chats, n, exact=False):
        return [c + ("-flip" if len(chats) == 4 and i == 3 else "") for i, c in enumerate(chats)]


def test_a_batched_way_is_checked_on_the_batch_it_is_timed_on(capsys):
    from tour.precision import decode

    tokenizer = type("T", (), {"decode": staticmethod(lambda t, skip_special_tokens: t)})()
    flips = FlipsAtBatch()
    built = {"fp32 eager": (decode.Way(lambda m, low: m, flips), None),
             "bf16 batch 4": (decode.Way(lambda m, low: m, flips, batch=4), None),
             "bf16 batch 3": (decode.Way(lambda m, low: m, flips, batch=3), None)}
    replies, _ = decode.replies_of(built, ["a", "b"], tokenizer, 2)
    assert replies["fp32 eager"] == ["a", "b"]  # batch 1 (both prompts at once here) has no flip
    assert replies["bf16 batch 4"] == ["a", "b-flip"]  # rows a b a b-flip: prompt b fails, prompt a keeps
    assert replies["bf16 batch 3"] == ["a", "b"]  # another batch size, no flip
    assert decode.folded(["x", "y", "x", "y"], ["x", "y"]) == ["x", "y"]
    assert decode.checked_rows(["a", "b", "c"], 2) == ["a", "b", "c"]  # never fewer rows than prompts


@needs_bf16
def test_quick_mode_lists_the_full_mode_only_ways_as_skipped(result):
    from tour.precision import decode, encoder

    assert result.decode.skipped["int8 weights on bf16, static cache + compile"] == decode.FULL_ONLY
    assert result.encoder.skipped["bf16 weights + compile (freezing)"] == encoder.FULL_ONLY
    assert "full mode only" in decode.FULL_ONLY and "full mode only" in encoder.FULL_ONLY
    batched = rows(result, "SmolLM2 decode (batch 16)")
    assert list(batched) == ["fp32 batch 16", "bf16 weights batch 16"] and all(v.keeps for v in batched.values())
    assert "fp32 batch 16's tokens/s (the dtype's own gain)" in batched["bf16 weights batch 16"].detail
    assert "int8 weight-only (torchao)" not in rows(result, "SmolLM2 decode (batch 1)")
    assert "full mode only" in decode.EAGER_INT8_FULL_ONLY and "converts the whole int8 weight" in decode.EAGER_INT8


def test_a_batched_decode_reads_against_its_own_fp32_in_the_table():
    fake = [precision.Variant("m (batch 1)", "fp32 eager", 100.0, 1.0, True),
            precision.Variant("m (batch 16)", "fp32 batch 16", 300.0, 5.0, True),
            precision.Variant("m (batch 16)", "bf16 batch 16", 150.0, 10.0, True)]
    best = precision.best_rows(fake)
    assert [b.get("against its own fp32") for b in best] == [None, "2.00x fp32 batch 16"]
    assert "| m (batch 16) | bf16 batch 16 (2.00x fp32 batch 16) | 150.0 | 10.00x |" in precision.table(best)


def test_a_transformers_without_generate_compile_on_every_device_skips_the_compiled_way(monkeypatch, capsys):
    transformers = pytest.importorskip("transformers")
    from tour.core import torch_private
    from tour.precision import decode

    config = getattr(transformers, "CompileConfig", None)
    if config is None or not hasattr(config, "_compile_all_devices"):
        assert torch_private.generate_compile_config(CPU) is None
    else:
        assert torch_private.generate_compile_config(CPU)._compile_all_devices is True
        monkeypatch.delattr(config, "_compile_all_devices")  # a transformers without the private attribute
        assert torch_private.generate_compile_config(CPU) is None
    name = "int8 weights on {low}, static cache + compile"
    built, skipped = decode.build_ways(torch.nn.Linear(2, 2), torch.bfloat16, {name: decode.WAYS[name]}, CPU)
    why = skipped["int8 weights on bf16, static cache + compile"]
    assert built == {} and "_compile_all_devices" in why and "\n" not in why
    assert capsys.readouterr().out.count("skipped") == 1


def test_generate_compiles_as_transformers_intends_on_each_device(monkeypatch):
    """CUDA keeps transformers' own default (reduce-overhead: CUDA graphs, which a decode step of small kernels
    needs), even without the private attribute; a CPU is told to compile anyway, in mode "default"."""
    transformers = pytest.importorskip("transformers")
    from tour.core import torch_private
    from tour.precision import decode

    if not hasattr(transformers, "CompileConfig"):
        pytest.skip("this transformers has no CompileConfig")
    gpu = torch.device("cuda", 1)
    on_gpu = torch_private.generate_compile_config(gpu)
    assert on_gpu.mode == transformers.CompileConfig().mode == "reduce-overhead" and not on_gpu._compile_all_devices
    if hasattr(transformers.CompileConfig, "_compile_all_devices"):
        on_cpu = torch_private.generate_compile_config(CPU)
        assert on_cpu.mode == "default" and on_cpu._compile_all_devices and on_cpu.fullgraph
        monkeypatch.delattr(transformers.CompileConfig, "_compile_all_devices")
    assert torch_private.generate_compile_config(gpu).mode == "reduce-overhead"  # CUDA needs no private flag
    monkeypatch.setattr("tour.core.inductor.compile_problem", lambda device: None)  # a GPU set up for Inductor
    monkeypatch.setattr(decode, "torchao_missing", lambda device=None: None)
    assert decode.compiled_missing(gpu) is None and "compile on cpu" in decode.compiled_missing(CPU)


@pytest.mark.slow
@needs_cpu_bf16
def test_the_compiled_ways_keep_fp32s_replies_and_embeddings(tmp_path):
    """int8 weights on bf16 with a static cache + generate's compile, two new tokens of one prompt; MiniLM's bf16
    copy compiled with freezing on a small batch. Cold compiles on 2 cores: ~1.5 min and ~30 s."""
    from tour.core.inductor import compile_problem
    from tour.core.models import load_encoder
    from tour.precision import decode, encoder

    if compile_problem(CPU) or decode.compiled_missing(CPU):
        pytest.skip(compile_problem(CPU) or decode.compiled_missing(CPU))
    tokenizer, model = decode.load(CPU)
    chats, _ = decode.inputs(precision.Config(prompts=precision.config.PROMPTS[:1]), tokenizer, CPU)
    quantised = decode.int8_weight_only(model, torch.bfloat16)
    want = decode.greedy(model, chats, 2)[0]
    assert torch.equal(decode.compiled_greedy(quantised, chats, 2)[0], want)
    tok, minilm = load_encoder(device=CPU)
    enc = tok(["a short sentence", "another one"], padding="max_length", max_length=16, return_tensors="pt")
    with torch.inference_mode():
        ref, got = minilm(**enc).last_hidden_state, encoder.frozen_compiled(minilm, torch.bfloat16)(**enc)
    cos = torch.nn.functional.cosine_similarity(got.last_hidden_state.float().mean(1), ref.mean(1))
    assert cos.min() >= 1 - torch.finfo(torch.bfloat16).eps


def test_the_compiled_decode_runs_the_longest_prompt_first_and_keeps_prompt_order(monkeypatch):
    """transformers 4.x sizes the static cache from generate's first call and refuses max_cache_len: the longest
    prompt goes first so one cache (one compile) serves all; replies come back in prompt order either way."""
    import transformers

    from tour.precision import generation

    calls = []

    class Fake:
        device = CPU  # a model's device: generate's compile settings follow it

        def generate(self, input_ids, attention_mask, **kw):
            calls.append((input_ids.shape[1], "max_cache_len" in kw))
            return torch.cat([input_ids, torch.full((1, 2), input_ids.shape[1])], dim=1)

    chats = [{"input_ids": torch.zeros(1, n, dtype=torch.long), "attention_mask": torch.ones(1, n)} for n in (5, 9, 7)]
    for has_len in (True, False):
        calls.clear()

        class Config(transformers.GenerationConfig):
            def __init__(self, **kw):
                super().__init__(**kw)
                if has_len:
                    self.max_cache_len = None
                elif hasattr(self, "max_cache_len"):
                    del self.max_cache_len

        monkeypatch.setattr(transformers, "GenerationConfig", Config)
        outs = generation.compiled_greedy(Fake(), chats, 2)
        assert [c[0] for c in calls] == [9, 7, 5] and all(c[1] == has_len for c in calls)
        assert [int(o[0]) for o in outs] == [5, 9, 7]  # each reply is its own prompt's


def test_the_fusion_sweep_stops_at_the_first_size_past_the_last_level_cache():
    """One point in DRAM shows the jump; every size past it costs eager seconds per call. Quick mode keeps the ends,
    unknown caches keep the fixed sweep, and a chosen --fusion-mb is used as given."""
    from tour.precision.fusion import NO_CACHES_MB, sweep_mb

    mb = 2**20
    assert sweep_mb({"L1d": 32 * 1024, "L2": mb, "L3": 32 * mb}, quick=False) == [1, 4, 16, 64]
    assert sweep_mb({"L2": 2 * mb, "L3": 300 * mb}, quick=False) == [1, 4, 16, 64, 256]
    assert sweep_mb({"L2": mb, "L3": 32 * mb}, quick=True) == [1, 64]
    assert sweep_mb({"L2": 2 * mb, "L3": 480 * mb}, quick=True) == [1, 64]  # a server's whole-socket L3: capped
    assert sweep_mb({}, quick=False) == NO_CACHES_MB
    assert precision.Config(fusion_mb=[2, 8]).fusion_mb == [2, 8] and precision.Config().fusion_mb is None
