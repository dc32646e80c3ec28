"""Several processes (``torchrun --nproc_per_node N -m train …``): process group, device, helpers.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; with
``WORLD_SIZE > 1`` the trainer joins a process group (NCCL on CUDA, gloo on CPU), each process
takes ``cuda:LOCAL_RANK`` (or the CPU), and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from fastnst.devices import pick_device
from fastnst.errors import FastNSTError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this process writes checkpoints, samples, logs and the model."""
        return self.rank == 0


def setup(device_name: str | None) -> DistInfo:
    """Pick the device and, under torchrun, join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=pick_device(device_name))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        if device.index is None or device_name in (None, "", "auto", "cuda"):
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
        except (RuntimeError, ValueError) as exc:
            raise FastNSTError(f"Could not join the {backend} process group ({str(exc).splitlines()[0]}).") from exc
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def mean_over_processes(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``values`` over all processes (a copy; identity in a single process)."""
    if not info.enabled:
        return values.clone()
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
