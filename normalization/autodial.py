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
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normalization.domain import DomainAwareNorm, check_domain, copy_running_stats
from normalization.registry import Normalization, copy_affine, layer_label, register
from normda.errors import BatchTooSmallError, ConfigError


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

    def _shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (1, self.num_features) + (1,) * (x.dim() - 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = self._shape(x)
        if self.training:
            x_hat = self._train_normalize(x, shape)
        else:
            mean = getattr(self, f"running_mean_{self.eval_domain}").view(shape)
            var = getattr(self, f"running_var_{self.eval_domain}").view(shape)
            x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight.view(shape) * x_hat + self.bias.view(shape)

    def _moments(self, part: torch.Tensor, domain: str) -> tuple[torch.Tensor, torch.Tensor]:
        if part.numel() // self.num_features < 2:
            raise BatchTooSmallError(
                f"AutoDIAL at {layer_label(self)} got 1 value per channel in the {domain} part of the batch (shape "
                f"{tuple(part.shape)}): give each domain at least 2 samples (data.batch_size)"
            )
        dims = (0, *range(2, part.dim()))
        var, mean = torch.var_mean(part, dim=dims, correction=0)
        return mean, var

    def _train_normalize(self, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        with torch.no_grad():
            self.alpha.clamp_(0.5, 1.0)
        self.num_batches_tracked.add_(1)
        n_source, n_target = self.split_sizes(x.shape[0])
        parts = {"source": x[:n_source], "target": x[n_source:]}
        values = x.numel() // self.num_features
        if not (n_source and n_target):  # one domain: its own statistics
            domain = "source" if n_source else "target"
            mean, var = self._moments(x, domain)
            self._update(domain, mean, var, values)
            return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)

        (mean_s, var_s), (mean_t, var_t) = (self._moments(parts[d], d) for d in ("source", "target"))
        a = self.alpha
        cross = a * (1 - a) * (mean_s - mean_t) ** 2
        mixed = {
            "source": (a * mean_s + (1 - a) * mean_t, a * var_s + (1 - a) * var_t + cross),
            "target": (a * mean_t + (1 - a) * mean_s, a * var_t + (1 - a) * var_s + cross),
        }
        outputs = []
        for domain in ("source", "target"):
            mean, var = mixed[domain]
            self._update(domain, mean, var, values)
            outputs.append((parts[domain] - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps))
        return torch.cat(outputs, dim=0)

    @torch.no_grad()
    def _update(self, domain: str, mean: torch.Tensor, var: torch.Tensor, values: int) -> None:
        running_mean = getattr(self, f"running_mean_{domain}")
        running_var = getattr(self, f"running_var_{domain}")
        if self.running_average == "caffe":
            weight = getattr(self, f"running_weight_{domain}")
            weight.mul_(self.moving_average_fraction).add_(1.0)
            factor = 1.0 / weight
        else:
            factor = self.momentum
        running_mean.add_(factor * (mean.detach() - running_mean))
        running_var.add_(factor * (var.detach() * values / max(values - 1, 1) - running_var))


@register("autodial")
class AutoDIAL(Normalization):
    """``norm=autodial``: every BatchNorm becomes an AutoDIAL layer; its gamma/beta and running statistics start both
    domains' rows (with Caffe scale s = 1, as if the statistics had been averaged once)."""

    def __init__(self, running_average: str = "caffe", moving_average_fraction: float = 0.999, momentum: float = 0.1,
                 test_stats: str = "target"):
        check_domain(test_stats, "norm.test_stats")
        self.layer_options = dict(running_average=running_average, moving_average_fraction=moving_average_fraction,
                                  momentum=momentum)
        self.test_stats = test_stats

    def replace(self, bn: _BatchNorm) -> AutoDIALNorm:
        layer = copy_affine(bn, AutoDIALNorm(bn.num_features, eps=bn.eps, **self.layer_options))
        copy_running_stats(bn, layer)
        if bn.track_running_stats:
            layer.running_weight_source.fill_(1.0)
            layer.running_weight_target.fill_(1.0)
        layer.eval_domain = self.test_stats
        return layer
