"""Data-parallel training under `torchrun`: one process per device, gradients averaged by
DistributedDataParallel (gloo on CPU, NCCL on GPUs). Without torchrun's variables (RANK,
WORLD_SIZE, LOCAL_RANK) every helper here is a no-op for a single process, so the training loop
has no separate distributed branch.

    torchrun --standalone --nproc-per-node 2 -m training.train --config ...

(`make train-distributed NPROC=2`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs to MLflow, registers and prints progress."""
        return self.rank == 0


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The process's place in the job, from torchrun's environment variables."""
    env = os.environ if env is None else env
    return World(
        rank=int(env.get("RANK", "0")),
        size=int(env.get("WORLD_SIZE", "1")),
        local_rank=int(env.get("LOCAL_RANK", "0")),
    )


def init(world: World, device: torch.device) -> torch.device:
    """Join the process group (once) and return this rank's device."""
    if not world.distributed:
        return device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The model as DistributedDataParallel when there is more than one process."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> Any:
    return getattr(model, "module", model)


def shard(order: np.ndarray, world: World) -> np.ndarray:
    """This rank's share of an epoch's order: every rank gets the same number of rows (the head
    of the order is repeated to fill the last round, as torch's DistributedSampler does)."""
    if not world.distributed:
        return order
    per_rank = -(-len(order) // world.size)
    padded = np.concatenate([order, order[: per_rank * world.size - len(order)]])
    return padded[world.rank :: world.size]


def mean_across(value: float, world: World) -> float:
    """The mean of `value` over the ranks (a loss, for logging)."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world.size


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def finish(world: World) -> None:
    """Leave the process group (after training; rank 0 then logs and registers alone)."""
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def weights_digest(model: torch.nn.Module) -> str:
    """A short hash of the weights: equal on every rank when DDP kept them in step."""
    digest = hashlib.sha256()
    for name, tensor in sorted(unwrap(model).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
