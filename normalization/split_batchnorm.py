"""Batch normalization of the source and target parts of one batch, each by its own statistics, in one output tensor.

``split_batch_norm`` computes, for the parts ``x_d = x[rows_d]`` of a concatenated batch ``[x_s; x_t]``,

    y_d = s * (gamma_d * (x_d - mu_d) / sqrt(var_d + eps) + beta_d)

with ``mu_d, var_d`` the batch mean and biased variance of ``x_d`` over every axis but the channel, the running
statistics of domain ``d`` updated as ``F.batch_norm`` does, and ``s`` an optional per-channel scale computed from
the batch statistics and treated as a constant (TransNorm's ``1 + alpha``, Eq. 7 of Wang et al., 2019).

This is exactly ``torch.cat([F.batch_norm(x_s, ...), F.batch_norm(x_t, ...)]) * s``, computed in the passes over the
activations that BatchNorm itself makes: ATen's ``batch_norm_update_stats`` gives each part's moments, ``s`` comes from
them, and the eval-mode ``native_batch_norm`` kernel normalises each part with its moments and the affine
``(s gamma_d, s beta_d)`` straight into its rows of one output (no concatenation, no pass to apply ``s``). The backward
pass is ATen's ``native_batch_norm_backward`` with ``s gamma_d`` as the weight.

There is one other formulation, :func:`reference_split_batch_norm`: each domain's moments from ``torch.var_mean``, the
normalisation written out, autograd for the backward. ``torch.compile`` traces it (Inductor fuses it by itself), and
``norm.sync=true`` runs it with the moments of all processes (``normalization/sync.py``, the only thing that differs).
The fused kernels are kept because they pay on their own (``scripts/bench_norms.py``, the ``[plain ops]`` rows: the
README's Speed section); :func:`fused_kernels` switches them off to measure that.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch
from torch.autograd.function import once_differentiable

from normda.normalization.sync import distributed_world, global_moments, local_moments

#: maps ``{domain: (batch mean, unbiased batch variance)}`` of the parts present to a per-channel scale, or None.
ChannelScale = Callable[[dict], Optional[torch.Tensor]]

_aten = torch.ops.aten
_FUSED = True


@contextmanager
def fused_kernels(enabled: bool) -> Iterator[None]:
    """Within the block, TransNorm, DSBN and AutoDIAL use their fused kernels (``True``, the default) or the plain
    formulation that ``torch.compile`` and ``norm.sync`` use (``False``): what ``scripts/bench_norms.py`` compares."""
    global _FUSED
    previous, _FUSED = _FUSED, enabled
    try:
        yield
    finally:
        _FUSED = previous


def use_fused_kernels(sync: bool) -> bool:
    """Whether a layer takes its fused path: not while ``torch.compile`` traces, not when its statistics are
    synchronised across processes, not inside ``fused_kernels(False)``."""
    return _FUSED and not (sync and distributed_world() > 1) and not torch.compiler.is_compiling()


def statistics_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype ATen's batch norm keeps its statistics in (float32 for float16/bfloat16 input)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def in_statistics_dtype(x: torch.Tensor, *parameters: torch.Tensor | None) -> list[torch.Tensor | None]:
    """``parameters`` in the dtype the kernels keep their statistics in for ``x``: a model cast to half precision
    (``model.half()``) has half-precision gamma/beta, which ATen's kernels accept only beside half-precision
    statistics. The cast is differentiable, so the gradients return in the parameters' own dtype."""
    dtype = statistics_dtype(x)
    return [p if p is None or p.dtype == dtype else p.to(dtype) for p in parameters]


def batch_moments(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance over every axis but dim 1, in float32 for float16/bfloat16 input."""
    dtype = statistics_dtype(part)
    return torch.batch_norm_update_stats(part if part.dtype == dtype else part.to(dtype), None, None, 0.0)


@functools.lru_cache(maxsize=None)
def kernel_constants(channels: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Ones (a variance that, with eps = 0, makes the eval-mode batch-norm kernel a plain per-channel affine map) and
    the empty tensor the kernel's out= form takes for the batch statistics it does not compute in eval mode."""
    return torch.ones(channels, dtype=dtype, device=device), torch.empty(0, dtype=dtype, device=device)


def _per_domain(momentum: float | dict) -> dict:
    return momentum if isinstance(momentum, dict) else {"source": momentum, "target": momentum}


def _channel_view(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.view((1, -1) + (1,) * (x.dim() - 2))


class _SplitBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight_source, bias_source, weight_target, bias_target, n_source, running, momentum, eps,
                channel_scale):
        parts = [part for part in ((0, "source", 0, n_source, weight_source, bias_source),
                                   (1, "target", n_source, x.shape[0], weight_target, bias_target))
                 if part[3] > part[2]]
        moments = {}
        for _, domain, start, stop, _, _ in parts:
            part = x[start:stop]
            count = part.numel() // part.shape[1]
            mean, var = batch_moments(part)
            moments[domain] = (mean, var, var * (count / (count - 1)))
        scale = channel_scale({d: (m[0], m[2]) for d, m in moments.items()}) if channel_scale is not None else None
        out = torch.empty_like(x)
        _, empty = kernel_constants(x.shape[1], statistics_dtype(x), x.device)
        saved = []
        for _, domain, start, stop, weight, bias in parts:
            mean, var, unbiased = moments[domain]
            if scale is not None:
                weight = scale if weight is None else weight * scale
                bias = None if bias is None else bias * scale
            _aten.native_batch_norm.out(x[start:stop], weight, bias, mean, var, False, 0.0, eps, out=out[start:stop],
                                        save_mean=empty, save_invstd=empty)
            running_mean, running_var = running[domain]
            if running_mean is not None:
                running_mean.lerp_(mean.to(running_mean.dtype), momentum[domain])
                running_var.lerp_(unbiased.to(running_var.dtype), momentum[domain])
            saved += [mean, torch.rsqrt(var + eps)]
        ctx.parts = [(index, start, stop) for index, _, start, stop, _, _ in parts]
        ctx.weights_present = [weight_source is not None, weight_target is not None]
        ctx.eps, ctx.scale = eps, scale
        ctx.save_for_backward(x, weight_source, weight_target, *saved)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight_source, weight_target, *saved = ctx.saved_tensors
        scale = ctx.scale
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grads_affine = [None, None, None, None]
        for index, (domain, start, stop) in enumerate(ctx.parts):
            weight = (weight_source, weight_target)[domain]
            has_affine = ctx.weights_present[domain]
            if scale is not None:
                weight = weight * scale if has_affine else scale
            arguments = (grad_out[start:stop], x[start:stop], weight, None, None, saved[2 * index],
                         saved[2 * index + 1], True, ctx.eps)
            if grad_x is not None:  # each part's input gradient straight into its rows (no concatenation)
                grad_weight, grad_bias = saved[2 * index].new_empty((2, x.shape[1])).unbind()
                _aten.native_batch_norm_backward.out(*arguments, [True, True, True], out0=grad_x[start:stop],
                                                     out1=grad_weight, out2=grad_bias)
            else:
                _, grad_weight, grad_bias = _aten.native_batch_norm_backward(*arguments, [False, has_affine, has_affine])
            if has_affine:
                if scale is not None:
                    grad_weight, grad_bias = grad_weight * scale, grad_bias * scale
                grads_affine[2 * domain: 2 * domain + 2] = grad_weight, grad_bias
        return grad_x, *grads_affine, None, None, None, None, None


def split_batch_norm(x: torch.Tensor, n_source: int, affine: dict, running: dict, momentum: float | dict,
                     eps: float, channel_scale: ChannelScale | None = None, sync: bool = False) -> torch.Tensor:
    """Normalise ``x[:n_source]`` (source) and ``x[n_source:]`` (target) by their own batch statistics.

    ``affine[domain] = (gamma, beta)`` (the same tensors for a shared affine, or None); ``running[domain] =
    (running_mean, running_var)`` (or None), updated in place with ``momentum`` (one float, or one per domain). An
    empty part is skipped. ``channel_scale`` receives ``{domain: (mean, unbiased variance)}`` of the parts present and
    returns the per-channel scale ``s``. ``sync``: each domain's statistics over all processes of a distributed job.
    """
    if use_fused_kernels(sync):
        parameters = in_statistics_dtype(x, *affine["source"], *affine["target"])
        return _SplitBatchNorm.apply(x, *parameters, n_source, running, _per_domain(momentum), eps, channel_scale)
    synced = sync and distributed_world() > 1
    return reference_split_batch_norm(x, n_source, affine, running, momentum, eps, channel_scale,
                                      global_moments if synced else local_moments)


def reference_split_batch_norm(x: torch.Tensor, n_source: int, affine: dict, running: dict, momentum: float | dict,
                               eps: float, channel_scale: ChannelScale | None = None, moments=local_moments
                               ) -> torch.Tensor:
    """:func:`split_batch_norm` in plain differentiable operations: ``moments`` gives each domain's mean, biased
    variance and value count (``normalization.sync.local_moments`` in this process, ``global_moments`` over all
    processes, where a domain's part may be empty on some of them); each part is ``(x_d - mu_d) / sqrt(var_d + eps)``
    with its affine; the running statistics receive the mean and the unbiased variance."""
    momentum = _per_domain(momentum)
    parts = {"source": x[:n_source], "target": x[n_source:]}
    mean, var, count = moments(list(parts.values()))
    outputs, statistics = [], {}
    for index, (domain, part) in enumerate(parts.items()):
        if count[index] == 0:
            continue
        with torch.no_grad():
            unbiased = var[index] * (count[index] / max(count[index] - 1, 1))
            statistics[domain] = (mean[index].detach(), unbiased)
            running_mean, running_var = running[domain] if running[domain] is not None else (None, None)
            if running_mean is not None:
                running_mean.lerp_(mean[index].to(running_mean.dtype), momentum[domain])
                running_var.lerp_(unbiased.to(running_var.dtype), momentum[domain])
        # a part empty here but present in the whole batch stays in the graph: its affine gets a zero gradient, not
        # none, as DistributedDataParallel expects of every parameter on every process
        normalised = (part - _channel_view(mean[index], x)) * torch.rsqrt(_channel_view(var[index], x) + eps)
        weight, bias = affine[domain]
        if weight is not None:
            normalised = normalised * _channel_view(weight, x) + _channel_view(bias, x)
        outputs.append(normalised.to(x.dtype))
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)
    scale = channel_scale(statistics) if channel_scale is not None else None
    return out if scale is None else out * _channel_view(scale, x).to(out.dtype)
