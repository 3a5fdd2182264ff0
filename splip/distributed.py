"""Several processes train one run (torchrun): process groups, shares of a batch, gathers.

`torchrun --nproc_per_node N -m splip.train PRESET.yaml` starts N processes that find each other
through the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT). A run's
numbers must not depend on N, so every process draws the same global batch of `batch_size`
triplets and takes a contiguous share of it; each share's loss is weighted by its size over the
global batch, and the gradients are summed over processes (all_reduce), which gives exactly the
one-process gradient. (We all-reduce the trainable gradients ourselves instead of wrapping the model
in DistributedDataParallel: SpLIP runs the model four times per step, and the trainable set is
small.) Evaluation embeds a share of every image set per process, gathers the rows once (no padded
sampler, so no item counted twice), and process 0 scores them and writes every file.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Process 0: the one that scores, prints and writes files."""
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This process's contiguous share of `n` items (sizes differ by at most one)."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)


def init_world(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on the CPU);
    a single process without torchrun is World(0, 1) and starts no group."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def local_device(name: str) -> torch.device:
    """`name` ("auto", "cpu", "cuda", "cuda:1") resolved for this process: under torchrun every
    process takes the GPU of its LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but torch sees no CUDA GPU here; use device='cpu' or 'auto'")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def all_reduce_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """Sum of `values` over processes (in place; returned for chaining)."""
    if world.size > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def sum_gradients(parameters: Iterable[torch.nn.Parameter], world: World) -> None:
    """Sum every trainable gradient over processes; a process whose share was empty adds zeros."""
    if world.size == 1:
        return
    for p in parameters:
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def gather_rows(local: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate every process's `local` rows (shape (n_r, ...), n_r may differ) in rank order."""
    if world.size == 1:
        return local
    counts = [torch.zeros(1, dtype=torch.int64, device=local.device) for _ in range(world.size)]
    dist.all_gather(counts, torch.tensor([local.shape[0]], device=local.device))
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local
    pieces = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(pieces, padded)
    return torch.cat([piece[: int(c.item())] for piece, c in zip(pieces, counts)])


def broadcast(obj: Any, world: World) -> Any:
    """Process 0's `obj` (any picklable value) on every process."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    """Wait for every process (e.g. until process 0 has written a checkpoint)."""
    if world.size > 1:
        dist.barrier()
