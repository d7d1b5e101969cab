# %% [markdown]
# # Beyond one process: DDP and tensor parallel under torchrun
# `torchrun` starts N copies of a worker; each learns its rank and joins a process group (gloo on the CPU, nccl on
# CUDA). DDP gives every rank a slice of each batch and averages the gradients, so all ranks end with the same
# weights: the same weights one process would get on the whole batches. Tensor parallel instead splits each weight
# matrix across the ranks. Two CPU processes are enough to see both. `TOUR_QUICK=1` for fewer epochs.

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

from torch.utils.data import DistributedSampler

from tour import distributed
from tour.distributed.worker import global_batches

cfg = startup.example_config(distributed.Config)  # quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
print(f"{cfg.nproc} processes, {cfg.epochs} epochs, global batch {cfg.batch_size}")

# %% [markdown]
# ## 1) Who sees which examples
# `DistributedSampler` shuffles the indices with a shared seed and deals them out: each rank gets a disjoint share.
# Joining every rank's k-th batch gives the global batch k, which is what a single process must train on to match.

# %%
for rank in range(2):
    sampler = DistributedSampler(range(10), num_replicas=2, rank=rank, shuffle=True, seed=0)
    print(f"rank {rank} of 2 gets indices {list(sampler)}")
print("global batches of 4 over 2 ranks:", global_batches(10, 2, 4, seed=0, epoch=0))

# %% [markdown]
# ## 2) The launch
# The stop runs torchrun as `python -m torch.distributed.run`, so the ranks use this interpreter's torch. The
# worker module is what each rank runs; its config travels as JSON.

# %%
command = distributed.launch_command(distributed.resolve(cfg))
print("torchrun", " ".join(command[3:-2]), "--config '{...}'")

# %% [markdown]
# ## 3) Run it
# The ranks train the digits MLP with DDP, checkpoint each epoch (a killed run continues with `resume=True`), and
# shard a 2-layer MLP with `ColwiseParallel`/`RowwiseParallel`. Back here, one process replays the same global
# batches: its weights must equal DDP's, and the sharded MLP's output must equal the unsharded one.

# %%
result = distributed.run(cfg)
print(f"distributed: {result.world_size} ranks, identical weights: {len(set(result.rank_checksums)) == 1}, "
      f"DDP vs one process max weight gap {result.weight_max_diff:.1e}, "
      f"tensor parallel gap {result.tp_out_max_diff:.1e}")
result
