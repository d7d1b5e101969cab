"""`tour bench --only peers`: the tour's best PyTorch way held against the tool a user would pick instead for the
same job, on the same weights and the same threads: llama.cpp (llama-cpp-python) on the tour's own SmolLM2 GGUF
file, faster-whisper on the same CTranslate2 Whisper tiny.en folder, ONNX Runtime on MiniLM exported from the same
weights. Each peer runs in its own process (a peer's crash or hang is one skip row, never the bench's failure); a
peer that is not installed is one skip row naming its pip line (`pip install 'torch-tour[peers]'`).

A peer module (tour/tools/peers/<peer>.py) offers four functions:
    prepare(settings, work) -> payload   in the bench's process: what the peer's process needs (token ids, audio)
    child(payload) -> dict               in the peer's own process: its settings tried, its best one timed
    tour(settings, payload) -> dict      in the bench's process: the tour's ways (the stops' own parts) timed
    row(settings, payload, peer, ours) -> BenchRow
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tour.core.results import BenchRow, BenchSettings

SECTION = "peers"
THREADS = 2  # every side gets the same threads: the peers' defaults differ (llama.cpp: all cores, ORT: physical)
TIMEOUT_S = 900  # a peer's process that runs longer has hung: its row is skipped
EXTRA = "pip install 'torch-tour[peers]'"


@dataclass(frozen=True)
class Peer:
    name: str  # what a user knows it as: "llama.cpp"
    needs: tuple[str, ...]  # the modules it imports (found without importing them)
    pip: str  # the requirement that installs it, as in the peers extra
    module: str  # its module here: prepare, child, tour, row
    job: str  # the job both sides do, the row's `what`


PEERS = (
    Peer("llama.cpp", ("llama_cpp",), "llama-cpp-python>=0.3", "tour.tools.peers.llama",
         "SmolLM2-135M greedy decode, batch 1"),
    Peer("faster-whisper", ("faster_whisper", "ctranslate2"), "faster-whisper>=1.0", "tour.tools.peers.whisper",
         "Whisper tiny.en greedy transcripts"),
    Peer("ONNX Runtime", ("onnxruntime", "onnx"), "onnxruntime>=1.18 onnx>=1.16", "tour.tools.peers.onnx",
         "MiniLM-L6 embeddings"),
)


def missing(peer: Peer) -> str | None:
    """Why `peer` can't run here (a module not installed, with the pip line), or None."""
    from tour.core.errors import is_available

    absent = [m for m in peer.needs if not is_available(m)]
    if not absent:
        return None
    pip = " ".join(f"'{r}'" for r in peer.pip.split())
    return f"{peer.name} is not installed (no {', '.join(absent)}): pip install {pip} (or {EXTRA})"


def skip_row(peer: Peer, why: str) -> BenchRow:
    print(f"  {peer.name}: skipped ({why})")
    return BenchRow(SECTION, peer.job, "the tour's best way", peer.name, None, None, None, None, f"skipped: {why}")


def run_child(module: str, payload: dict, work: Path, timeout_s: float = TIMEOUT_S) -> dict:
    """`module`.child(payload) in a fresh Python process (python -m tour.tools.peers.child): its result, or a
    RuntimeError in one line when it crashed, hung or failed."""
    import signal

    inp, out = work / f"{module}.in.json", work / f"{module}.out.json"
    inp.write_text(json.dumps(payload))
    out.unlink(missing_ok=True)
    from tour.core.startup import child_env

    try:  # child_env: this tour on its PYTHONPATH, also where it is not installed
        done = subprocess.run([sys.executable, "-m", "tour.tools.peers.child", module, str(inp), str(out)],
                              env=child_env(), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"its process did not finish in {timeout_s:.0f} s (hung?)") from None
    for line in done.stdout.splitlines():
        print(f"    {line}")
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise RuntimeError(f"its process crashed ({name}) before it finished")
    if done.returncode != 0 or not out.exists():
        last = next((x.strip() for x in reversed(done.stderr.splitlines()) if x.strip()), "no message")
        raise RuntimeError(f"its process failed (exit {done.returncode}): {last[:200]}")
    return json.loads(out.read_text())


def amx_note() -> str:
    """Whether this CPU has AMX (tour.core.dtypes' fast paths), for the rows' 'where it wins' remark."""
    import torch

    from tour.core.dtypes import dtype_fast_paths

    paths = dtype_fast_paths(torch.device("cpu"), torch.bfloat16)
    return "AMX-BF16" if "AMX-BF16" in paths else ("AVX512-BF16, no AMX" if paths else "no bf16 fast path")


def where(with_amx: str, without_amx: str) -> str:
    """The reason for this machine, measured, and the expectation for the other kind (AMX or not), unmeasured."""
    paths = amx_note()
    if paths == "AMX-BF16":
        return f"measured here with AMX-BF16: {with_amx}; expected without AMX: {without_amx}"
    return f"measured here without AMX ({paths}): {without_amx}; expected with AMX: {with_amx}"


def one_peer(peer: Peer, settings: BenchSettings, work: Path, timeout_s: float = TIMEOUT_S) -> BenchRow:
    """The peer's row: its own process first (so a missing or crashing peer costs the tour's side nothing)."""
    why = missing(peer)
    if why:
        return skip_row(peer, why)
    try:
        part = importlib.import_module(peer.module)
        payload = part.prepare(settings, work)
        found = run_child(peer.module, payload, work, timeout_s)
        ours = part.tour(settings, payload)
        return part.row(settings, payload, found, ours)
    except Exception as e:  # noqa: BLE001 - one peer's failure is its own skip row, not the bench's
        from tour.core.errors import one_line

        return skip_row(peer, one_line(e) if not isinstance(e, RuntimeError) else str(e))


def bench_rows(settings: BenchSettings, peers: tuple[Peer, ...] | None = None,
               timeout_s: float = TIMEOUT_S) -> list[BenchRow]:
    """One row per peer (default: PEERS): measured where it is installed and runs, else a one-line skip."""
    from tour.core.state import keeps_caller_state

    peers = PEERS if peers is None else peers

    @keeps_caller_state  # the tour's side sets THREADS; the caller's threads come back
    def measure() -> list[BenchRow]:
        with tempfile.TemporaryDirectory(prefix="tour-peers-") as tmp:
            return [one_peer(peer, settings, Path(tmp), timeout_s) for peer in peers]
    return measure()


def with_threads():
    """The tour's side on THREADS threads, like the peers."""
    import torch

    torch.set_num_threads(THREADS)


def ratio_note(peer_name: str, peer_rate: float, tour_rate: float, unit: str) -> str:
    """'llama.cpp 1.77x the tour's tokens/s: the peer wins' (rates: higher is faster)."""
    r = peer_rate / tour_rate
    who = "the peer wins" if r > 1 else "the tour wins"
    return f"{peer_name} {r:.2f}x the tour's {unit}: {who}"
