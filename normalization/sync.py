"""Per-domain batch moments, in this process or over all processes of a ``torchrun`` job: what ``nn.SyncBatchNorm``
is to BatchNorm, for the domain-aware layers (TransNorm, DSBN, AutoDIAL; ``norm.sync=true``). The layers' plain
formulations (``split_batchnorm.reference_split_batch_norm``, ``autodial.reference_autodial``) take either function.

Each process holds its own source and target parts. A layer computes each part's mean and biased variance locally
(``torch.var_mean``), then two differentiable all-reduces combine them exactly (Chan et al.'s parallel formula):

    n = sum_r n_r,   mu = sum_r n_r mu_r / n,   var = sum_r n_r (var_r + (mu_r - mu)^2) / n

The gradient flows back through the all-reduces (PyTorch's functional collectives), so the input
gradient on each process equals that of the same rows in one process holding the whole batch. Without an initialised
process group of more than one process, the layers use their single-process kernels.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as collectives


def distributed_world() -> int:
    """The number of processes statistics are synchronised over (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _reduce_dims(x: torch.Tensor) -> tuple[int, ...]:
    return (0, *range(2, x.dim()))


def _sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """A differentiable all-reduce (sum): its backward pass sums the gradients of all processes."""
    return collectives.all_reduce(tensor, "sum", dist.group.WORLD)


def local_moments(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Means and biased variances ``(D, C)`` of each of the ``D`` parts in this process (an empty part has zeros), and
    their value counts per channel. Differentiable; float32 for half-precision input."""
    rows_mean, rows_var, counts = [], [], []
    for part in parts:
        values = part.float() if part.dtype in (torch.float16, torch.bfloat16) else part
        count = part.shape[0] * part.shape[2:].numel()
        if count:
            var, mean = torch.var_mean(values, dim=_reduce_dims(part), correction=0)
        else:
            mean = var = values.new_zeros(part.shape[1])
        rows_mean.append(mean)
        rows_var.append(var)
        counts.append(count)
    return torch.stack(rows_mean), torch.stack(rows_var), counts


def global_moments(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """:func:`local_moments` over all processes (a part may be empty on some of them; a domain empty everywhere has
    count 0 and undefined moments)."""
    mean, var, counts = local_moments(parts)
    count = torch.tensor(counts, dtype=mean.dtype, device=mean.device).unsqueeze(1)  # (D, 1)
    total = _sum_over_processes(torch.cat([count, count * mean], dim=1))  # (D, 1 + C): counts and sums
    global_count = total[:, :1]
    global_mean = total[:, 1:] / global_count
    spread = _sum_over_processes(count * (var + (mean - global_mean).square())) / global_count
    return global_mean, spread, [int(value) for value in global_count.squeeze(1).tolist()]
