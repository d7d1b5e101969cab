"""Single doctor probes run here, in this process, on real and on faked situations: the per-dtype matmul probes
(bf16, fp16, int8: right answer, fast path or emulated, wrong answer, no kernel) and the asset-header probes on
files written by the test."""

from __future__ import annotations

import functools
import struct

import pytest
import torch

from tour.core import dtypes
from tour.tools.doctor import plan, probes_assets, probes_core
from tour.tools.doctor.rows import FAILED, NOT_APPLICABLE, OK, SKIPPED, WRONG_RESULT, Probe
from tour.tools.doctor.worker import run_probe

DTYPE_PROBES = {"bf16": functools.partial(probes_core.float_dtype_probe, "cpu", "bf16"),
                "fp16": functools.partial(probes_core.float_dtype_probe, "cpu", "fp16"),
                "int8": functools.partial(probes_core.int8_probe, "cpu")}


def row(func) -> dict:
    return run_probe(Probe("probe", "device", func, device="cpu"))


# -- per-dtype matmuls ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DTYPE_PROBES)
def test_each_dtype_matches_its_reference_and_says_if_it_is_fast_here(name):
    got = row(DTYPE_PROBES[name])
    assert got["status"] == OK, got
    fast = dtypes.supports_dtype(torch.device("cpu"), dtypes.DTYPE_NAMES[name])
    assert got["data"]["dtype"] == name and got["data"]["fast_path"] is fast
    assert ("; fast path here: " if fast else "; emulated, no fast path here") in got["detail"]


@pytest.mark.parametrize("name", DTYPE_PROBES)
def test_an_emulated_dtype_is_ok_not_a_failure(name, monkeypatch):
    monkeypatch.setattr(dtypes, "fast_paths", lambda device: ())  # a CPU without AMX, AVX512-BF16 or VNNI
    got = row(DTYPE_PROBES[name])
    assert got["status"] == OK and got["detail"].endswith("; emulated, no fast path here (slower than fp32)")
    assert got["data"]["fast_path"] is False and got["data"]["fast_paths"] == []


def test_the_fast_path_named_is_the_dtype_s_own(monkeypatch):
    monkeypatch.setattr(dtypes, "fast_paths", lambda device: ("AMX-BF16", "AMX-INT8"))
    assert row(DTYPE_PROBES["bf16"])["data"]["fast_paths"] == ["AMX-BF16"]
    assert row(DTYPE_PROBES["int8"])["detail"].endswith("; fast path here: AMX-INT8")
    assert row(DTYPE_PROBES["fp16"])["data"]["fast_path"] is False


def _skewed(factor: float):
    real = torch.matmul
    return lambda a, b: real(a, b) * factor


def test_a_wrong_float_matmul_fails_with_a_tolerance_per_dtype(monkeypatch):
    monkeypatch.setattr(torch, "matmul", _skewed(1.01))  # 1% off: beyond fp16's few eps, within bf16's
    fp16 = row(DTYPE_PROBES["fp16"])
    assert fp16["status"] == FAILED and fp16["kind"] == WRONG_RESULT, fp16
    assert "off from the fp32 reference" in fp16["detail"] and "\n" not in fp16["detail"]
    assert row(DTYPE_PROBES["bf16"])["status"] == OK
    monkeypatch.setattr(torch, "matmul", _skewed(1.1))
    assert row(DTYPE_PROBES["bf16"])["kind"] == WRONG_RESULT


def test_a_wrong_int8_matmul_fails(monkeypatch):
    real = torch._int_mm

    def off_by_one(a, b):
        out = real(a, b)
        out[3, 5] += 1
        return out

    monkeypatch.setattr(torch, "_int_mm", off_by_one)
    got = row(DTYPE_PROBES["int8"])
    assert got["status"] == FAILED and got["kind"] == WRONG_RESULT and "1 of 1024 int32 results" in got["detail"]
    monkeypatch.setattr(torch, "_int_mm", lambda a, b: real(a, b).long())  # right values, wrong accumulator type
    assert "returned torch.int64, not int32" in row(DTYPE_PROBES["int8"])["detail"]


def test_a_dtype_without_a_kernel_is_skipped(monkeypatch):
    def no_kernel(a, b):
        raise NotImplementedError('"addmm" not implemented for \'BFloat16\'')

    monkeypatch.setattr(torch, "matmul", no_kernel)
    monkeypatch.setattr(torch, "_int_mm", no_kernel)
    for name in DTYPE_PROBES:
        got = row(DTYPE_PROBES[name])
        assert got["status"] == SKIPPED and got["kind"] == NOT_APPLICABLE and "has no kernel on cpu" in got["detail"]
    monkeypatch.delattr(torch, "_int_mm")
    assert "has no torch._int_mm" in row(DTYPE_PROBES["int8"])["detail"]


def test_every_device_gets_the_three_dtype_rows():
    rows = {p.name: p for p in plan.plan(device="cpu") if p.group == "device"}
    for name in ("bf16 matmul [cpu]", "fp16 matmul [cpu]", "int8 matmul [cpu]"):
        assert rows[name].device == "cpu" and rows[name].libraries == ("torch",) and not rows[name].required
    assert "bf16/fp16 [cpu]" not in rows  # the one probe for both is gone


@pytest.mark.parametrize("name", DTYPE_PROBES)
def test_dtype_probes_are_fast(name):
    DTYPE_PROBES[name]()  # the first call pays for kernel set-up, as the doctor's earlier probes do
    assert row(DTYPE_PROBES[name])["seconds"] < 1.0


# -- asset headers, read by the core's readers ----------------------------------------------------------------------
def _gguf(path, arch: str, tensors: int) -> None:
    key, value = b"general.architecture", arch.encode()
    path.write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, tensors, 1) + struct.pack("<Q", len(key)) + key
                     + struct.pack("<IQ", 8, len(value)) + value)


def test_smollm2_probe_on_a_wrong_and_a_truncated_file(tmp_path, monkeypatch):
    from tour.core import assets

    path = tmp_path / "SmolLM2.gguf"
    monkeypatch.setattr(assets, "smollm2_gguf", lambda: path)
    monkeypatch.setenv("TOUR_CACHE_DIR", str(tmp_path / "cache"))
    _gguf(path, "llama", 272)
    got = run_probe(Probe("SmolLM2 GGUF", "assets", probes_assets.smollm2_probe))
    assert got["status"] == OK and "GGUF v3, llama, 272 tensors" in got["detail"], got
    assert "converted on the first `tour run generate`" in got["detail"]
    _gguf(path, "gpt2", 272)
    got = run_probe(Probe("SmolLM2 GGUF", "assets", probes_assets.smollm2_probe))
    assert got["status"] == FAILED and got["kind"] == WRONG_RESULT and "'gpt2'" in got["detail"]
    path.write_bytes(path.read_bytes()[:20])
    got = run_probe(Probe("SmolLM2 GGUF", "assets", probes_assets.smollm2_probe))
    assert got["kind"] == WRONG_RESULT and "ends inside its GGUF header" in got["detail"]


def test_whisper_probe_reads_the_header_and_sees_the_converted_copy(tmp_path, monkeypatch):
    from tour.core import assets

    def model_bin(spec: str) -> None:
        name = spec.encode() + b"\0"
        (tmp_path / "model.bin").write_bytes(struct.pack("<IH", 6, len(name)) + name + struct.pack("<II", 3, 140))

    monkeypatch.setattr(assets, "whisper_tiny_en_dir", lambda: tmp_path)
    monkeypatch.setenv("TOUR_CACHE_DIR", str(tmp_path / "cache"))
    assets.cache_folder(assets.WHISPER_CACHE).mkdir(parents=True)
    (assets.cache_folder(assets.WHISPER_CACHE) / "config.json").write_text("{}")
    model_bin("WhisperSpec")
    got = run_probe(Probe("Whisper tiny.en", "assets", probes_assets.whisper_probe))
    assert got["status"] == OK and "CTranslate2 v6 WhisperSpec, 140 variables" in got["detail"], got
    assert f"converted copy cached at {assets.cache_folder(assets.WHISPER_CACHE)}" in got["detail"]
    model_bin("TransformerSpec")
    got = run_probe(Probe("Whisper tiny.en", "assets", probes_assets.whisper_probe))
    assert got["status"] == FAILED and got["kind"] == WRONG_RESULT and "TransformerSpec" in got["detail"]
