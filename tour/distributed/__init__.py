"""Beyond one process: DDP and tensor parallel on the real torch.distributed engine, under torchrun.

`tour run distributed` launches itself under torchrun with --nproc processes (gloo on CPU, nccl on CUDA; the backend
follows the device tour.core.device picks): DDP trains the digits MLP with a DistributedSampler, every rank must end with
the same weights, and those must match a single-process run on the same global batches; then a 2-layer MLP is
sharded with ColwiseParallel/RowwiseParallel and must give the unsharded output. A checkpoint each epoch makes a
killed run resumable (`--resume`). Several machines: the same command on each with --nnodes/--node-rank/
--rdzv-endpoint. Run: `tour run distributed [--nproc N]` or `python -m tour.distributed`; `--quick` for a short run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tour.core.cli import stop_main

from tour.core.config import out_dir
from tour.core.errors import TourError
from tour.core.results import BaseResult, check, labelled
from tour.core.state import keeps_caller_state
from tour.distributed.config import NAME, Config

WORKER = "tour.distributed.worker"  # what torchrun runs on every rank (python -m)
MAX_PROCS_PER_CORE = 4  # beyond this, CPU ranks only queue for the cores
PARITY_TOL = 1e-4  # DDP vs one process, tensor parallel vs unsharded: fp32 sums in another order (CPU: ~1e-7)
LAUNCH_TIMEOUT_S = 1800  # torchrun's whole run; the full stop takes seconds, a multi-node rendezvous may wait


@dataclass
class Result(BaseResult):
    device: str
    backend: str  # gloo on cpu, nccl on cuda
    world_size: int = labelled("processes")
    nnodes: int
    ranks_reporting: list[int]  # the ranks that ran on this machine (their rank<N>.json files)
    rank_checksums: list[str]  # sha256 of every rank's final weights, all-gathered
    rank_max_diff: float = labelled("ranks' weights, max |difference|")  # largest |w_rank - w_rank0| over all ranks
    # DDP mean loss per epoch (global batches)
    losses: list[float] = labelled("DDP loss per epoch", default_factory=list)
    single_losses: list[float] = field(default_factory=list)  # one process, same global batches
    loss_max_diff: float = 0.0
    # DDP final weights vs the single-process run's
    weight_max_diff: float = labelled("DDP vs one process, max |weight difference|", "", 0.0)
    test_accuracy: float = labelled("held-out accuracy", "%", 0.0)
    tp_out_max_diff: float = 0.0  # tensor-parallel output vs the unsharded MLP
    tp_grad_max_diff: float = 0.0
    tp_shard_shapes: list[list[int]] = field(default_factory=list)  # rank 0's slices of the two weights
    start_epoch: int = 0  # >0: resumed from a checkpoint that had this many epochs done
    checkpoint: str = ""
    weights: str = ""
    train_seconds: float = labelled("training time", "s", 0.0)
    # torchrun start to finish, process start-up included
    launch_seconds: float = labelled("torchrun, start to finish", "s", 0.0)
    ranks_identical: bool | None = check("every rank ends with the same weights (same checksum, max |diff| 0)", None)
    matches_one_process: bool | None = check(f"DDP's losses and final weights equal one process's on the same "
                                             f"global batches (max |diff| < {PARITY_TOL:g})", None)
    tp_matches: bool | None = check(f"tensor parallel's output and gradients equal the unsharded MLP's (max "
                                    f"|diff| < {PARITY_TOL:g})", None)


# checks before launching ----------------------------------------------------------------------------------------
def check_device(cfg: Config, device) -> None:
    """CPU ranks share the cores, accelerator ranks need one device each; a named device (cuda:1) is one device."""
    import torch

    cores = os.cpu_count() or 1
    if device.type == "cpu" and cfg.nproc > MAX_PROCS_PER_CORE * cores:
        raise TourError(f"{cfg.nproc} processes on {cores} CPU cores would only queue for them; "
                        f"use --nproc {MAX_PROCS_PER_CORE * cores} or fewer")
    if device.type != "cpu" and cfg.nproc > torch.accelerator.device_count():
        raise TourError(f"{cfg.nproc} processes but {torch.accelerator.device_count()} {device.type} device(s) "
                        f"here: one process per device, so pass --nproc {torch.accelerator.device_count()}")
    if device.index is not None and cfg.nproc > 1:
        # Honoured with one process (it runs on that device); several would need a device each.
        raise TourError(f"--device {device} names one device but --nproc {cfg.nproc} processes need one each; pass "
                        f"--device {device.type} (rank r takes {device.type}:r) or --nproc 1")


def prepare_checkpoint(cfg: Config, folder: Path) -> None:
    """A fresh run forgets old checkpoints; --resume checks the one it finds was made by the same recipe."""
    import torch

    from tour.distributed.worker import CHECKPOINT, fingerprint

    path = folder / CHECKPOINT
    if not cfg.resume:
        path.unlink(missing_ok=True)
    elif path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["fingerprint"] != fingerprint(cfg):
            raise TourError(f"{path} was written by another recipe ({saved['fingerprint']}); rerun with the "
                            f"same flags, or without --resume to start over")
        print(f"  resuming: {path} has {saved['epoch']} of {cfg.epochs} epochs done")
    else:
        print(f"  --resume: no checkpoint in {folder} on this machine, rank 0 starts from scratch")


# 1) launch ------------------------------------------------------------------------------------------------------
def default_nproc(device) -> int:
    """Processes when --nproc is unset: 2 on CPU (they share the cores), else one per device present, at most 2
    (so one GPU runs one rank), and 1 for a named device such as cuda:1."""
    import torch

    if device.type == "cpu":
        return 2
    return 1 if device.index is not None else max(1, min(2, torch.accelerator.device_count()))


def resolve(cfg: Config, device=None) -> Config:
    """The config every rank gets: the process count settled (--nproc, else `default_nproc`) and checked against the
    device, the output folder absolute (quick mode's values are already in the Config)."""
    from tour.core.device import get_device

    device = device or get_device(cfg.device)
    cfg = replace(cfg, nproc=cfg.nproc or default_nproc(device))  # replace() runs validate(): the batch split
    check_device(cfg, device)
    return replace(cfg, out=str(out_dir(cfg, NAME).resolve().parent))


def launch_command(cfg: Config) -> list[str]:
    """torchrun (as `python -m torch.distributed.run`, so it is this interpreter's torch) running the worker."""
    if cfg.nnodes == 1 and not cfg.rdzv_endpoint:
        where = ["--standalone"]  # a private rendezvous on a free local port
    else:
        where = ["--nnodes", str(cfg.nnodes), "--node-rank", str(cfg.node_rank), "--rdzv-backend", "c10d",
                 "--rdzv-endpoint", cfg.rdzv_endpoint, "--rdzv-id", f"tour-{NAME}"]
    return [sys.executable, "-m", "torch.distributed.run", *where, "--nproc-per-node", str(cfg.nproc),
            "-m", WORKER, "--config", json.dumps(asdict(cfg))]


def share_data(cfg: Config) -> None:
    """Make the digits split once, here, for every rank on this machine to read (tour.distributed.worker.digits)."""
    import torch

    from tour.core.data import digits_split
    from tour.distributed.worker import data_file

    torch.save(digits_split(cfg.test_fraction, cfg.seed), data_file(cfg))


def launch(cfg: Config, folder: Path) -> float:
    for old in folder.glob("rank*.json"):
        old.unlink()  # only this launch's ranks may report
    share_data(cfg)
    from tour.core.threads import for_ranks

    # The ranks split the tour's threads (tour.core.threads); a user's OMP_NUM_THREADS goes to each rank as is.
    # Split by the whole world, not this node's ranks: the same world then runs the same thread count per rank
    # (so the same float sums) however it is launched, also when every "node" is this machine.
    env = for_ranks(cfg.nproc * cfg.nnodes)
    cmd = launch_command(cfg)
    print(f"  $ torchrun {' '.join(cmd[3:-2])} --config '{{...}}'", flush=True)
    start = time.perf_counter()
    try:  # a rank stuck in a collective must not hang the tour forever
        code = subprocess.run(cmd, env=env, timeout=LAUNCH_TIMEOUT_S).returncode
    except subprocess.TimeoutExpired:
        raise TourError(f"torchrun did not finish within {LAUNCH_TIMEOUT_S} s (a rank may wait for one that died or "
                        f"for another node); check --rdzv-endpoint and --nnodes, or --resume from {folder}") from None
    if code != 0:
        raise TourError(f"torchrun exited with code {code} (a rank failed; its error is above); "
                        f"add --resume to continue from the last checkpoint in {folder}")
    return time.perf_counter() - start


def gather(folder: Path) -> list[dict]:
    reports = sorted((json.loads(p.read_text()) for p in folder.glob("rank*.json")), key=lambda r: r["rank"])
    if not reports:
        raise TourError(f"no rank wrote a result into {folder}; check the output above")
    return reports


# 3) parity: the single-process reference ------------------------------------------------------------------------
def single_process(cfg: Config, world: int, device):
    """One process, one model, the same global batches the DDP run saw, mean loss over each: DDP's maths."""
    import torch

    from tour.distributed.worker import build, global_batches

    model, opt, (x, y), _ = build(cfg, device)
    x, y = x.to(device), y.to(device)
    losses = []
    for epoch in range(cfg.epochs):
        batches = global_batches(len(x), world, cfg.batch_size, cfg.seed, epoch)
        total = 0.0
        for idx in batches:
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / len(batches))
    return model, losses


def parity(cfg: Config, reports: list[dict], folder: Path, device) -> tuple[list[float], float, float]:
    import torch

    from tour.distributed.worker import flat_params

    model, losses = single_process(cfg, reports[0]["world_size"], device)
    ddp = torch.load(folder / "weights.pt", map_location=device, weights_only=True)
    weight_gap = max((ddp[k] - v).abs().max().item() for k, v in model.state_dict().items())
    loss_gap = max(abs(a - b) for a, b in zip(losses, reports[0]["losses"]))
    print(f"  single process, {len(losses)} epochs on the same global batches: loss {losses[-1]:.4f} "
          f"vs DDP {reports[0]['losses'][-1]:.4f}; max gap: loss {loss_gap:.1e}, weights {weight_gap:.1e} "
          f"({flat_params(model).numel():,} weights)")
    return losses, loss_gap, weight_gap


@keeps_caller_state
def run(cfg: Config) -> Result:
    from tour.core import device as dev
    from tour.distributed.worker import CHECKPOINT

    device = dev.get_device(cfg.device)
    cfg = resolve(cfg, device)
    folder = Path(cfg.out) / NAME
    print(f"[{NAME}] {dev.describe(cfg.device)}")
    print(f"1) launch: {cfg.nproc} process(es) on this machine x {cfg.nnodes} machine(s) under torchrun")
    prepare_checkpoint(cfg, folder)
    seconds = launch(cfg, folder)
    reports = gather(folder)
    first = reports[0]
    print(f"2) DDP: {len(reports)} rank file(s) here of world size {first['world_size']}, backend "
          f"{first['backend']}; weights identical on every rank: {len(set(first['all_checksums'])) == 1} "
          f"(max gap {first['max_rank_diff']:.1e}); held-out accuracy {first['test_accuracy']:.3f}")
    print("3) parity with one process")
    single, loss_gap, weight_gap = parity(cfg, reports, folder, device)
    tp = first["tp"]
    print(f"4) tensor parallel over {first['world_size']} ranks: output max diff {tp['out_max_diff']:.1e}, "
          f"gradient max diff {tp['grad_max_diff']:.1e}")
    print(f"5) checkpoint: {folder / CHECKPOINT} (started at epoch {first['start_epoch']}; restart a killed "
          "run with --resume)")
    return Result(device=str(device), backend=first["backend"], world_size=first["world_size"], nnodes=cfg.nnodes,
                  ranks_reporting=[r["rank"] for r in reports], rank_checksums=first["all_checksums"],
                  rank_max_diff=first["max_rank_diff"], losses=first["losses"], single_losses=single,
                  loss_max_diff=loss_gap, weight_max_diff=weight_gap, test_accuracy=first["test_accuracy"],
                  tp_out_max_diff=tp["out_max_diff"], tp_grad_max_diff=tp["grad_max_diff"],
                  tp_shard_shapes=tp["shard_shapes"], start_epoch=first["start_epoch"],
                  checkpoint=str(folder / CHECKPOINT), weights=str(folder / "weights.pt"),
                  train_seconds=max(r["train_seconds"] for r in reports), launch_seconds=seconds,
                  ranks_identical=len(set(first["all_checksums"])) == 1 and first["max_rank_diff"] == 0.0,
                  matches_one_process=max(loss_gap, weight_gap) < PARITY_TOL,
                  tp_matches=max(tp["out_max_diff"], tp["grad_max_diff"]) < PARITY_TOL)


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
