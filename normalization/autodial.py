"""AutoDIAL: automatic domain alignment layers (Carlucci et al., ICCV 2017), as the official Caffe ``DialLayer``.

Each layer learns one scalar ``alpha`` (init 1, clipped to [0.5, 1] before every forward, no weight decay). With the
per-domain batch means ``mu_s, mu_t`` and biased variances ``var_s, var_t`` (over N, H, W), the source part of the
batch is normalised with the cross-domain statistics

    mu_st  = alpha mu_s + (1 - alpha) mu_t
    var_st = alpha var_s + (1 - alpha) var_t + alpha (1 - alpha) (mu_s - mu_t)^2

and the target part with ``mu_ts, var_ts`` (s and t swapped); then a shared gamma/beta. Gradients reach alpha through
these statistics. alpha = 1 normalises each domain by itself (DIAL); alpha = 0.5 with equal halves is BatchNorm over
the whole batch.

Running statistics keep one row per domain (``running_mean_source`` holds the source-mixed mean). ``running_average:
caffe`` (default) accumulates as Caffe does, ``s <- l s + 1, r <- r + (stat - r) / s`` with ``l`` =
``moving_average_fraction`` (0.999): an average with bias correction; ``pytorch`` uses BatchNorm's ``momentum``. The
variance stored is unbiased with ``m`` = all N H W values of the batch, both domains. Evaluation normalises with the
target row. A single-domain batch normalises by its own statistics and updates its own row only.

The two-domain training step runs on ATen's batch-norm kernels (:class:`_AutoDIALFunction`): the per-domain moments
come from ``batch_norm_update_stats``, each part is normalised by its mixed statistics in one pass, and the backward
pass adds the gradient through the four moments and alpha to the kernel's input gradient. ``torch.compile`` traces the
plain formulation (:func:`reference_autodial`), which Inductor fuses by itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _BatchNorm

from normalization.domain import DomainAwareNorm, check_domain, check_sync, copy_running_stats
from normalization.registry import Normalization, copy_affine, layer_label, register
from normalization.split_batchnorm import batch_moments
from normalization.sync import distributed_world, global_moments, local_moments
from normda.errors import BatchTooSmallError, ConfigError


_aten = torch.ops.aten


def mixed_statistics(alpha: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-domain statistics that normalise each part (the AutoDIAL paper, Eq. 4-5). ``mean`` and ``var`` are
    ``(2, C)``: the per-domain means and biased variances, source row first; row ``d`` of the result is
    ``alpha stat_d + (1 - alpha) stat_other``, plus ``alpha (1 - alpha) (mu_s - mu_t)^2`` for the variance."""
    cross = alpha * (1 - alpha) * (mean[0] - mean[1]).square()
    return torch.lerp(mean.flip(0), mean, alpha), torch.lerp(var.flip(0), var, alpha) + cross


def mixed_statistics_backward(alpha: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                              grad_mixed_mean: torch.Tensor, grad_mixed_var: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of :func:`mixed_statistics` with respect to alpha, ``mean`` and ``var`` given those of its outputs:
    with ``delta = mu_s - mu_t`` and ``G`` the sum of both rows of ``dL/dvar'``,
    ``dL/dmu_s = a dL/dmu_s' + (1 - a) dL/dmu_t' + 2 a (1 - a) delta G`` (the target row with ``-delta``),
    ``dL/dvar_s = a dL/dvar_s' + (1 - a) dL/dvar_t'`` and
    ``dL/da = sum_c delta (dL/dmu_s' - dL/dmu_t') + (var_s - var_t)(dL/dvar_s' - dL/dvar_t') + (1 - 2a) delta^2 G``."""
    delta = mean[0] - mean[1]
    both = grad_mixed_var.sum(0)
    cross = 2 * alpha * (1 - alpha) * delta * both
    grad_alpha = (delta * (grad_mixed_mean[0] - grad_mixed_mean[1]) + (var[0] - var[1]) * (grad_mixed_var[0] -
                  grad_mixed_var[1]) + (1 - 2 * alpha) * delta.square() * both).sum()
    grad_mean = torch.lerp(grad_mixed_mean.flip(0), grad_mixed_mean, alpha) + torch.stack([cross, -cross])
    return grad_alpha, grad_mean, torch.lerp(grad_mixed_var.flip(0), grad_mixed_var, alpha)


class _AutoDIALFunction(torch.autograd.Function):
    """The two-domain AutoDIAL training step. Returns the output and the ``(2, C)`` mixed means and variances (for
    the running averages).

    Forward: the moments of each part come from ``batch_norm_update_stats``, and each part is normalised by its mixed
    statistics with the eval-mode batch-norm kernel, straight into its rows of the output. Backward: with
    ``r_d = (var_d' + eps)^-1/2`` for the mixed statistics ``(mu_d', var_d')`` of part ``d``, the kernel's eval-mode
    backward gives the sums ``G1 = sum g`` and ``G2 = sum g x_hat``; then ``dL/dmu_d' = -gamma r_d G1`` and
    ``dL/dvar_d' = -gamma r_d^2 G2 / 2`` go back through :func:`mixed_statistics_backward` to the moments and alpha,
    and the input gradient of part ``d`` (``m`` values per channel) is
    ``gamma r_d g + dL/dmu_d / m + 2 dL/dvar_d (x - mu_d) / m``."""

    @staticmethod
    def forward(ctx, x, weight, bias, alpha, n_source, eps):
        parts = ((0, n_source), (n_source, x.shape[0]))
        (mean_s, var_s), (mean_t, var_t) = (batch_moments(x[start:stop]) for start, stop in parts)
        mean, var = torch.stack([mean_s, mean_t]), torch.stack([var_s, var_t])
        mixed_mean, mixed_var = mixed_statistics(alpha, mean, var)
        out = torch.empty_like(x)
        empty = mean.new_empty(0)
        for (start, stop), part_mean, part_var in zip(parts, mixed_mean, mixed_var):
            _aten.native_batch_norm.out(x[start:stop], weight, bias, part_mean, part_var, False, 0.0, eps,
                                        out=out[start:stop], save_mean=empty, save_invstd=empty.clone())
        ctx.parts, ctx.eps = parts, eps
        ctx.save_for_backward(x, weight, alpha, mean, var, mixed_mean, mixed_var)
        ctx.mark_non_differentiable(mixed_mean, mixed_var)
        return out, mixed_mean, mixed_var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, *unused):
        x, weight, alpha, mean, var, mixed_mean, mixed_var = ctx.saved_tensors
        parts = [(grad_out[start:stop], x[start:stop]) for start, stop in ctx.parts]
        (_, sum_g_x_hat_s, sum_g_s), (_, sum_g_x_hat_t, sum_g_t) = (
            _aten.native_batch_norm_backward(grad, part, weight, part_mean, part_var, None, None, False, ctx.eps,
                                             [False, True, True])
            for (grad, part), part_mean, part_var in zip(parts, mixed_mean, mixed_var))
        sum_g_x_hat, sum_g = torch.stack([sum_g_x_hat_s, sum_g_x_hat_t]), torch.stack([sum_g_s, sum_g_t])
        invstd = torch.rsqrt(mixed_var + ctx.eps)
        input_scale = weight * invstd
        grad_alpha, grad_mean, grad_var = mixed_statistics_backward(
            alpha, mean, var, -input_scale * sum_g, -0.5 * input_scale * invstd * sum_g_x_hat)
        # per part: dL/dx = input_scale g + slope x + offset, with slope = 2 dL/dvar / m, offset = dL/dmu / m - slope mu
        counts = [part.numel() // part.shape[1] for _, part in parts]
        inverse_count = mean.new_full((2, 1), 1.0 / counts[0])
        if counts[1] != counts[0]:
            inverse_count[1] = 1.0 / counts[1]
        slope = grad_var * inverse_count * 2.0
        offset = grad_mean * inverse_count - slope * mean
        grad_x = torch.empty_like(x)
        shape = (2, -1) + (1,) * (x.dim() - 2)
        for (start, stop), (grad, part), part_offset, part_scale, part_slope in zip(
                ctx.parts, parts, offset.view(shape), input_scale.view(shape), slope.view(shape)):
            torch.addcmul(part_offset, grad, part_scale, out=grad_x[start:stop])
            grad_x[start:stop].addcmul_(part, part_slope)
        return grad_x, sum_g_x_hat.sum(0), sum_g.sum(0), grad_alpha, None, None


def reference_autodial(x: torch.Tensor, alpha: torch.Tensor, n_source: int, eps: float, moments=local_moments
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The normalised two-domain batch (before gamma/beta), the ``(2, C)`` mixed means and variances and the value
    count of each domain, in plain differentiable ops; ``moments`` computes the per-domain statistics
    (``normalization.sync.local_moments``, or ``global_moments`` over all processes)."""
    parts = (x[:n_source], x[n_source:])
    mean, var, counts = moments(list(parts))
    mixed_mean, mixed_var = mixed_statistics(alpha, mean, var)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    outputs = [(part - mixed_mean[d].view(shape)) / torch.sqrt(mixed_var[d].view(shape) + eps)
               for d, part in enumerate(parts)]
    return torch.cat(outputs, dim=0).to(x.dtype), mixed_mean, mixed_var, counts


class AutoDIALNorm(DomainAwareNorm, nn.Module):
    """One AutoDIAL layer for (N, C), (N, C, L) or (N, C, H, W) input."""

    def __init__(self, num_features: int, eps: float = 1e-5, running_average: str = "caffe",
                 moving_average_fraction: float = 0.999, momentum: float = 0.1):
        super().__init__()
        if running_average not in ("caffe", "pytorch"):
            raise ConfigError(f"unknown AutoDIAL running_average {running_average!r}: choose caffe or pytorch")
        self.num_features = num_features
        self.eps = eps
        self.running_average = running_average
        self.moving_average_fraction = moving_average_fraction
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.alpha.no_weight_decay = True  # decay_mult 0 in the official prototxt
        for domain in ("source", "target"):
            self.register_buffer(f"running_mean_{domain}", torch.zeros(num_features))
            self.register_buffer(f"running_var_{domain}", torch.ones(num_features))
            self.register_buffer(f"running_weight_{domain}", torch.tensor(0.0))  # Caffe's accumulated scale s
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, running_average={self.running_average}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, getattr(self, f"running_mean_{self.eval_domain}"),
                                getattr(self, f"running_var_{self.eval_domain}"), self.weight, self.bias,
                                training=False, eps=self.eps)
        with torch.no_grad():
            self.alpha.clamp_(0.5, 1.0)
        self.num_batches_tracked.add_(1)
        n_source, n_target = self.split_sizes(x.shape[0])
        for domain, size in (("source", n_source), ("target", n_target)):
            if size and size * x.shape[2:].numel() < 2:
                raise BatchTooSmallError(
                    f"AutoDIAL at {layer_label(self)} got 1 value per channel in the {domain} part of the batch "
                    f"({size} of {tuple(x.shape)}): give each domain at least 2 samples (data.batch_size)"
                )
        values = x.numel() // self.num_features
        if not (n_source and n_target):  # one domain: its own statistics, as BatchNorm
            out, mean, invstd = torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.eps)
            self._update("source" if n_source else "target", mean, invstd.pow(-2) - self.eps, values)
            return out
        synced = self.sync and distributed_world() > 1
        if synced or torch.compiler.is_compiling():
            shape = (1, self.num_features) + (1,) * (x.dim() - 2)
            x_hat, mixed_mean, mixed_var, counts = reference_autodial(
                x, self.alpha, n_source, self.eps, global_moments if synced else local_moments)
            out = self.weight.view(shape) * x_hat + self.bias.view(shape)
            values = counts.sum() if synced else values
        else:
            out, mixed_mean, mixed_var = _AutoDIALFunction.apply(x, self.weight, self.bias, self.alpha, n_source,
                                                                 self.eps)
        for index, domain in enumerate(("source", "target")):
            self._update(domain, mixed_mean[index], mixed_var[index], values)
        return out

    @torch.no_grad()
    def _update(self, domain: str, mean: torch.Tensor, var: torch.Tensor, values: int) -> None:
        running_mean = getattr(self, f"running_mean_{domain}")
        running_var = getattr(self, f"running_var_{domain}")
        if self.running_average == "caffe":
            weight = getattr(self, f"running_weight_{domain}")
            factor = weight.mul_(self.moving_average_fraction).add_(1.0).reciprocal()
        else:
            factor = self.momentum
        running_mean.lerp_(mean.detach(), factor)  # r <- r + factor (stat - r)
        correction = values / (values - 1).clamp(min=1) if torch.is_tensor(values) else values / max(values - 1, 1)
        running_var.lerp_(var.detach() * correction, factor)


@register("autodial")
class AutoDIAL(Normalization):
    """``norm=autodial``: every BatchNorm becomes an AutoDIAL layer; its gamma/beta and running statistics start both
    domains' rows (with Caffe scale s = 1, as if the statistics had been averaged once)."""

    def __init__(self, running_average: str = "caffe", moving_average_fraction: float = 0.999, momentum: float = 0.1,
                 test_stats: str = "target", sync: bool = False):
        check_domain(test_stats, "norm.test_stats")
        self.layer_options = dict(running_average=running_average, moving_average_fraction=moving_average_fraction,
                                  momentum=momentum)
        self.test_stats = test_stats
        self.sync = check_sync(sync)

    def replace(self, bn: _BatchNorm) -> AutoDIALNorm:
        layer = copy_affine(bn, AutoDIALNorm(bn.num_features, eps=bn.eps, **self.layer_options))
        copy_running_stats(bn, layer)
        if bn.track_running_stats:
            layer.running_weight_source.fill_(1.0)
            layer.running_weight_target.fill_(1.0)
        layer.eval_domain = self.test_stats
        layer.sync = self.sync
        return layer
