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
pass takes each part's gradient sums from the kernel's backward and writes the input gradient, paths through the four
moments and alpha included, in two passes. ``torch.compile`` traces the plain formulation (:func:`reference_autodial`),
which Inductor fuses by itself.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _BatchNorm

from normalization.domain import DOMAINS, DomainAwareNorm, check_domain, check_sync, copy_running_stats
from normalization.registry import Normalization, copy_affine, layer_label, register
from normalization.split_batchnorm import batch_moments, kernel_constants
from normalization.sync import distributed_world, global_moments, local_moments
from normda.errors import BatchTooSmallError, ConfigError


_aten = torch.ops.aten


def _mix(alpha: torch.Tensor, moments: torch.Tensor):
    swapped = moments.flip(0)
    difference = moments - swapped  # (2, 2, C): moments - J moments, J the domain swap
    squared = difference[:, 0].square()  # (mu_s - mu_t)^2 in both rows
    spread = alpha * (1 - alpha)
    mixed = torch.lerp(swapped, moments, alpha)
    mixed[:, 1].addcmul_(squared, spread)
    return mixed, difference, squared, spread


def mixed_statistics(alpha: torch.Tensor, moments: torch.Tensor) -> torch.Tensor:
    """The cross-domain statistics that normalise each part (the AutoDIAL paper, Eq. 4-5). ``moments`` is
    ``(2, 2, C)``: ``[domain][mean, biased variance]``, source first; row ``d`` of the result holds
    ``mu_d' = alpha mu_d + (1 - alpha) mu_other`` and ``var_d' = alpha var_d + (1 - alpha) var_other + alpha (1 -
    alpha) (mu_s - mu_t)^2`` (exactly the part's own moments at alpha = 1)."""
    return _mix(alpha, moments)[0]


def mixed_statistics_with_derivatives(alpha: torch.Tensor, moments: torch.Tensor
                                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`mixed_statistics` (not differentiable) and two pieces of its derivative for
    :func:`mixed_statistics_backward`: ``dmixed/dalpha = moments - J moments`` plus ``(1 - 2 alpha)(mu_s - mu_t)^2`` on
    the variances, and ``cross_slope``, the ``(2, C)`` derivative of ``alpha (1 - alpha)(mu_s - mu_t)^2`` with respect
    to ``mu_s`` and ``mu_t``: ``+-2 alpha (1 - alpha)(mu_s - mu_t)``."""
    mixed, difference, squared, spread = _mix(alpha, moments)
    cross_slope = difference[:, 0] * (2 * spread)
    difference[:, 1].addcmul_(squared, 1 - 2 * alpha)
    return mixed, difference, cross_slope


def mixed_statistics_backward(alpha: torch.Tensor, grad_mixed: torch.Tensor, mixed_by_alpha: torch.Tensor,
                              cross_slope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of :func:`mixed_statistics` with respect to alpha and ``moments`` given ``grad_mixed`` (its
    output's): ``dL/dalpha = sum dL/dmixed * dmixed/dalpha`` and ``dL/dmoments = alpha dL/dmixed + (1 - alpha) J
    dL/dmixed``, plus ``cross_slope (dL/dvar_s' + dL/dvar_t')`` on the means."""
    grad_alpha = (grad_mixed * mixed_by_alpha).sum()
    grad_moments = torch.lerp(grad_mixed.flip(0), grad_mixed, alpha)
    grad_moments[:, 0].addcmul_(cross_slope, grad_mixed[:, 1].sum(0))
    return grad_alpha, grad_moments


class _AutoDIALFunction(torch.autograd.Function):
    """The two-domain AutoDIAL training step on ATen's batch-norm kernels; it updates the running statistics through
    ``update_running(rows, values)`` with ``rows = (mu_s', var_s', mu_t', var_t')``.

    Forward: each part's moments come from ``batch_norm_update_stats``, and the part is normalised by its mixed
    statistics with the eval-mode batch-norm kernel, straight into its rows of the output. Backward: with ``r_d =
    (var_d' + eps)^-1/2``, the kernel's eval-mode backward gives each part's sums ``G1 = sum g`` and ``G2 = sum g
    x_hat``, so ``dL/dmu_d' = -gamma r_d G1`` and ``dL/dvar_d' = -gamma r_d^2 G2 / 2``; these go back through
    :func:`mixed_statistics_backward` to alpha and the moments, and the input gradient of part ``d`` (``m`` values
    per channel) is ``gamma r_d g + 2 dL/dvar_d (x - mu_d) / m + dL/dmu_d / m``: the eval-mode kernel writes the last
    two terms as a per-channel affine map of ``x``, and one ``addcmul_`` adds the first."""

    @staticmethod
    def forward(ctx, x, weight, bias, alpha, n_source, eps, update_running):
        sizes = (n_source, x.shape[0] - n_source)
        parts = x.split(sizes)
        moment_rows = [moment for part in parts for moment in batch_moments(part)]  # mu_s, var_s, mu_t, var_t
        mixed, ctx.mixed_by_alpha, ctx.cross_slope = mixed_statistics_with_derivatives(
            alpha, torch.stack(moment_rows).view(2, 2, -1))
        rows = mixed.view(4, -1).unbind()
        _, empty = kernel_constants(x.shape[1], mixed.dtype, x.device)
        out = torch.empty_like(x)
        for part, out_part, mean, var in zip(parts, out.split(sizes), rows[::2], rows[1::2]):
            _aten.native_batch_norm.out(part, weight, bias, mean, var, False, 0.0, eps, out=out_part,
                                        save_mean=empty, save_invstd=empty)
        update_running(rows, x.numel() // x.shape[1])
        ctx.means, ctx.rows, ctx.sizes, ctx.eps = moment_rows[::2], rows, sizes, eps
        ctx.save_for_backward(x, weight, alpha, mixed)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, alpha, mixed = ctx.saved_tensors
        sizes, rows = ctx.sizes, ctx.rows
        parts, grads = x.split(sizes), grad_out.split(sizes)
        (_, sum_g_x_hat_s, sum_g_s), (_, sum_g_x_hat_t, sum_g_t) = (
            _aten.native_batch_norm_backward(grad, part, weight, mean, var, None, None, False, ctx.eps,
                                             [False, True, True])
            for grad, part, mean, var in zip(grads, parts, rows[::2], rows[1::2]))
        sums = torch.stack((sum_g_s, sum_g_x_hat_s, sum_g_t, sum_g_x_hat_t)).view(2, 2, -1)
        grad_bias, grad_weight = sums.sum(0).unbind()
        invstd = (mixed[:, 1] + ctx.eps).rsqrt_()
        input_scale = weight * invstd  # (2, C): gamma r_d
        grad_mixed = sums.mul_(torch.stack((input_scale, input_scale * invstd * 0.5), dim=1).neg_())
        grad_alpha, grad_moments = mixed_statistics_backward(alpha, grad_mixed, ctx.mixed_by_alpha, ctx.cross_slope)
        counts = [size * x[0].numel() // x.shape[1] for size in sizes]  # values per channel in each part
        inverse_count = 1.0 / counts[0] if counts[0] == counts[1] else mixed.new_tensor([[1.0 / c] for c in counts])
        slopes = (grad_moments[:, 1] * (2.0 * inverse_count)).unbind()
        offsets = (grad_moments[:, 0] * inverse_count).unbind()
        ones, empty = kernel_constants(x.shape[1], mixed.dtype, x.device)
        grad_x = torch.empty_like(x)
        for grad, part, grad_part, mean, slope, offset, scale in zip(
                grads, parts, grad_x.split(sizes), ctx.means, slopes, offsets,
                input_scale.view((2, -1) + (1,) * (x.dim() - 2))):
            # slope (x - mu_d) + offset: the eval-mode kernel with weight = slope, bias = offset, var = 1 and eps = 0
            _aten.native_batch_norm.out(part, slope, offset, mean, ones, False, 0.0, 0.0, out=grad_part,
                                        save_mean=empty, save_invstd=empty)
            grad_part.addcmul_(grad, scale)
        return grad_x, grad_weight, grad_bias, grad_alpha, None, None, None


def reference_autodial(x: torch.Tensor, alpha: torch.Tensor, n_source: int, eps: float, moments=local_moments
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The normalised two-domain batch (before gamma/beta), the ``(2, 2, C)`` mixed statistics and the value count of
    each domain, in plain differentiable ops; ``moments`` computes the per-domain statistics
    (``normalization.sync.local_moments``, or ``global_moments`` over all processes)."""
    parts = (x[:n_source], x[n_source:])
    mean, var, counts = moments(list(parts))
    mixed = mixed_statistics(alpha, torch.stack((mean, var), dim=1))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    outputs = [(part - mixed[d, 0].view(shape)) / torch.sqrt(mixed[d, 1].view(shape) + eps)
               for d, part in enumerate(parts)]
    return torch.cat(outputs, dim=0).to(x.dtype), mixed, counts


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
            with torch.no_grad():
                self._update(("source",) if n_source else ("target",), (mean, invstd.pow(-2) - self.eps), values)
            return out
        synced = self.sync and distributed_world() > 1
        if not (synced or torch.compiler.is_compiling()):
            return _AutoDIALFunction.apply(x, self.weight, self.bias, self.alpha, n_source, self.eps,
                                           functools.partial(self._update, DOMAINS))
        shape = (1, self.num_features) + (1,) * (x.dim() - 2)
        x_hat, mixed, counts = reference_autodial(x, self.alpha, n_source, self.eps,
                                                  global_moments if synced else local_moments)
        with torch.no_grad():
            self._update(DOMAINS, mixed.detach().view(4, -1).unbind(), counts.sum() if synced else values)
        return self.weight.view(shape) * x_hat + self.bias.view(shape)

    def _update(self, domains: tuple[str, ...], rows: tuple[torch.Tensor, ...], values) -> None:
        """Average ``rows = (mean, biased variance)`` of each of ``domains`` into its running statistics: ``r <- r +
        factor (stat - r)`` with Caffe's ``factor = 1 / s``, ``s <- l s + 1`` (or BatchNorm's momentum); the variance
        stored is unbiased with ``values`` per channel. Called without autograd."""
        correction = values / (values - 1).clamp(min=1) if torch.is_tensor(values) else values / max(values - 1, 1)
        batch = list(rows)
        batch[1::2] = torch._foreach_mul(rows[1::2], correction)
        running = [getattr(self, f"running_{moment}_{domain}") for domain in domains for moment in ("mean", "var")]
        if self.running_average == "pytorch":
            torch._foreach_lerp_(running, batch, self.momentum)
            return
        scales = [getattr(self, f"running_weight_{domain}") for domain in domains]
        torch._foreach_mul_(scales, self.moving_average_fraction)
        torch._foreach_add_(scales, 1.0)
        factors = torch._foreach_reciprocal(scales)
        torch._foreach_lerp_(running, batch, [factor for factor in factors for _ in ("mean", "var")])


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
