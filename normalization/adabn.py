"""AdaBN: Adaptive Batch Normalization (Li et al., Pattern Recognition 2018).

Training is plain BatchNorm. Before every evaluation, each BatchNorm's running mean and variance are replaced by the
statistics of its input over the **whole target set** (eval transforms, no gradient); gamma/beta are unchanged.

The pass is a single one: every BatchNorm normalises the batch with its own batch statistics while its input moments
are accumulated, so layer l+1 sees layer l normalised by batch rather than by final statistics (the usual one-pass
approximation; a layer-by-layer pass would cost one pass per layer). The accumulation is the exact pooled estimator:
per channel, the count n, mean and sum of squared deviations are merged batch by batch (Chan et al.'s update), which
is the mean and variance of all the target values at once, not an average of per-batch variances. The stored running
variance is unbiased, n / (n - 1), as BatchNorm's. Batches of a single sample are skipped.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from normda.normalization.base import Normalization, register


class PooledMoments:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch."""

    def __init__(self):
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        dims = (0, *range(2, x.dim()))
        k = x.numel() // x.shape[1]
        x = x.double()
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        if self.mean is None:
            self.count, self.mean, self.squares = k, mean, var * k
            return
        n = self.count
        delta = mean - self.mean
        self.mean = self.mean + delta * (k / (n + k))
        self.squares = self.squares + var * k + delta**2 * (n * k / (n + k))
        self.count = n + k

    def unbiased_variance(self) -> torch.Tensor:
        return self.squares / max(self.count - 1, 1)


@torch.no_grad()
def estimate_target_statistics(model: nn.Module, loader: DataLoader, device: torch.device) -> None:
    """Set every BatchNorm's running statistics of ``model`` to the pooled statistics of its input over ``loader``."""
    batchnorms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    moments = {bn: PooledMoments() for bn in batchnorms}
    modes = {m: m.training for m in model.modules()}
    hooks = [bn.register_forward_pre_hook(lambda bn, inputs: moments[bn].add(inputs[0])) for bn in batchnorms]
    model.eval()
    for bn in batchnorms:
        bn.train()  # normalise with batch statistics during the pass; the running ones are overwritten below
    try:
        for batch in loader:
            images = batch[0]
            if images.shape[0] > 1:
                model(images.to(device, non_blocking=True))
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.train(training)
    for bn, moment in moments.items():
        if moment.mean is not None:
            bn.running_mean.copy_(moment.mean)
            bn.running_var.copy_(moment.unbiased_variance())


@register("adabn")
class AdaBN(Normalization):
    """``norm=adabn``: BatchNorm in training; target statistics for every BatchNorm before each evaluation."""

    def before_evaluation(self, model: nn.Module, loader: DataLoader, device: torch.device) -> None:
        estimate_target_statistics(model, loader, device)
