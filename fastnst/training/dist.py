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

from ..devices import pick_device
from ..errors import FastNSTError


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
    device = rank_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
        except (RuntimeError, ValueError) as exc:
            raise FastNSTError(f"Could not join the {backend} process group ({str(exc).splitlines()[0]}).") from exc
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)


def rank_device(device_name: str | None, local_rank: int) -> torch.device:
    """The device of one process under torchrun: ``cuda:LOCAL_RANK`` for a CUDA run, so that the
    processes of a node spread over its GPUs. An explicit ``cuda:N`` would put every process on GPU
    N: accepted only where it is this process's own GPU (one process per node), refused otherwise."""
    device = pick_device(device_name)
    if device.type != "cuda":
        return device
    if device.index is not None and device.index != local_rank:
        raise FastNSTError(f"--device {device_name} would put every torchrun process on one GPU: each takes "
                           "cuda:LOCAL_RANK; pass --device cuda and choose the GPUs with CUDA_VISIBLE_DEVICES.")
    return pick_device(f"cuda:{local_rank}")


def any_process(flag: bool, info: DistInfo) -> bool:
    """Whether ``flag`` is true in any process: a collective, so every process must call it at the same
    step. Used to stop together: a process that stopped alone would leave the others blocked in the
    next gradient all-reduce."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)  # NCCL reduces CUDA tensors only
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


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
