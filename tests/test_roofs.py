"""The one roof in the core (tour.core.roofs): sizes per device type, measured once per process and shared by
`tour bench` and the precision stop, a figure above its roof re-measured and clamped (never above 100%), int8 with
a column-major B. Timings are faked where a test needs known numbers; nothing asserts a speed."""

import pytest
import torch

from tour.core import roofs
from tour.core.results import BenchRow

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh():
    """Every test starts with no roof measured, and leaves none behind (a faked one must not leak)."""
    roofs.forget()
    yield
    roofs.forget()


@pytest.fixture
def timer(monkeypatch):
    """A fake matmul timer: ms per (dtype name, n) from `timer.ms` (default 10 ms), every call recorded."""
    class Timer:
        def __init__(self):
            self.ms, self.calls = {}, []

        def __call__(self, device, dtype, n, quick):
            from tour.core.dtypes import dtype_name

            self.calls.append((dtype_name(dtype), n))
            found = self.ms.get((dtype_name(dtype), n), 10.0)
            return found.pop(0) if isinstance(found, list) else found

    fake = Timer()
    monkeypatch.setattr(roofs, "_time_matmul", fake)
    return fake


# sizes: a pure function of the device type -------------------------------------------------------------------------
def test_accelerators_get_sizes_that_reach_the_peak_not_launch_bound_ones():
    for kind in ("cuda", "xpu", "mps"):
        assert roofs.sizes(kind) == (4096, 8192)
    assert roofs.sizes("cpu") == (1024, 2048, 3072) and 3072 in roofs.IF_CHEAP
    assert roofs.sizes("cpu", 1000) == (1000, 1024, 2048, 3072)  # a user's --roof-n joins them
    assert roofs.sizes("cuda", 5000) == (4096, 5000, 8192) and roofs.sizes("cuda", 4095) == (4096, 8192)  # x 8
    assert roofs.copy_mib("cpu") == 256 and roofs.copy_mib("cuda") >= 1024


def test_the_peak_is_the_best_size_and_a_costly_optional_size_is_left_out(timer):
    # fp32: 1024 at 10 ms = 215 GFLOP/s, 2048 at 40 ms = 430: 3072 would take 135 ms, under MAX_CALL_MS: timed
    timer.ms = {("fp32", 2048): 40.0, ("fp32", 3072): 200.0}
    found = roofs.peak(CPU, torch.float32)
    assert (found.n, found.ms, found.tried) == (2048, 40.0, (1024, 2048, 3072))
    assert found.rate == pytest.approx(2 * 2048**3 / 40.0 / 1e6)
    # bf16 at 1 s per call: 3072 would take seconds, so it is not timed
    timer.ms = {("bf16", 1024): 1000.0, ("bf16", 2048): 1000.0}
    assert roofs.peak(CPU, torch.bfloat16).tried == (1024, 2048)


# measured once per process, shared -------------------------------------------------------------------------------
def test_each_roof_is_measured_once_per_process(timer, monkeypatch):
    monkeypatch.setattr(roofs, "bandwidth_gb_s", lambda *a, **k: 10.0)
    first = roofs.measure(CPU, [torch.float32, torch.int8], quick=True)
    timed = list(timer.calls)
    assert sorted(set(timed)) == sorted(timed)  # each (dtype, n) timed once
    again = roofs.measure(CPU, [torch.float32, torch.int8])  # full mode reuses quick's: the same sizes
    assert again == first and timer.calls == timed
    assert set(first.rates) | set(first.skipped) == {"fp32", "int8"} and first.n["fp32"] in roofs.sizes("cpu")


def test_quick_times_the_same_sizes_as_full(timer):
    """Quick mode's roof is full mode's within noise: the same sizes, fewer repeats at most."""
    quick = [roofs.peak(CPU, torch.float32, quick=True).tried, list(timer.calls)]
    roofs.forget()
    timer.calls.clear()
    assert [roofs.peak(CPU, torch.float32, quick=False).tried, timer.calls] == quick
    assert roofs.REPEATS[True] <= roofs.REPEATS[False]


def test_bandwidth_is_measured_once_per_size(monkeypatch):
    monkeypatch.setattr(roofs, "COPY_MIB", {"cpu": 8})
    first = roofs.bandwidth_gb_s(CPU, quick=True)
    monkeypatch.setattr("tour.core.timing.median_ms", lambda *a, **k: pytest.fail("timed twice"))
    assert roofs.bandwidth_gb_s(CPU) == first > 0


def test_bench_and_precision_hold_their_figures_to_the_same_roof(timer, tmp_path, monkeypatch):
    from tour.precision import roofs as precision_roofs
    from tour.precision.config import Config as PrecisionConfig
    from tour.tools import bench

    monkeypatch.setattr(roofs, "COPY_MIB", {"cpu": 8})
    monkeypatch.setenv("TOUR_THREADS", "off")  # the thread count a roof is keyed on stays as it is outside run()
    res = bench.run(bench.Config(quick=True, device="cpu", out=str(tmp_path), only=["roof"]))
    calls = list(timer.calls)
    found = precision_roofs.measure(PrecisionConfig(quick=False, device="cpu"), CPU, torch.bfloat16)
    assert found.gflops["fp32"] == res.roof_gflops and found.n["fp32"] == res.roof_n
    assert ("fp32", 1024) not in timer.calls[len(calls):]  # precision did not time fp32 again
    assert precision_roofs.peak(PrecisionConfig(quick=True), CPU, "fp32") == res.roof_gflops


# never above 100% -------------------------------------------------------------------------------------------------
def test_a_figure_above_its_roof_has_the_roof_measured_again_once(timer, capsys):
    timer.ms = {("fp32", 1024): [100.0, 10.0], ("fp32", 2048): [800.0, 80.0]}  # the first timing under load
    low = roofs.peak(CPU, torch.float32)
    beaten = low.rate * 3
    again = roofs.peak(CPU, torch.float32, at_least=beaten)
    assert again.rate == pytest.approx(low.rate * 10) and "measuring the roof again" in capsys.readouterr().out
    n = len(timer.calls)
    roofs.peak(CPU, torch.float32, at_least=again.rate * 100)  # once per process: no loop of re-measurements
    assert len(timer.calls) == n


def test_a_share_is_clamped_and_says_so():
    assert roofs.share(50, 100) == 0.5 and roofs.share(120, 100) == 1.0 and roofs.share(-1, 100) == 0.0
    assert roofs.share_text(50, 100, "of it") == "50% of it"
    text = roofs.share_text(112, 100, "of the bf16 roof")
    assert text.startswith("100% of the bf16 roof (clamped: measured 112%") and "under load" in text


def test_bench_flop_rows_never_exceed_their_roof(timer, capsys):
    """A model whose rate beats a roof measured under load: the roof is measured again (still low here), and the
    row reads 100%, clamped, with the reason printed."""
    from tour.tools import bench

    timer.ms = {(d, n): 1e6 for d in ("fp32",) for n in roofs.sizes("cpu")}  # a roof of ~0 GFLOP/s
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    row = bench.achieved(bench.Spec("tiny", model, (torch.randn(4, 64),)), bench.Config(quick=True), CPU)
    out = capsys.readouterr().out
    assert row["fraction_of_roof"] == 1.0 and row["gflops"] > 0
    assert "measuring the roof again" in out and "100% of the roof (clamped: measured" in out


def test_decode_and_report_figures_are_clamped():
    from tour.precision import Decode, decode, decode_roof_rows
    from tour.tools import report

    ms = {"fp32 eager": 100.0, "bf16 weights": 100.0}
    rows = decode.judged(ms, {k: 1 for k in ms}, {"fp32 eager": 10.0, "bf16 weights": 10.0},
                         {"fp32 eager": 12.0, "bf16 weights": 8.0}, {"fp32 eager": 2e6, "bf16 weights": 1e6},
                         {k: ["Paris."] for k in ms}, {k: 38.0 for k in ms}, None)
    assert "(83% of it)" in rows[0].detail and "(100% of it (clamped: measured 125%" in rows[1].detail
    (row,) = decode_roof_rows(Decode(tokens_s={"bf16 weights": 10.0}, limits={"bf16 weights": 8.0},
                                     bandwidth_gb_s=5.0))
    assert isinstance(row, BenchRow) and row.roof and row.ratio == 1.0 and "clamped" in row.note
    labels = {"speed.got": report.Label("decode", "tokens/s", None, "speed.limit"),
              "speed.limit": report.Label("limit", "tokens/s")}
    (roof,) = report.roofs_of("generate", {"speed.got": 12.0, "speed.limit": 10.0}, labels)
    assert roof.share == 1.0


# int8 ------------------------------------------------------------------------------------------------------------
def test_int8_matmul_passes_a_column_major_b(monkeypatch):
    """torch._int_mm's CUDA kernel wants B column-major; checked on the CPU with a fake int_mm."""
    seen = []
    monkeypatch.setattr("tour.core.torch_private.int_mm", lambda: lambda a, b: seen.append((a, b)))
    roofs.matmul_call(torch.int8, 64, CPU)()
    (a, b), = seen
    assert a.dtype == b.dtype == torch.int8 and a.shape == b.shape == (64, 64)
    assert a.is_contiguous() and b.stride() == (1, 64) and b.t().is_contiguous()


def test_int8_really_multiplies(monkeypatch):
    """The column-major B gives the exact integer product through the real kernel."""
    from tour.core import torch_private

    if roofs.skip_reason(CPU, torch.int8):
        pytest.skip(roofs.skip_reason(CPU, torch.int8))
    real, seen = torch_private.int_mm(), []
    monkeypatch.setattr(torch_private, "int_mm", lambda: lambda a, b: seen.append((a, b)) or real(a, b))
    got = roofs.matmul_call(torch.int8, 64, CPU)()
    (a, b), = seen
    assert torch.equal(got, a.int() @ b.int())
