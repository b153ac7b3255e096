"""The domain discriminator shared by DANN and CDAN, and the domain-adversarial loss on its outputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DomainDiscriminator(nn.Sequential):
    """``in -> hidden -> hidden -> 1`` MLP returning one logit per sample (source = 1, target = 0).

    ``batch_norm=True`` is TLlib's version (Linear, BatchNorm1d, ReLU); ``batch_norm=False`` is the original DANN/CDAN
    (and TransNorm) one, with ReLU and Dropout(0.5). ``xavier_init`` draws the Linear weights as the original code
    (Xavier normal, zero biases) instead of PyTorch's default. The final sigmoid is folded into the loss
    (``binary_cross_entropy_with_logits``), which is the same function, computed stably.
    """

    def __init__(self, in_features: int, hidden: int = 1024, batch_norm: bool = True, xavier_init: bool = False):
        def block(n_in: int) -> list[nn.Module]:
            if batch_norm:
                return [nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
            return [nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(0.5)]

        super().__init__(*block(in_features), *block(hidden), nn.Linear(hidden, 1))
        if xavier_init:
            for layer in self:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_normal_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(1)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    return (weights * values).sum() / weights.sum().detach()


def domain_adversarial_loss(
    logits_source: torch.Tensor,
    logits_target: torch.Tensor,
    weights_source: torch.Tensor | None = None,
    weights_target: torch.Tensor | None = None,
    per_domain: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``0.5 [BCE(D(source), 1) + BCE(D(target), 0)]``, each domain's term a (weighted) mean over its samples; with
    ``per_domain=false``, one weighted mean over the concatenated batch, ``sum_i w_i BCE_i / sum_i w_i`` (TLlib's
    normalisation of CDAN+E's weights; the same as the default for equal batches without weights).

    Returns the loss and the discriminator's accuracy over both domains (detached). Averaging each domain separately
    keeps the two domains equally weighted when their batch sizes differ, and is the per-domain weight normalisation
    of the original CDAN+E code.
    """
    bce_source = F.binary_cross_entropy_with_logits(logits_source, torch.ones_like(logits_source), reduction="none")
    bce_target = F.binary_cross_entropy_with_logits(logits_target, torch.zeros_like(logits_target), reduction="none")
    if per_domain:
        loss = 0.5 * (_weighted_mean(bce_source, weights_source) + _weighted_mean(bce_target, weights_target))
    else:
        weights = None if weights_source is None else torch.cat([weights_source, weights_target])
        loss = _weighted_mean(torch.cat([bce_source, bce_target]), weights)
    with torch.no_grad():
        correct = (logits_source > 0).sum() + (logits_target <= 0).sum()
        accuracy = correct.float() / (logits_source.numel() + logits_target.numel())
    return loss, accuracy
