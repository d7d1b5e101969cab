"""The device helper: auto choice, overrides in the right order, clear errors for bad or absent devices."""

import pytest
import torch

from tour.core import device as dev
from tour.core import dtypes
from tour.core import timing
from tour.core.errors import TourError


def test_auto_picks_cpu_without_accelerator(monkeypatch):
    monkeypatch.delenv(dev.ENV_VAR, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch, "accelerator", None) and torch.accelerator.is_available():
        expected = torch.accelerator.current_accelerator().type
    assert dev.get_device().type == expected


def test_cuda_build_without_gpu_is_not_taken_for_a_gpu(monkeypatch):
    # A CUDA build names "cuda" as its accelerator even with no GPU: only is_available() may count.
    monkeypatch.delenv(dev.ENV_VAR, raising=False)
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    choice = dev.choose()
    assert choice.device == torch.device("cpu")
    assert "no accelerator" in choice.reason


def test_argument_beats_env_beats_auto(monkeypatch):
    monkeypatch.setenv(dev.ENV_VAR, "cpu")
    assert dev.choose().reason == "TOUR_DEVICE=cpu"
    assert dev.choose("cpu").reason == "--device cpu"
    monkeypatch.setenv(dev.ENV_VAR, "auto")
    assert dev.get_device().type in dev.KNOWN


@pytest.mark.parametrize("bad", ["tpu9", "gpu", "cuda:x", ""])
def test_unknown_device_names_the_choices(bad, monkeypatch):
    if bad == "":  # empty means auto
        assert dev.get_device(bad).type in dev.KNOWN
        return
    with pytest.raises(TourError, match="choose one of: auto, cuda, mps, xpu, cpu"):
        dev.get_device(bad)


def test_bad_env_var_is_reported_as_such(monkeypatch):
    monkeypatch.setenv(dev.ENV_VAR, "tpu9")
    with pytest.raises(TourError, match="TOUR_DEVICE=tpu9"):
        dev.get_device()


def test_meta_is_refused():
    with pytest.raises(TourError, match="unsupported device"):
        dev.get_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_absent_cuda_is_a_clear_error():
    with pytest.raises(TourError, match="not available on this machine"):
        dev.get_device("cuda")


def test_absent_device_index(monkeypatch):
    monkeypatch.setattr(dev, "_backend_available", lambda kind: True)
    monkeypatch.setattr(dev, "_device_count", lambda kind: 1)
    with pytest.raises(TourError, match="has 1 cuda device"):
        dev.get_device("cuda:3")


def test_dtype_and_autocast_on_cpu():
    cpu = torch.device("cpu")
    assert dtypes.get_dtype(cpu) == torch.float32
    with dtypes.autocast(cpu):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32  # a no-op on CPU


def test_training_dtype_is_bf16_only_on_accelerators_with_native_bf16(monkeypatch):
    """get_dtype asks supports_dtype (the one answer to "native bf16 here?") and keeps fp32 on every CPU."""
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(dtypes, "fast_paths", lambda d: ("AMX-BF16", "AVX512-BF16"))
    assert dtypes.supports_dtype(cpu, torch.bfloat16) and dtypes.get_dtype(cpu) == torch.float32  # the CPU policy
    assert dtypes.inference_dtype(cpu) == torch.bfloat16  # inference is another question, with another answer
    monkeypatch.setattr(dtypes, "fast_paths", lambda d: ("tensor cores (fp16)", "tensor cores (bf16)", "TF32"))
    assert dtypes.get_dtype(gpu) == torch.bfloat16  # Ampere and newer
    monkeypatch.setattr(dtypes, "fast_paths", lambda d: ("tensor cores (fp16)", "tensor cores (int8)"))
    assert dtypes.get_dtype(gpu) == torch.float32  # a T4 emulates bf16: slower than fp32


def test_seed_everything_repeats():
    import random

    import numpy as np

    dev.seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    dev.seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_describe_says_what_and_why():
    text = dev.describe("cpu")
    assert text.startswith("device cpu (") and "--device cpu" in text and dtypes.dtypes_note(torch.device("cpu")) in text


@pytest.mark.needs_cuda
def test_cuda_device_and_bf16():
    d = dev.get_device("cuda")
    assert d.type == "cuda"
    assert dtypes.get_dtype(d) in (torch.bfloat16, torch.float32)
    with dtypes.autocast(d):
        y = torch.ones(8, 8, device=d) @ torch.ones(8, 8, device=d)
    assert y.dtype == dtypes.get_dtype(d)


def test_busy_cpu_is_reported(monkeypatch):
    from tour.core import threads

    # the threads policy's signal (threads running now), never the 1-minute load average, which lags
    monkeypatch.setattr(dev.os, "getloadavg", lambda: (0.0, 0.0, 0.0), raising=False)
    monkeypatch.setattr(threads, "observe", lambda: threads.Machine(cores=2, load=64.0))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    note = dev.busy_cpu_note()
    assert note and "the CPU is busy (64.0 other threads running" in note and "OMP_WAIT_POLICY=PASSIVE" in note
    assert "note: the CPU is busy" in dev.describe("cpu")
    monkeypatch.setattr(dev.os, "getloadavg", lambda: (64.0, 0.0, 0.0), raising=False)
    monkeypatch.setattr(threads, "observe", lambda: threads.Machine(cores=2, load=0.0))
    assert dev.busy_cpu_note() is None and "\n" not in dev.describe("cpu")


def test_present_devices_lists_cpu_first_and_only_usable_ones(monkeypatch):
    assert dev.present_devices()[0] == "cpu"
    monkeypatch.setattr(dev, "_backend_available", lambda kind: kind in ("cpu", "cuda"))
    monkeypatch.setattr(dev, "_device_count", lambda kind: 2)
    assert dev.present_devices() == ["cpu", "cuda:0", "cuda:1"]
    assert dev.free_memory_bytes(torch.device("cpu")) is None


def test_one_thread_restores_the_thread_count():
    torch.set_num_threads(2)
    with dev.one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), dev.one_thread():
        raise RuntimeError("even when the work fails")
    assert torch.get_num_threads() == 2


# a device index, the CUDA timer, TF32: CUDA's functions faked, so these run (and fail when broken) on a CPU --------
class FakeGPU:
    """torch.cuda's timing surface on a CPU: a GPU clock that each kernel advances, events that read it, and a
    record of every synchronize (with the device it was asked for) and of the current-device context."""

    def __init__(self, kernel_ms: float):
        self.clock, self.kernel_ms, self.syncs, self.contexts = 0.0, kernel_ms, [], []
        gpu = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.at = None

            def record(self, stream=None):
                self.at = gpu.clock

            def elapsed_time(self, end):
                return end.at - self.at

        self.Event = Event

    def kernel(self):
        self.clock += self.kernel_ms

    def device(self, d):
        from contextlib import contextmanager

        @contextmanager
        def current():
            self.contexts.append(d)
            yield

        return current()


@pytest.fixture
def fake_gpu(monkeypatch):
    gpu = FakeGPU(kernel_ms=0.02)  # a 20 us kernel: a host timer and a sync per call would dominate it
    monkeypatch.setattr(torch.cuda, "Event", gpu.Event)
    monkeypatch.setattr(torch.cuda, "device", gpu.device)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: gpu.syncs.append(device))
    return gpu


def test_synchronize_waits_for_the_named_device(fake_gpu):
    timing.synchronize(torch.device("cuda", 1))
    timing.synchronize(torch.device("cpu"))
    assert fake_gpu.syncs == [torch.device("cuda", 1)]  # cuda:1 itself, not the current GPU


def test_cuda_timer_uses_events_around_many_calls_and_one_sync(fake_gpu):
    calls = []
    ms = timing.median_ms(lambda: (calls.append(1), fake_gpu.kernel()), torch.device("cuda", 1), repeats=5, warmup=1)
    assert ms == pytest.approx(0.02)  # the GPU's time per call, no host overhead added
    per_sample = -(-timing.MIN_SAMPLE_MS // 0.02)  # k calls fill a sample of MIN_SAMPLE_MS
    assert len(calls) == 1 + 1 + 5 * per_sample  # warm-up, the call that sizes k, then 5 samples of k
    assert fake_gpu.syncs == [torch.device("cuda", 1)] * 2  # after sizing k and at the end: never per call
    assert fake_gpu.contexts == [torch.device("cuda", 1)]  # events recorded on cuda:1's stream


def test_cpu_timer_is_unchanged(monkeypatch):
    ticks = iter(range(100))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks) * 1e-3)
    assert timing.median_ms(lambda: None, torch.device("cpu"), repeats=3) == pytest.approx(1.0)  # one call per sample


def test_ieee_fp32_turns_tf32_off_and_restores(monkeypatch):
    cuda = torch.device("cuda")
    before = dtypes.precision_note(cuda)
    assert before == "TF32 matmul off, cuDNN conv on"  # torch's defaults: IEEE matmul, TF32 convolutions
    with dtypes.ieee_fp32():
        assert dtypes.tf32_enabled() == {"matmul": False, "conv": False}
    assert dtypes.precision_note(cuda) == before
    with pytest.raises(RuntimeError), dtypes.ieee_fp32():
        raise RuntimeError("even when the work fails")
    assert dtypes.precision_note(cuda) == before and dtypes.precision_note(torch.device("cpu")) == ""


def test_device_line_says_the_tf32_state(monkeypatch):
    monkeypatch.setattr(dev, "choose", lambda device=None: dev.Choice(torch.device("cuda", 1), "--device cuda:1"))
    monkeypatch.setattr(dev, "device_name", lambda d: "NVIDIA H100")
    monkeypatch.setattr(dev, "memory_bytes", lambda d: 80 * 2**30)
    monkeypatch.setattr(dev, "_device_count", lambda kind: 2)
    monkeypatch.setattr(dtypes, "fast_paths", lambda d: ("tensor cores (bf16)", "TF32"))  # an H100's, for get_dtype
    line = dev.describe("cuda:1")
    assert line.startswith("device cuda:1 (NVIDIA H100, 2 present, 80.0 GiB; dtype bf16, TF32 matmul off, cuDNN "
                           "conv on)")


# warm before timing: what a GPU pays once must not land in a timed region -------------------------------------------
def test_warm_up_is_free_on_cpu_and_runs_forward_and_backward_elsewhere(monkeypatch):
    waited = []
    monkeypatch.setattr(timing, "synchronize", waited.append)
    timing.warm_up(torch.device("cpu"))
    assert waited == []  # CPU timings stay as they were
    timing.warm_up(torch.device("meta"))  # any non-CPU device: a small GEMM there, forward and backward, then a wait
    assert waited == [torch.device("meta")]


def test_basics_warms_the_device_before_timing_training(monkeypatch):
    from tour import basics

    order = []

    class Stop(Exception):
        pass

    monkeypatch.setattr(timing, "warm_up", lambda d: order.append(("warm", d)))
    def train(*args, **kwargs):
        order.append(("train",))
        raise Stop  # the timed region has started: enough

    monkeypatch.setattr("tour.core.models.train_mlp", train)
    with pytest.raises(Stop):
        basics.run(basics.Config(quick=True, device="cpu"))
    assert order == [("warm", torch.device("cpu")), ("train",)]


def test_speech_times_the_batched_path_warm(monkeypatch):
    import numpy as np

    from tour import speech
    from tour.speech import whisper

    calls = []
    monkeypatch.setattr(whisper, "transcribe", lambda asr, audios, cfg, **kw: (calls.append(kw.get("batch_size")),
                                                                              [{"text": "hi"}] * len(audios))[1])
    clips = [{"audio": np.zeros(1600, dtype=np.float32), "text": "", "name": f"c{i}", "seconds": 0.1, "rate_in": 16000,
              "channels_in": 1} for i in range(2)]
    cfg = speech.Config(quick=True, device="cpu", repeats=3, batch_size=2)
    whisper.transcripts_part(None, clips, cfg, torch.device("cpu"), None)
    assert calls.count(2) == 3  # the batched call on a CPU: a new shape costs ms there, so the three timed only
    assert calls.count(None) == 2 * 3  # one at a time: already warm (the timestamps part ran it)
    from tour.core import timing

    calls.clear()
    monkeypatch.setattr(timing, "new_shape_warmup", lambda device: 1)  # as on an accelerator
    whisper.transcripts_part(None, clips, cfg, torch.device("cpu"), None)
    assert calls.count(2) == 1 + 3 and calls.count(None) == 2 * 3  # the batched shapes warmed up first


# the test suite's own device parametrisation (tests/conftest.py) -------------------------------------------------
def test_stop_fixtures_run_on_every_device_present(monkeypatch):
    import conftest

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert [p.values for p in conftest.device_params()] == [("cpu",)]  # a CPU machine: no cuda entry, no skips
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cpu, cuda = conftest.device_params()
    assert cuda.values == ("cuda",) and [m.name for m in cuda.marks] == ["needs_cuda"]  # gpu-check's -m selects it
    assert cpu.marks == ()


def test_tolerances_by_dtype(tolerance):
    assert tolerance(torch.float32) == tolerance("float32") < tolerance(torch.float16) < tolerance("bfloat16")


def test_medians_ms_times_variants_side_by_side():
    """Each round times every variant once, so a slow spell hits them all; warm-ups are not timed."""
    import torch

    from tour.core.timing import medians_ms

    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    got = medians_ms(fns, torch.device("cpu"), repeats=3, warmup=2)
    assert set(got) == {"a", "b"} and all(ms >= 0 for ms in got.values())
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3

    calls.clear()  # a budget spent by the first round: one round, never none
    medians_ms(fns, torch.device("cpu"), repeats=3, warmup=0, budget_s=0.0)
    assert calls == ["a", "b"]


def test_output_and_median_ms_keeps_what_a_timed_call_returned():
    """The answer compared comes from a timed call: no untimed call only to get it (on a CPU, new_shape_warmup)."""
    from tour.core.timing import new_shape_warmup, output_and_median_ms

    calls = []
    out, ms = output_and_median_ms(lambda: calls.append(len(calls)) or len(calls), torch.device("cpu"), 2,
                                   warmup=new_shape_warmup(torch.device("cpu")))
    assert calls == [0, 1] and out == 2 and ms >= 0
    assert new_shape_warmup(torch.device("cuda")) == 1


def test_choose_dtype_says_why(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(dtypes, "fast_paths", lambda d: ("AMX-BF16",))
    assert dtypes.choose_dtype("auto", cpu) == (torch.bfloat16, "bf16 (auto: AMX-BF16 on this cpu)")
    assert dtypes.choose_dtype("fp32", cpu)[0] == torch.float32
    monkeypatch.setattr(dtypes, "fast_paths", lambda d: ())
    assert dtypes.choose_dtype("auto", cpu) == (torch.float32, "fp32 (auto: no bf16/fp16 fast path on this cpu, so fp32)")
    dtype, why = dtypes.choose_dtype("bf16", cpu)
    assert dtype == torch.bfloat16 and "emulated" in why
    monkeypatch.setattr(dtypes, "fast_paths", lambda d: ("AMX-BF16",))
    dtype, why = dtypes.choose_dtype("auto", cpu, random_weights=True)  # a stand-in: its near-ties stay fp32's
    assert dtype == torch.float32 and "random weights" in why
    assert dtypes.choose_dtype("bf16", cpu, random_weights=True)[0] == torch.bfloat16  # an explicit choice stands
    for bad in ("int8", "float64", "BF16"):
        with pytest.raises(TourError, match="choose one of: auto, fp32, bf16, fp16"):
            dtypes.choose_dtype(bad, cpu)
    assert dtypes.dtype_name(torch.float16) == "fp16" and dtypes.dtype_name(torch.float64) == "float64"


def test_device_line_names_training_and_inference_dtypes(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(dtypes, "fast_paths", lambda d: ("AMX-BF16",))  # trains in fp32 on a CPU, predicts in bf16
    assert dtypes.dtypes_note(cpu) == "training fp32, inference bf16"
    assert "; training fp32, inference bf16)" in dev.describe("cpu")
    monkeypatch.setattr(dtypes, "fast_paths", lambda d: ())
    assert dtypes.dtypes_note(cpu) == "dtype fp32"


def test_a_bare_gpu_name_is_the_current_gpu_and_a_cpu_stays_as_it_is(monkeypatch):
    """"cuda" and "cuda:1" must key one per-device cache (the roofs) when GPU 1 is the current one."""
    import torch

    from tour.core.device import indexed

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert indexed("cuda") == torch.device("cuda", 1) and indexed("cuda:0") == torch.device("cuda", 0)
    assert indexed("cpu") == torch.device("cpu") and indexed(torch.device("mps")) == torch.device("mps")
