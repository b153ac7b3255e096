"""Per-domain batch statistics over all processes of a ``torchrun`` job: what ``nn.SyncBatchNorm`` is to BatchNorm,
for the domain-aware layers (TransNorm, DSBN, AutoDIAL; ``norm.sync=true``).

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


def local_moments(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Means and biased variances ``(D, C)`` and value counts ``(D,)`` of each of the ``D`` parts in this process (an
    empty part has zeros). Differentiable; float32 for half-precision input."""
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
    mean, var = torch.stack(rows_mean), torch.stack(rows_var)
    return mean, var, torch.tensor(counts, dtype=mean.dtype, device=mean.device)


def global_moments(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`local_moments` over all processes (a part may be empty on some of them)."""
    mean, var, counts = local_moments(parts)
    count = counts.unsqueeze(1)  # (D, 1)
    total = _sum_over_processes(torch.cat([count, count * mean], dim=1))  # (D, 1 + C): counts and sums
    global_count = total[:, :1]
    global_mean = total[:, 1:] / global_count
    spread = _sum_over_processes(count * (var + (mean - global_mean).square())) / global_count
    return global_mean, spread, global_count.squeeze(1)


def synced_split_batch_norm(x: torch.Tensor, n_source: int, affine: dict, running: dict, momentum: dict,
                            eps: float, channel_scale=None) -> torch.Tensor:
    """:func:`normalization.split_batch_norm.split_batch_norm` with each domain's statistics taken over all processes
    (the same arguments; ``momentum`` per domain). Running statistics receive the global mean and unbiased variance,
    equal on every process."""
    parts = {"source": x[:n_source], "target": x[n_source:]}
    mean, var, count = global_moments(list(parts.values()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    outputs, statistics = [], {}
    for index, (domain, part) in enumerate(parts.items()):
        if count[index] == 0:
            continue
        with torch.no_grad():
            unbiased = var[index] * (count[index] / (count[index] - 1).clamp(min=1))
            statistics[domain] = (mean[index].detach(), unbiased)
            if running[domain] is not None and running[domain][0] is not None:
                running_mean, running_var = running[domain]
                running_mean.lerp_(mean[index].to(running_mean.dtype), momentum[domain])
                running_var.lerp_(unbiased.to(running_var.dtype), momentum[domain])
        if part.shape[0] == 0:
            continue
        normalised = (part - mean[index].view(shape)) * torch.rsqrt(var[index].view(shape) + eps)
        weight, bias = affine[domain]
        if weight is not None:
            normalised = normalised * weight.view(shape) + bias.view(shape)
        outputs.append(normalised.to(x.dtype))
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)
    scale = channel_scale(statistics) if channel_scale is not None else None
    return out if scale is None else out * scale.view(shape).to(out.dtype)

