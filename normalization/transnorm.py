"""Transferable Normalization (Wang et al., NeurIPS 2019), as in the paper and the official code (thuml/TransNorm).

Training mode, for a batch ``[x_s; x_t]`` (Algorithm 1):

* Eq. 3: each domain is normalised with its own batch mean and biased variance, and updates its own running buffers
  (``running_mean_source`` ... ``running_var_target``) with the unbiased variance, exactly as ``F.batch_norm``; then
  the shared affine gives ``z = gamma * x_hat + beta``.
* Eq. 5: per channel ``d = |mu_s / sqrt(v_s + eps) - mu_t / sqrt(v_t + eps)|`` from the statistics of the *raw input*
  of each domain, where ``v`` is the unbiased variance (``torch.var``), as in the official code.
* Eq. 6: ``alpha = C (1 + d)^-1 / sum_k (1 + d_k)^-1`` (Student t with one degree of freedom), so ``mean(alpha) = 1``.
* Eq. 7: ``y = (1 + alpha) * z`` with ``alpha`` detached (no gradient flows through it).

Eval mode normalises every sample with the target running statistics (source with
``normalization.using_test_stats(model, "source")``) and computes ``alpha`` from the four running buffers.

Beyond the official code: the split may be unequal or single-domain (``normalization.domain_split``); a single-domain
batch takes the absent domain's statistics for ``alpha`` from its running buffers, and leaves those buffers unchanged.
The buffers have their own names, so a state dict saved from a TransNorm model loads back into one. A layer that
replaces a BatchNorm with ``track_running_stats=False`` keeps no running statistics and, as that BatchNorm, normalises
with the batch's own statistics in eval mode too; a batch of one domain then has no statistics of the other, and
``alpha`` is 1 on every channel (its mean under Eq. 6).

The ablations of the paper's Table 6 are options: ``alpha`` ``adaptive`` (Eq. 6), ``one`` (alpha fixed to 1, so
``y = 2 z``) or ``none`` (``y = z``: domain-specific statistics with a shared affine); ``distance`` between the domains'
channel statistics ``normalized_mean`` (Eq. 5), ``mean`` (``|mu_s - mu_t|``) or ``wasserstein`` (the 2-Wasserstein
distance between the two channels' Gaussians, ``sqrt((mu_s - mu_t)^2 + (sigma_s - sigma_t)^2)``); ``probability``
``student_t`` (``1 / (1 + d)``, Eq. 6), ``gaussian`` (``exp(-d^2 / 2)``) or ``softmax`` (``softmax(-d)`` over channels).
Whatever the choice, ``alpha = C p / sum(p)``.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normda.normalization.domain import (DomainAwareNorm, DomainAwareOption, TestStats, copy_running_stats,
                                         update_factor)
from normda.normalization.base import batchnorm_dims, copy_affine, register
from normda.normalization.split_batchnorm import split_batch_norm
from normda.registry import check_setting


#: Eq. 5 and the Table 6 variants: the distance between the domains' channel statistics
DISTANCES = {
    "normalized_mean": lambda mean_s, var_s, mean_t, var_t, eps: (
        mean_s / torch.sqrt(var_s + eps) - mean_t / torch.sqrt(var_t + eps)).abs(),
    "mean": lambda mean_s, var_s, mean_t, var_t, eps: (mean_s - mean_t).abs(),
    "wasserstein": lambda mean_s, var_s, mean_t, var_t, eps: torch.sqrt(
        (mean_s - mean_t) ** 2 + (var_s.sqrt() - var_t.sqrt()) ** 2),
}
#: Eq. 6 (Student t with one degree of freedom) and the Table 6 variants: a distance's weight, before normalising
PROBABILITIES = {
    "student_t": lambda distance: 1.0 / (1.0 + distance),
    "gaussian": lambda distance: torch.exp(-0.5 * distance**2),
    "softmax": lambda distance: torch.softmax(-distance, dim=0),
}
Alpha = Literal["adaptive", "one", "none"]
Distance = Literal[tuple(DISTANCES)]
Probability = Literal[tuple(PROBABILITIES)]


def transferability_alpha(
    mean_source: torch.Tensor,
    var_source: torch.Tensor,
    mean_target: torch.Tensor,
    var_target: torch.Tensor,
    eps: float,
    distance: Distance = "normalized_mean",
    probability: Probability = "student_t",
) -> torch.Tensor:
    """Per-channel transferability ``alpha = C p / sum(p)`` of Eq. 5-6, from per-domain channel means and (unbiased)
    variances; ``distance`` and ``probability`` select the Table 6 variants."""
    p = PROBABILITIES[probability](DISTANCES[distance](mean_source, var_source, mean_target, var_target, eps))
    return p * (p.numel() / p.sum())


class _TransNorm(DomainAwareNorm, nn.Module):
    """Shared machinery of :class:`TransNorm1d`, :class:`TransNorm2d` and :class:`TransNorm3d`."""

    _input_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 alpha: Alpha = "adaptive", distance: Distance = "normalized_mean",
                 probability: Probability = "student_t", track_running_stats: bool = True):
        super().__init__()
        for key, value, kind in (("alpha", alpha, Alpha), ("distance", distance, Distance),
                                 ("probability", probability, Probability)):
            check_setting(key, value, kind)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.alpha = alpha
        self.distance = distance
        self.probability = probability
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features))
            self.bias = nn.Parameter(torch.empty(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_domain_statistics(num_features, track_running_stats)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if not self.track_running_stats:
            return
        for domain in ("source", "target"):
            getattr(self, f"running_mean_{domain}").zero_()
            getattr(self, f"running_var_{domain}").fill_(1.0)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Running statistics 0/1; gamma ~ U(0, 1) and beta = 0 as in the official layer."""
        self.reset_running_stats()
        if self.affine:
            nn.init.uniform_(self.weight)
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        ablation = "" if (self.alpha, self.distance, self.probability) == ("adaptive", "normalized_mean",
                                                                        "student_t") else (
            f", alpha={self.alpha}, distance={self.distance}, probability={self.probability}")
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}{ablation}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in self._input_dims:
            raise ValueError(f"{type(self).__name__} expects {' or '.join(map(str, self._input_dims))}-D input, "
                             f"got {x.dim()}-D")
        if self.training:
            return self._train_forward(x)
        if not self.track_running_stats:  # as the BatchNorm it replaces: the batch's own statistics
            weight, bias = self._scaled_affine(self._channel_scale(None, x))
            return F.batch_norm(x, None, None, weight, bias, training=True, eps=self.eps)
        weight, bias = self._scaled_affine(
            self._channel_scale(self.running_stats("source") + self.running_stats("target"), x))
        return F.batch_norm(x, *self.running_stats(self.test_stats), weight, bias, training=False, eps=self.eps)

    def _scaled_affine(self, scale: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(1 + alpha) gamma and (1 + alpha) beta, so that eval mode makes one pass over x."""
        weight, bias = self.weight, self.bias
        if scale is not None:
            weight = scale if weight is None else weight * scale
            bias = None if bias is None else bias * scale
        return weight, bias

    def _channel_scale(self, statistics: tuple[torch.Tensor, ...] | None, x: torch.Tensor) -> torch.Tensor | None:
        """``1 + alpha`` (Eq. 7) from ``(mean_s, var_s, mean_t, var_t)``; None for ``alpha=none``; 2 for
        ``alpha=one``, and where one domain has no statistics at all (``statistics`` None: alpha's mean, 1)."""
        if self.alpha == "none":
            return None
        if self.alpha == "one" or statistics is None:
            reference = statistics[0] if statistics is not None else (x if self.weight is None else self.weight)
            return reference.new_full((self.num_features,), 2.0)
        with torch.no_grad():
            return 1.0 + transferability_alpha(*statistics, self.eps, self.distance, self.probability)

    def _train_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each domain with its own batch statistics (Eq. 3) and scale by ``1 + alpha`` from the raw input's
        statistics (unbiased variances; the running buffers of an absent domain)."""
        n_source, n_target = self.split_sizes(x.shape[0])
        self.check_batch(x.shape, (n_source, n_target))

        def channel_scale(statistics: dict) -> torch.Tensor | None:
            if len(statistics) < 2 and not self.track_running_stats:
                return self._channel_scale(None, x)
            means_and_vars = []
            for domain in ("source", "target"):
                mean, var = statistics[domain] if domain in statistics else self.running_stats(domain)
                means_and_vars += [mean, var]
            return self._channel_scale(tuple(means_and_vars), x)

        affine = (self.weight, self.bias)
        return split_batch_norm(x, n_source, {"source": affine, "target": affine},
                                {domain: self.running_stats(domain) for domain in ("source", "target")},
                                update_factor(self.num_batches_tracked, self.momentum), self.eps, channel_scale,
                                sync=self.sync)

    def layer_description(self) -> str:
        return f"{type(self).__name__}({self.num_features})"


class TransNorm1d(_TransNorm):
    """TransNorm over ``(N, C)`` or ``(N, C, L)`` input, in place of ``nn.BatchNorm1d``."""

    _input_dims = (2, 3)


class TransNorm2d(_TransNorm):
    """TransNorm over ``(N, C, H, W)`` input, in place of ``nn.BatchNorm2d``."""

    _input_dims = (4,)


class TransNorm3d(_TransNorm):
    """TransNorm over ``(N, C, D, H, W)`` input, in place of ``nn.BatchNorm3d``."""

    _input_dims = (5,)


class TransNormNd(_TransNorm):
    """TransNorm over ``(N, C, ...)`` input of any rank, in place of a ``nn.SyncBatchNorm`` (which takes any)."""

    _input_dims = (2, 3, 4, 5)


_BY_DIMS = {1: TransNorm1d, 2: TransNorm2d, 3: TransNorm3d, None: TransNormNd}


@register("transnorm")
class TransNorm(DomainAwareOption):
    """``norm=transnorm``: every BatchNorm becomes a TransNorm layer with its gamma/beta, and its running statistics
    copied into both domains' buffers.

    The official conversion copies gamma and beta as they are, so a converted pretrained network computes
    ``(1 + alpha) z``, twice its BatchNorm's output where the domains agree (``mean(alpha) = 1``, Eq. 6), before any
    training. ``preserve_function=true`` departs from the official code: it copies ``gamma / 2`` and ``beta / 2``
    (under ``alpha=one`` too; ``alpha=none`` computes ``z`` already and copies them unchanged), so that the converted
    network computes the BatchNorm network's eval function while the domains' statistics agree (alpha = 1 on every
    channel), and a clipping activation (ReLU6) or any output scale is kept. The layer's forward is the official one.
    """

    def __init__(self, alpha: Alpha = "adaptive", distance: Distance = "normalized_mean",
                 probability: Probability = "student_t", test_stats: TestStats = "auto", sync: bool = False,
                 preserve_function: bool = False):
        super().__init__(test_stats, sync)
        self.layer_options = dict(alpha=alpha, distance=distance, probability=probability)
        self.preserve_function = preserve_function

    def replace(self, bn: _BatchNorm) -> _TransNorm:
        layer = _BY_DIMS[batchnorm_dims(bn)](bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                                            track_running_stats=bn.track_running_stats, **self.layer_options)
        copy_affine(bn, layer)
        copy_running_stats(bn, layer, ("source", "target"))
        if self.preserve_function and self.layer_options["alpha"] != "none":
            if not bn.affine:
                raise self.unsupported(bn, "norm.preserve_function=true halves gamma and beta, and it has none "
                                           "(affine=False)")
            with torch.no_grad():
                layer.weight.mul_(0.5)
                layer.bias.mul_(0.5)
        return self.configure(layer)
