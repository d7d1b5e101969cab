"""`tour bench --only peers`: a missing peer is one skip line (exit 0), a peer whose process crashes or hangs is one
skip row, and where faster-whisper, ONNX Runtime or llama.cpp is installed its row's agreement check holds. No
speed asserts: the figures are printed, never held to a number."""

import dataclasses
import json
import textwrap

import pytest

from tour.core.results import BenchSettings
from tour.tools import bench, peers

QUICK = BenchSettings(quick=True, device="cpu", repeats=2)


def hidden(peer):
    """The peer as if it were not installed: a module no one has."""
    return dataclasses.replace(peer, needs=(f"tour_hidden_{peer.module.rsplit('.', 1)[1]}",))


def test_absent_peers_are_one_skip_line_each_and_exit_0(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(peers, "PEERS", tuple(hidden(p) for p in peers.PEERS))
    assert bench.main(["--only", "peers", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert [r["variant"] for r in data["rows"]] == [p.name for p in peers.PEERS]
    for row, peer in zip(data["rows"], peers.PEERS):
        assert row["note"].startswith("skipped: ") and "pip install" in row["note"] and peer.pip.split()[0] in row["note"]
        assert row["ratio"] is None and row["parity"] is None
    said = capsys.readouterr().out
    assert sum("skipped (" in line for line in said.splitlines()) == len(peers.PEERS)
    assert data["failed"] == {}


@pytest.fixture
def fake_peers(tmp_path, monkeypatch):
    """A peer module whose own process crashes (SIGSEGV, as llama.cpp's AMX build did) and one that hangs."""
    (tmp_path / "fake_peer.py").write_text(textwrap.dedent("""
        import os, signal, time

        def prepare(settings, work):
            return {}

        def child(payload):
            if os.environ.get("FAKE_PEER") == "hang":
                time.sleep(60)
            os.kill(os.getpid(), signal.SIGSEGV)

        def tour(settings, payload):
            raise AssertionError("the tour's side runs only after the peer's process succeeded")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return peers.Peer("fake", ("json",), "fake-peer", "fake_peer", "a job")


def test_a_crashing_peer_is_one_skip_row(fake_peers):
    rows = peers.bench_rows(QUICK, (fake_peers,))
    assert len(rows) == 1 and rows[0].ratio is None
    assert rows[0].note == "skipped: its process crashed (SIGSEGV) before it finished"


def test_a_hanging_peer_is_one_skip_row(fake_peers, monkeypatch):
    monkeypatch.setenv("FAKE_PEER", "hang")
    rows = peers.bench_rows(QUICK, (fake_peers,), timeout_s=3)
    assert [r.note for r in rows] == ["skipped: its process did not finish in 3 s (hung?)"]


def _row(module: str):
    peer = next(p for p in peers.PEERS if p.module.endswith(module))
    if peers.missing(peer):
        pytest.skip(peers.missing(peer))
    [row] = peers.bench_rows(QUICK, (peer,))
    assert not row.note.startswith("skipped"), row.note
    return row


@pytest.mark.parametrize("module", ["whisper", "onnx", "llama"])
def test_an_installed_peer_agrees_with_the_tour(module):
    row = _row(module)
    assert row.parity is True, row.note
    assert row.baseline_ms > 0 and row.variant_ms > 0
    assert row.ratio == pytest.approx(row.baseline_ms / row.variant_ms, rel=1e-6)
    assert row.baseline.startswith("tour: ") and ("wins" in row.note)


def test_peers_is_a_bench_section_after_the_stops():
    assert bench.SECTIONS.index("peers") > max(bench.SECTIONS.index(s) for s in bench.SECTIONS if s not in
                                                ("roof", "flops", "peers", "load"))


def test_the_report_chart_shows_peer_rows_beside_the_others():
    from tour.tools.report import bench_bars

    rows = [{"section": "precision", "what": "w", "baseline": "fp32 eager", "variant": "bf16", "ratio": 2.0,
             "parity": True},
            {"section": "peers", "what": "decode", "baseline": "tour: int8", "variant": "llama.cpp", "ratio": 1.5,
             "parity": True},
            {"section": "peers", "what": "asr", "baseline": "the tour's best way", "variant": "faster-whisper",
             "ratio": None, "parity": None, "note": "skipped: not installed"}]
    ratios, _ = bench_bars({"rows": rows})
    assert [r.what for r in ratios] == ["bench precision · fp32 eager → bf16", "bench peers · tour: int8 → llama.cpp"]
