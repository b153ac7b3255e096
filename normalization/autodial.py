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
moments and alpha included, in two passes. The per-channel algebra around the kernels (mixed statistics, their
alpha-derivatives, the running rows; the backward through them) is one small matrix product each way
(:func:`step_statistics`, :func:`moment_gradients`): every quantity is a polynomial of degree 2 in alpha times the
moments, so a layer costs a few dozen small operations, not a hundred. ``torch.compile`` traces the plain formulation
(:func:`reference_autodial`, :func:`mixed_statistics`), which Inductor fuses by itself.
"""
from __future__ import annotations

import functools
from contextlib import nullcontext
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _BatchNorm

from normda.normalization.domain import DOMAINS, DomainAwareNorm, DomainAwareOption, TestStats, copy_running_stats
from normda.normalization.base import copy_affine, has_trained_statistics, register
from normda.normalization.split_batchnorm import (batch_moments, in_statistics_dtype, kernel_constants,
                                                   statistics_dtype, use_fused_kernels)
from normda.normalization.sync import distributed_world, global_moments, local_moments
from normda.registry import check_setting


_aten = torch.ops.aten

#: Caffe's bias-corrected average (``moving_average_fraction``) or BatchNorm's ``momentum``
RunningAverage = Literal["caffe", "pytorch"]


def mixed_statistics(alpha: torch.Tensor, moments: torch.Tensor) -> torch.Tensor:
    """The cross-domain statistics that normalise each part (the AutoDIAL paper, Eq. 4-5). ``moments`` is
    ``(2, 2, C)``: ``[domain][mean, biased variance]``, source first; row ``d`` of the result holds
    ``mu_d' = alpha mu_d + (1 - alpha) mu_other`` and ``var_d' = alpha var_d + (1 - alpha) var_other + alpha (1 -
    alpha) (mu_s - mu_t)^2`` (exactly the part's own moments at alpha = 1)."""
    swapped = moments.flip(0)
    mixed = torch.lerp(swapped, moments, alpha)
    gap = (moments[0, 0] - moments[1, 0]).square()
    return torch.stack((mixed[:, 0], mixed[:, 1] + alpha * (1 - alpha) * gap), dim=1)


#: the features of :func:`step_statistics`: the moments of both parts, the squared gap of their means, and 1 (for eps)
FEATURES = ("mean_source", "var_source", "mean_target", "var_target", "gap", "one")
#: the rows of :func:`step_statistics`
STEP_ROWS = ("mean_source", "var_eps_source", "mean_target", "var_eps_target",  # Eq. 4-5: mu_d', var_d' + eps
             "mean_source_by_alpha", "var_source_by_alpha", "mean_target_by_alpha", "var_target_by_alpha",
             "cross_source", "cross_target",
             "running_mean_source", "running_var_source", "running_mean_target", "running_var_target")
#: the rows of :func:`moment_gradients`
GRADIENT_ROWS = ("offset_source", "slope_source", "offset_target", "slope_target", "var_gradient_sum")
#: the blocks of :func:`step_statistics`' rows: the kernels' ``mu_s', var_s' + eps, mu_t', var_t' + eps``, their
#: alpha-derivatives, the cross terms, and the rows the running statistics average (in their buffers' order)
MIXED, BY_ALPHA, CROSS, RUNNING = (slice(STEP_ROWS.index(first), STEP_ROWS.index(last) + 1) for first, last in (
    ("mean_source", "var_eps_target"), ("mean_source_by_alpha", "var_target_by_alpha"),
    ("cross_source", "cross_target"), ("running_mean_source", "running_var_target")))


def _polynomial(*coefficients: float) -> torch.Tensor:
    return torch.tensor(coefficients, dtype=torch.float64)  # c0 + c1 alpha + c2 alpha^2


@functools.lru_cache(maxsize=256)
def step_tables(counts: tuple[int, int], eps: float, channels: int, dtype: torch.dtype, device: torch.device
                ) -> dict[str, torch.Tensor]:
    """The constants of one AutoDIAL step on parts of ``counts`` values per channel: the tables of
    :func:`step_statistics` and :func:`moment_gradients`, whose entries are polynomials in alpha (coefficients of 1,
    alpha, alpha^2) flattened to ``(rows * columns, 3)`` so that one product with ``(1, alpha, alpha^2)`` gives the
    step's coefficient matrix, and the kernels' constant arguments (``ones``, ``empty``)."""
    alpha, rest, spread = _polynomial(0, 1, 0), _polynomial(1, -1, 0), _polynomial(0, 1, -1)  # a, 1 - a, a (1 - a)
    one = _polynomial(1, 0, 0)
    unbiased = sum(counts) / max(sum(counts) - 1, 1)  # the running variance: unbiased over both domains' values
    row, column = {name: i for i, name in enumerate(STEP_ROWS)}, {name: i for i, name in enumerate(FEATURES)}
    forward = torch.zeros(len(STEP_ROWS), len(FEATURES), 3, dtype=torch.float64)
    backward = torch.zeros(len(GRADIENT_ROWS), 4, 3, dtype=torch.float64)  # columns: the scaled sums
    for domain, other, count in (("source", "target", counts[0]), ("target", "source", counts[1])):
        mean, var = row[f"mean_{domain}"], row[f"var_eps_{domain}"]  # also the columns of this part's moments
        other_mean, other_var, gap = column[f"mean_{other}"], column[f"var_{other}"], column["gap"]
        forward[mean, mean], forward[mean, other_mean] = alpha, rest
        forward[var, var], forward[var, other_var], forward[var, gap] = alpha, rest, spread
        forward[row[f"running_mean_{domain}"]] = forward[mean]
        forward[row[f"running_var_{domain}"]] = forward[var] * unbiased
        forward[var, column["one"]] = one * eps
        by_alpha_mean, by_alpha_var = row[f"mean_{domain}_by_alpha"], row[f"var_{domain}_by_alpha"]
        forward[by_alpha_mean, mean], forward[by_alpha_mean, other_mean] = -one, one
        forward[by_alpha_var, var], forward[by_alpha_var, other_var] = -one / 2, one / 2
        forward[by_alpha_var, gap] = _polynomial(-0.5, 1, 0)  # -(1 - 2 alpha) / 2
        cross = row[f"cross_{domain}"]
        forward[cross, mean], forward[cross, other_mean] = -spread / count, spread / count
        backward[mean, mean], backward[mean, other_mean] = -alpha / count, -rest / count
        backward[var, var], backward[var, other_var] = -alpha / count, -rest / count
        backward[GRADIENT_ROWS.index("var_gradient_sum"), var] = one
    constants = dict(forward=forward.view(-1, 3), backward=backward.view(-1, 3), alpha_powers=torch.arange(3.0),
                     invstd_powers=torch.tensor([[-0.5], [-1.0]]))
    tables = {name: table.to(dtype=dtype, device=device) for name, table in constants.items()}
    tables["ones"], tables["empty"] = kernel_constants(channels, dtype, device)
    return tables


def _full_precision(device_type: str):
    """Autocast off for the small matrix products (the statistics stay in their dtype), entered only where it is on."""
    return torch.autocast(device_type, enabled=False) if torch.is_autocast_enabled(device_type) else nullcontext()


def step_statistics(alpha: torch.Tensor, moments: tuple[torch.Tensor, ...], tables: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Everything one AutoDIAL step needs from the per-domain ``moments = (mu_s, var_s, mu_t, var_t)`` (biased
    variances), in one matrix product: every quantity is ``sum_k alpha^k T_k F`` with the features ``F = (mu_s, var_s,
    mu_t, var_t, (mu_s - mu_t)^2, 1)`` and the tables ``T_k`` of :func:`step_tables`. Returns ``(1, alpha, alpha^2)``
    and the rows named in :data:`STEP_ROWS`:

    - the mixed statistics of :func:`mixed_statistics` as the kernels take them, ``mu_d'`` and ``var_d' + eps``;
    - their alpha-derivatives, scaled as :func:`moment_gradients` needs them: ``-dmu_d'/dalpha`` and ``-dvar_d'/dalpha
      / 2``, with ``dvar_s'/dalpha = var_s - var_t + (1 - 2 alpha)(mu_s - mu_t)^2``;
    - ``cross_d = -+alpha (1 - alpha)(mu_s - mu_t) / m_d``: the derivative of ``alpha (1 - alpha)(mu_s - mu_t)^2``, the
      term both mixed variances share, with respect to ``mu_d``, times ``-1 / (2 m_d)``;
    - the running rows ``mu_s', var_s', mu_t', var_t'``, the variances unbiased over all ``m_s + m_t`` values.

    At alpha = 1 the mixed means are exactly the domains' own."""
    features = torch.stack((*moments, (moments[0] - moments[2]).square_(), tables["ones"]))
    powers = torch.pow(alpha, tables["alpha_powers"])
    with _full_precision(features.device.type):
        coefficients = torch.mv(tables["forward"], powers).view(len(STEP_ROWS), len(FEATURES))
        return powers, torch.mm(coefficients, features)


def moment_gradients(powers: torch.Tensor, statistics: torch.Tensor, scaled_sums: torch.Tensor,
                     tables: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The backward pass of the mixed statistics. ``scaled_sums`` is ``(4, C)``: ``gamma r_d sum g`` and ``gamma r_d^2
    sum g x_hat`` of each part, ``r_d = (var_d' + eps)^-1/2`` (so ``dL/dmu_d' = -gamma r_d sum g``, ``dL/dvar_d' =
    -gamma r_d^2 sum g x_hat / 2``); ``statistics`` and ``powers`` are :func:`step_statistics`'. Returns ``dL/dalpha``
    and the ``(5, C)`` rows ``dL/dmu_s / m_s, 2 dL/dvar_s / m_s, dL/dmu_t / m_t, 2 dL/dvar_t / m_t`` (the offset and
    slope of each part's input gradient in ``x - mu_d``) and the sum of both ``gamma r_d^2 sum g x_hat``. The moments'
    gradients are ``dL/dmu_d = alpha dL/dmu_d' + (1 - alpha) dL/dmu_other'`` plus, through ``alpha (1 - alpha)(mu_s -
    mu_t)^2``, ``+-2 alpha (1 - alpha)(mu_s - mu_t)(dL/dvar_s' + dL/dvar_t')``; the same for the variances without
    the last term."""
    grad_alpha = scaled_sums.mul(statistics[BY_ALPHA]).sum()
    with _full_precision(scaled_sums.device.type):
        terms = torch.mm(torch.mv(tables["backward"], powers).view(len(GRADIENT_ROWS), 4), scaled_sums)
    terms[0:4:2].addcmul_(statistics[CROSS], terms[GRADIENT_ROWS.index("var_gradient_sum")])  # the offsets
    return grad_alpha, terms


class _AutoDIALFunction(torch.autograd.Function):
    """The two-domain AutoDIAL training step on ATen's batch-norm kernels; it updates the running statistics through
    ``update_running(rows)`` with ``rows = (mu_s', unbiased var_s', mu_t', unbiased var_t')``.

    Forward: each part's moments come from ``batch_norm_update_stats``, :func:`step_statistics` gives the mixed
    statistics, and the eval-mode batch-norm kernel normalises each part by them straight into its rows of the output.
    Backward: the kernel's eval-mode backward gives each part's sums ``sum g`` and ``sum g x_hat``;
    :func:`moment_gradients` takes them back to alpha and the moments, and the input gradient of part ``d`` (``m_d``
    values per channel) is ``gamma r_d g + 2 dL/dvar_d (x - mu_d) / m_d + dL/dmu_d / m_d``: the eval-mode kernel
    writes the last two terms as a per-channel affine map of ``x``, and one ``addcmul_`` adds the first.

    Inside a network every small operation here costs several times what it costs alone (its code and data are cold
    between the convolutions), so the step is written with as few of them as the algebra allows: one table lookup,
    the per-part kernels called directly, ``eps`` folded into the statistics (the kernels run with ``eps = 0``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, alpha, n_source, eps, update_running):
        sizes = (n_source, x.shape[0] - n_source)
        values_per_sample = x[0, 0].numel()
        tables = step_tables((sizes[0] * values_per_sample, sizes[1] * values_per_sample), eps, x.shape[1],
                             statistics_dtype(x), x.device)
        source, target = x.split_with_sizes(sizes)
        mean_source, var_source = batch_moments(source)
        mean_target, var_target = batch_moments(target)
        powers, statistics = step_statistics(alpha, (mean_source, var_source, mean_target, var_target), tables)
        out = torch.empty_like(x)
        out_source, out_target = out.split_with_sizes(sizes)
        empty = tables["empty"]
        torch.native_batch_norm(source, weight, bias, statistics[0], statistics[1], False, 0.0, 0.0,
                                out=(out_source, empty, empty))
        torch.native_batch_norm(target, weight, bias, statistics[2], statistics[3], False, 0.0, 0.0,
                                out=(out_target, empty, empty))
        update_running(statistics[RUNNING].unbind())
        ctx.sizes, ctx.tables = sizes, tables
        ctx.save_for_backward(x, weight, powers, statistics, mean_source, mean_target)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, powers, statistics, mean_source, mean_target = ctx.saved_tensors
        sizes, tables = ctx.sizes, ctx.tables
        source, target = x.split_with_sizes(sizes)
        grad_source, grad_target = grad_out.split_with_sizes(sizes)
        _, sum_g_x_hat_s, sum_g_s = _aten.native_batch_norm_backward(
            grad_source, source, weight, statistics[0], statistics[1], None, None, False, 0.0, [False, True, True])
        _, sum_g_x_hat_t, sum_g_t = _aten.native_batch_norm_backward(
            grad_target, target, weight, statistics[2], statistics[3], None, None, False, 0.0, [False, True, True])
        # gamma r_s, gamma r_s^2, gamma r_t, gamma r_t^2 with r_d = (var_d' + eps)^-1/2
        scales = statistics[1:4:2].unsqueeze(1).pow(tables["invstd_powers"]).mul_(weight).view(4, -1)
        scaled_sums = torch.stack((sum_g_s, sum_g_x_hat_s, sum_g_t, sum_g_x_hat_t)).mul_(scales)
        grad_alpha, terms = moment_gradients(powers, statistics, scaled_sums, tables)
        channel = (1, -1) + (1,) * (x.dim() - 2)
        ones, empty = tables["ones"], tables["empty"]
        grad_x = torch.empty_like(x)
        grad_x_source, grad_x_target = grad_x.split_with_sizes(sizes)
        # slope (x - mu_d) + offset: the eval-mode kernel with weight = slope, bias = offset, var = 1 and eps = 0
        torch.native_batch_norm(source, terms[1], terms[0], mean_source, ones, False, 0.0, 0.0,
                                out=(grad_x_source, empty, empty))
        grad_x_source.addcmul_(grad_source, scales[0].view(channel))
        torch.native_batch_norm(target, terms[3], terms[2], mean_target, ones, False, 0.0, 0.0,
                                out=(grad_x_target, empty, empty))
        grad_x_target.addcmul_(grad_target, scales[2].view(channel))
        return grad_x, sum_g_x_hat_s + sum_g_x_hat_t, sum_g_s + sum_g_t, grad_alpha, None, None, None


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

    def __init__(self, num_features: int, eps: float = 1e-5, running_average: RunningAverage = "caffe",
                 moving_average_fraction: float = 0.999, momentum: float = 0.1, track_running_stats: bool = True):
        super().__init__()
        check_setting("running_average", running_average, RunningAverage)
        self.num_features = num_features
        self.eps = eps
        self.running_average = running_average
        self.moving_average_fraction = moving_average_fraction
        self.momentum = momentum
        self.track_running_stats = track_running_stats  # False: batch statistics in eval mode too, nothing kept
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.alpha.no_weight_decay = True  # decay_mult 0 in the official prototxt
        self.register_domain_statistics(num_features, track_running_stats, weight=0.0)  # weight: Caffe's scale s

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, running_average={self.running_average}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and not self.track_running_stats:  # as the BatchNorm it replaces
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        if not self.training:
            return F.batch_norm(x, *self.running_stats(self.test_stats), self.weight, self.bias, training=False,
                                eps=self.eps)
        with torch.no_grad():
            self.alpha.clamp_(0.5, 1.0)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
        n_source, n_target = self.split_sizes(x.shape[0])
        self.check_batch(x.shape, (n_source, n_target))
        values = x.numel() // self.num_features
        weight, bias, alpha = in_statistics_dtype(x, self.weight, self.bias, self.alpha)
        synced = self.sync and distributed_world() > 1
        if not (n_source and n_target) and not synced:  # one domain: its own statistics, as BatchNorm
            out, mean, invstd = torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, self.eps)
            with torch.no_grad():
                self._update(("source",) if n_source else ("target",),
                             (mean, _unbiased(invstd.pow(-2) - self.eps, values)))
            return out
        if use_fused_kernels(self.sync):
            return _AutoDIALFunction.apply(x, weight, bias, alpha, n_source, self.eps,
                                           functools.partial(self._update, DOMAINS))
        # synchronised, also where this process's share holds one domain: the whole batch holds both
        shape = (1, self.num_features) + (1,) * (x.dim() - 2)
        x_hat, mixed, counts = reference_autodial(x, self.alpha, n_source, self.eps,
                                                  global_moments if synced else local_moments)
        with torch.no_grad():
            mean, var = mixed.detach().unbind(1)
            var = _unbiased(var, sum(counts))
            self._update(DOMAINS, (mean[0], var[0], mean[1], var[1]))
        return self.weight.view(shape) * x_hat + self.bias.view(shape)

    def _update(self, domains: tuple[str, ...], rows: tuple[torch.Tensor, ...]) -> None:
        """Average ``rows = (mean, unbiased variance)`` of each of ``domains`` into its running statistics: ``r <- r +
        factor (stat - r)`` with Caffe's ``factor = 1 / s``, ``s <- l s + 1`` (or BatchNorm's momentum). Called
        without autograd; nothing when the layer keeps no running statistics."""
        if not self.track_running_stats:
            return
        running = [self._buffers[name] for name in _RUNNING_STATISTICS[domains]]
        if rows[0].dtype != running[0].dtype:  # buffers of a model cast to half precision
            rows = [row.to(running[0].dtype) for row in rows]
        if self.running_average == "pytorch":
            torch._foreach_lerp_(running, rows, self.momentum)
            return
        scales = [self._buffers[name] for name in _RUNNING_WEIGHTS[domains]]
        torch._foreach_mul_(scales, self.moving_average_fraction)
        torch._foreach_add_(scales, 1.0)
        factors = torch._foreach_reciprocal(scales)
        torch._foreach_lerp_(running, rows, [factor for factor in factors for _ in ("mean", "var")])


def _unbiased(var: torch.Tensor, values: int) -> torch.Tensor:
    """``var`` (biased, over ``values`` per channel) made unbiased."""
    return var * (values / max(values - 1, 1))


_DOMAIN_SETS = (("source",), ("target",), DOMAINS)
_RUNNING_STATISTICS = {domains: [f"running_{moment}_{domain}" for domain in domains for moment in ("mean", "var")]
                       for domains in _DOMAIN_SETS}
_RUNNING_WEIGHTS = {domains: [f"running_weight_{domain}" for domain in domains] for domains in _DOMAIN_SETS}


@register("autodial")
class AutoDIAL(DomainAwareOption):
    """``norm=autodial``: every BatchNorm becomes an AutoDIAL layer; its gamma/beta and running statistics start both
    domains' rows, with Caffe's scale s = 1 (as if the statistics had been averaged once) when they were trained, and
    s = 0 when they are a fresh BatchNorm's placeholders, so that the first batch replaces them as Caffe's layer does."""

    def __init__(self, running_average: RunningAverage = "caffe", moving_average_fraction: float = 0.999,
                 momentum: float = 0.1, test_stats: TestStats = "auto", sync: bool = False):
        super().__init__(test_stats, sync)
        self.layer_options = dict(running_average=running_average, moving_average_fraction=moving_average_fraction,
                                  momentum=momentum)

    def replace(self, bn: _BatchNorm) -> AutoDIALNorm:
        layer = copy_affine(bn, AutoDIALNorm(bn.num_features, eps=bn.eps, track_running_stats=bn.track_running_stats,
                                             **self.layer_options))
        copy_running_stats(bn, layer)
        if has_trained_statistics(bn):  # trained statistics count as one average; placeholders as none (Caffe's start)
            layer.running_weight_source.fill_(1.0)
            layer.running_weight_target.fill_(1.0)
        return self.configure(layer)
