"""One run over several processes, as ``torchrun --nproc_per_node=K train.py ...`` starts it: PyTorch's
``DistributedDataParallel`` (never ``nn.DataParallel``, whose scatter along the batch would hand each GPU a slice of
``[source; target]`` that is not split where the domain-aware layers think it is).

Each process draws its own share of every source and target batch (``datasets/sampling.py``: ``data.batch_size`` is
per process, the global batch is ``K`` times it), runs ``[its source; its target]`` through the model, and DDP
averages the gradients. With ``norm.sync=true`` TransNorm, DSBN and AutoDIAL take each domain's statistics over all
processes (``normalization/sync.py``). Process 0 evaluates, writes the run folder and logs; the others wait.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # where collectives' tensors live (NCCL needs them on the GPU)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """The process that evaluates and writes."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> tuple["Distributed", torch.device]:
        """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1): NCCL on GPUs,
        gloo on CPUs, one GPU per process (``LOCAL_RANK``). Return the group's description and this process's
        device; without ``torchrun``, a single process and ``device`` unchanged."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls(), device
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device
                                    if device.type == "cuda" else None)
        return cls(rank, world_size, local_rank, device), device

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in ``DistributedDataParallel`` (when it has trainable parameters), else itself."""
        if not self.active or not any(p.requires_grad for p in module.parameters()):
            return module
        device_ids = [self.local_rank] if next(module.parameters()).is_cuda else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any process."""
        if not self.active:
            return flag
        value = torch.tensor(float(flag), device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value)

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every process, in rank order (``[value]`` in a single process)."""
        if not self.active:
            return [value]
        buffer = io.BytesIO()
        torch.save(value, buffer)  # tensors travel as torch.save's bytes and load back with weights_only
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, buffer.getvalue())
        return [torch.load(io.BytesIO(data), weights_only=True) for data in values]

    def shutdown(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
