"""The distributed stop under real torchrun on CPU/gloo over loopback: rank agreement, single-process parity,
tensor-parallel parity, resume after a real kill, two "nodes" meeting at a c10d rendezvous, and bad input."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tour import distributed
from tour.core.cli import parse_config
from tour.core.errors import TourError

QUICK = ["--quick", "--device", "cpu"]
LAUNCH_TIMEOUT = 300  # seconds; torch start-up per rank is slow on a busy 2-core machine


def parity_tol(result) -> float:
    """How close DDP and tensor parallel come to one process: 1e-5 on CPU (fp32 sums in another order: ~1e-7
    seen); the stop's own PARITY_TOL on a GPU, whose kernels and NCCL's reductions sum in orders of their own."""
    return 1e-5 if torch.device(result.device).type == "cpu" else distributed.PARITY_TOL


@pytest.fixture(scope="module")
def result(tmp_path_factory, stop_device):
    """One 2-process launch: DDP training, parity, tensor parallel."""
    out = tmp_path_factory.mktemp("ddp")
    return distributed.run(distributed.Config(quick=True, device=stop_device, out=str(out)))


def test_every_rank_ends_with_the_same_weights(result, stop_device):
    from tour.distributed.worker import backend_for

    device = torch.device(stop_device)
    world = distributed.default_nproc(device)  # 2 on CPU; one per GPU up to 2 (one GPU runs one rank)
    assert result.backend == backend_for(device) == ("gloo" if device.type == "cpu" else "nccl")
    assert result.world_size == world and result.ranks_reporting == list(range(world))
    assert len(result.rank_checksums) == world and len(set(result.rank_checksums)) == 1
    assert result.rank_max_diff == 0.0
    ranks = [json.loads(p.read_text()) for p in sorted(Path(result.weights).parent.glob("rank*.json"))]
    assert [r["checksum"] for r in ranks] == result.rank_checksums  # each rank's own file agrees


def test_ddp_matches_one_process_on_the_same_global_batches(result):
    assert len(result.losses) == len(result.single_losses) == 5
    assert result.loss_max_diff < parity_tol(result) and result.weight_max_diff < parity_tol(result)
    assert result.losses[-1] < result.losses[0] / 4
    assert result.test_accuracy >= 0.85


def test_every_check_passes(result):
    assert set(result.checks()) == {"ranks_identical", "matches_one_process", "tp_matches"}
    assert result.failed_checks() == []


def test_tensor_parallel_matches_the_unsharded_mlp(result):
    part = 64 // result.world_size  # hidden 64 split over the ranks (2 on CPU: 32 each): columns, then rows
    assert result.tp_shard_shapes == [[part, 64], [10, part]]
    assert result.tp_out_max_diff < parity_tol(result) and result.tp_grad_max_diff < parity_tol(result)


def test_checkpoint_holds_the_finished_run(result):
    saved = torch.load(result.checkpoint, weights_only=True)
    assert saved["epoch"] == 5 and saved["fingerprint"]["world_size"] == result.world_size
    assert saved["losses"] == pytest.approx(result.losses)


# resume after a kill --------------------------------------------------------------------------------------------
def _pids_mentioning(text: str) -> list[int]:
    """Processes whose command line names our private output folder: the launcher, torchrun and its ranks."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)  # no handler runs: like a machine losing power
        except ProcessLookupError:
            pass


def _kill_all(text: str) -> None:
    for _ in range(20):
        pids = [p for p in _pids_mentioning(text) if p != os.getpid()]
        if not pids:
            return
        _kill(pids)
        time.sleep(0.1)
    raise AssertionError(f"processes survived the kill: {_pids_mentioning(text)}")


def test_killed_run_resumes_from_its_checkpoint(result, stop_device, tmp_path):
    # on the shared run's device: a resumed run must end exactly where the uninterrupted one did
    out = tmp_path / "killed"
    ckpt = out / "distributed" / "checkpoint.pt"
    config = distributed.Config(quick=True, device=stop_device, out=str(out))
    cmd = distributed.launch_command(distributed.resolve(config))
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, known, polls = time.monotonic() + LAUNCH_TIMEOUT, [], 0
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            if polls % 50 == 0:  # the ranks start seconds before their first checkpoint: know them by then
                known = _pids_mentioning(str(out))
            polls += 1
            time.sleep(0.002)
        _kill(known)  # at once: an epoch here takes well under a second
        assert ckpt.exists(), "no checkpoint appeared before the run ended"
    finally:
        _kill_all(str(out))
        proc.wait(timeout=30)
    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= done < 5, f"the kill landed after epoch {done}: not mid-training"

    resumed = distributed.run(replace(config, resume=True))
    assert resumed.start_epoch == done  # lost at most the epoch that was running
    assert resumed.losses == pytest.approx(result.losses, abs=1e-6)
    final, uninterrupted = (torch.load(p, weights_only=True) for p in (resumed.weights, result.weights))
    assert all(torch.equal(final[k], uninterrupted[k]) for k in uninterrupted)


def test_resume_refuses_a_checkpoint_from_another_recipe(result, stop_device):
    out = str(Path(result.checkpoint).parent.parent)
    with pytest.raises(TourError, match="another recipe"):
        distributed.run(distributed.Config(quick=True, device=stop_device, out=out, resume=True, lr=0.2))


# two nodes on one machine ---------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_gpu_each(env) -> tuple[str, str] | None:
    """CUDA_VISIBLE_DEVICES for "node" 0 and "node" 1 on this machine: the first two GPUs the caller sees, one
    each. Both launchers' ranks are local rank 0, so without this they would share cuda:0, which NCCL refuses;
    two real machines see one GPU each the same way. None with fewer than two GPUs."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    ids = [i.strip() for i in visible.split(",") if i.strip()] if visible is not None else \
        [str(i) for i in range(torch.cuda.device_count())]
    return (ids[0], ids[1]) if len(ids) >= 2 else None


def test_two_launchers_meet_at_a_c10d_rendezvous(result, stop_device, tmp_path, monkeypatch):
    """Two torchruns with one rank each: "node 1" runs the stop's own torchrun command in a subprocess, "node 0"
    the whole stop in this process (its single-process reference included). On a GPU each node gets its own."""
    env1 = dict(os.environ)
    if torch.device(stop_device).type != "cpu":
        gpus = one_gpu_each(os.environ)
        if gpus is None or result.world_size < 2:
            pytest.skip("two nodes on one machine need a GPU each, and the 2-process launch to compare with")
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", gpus[0])  # node 0's torchrun inherits it (this process's CUDA
        env1["CUDA_VISIBLE_DEVICES"] = gpus[1]  # is already up and keeps every GPU)
    flags = ["--quick", "--device", stop_device, "--nproc", "1", "--nnodes", "2",
             "--rdzv-endpoint", f"127.0.0.1:{_free_port()}"]
    node1 = parse_config(distributed.Config, [*flags, "--node-rank", "1", "--out", str(tmp_path / "n1")], "test")
    other = subprocess.Popen(distributed.launch_command(distributed.resolve(node1)), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env1)
    try:
        assert distributed.main([*flags, "--node-rank", "0", "--out", str(tmp_path / "n0")]) == 0
        log = other.communicate(timeout=LAUNCH_TIMEOUT)[0]
    finally:
        other.kill()
    assert other.returncode == 0, log
    node0 = json.loads((tmp_path / "n0" / "distributed" / "result.json").read_text())
    (rank_file,) = (tmp_path / "n1" / "distributed").glob("rank*.json")
    node1 = json.loads(rank_file.read_text())
    assert sorted([*node0["ranks_reporting"], node1["rank"]]) == [0, 1]  # one rank per launcher
    assert node0["world_size"] == node1["world_size"] == 2 and node0["nnodes"] == 2
    assert node0["rank_checksums"] == node1["all_checksums"] == result.rank_checksums  # the 2-process launch's
    assert node0["losses"] == pytest.approx(result.losses, abs=1e-6)
    assert node0["weight_max_diff"] < parity_tol(result)
    assert (tmp_path / "n1" / "distributed" / "checkpoint.pt").exists()  # each machine keeps its own copy


# bad input ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--nproc", "0"], "argument --nproc: 0 is out of range: it must be >= 1"),
    (["--nproc", "1024", "--batch-size", "1024"], "CPU cores would only queue"),
    (["--nproc", "3"], "must split evenly over 3 processes"),
    (["--nproc", "1", "--batch-size", "512", "--nnodes", "1024", "--rdzv-endpoint", "h:1"], "must split evenly"),
    (["--nnodes", "2"], "--rdzv-endpoint HOST:PORT"),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank must be in 0..1"),
    (["--nnodes", "2", "--rdzv-endpoint", "nohost"], "must be HOST:PORT"),
    (["--momentum", "-1"], "argument --momentum: -1.0 is out of range: it must be >= 0.0"),
])
def test_bad_input_is_one_line_and_launches_nothing(flags, message, tmp_path, capsys):
    try:  # a flag out of its own bounds is argparse's usage error (SystemExit); the rest come back as exit 2
        code = distributed.main([*QUICK, "--out", str(tmp_path), *flags])
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "distributed").exists()  # nothing half-written


# the process count and the device, without a GPU: a faked device count ---------------------------------------
@pytest.mark.parametrize("device, count, nproc", [("cpu", 0, 2), ("cuda", 1, 1), ("cuda", 4, 2), ("cuda:1", 4, 1)])
def test_default_process_count_follows_the_devices_present(device, count, nproc, monkeypatch, tmp_path):
    # One GPU must run one rank: `tour run all --device cuda` (which cannot pass --nproc) on a single-GPU machine.
    monkeypatch.setattr(torch.accelerator, "device_count", lambda: count)
    cfg = distributed.Config(quick=True, device=device, out=str(tmp_path))
    settled = distributed.resolve(cfg, torch.device(device))
    assert cfg.nproc is None and settled.nproc == nproc
    cmd = distributed.launch_command(settled)
    assert cmd[cmd.index("--nproc-per-node") + 1] == str(nproc)


def test_each_node_on_one_machine_gets_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert one_gpu_each({}) == ("0", "1")
    assert one_gpu_each({"CUDA_VISIBLE_DEVICES": "3, 5,6"}) == ("3", "5")  # the caller's own choice is kept
    assert one_gpu_each({"CUDA_VISIBLE_DEVICES": "2"}) is None
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert one_gpu_each({}) is None


def test_default_process_count_is_said_in_help(capsys):
    with pytest.raises(SystemExit):
        distributed.main(["--help"])
    assert "unset: 2 on CPU, one per accelerator device up to 2" in " ".join(capsys.readouterr().out.split())


def test_a_named_device_is_one_device(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.accelerator, "device_count", lambda: 4)
    cfg = distributed.Config(quick=True, device="cuda:1", nproc=2, out=str(tmp_path))
    with pytest.raises(TourError, match="--device cuda:1 names one device but --nproc 2 processes need one each"):
        distributed.resolve(cfg, torch.device("cuda", 1))


def test_a_rank_honours_a_named_device(monkeypatch):
    from tour.distributed import worker

    chosen = []
    monkeypatch.setattr("tour.core.device.get_device", lambda spec: torch.device(spec))
    monkeypatch.setattr(torch.accelerator, "device_count", lambda: 4)
    monkeypatch.setattr(torch.accelerator, "set_device_index", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert worker.rank_device(worker.Config(device="cuda:3")) == torch.device("cuda", 3)  # not LOCAL_RANK's cuda:0
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert worker.rank_device(worker.Config(device="cuda")) == torch.device("cuda", 1)
    assert chosen == [3, 1]


@pytest.mark.parametrize("has_device_id", [True, False])
def test_process_group_gets_a_timeout_and_its_device(has_device_id, monkeypatch):
    import torch.distributed as dist

    from tour.distributed import worker

    calls = []

    def init(backend=None, timeout=None, device_id=None):
        calls.append({"backend": backend, "timeout": timeout, **({"device_id": device_id} if device_id else {})})

    def old_init(backend=None, timeout=None):  # a torch from before device_id=
        calls.append({"backend": backend, "timeout": timeout})

    monkeypatch.setattr(dist, "init_process_group", init if has_device_id else old_init)
    worker.init_group(torch.device("cuda", 1))
    worker.init_group(torch.device("cpu"))
    limit = worker.COLLECTIVE_TIMEOUT_S
    assert calls[0]["backend"] == "nccl" and calls[0]["timeout"].total_seconds() == limit
    assert calls[0].get("device_id") == (torch.device("cuda", 1) if has_device_id else None)
    assert calls[1] == {"backend": "gloo", "timeout": calls[0]["timeout"]}  # no device to bind on CPU


@pytest.mark.needs_cuda
def test_gpus_train_over_nccl(tmp_path):
    kind = torch.accelerator.current_accelerator().type
    nproc = min(2, torch.accelerator.device_count())  # what --nproc defaults to here: one GPU runs one rank
    res = distributed.run(distributed.Config(quick=True, device=kind, out=str(tmp_path)))
    assert res.backend == "nccl" and res.world_size == nproc and len(set(res.rank_checksums)) == 1
    assert res.weight_max_diff < distributed.PARITY_TOL and res.tp_out_max_diff < distributed.PARITY_TOL
    assert res.failed_checks() == []


def test_module_imports_no_torch():
    code = "import sys, tour.distributed; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
