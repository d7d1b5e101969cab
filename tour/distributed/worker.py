"""The per-rank half of the distributed stop: what each process that torchrun starts runs.

Not run by hand: `tour run distributed` launches `python -m torch.distributed.run ... -m tour.distributed.worker
--config JSON`. Each rank trains the digits MLP under DDP, checks every rank ended with the same weights, runs a
tensor-parallel MLP, and writes its own `rank<N>.json` (torchrun interleaves stdout, files don't). The single-
process reference in tour/distributed.py reuses `build`, `global_batches` and `flat_params` from here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from tour.distributed.config import NAME, Config  # the parent's Config arrives as JSON and is rebuilt (and checked)

CHECKPOINT = "checkpoint.pt"
# What must match for a checkpoint to be resumed: anything that changes the maths of the run.
FINGERPRINT = ("batch_size", "lr", "momentum", "hidden", "seed", "test_fraction")
# How long a collective may wait for the other ranks before it fails (torch's default: 10 min for NCCL, 30 for
# gloo). The whole stop takes seconds; a rank that died or wedged should end the run soon, not after an hour.
COLLECTIVE_TIMEOUT_S = 300


def say(rank: int, text: str) -> None:
    if rank == 0:  # one rank narrates; the others would only repeat it, interleaved
        print(f"  [rank 0] {text}", flush=True)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))  # torchrun's number for this process on its machine


def rank_device(cfg: Config):
    """The helper's device for this machine, pinned to this process's accelerator: the one --device names (cuda:1;
    the stop then runs one process here), else the one numbered LOCAL_RANK."""
    import torch

    from tour.core.device import get_device

    device = get_device(cfg.device)
    if device.type == "cpu":
        return device
    if device.index is None:
        device = torch.device(device.type, local_rank() % torch.accelerator.device_count())
    torch.accelerator.set_device_index(device.index)
    return device


def init_group(device) -> None:
    """The process group, with a collective timeout, and bound to this rank's accelerator where this torch can
    (device_id=: NCCL connects at once, and a collective never guesses the device)."""
    import inspect

    import torch.distributed as dist

    kwargs = {"backend": backend_for(device), "timeout": timedelta(seconds=COLLECTIVE_TIMEOUT_S)}
    if device.type != "cpu" and "device_id" in inspect.signature(dist.init_process_group).parameters:
        kwargs["device_id"] = device
    dist.init_process_group(**kwargs)


def backend_for(device) -> str:
    """torch's own device-type -> backend table: gloo for cpu, nccl for cuda, xccl for xpu."""
    import torch.distributed as dist

    return dist.Backend.default_device_backend_map.get(device.type, "gloo")


def data_file(cfg: Config) -> Path:
    """Where the launching process leaves the digits split for its ranks (named by what decides the split)."""
    return Path(cfg.out) / NAME / f"digits-{cfg.test_fraction:g}-{cfg.seed}.pt"


def digits(cfg: Config):
    """The digits split: read from the file the launcher wrote (each rank importing scikit-learn to make it again
    cost ~1.3 s of start-up), else made here (a worker started by hand)."""
    import torch

    from tour.core.data import digits_split

    path = data_file(cfg)
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    return digits_split(cfg.test_fraction, cfg.seed)


def build(cfg: Config, device):
    """Model, optimizer and data, identical on every rank and in the single-process reference."""
    import torch

    from tour.core.device import seed_everything
    from tour.core.models import make_mlp

    seed_everything(cfg.seed)  # same seed -> same initial weights everywhere (DDP also broadcasts rank 0's)
    model = make_mlp(cfg.hidden).to(device)
    # Plain SGD: DDP's averaged gradients then give exactly the big-batch step, so parity is tight.
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    train, test = digits(cfg)
    return model, opt, train, test


def global_batches(n: int, world: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches a `world`-rank DistributedSampler run sees: batch k is every rank's k-th batch joined."""
    from torch.utils.data import DistributedSampler

    per_rank, parts = batch_size // world, []
    for rank in range(world):
        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        idx = list(sampler)
        parts.append([idx[i:i + per_rank] for i in range(0, len(idx), per_rank)])
    return [sum(chunks, []) for chunks in zip(*parts)]


def flat_params(model):
    import torch

    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def checksum(flat) -> str:
    return hashlib.sha256(flat.float().cpu().numpy().tobytes()).hexdigest()[:16]


# checkpoints ----------------------------------------------------------------------------------------------------
def save_checkpoint(folder: Path, cfg: Config, model, opt, epoch: int, losses: list[float]) -> None:
    """Write-then-rename, so a kill mid-save leaves the previous checkpoint whole."""
    import torch

    state = {"epoch": epoch, "losses": losses, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "fingerprint": fingerprint(cfg)}
    tmp = folder / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, folder / CHECKPOINT)


def fingerprint(cfg: Config) -> dict:
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_initialized() else cfg.nproc * cfg.nnodes
    return {"world_size": world, **{k: getattr(cfg, k) for k in FINGERPRINT}}


def resume(folder: Path, cfg: Config, rank: int, model, opt) -> tuple[int, list[float]]:
    """Rank 0 reads its machine's copy and broadcasts it, so no other rank needs the file."""
    import torch
    import torch.distributed as dist

    box = [None]
    if rank == 0 and cfg.resume and (folder / CHECKPOINT).exists():
        box = [torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)]
    dist.broadcast_object_list(box, src=0)
    if box[0] is None:
        return 0, []
    model.load_state_dict(box[0]["model"])
    opt.load_state_dict(box[0]["optimizer"])  # momentum buffers too: the next step is the one that was lost
    start = box[0]["epoch"]
    left = f"training epochs {start + 1}..{cfg.epochs}" if start < cfg.epochs else "nothing left to train"
    say(rank, f"resumed from {folder / CHECKPOINT}: {start} epoch(s) done, {left}")
    return start, list(box[0]["losses"])


# 2) DDP ---------------------------------------------------------------------------------------------------------
def train_epoch(ddp, loader, opt, device):
    """One pass over this rank's share; returns the sum of its batch losses."""
    import torch

    total = torch.zeros((), device=device)
    for xb, yb in loader:
        loss = torch.nn.functional.cross_entropy(ddp(xb.to(device)), yb.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces (averages) the gradients here, overlapping with backward
        opt.step()
        total += loss.detach()
    return total


def train_ddp(cfg: Config, device, folder: Path, rank: int, world: int):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    model, opt, train, test = build(cfg, device)
    start, losses = resume(folder, cfg, rank, model, opt)
    ddp = DDP(model, device_ids=[device.index] if device.index is not None else None)
    data = TensorDataset(*train)
    sampler = DistributedSampler(data, shuffle=True, seed=cfg.seed)  # rank r takes every world-th sample
    loader = DataLoader(data, batch_size=cfg.batch_size // world, sampler=sampler)
    for epoch in range(start, cfg.epochs):
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank (and after a resume)
        total = train_epoch(ddp, loader, opt, device)
        dist.all_reduce(total)  # sum over ranks of each rank's summed batch losses
        losses.append(total.item() / (world * len(loader)))
        if local_rank() == 0:  # one copy per machine: c10d may put rank 0 on any of them next time
            save_checkpoint(folder, cfg, model, opt, epoch + 1, losses)
        dist.barrier()  # nobody races ahead of the checkpoint
        say(rank, f"epoch {epoch + 1}/{cfg.epochs}: loss {losses[-1]:.4f}, checkpoint saved")
    return model, losses, start, test


def agreement(model) -> tuple[list[str], float]:
    """All-gather every rank's flattened weights: their checksums, and the largest gap to rank 0's."""
    import torch
    import torch.distributed as dist

    flat = flat_params(model)
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return [checksum(g) for g in gathered], max((g - gathered[0]).abs().max().item() for g in gathered)


# 4) tensor parallel ---------------------------------------------------------------------------------------------
def tensor_parallel(cfg: Config, device, test, rank: int) -> dict:
    """Shard a 2-layer MLP: layer 1 by output columns, layer 2 by input rows; one all-reduce joins the halves."""
    import copy

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    world = dist.get_world_size()
    hidden = -(-cfg.hidden // world) * world  # DTensor's matmuls want equal slices: round up to a multiple
    torch.manual_seed(cfg.seed)
    full = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)).to(device)
    mesh = init_device_mesh(device.type, (world,))
    tp = parallelize_module(copy.deepcopy(full), mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
    x = test[0].to(device)
    out_tp, out_full = tp(x), full(x)
    out_tp.sum().backward()
    out_full.sum().backward()
    out_diff = (out_tp - out_full).abs().max().item()
    grad_diff = max((tp[i].weight.grad.full_tensor() - full[i].weight.grad).abs().max().item() for i in (0, 2))
    shards = [list(tp[i].weight.to_local().shape) for i in (0, 2)]
    say(rank, f"layer weights {list(full[0].weight.shape)}, {list(full[2].weight.shape)} -> this rank holds "
              f"{shards[0]}, {shards[1]}; output max diff vs unsharded {out_diff:.1e}, grads {grad_diff:.1e}")
    return {"out_max_diff": out_diff, "grad_max_diff": grad_diff, "shard_shapes": shards}


def accuracy(model, data, device) -> float:
    import torch

    with torch.inference_mode():
        return (model(data[0].to(device)).argmax(1).cpu() == data[1]).float().mean().item()


def work(cfg: Config, folder: Path) -> dict:
    import torch
    import torch.distributed as dist

    device = rank_device(cfg)
    if device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
        # The ranks share the cores: one thread each unless the user (or torchrun) chose a count, which wins.
        torch.set_num_threads(1)
    init_group(device)
    rank, world = dist.get_rank(), dist.get_world_size()
    say(rank, f"{world} ranks up, backend {dist.get_backend()}, this rank on {device}")
    say(rank, "DDP: the digits MLP, each rank a slice of every global batch")
    t0 = time.perf_counter()
    model, losses, start, test = train_ddp(cfg, device, folder, rank, world)
    seconds = time.perf_counter() - t0
    sums, gap = agreement(model)
    say(rank, f"weights after training, per rank: {sums}; max gap to rank 0: {gap:.1e}")
    if local_rank() == 0:  # one copy per machine, for the parent's parity check
        torch.save(model.state_dict(), folder / "weights.pt")
    say(rank, "tensor parallel: ColwiseParallel + RowwiseParallel over a DeviceMesh")
    tp = tensor_parallel(cfg, device, test, rank)
    report = {"rank": rank, "local_rank": local_rank(), "world_size": world,
              "device": str(device), "backend": dist.get_backend(), "host": os.uname().nodename,
              "losses": losses, "start_epoch": start, "checksum": checksum(flat_params(model)),
              "all_checksums": sums, "max_rank_diff": gap, "test_accuracy": accuracy(model, test, device),
              "train_seconds": seconds, "tp": tp}
    dist.barrier()  # every rank done with its collectives before any tears the group down
    dist.destroy_process_group()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="per-rank worker of `tour run distributed`")
    parser.add_argument("--config", required=True, help="the stop's Config as JSON")
    cfg = Config(**json.loads(parser.parse_args(argv).config))
    folder = Path(cfg.out) / NAME
    report = work(cfg, folder)
    (folder / f"rank{report['rank']}.json").write_text(json.dumps(report, indent=2) + "\n")
    # Leave without running interpreter teardown: with the tensor-parallel mesh's groups still referenced, gloo's
    # threads were seen to abort at exit now and then ("terminate called without an active exception"), which
    # torchrun reports as a failed rank although all the work was done and written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
