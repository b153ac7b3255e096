"""MDD: Margin Disparity Discrepancy (Zhang, Liu, Long & Jordan, ICML 2019), as TLlib's ``mdd``.

An adversarial head ``f'`` (the same MLP as the main head, its own parameters) sits behind a gradient-reversal layer
whose coefficient warms up to 0.1. With ``y_hat = argmax f(x)`` (no gradient), the training objective adds

    trade_off * [ margin * CE(f'(x_s), y_hat_s) - log(1 - softmax(f'(x_t))[y_hat_t]) ]

(each a mean over its domain; ``log`` as TLlib's ``log(min(x + 1e-6, 1))``). Minimising it, ``f'`` agrees with ``f`` on
the source and disagrees on the target; through the reversal the features maximise it, which is the min-max of the
margin disparity discrepancy with margin ``gamma`` (4 by default).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from normda.dann_cdan.grl import WarmStartSchedule, grad_reverse
from normda.dann_cdan.base import AdaptationMethod, StepOutputs, register
from normda.heads import mlp_head

TLLIB_GRL = {"alpha": 1.0, "lo": 0.0, "hi": 0.1, "max_iters": 1000}


def shifted_log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.clamp(x + 1e-6, max=1.0))


def margin_disparity(adversarial_source: torch.Tensor, adversarial_target: torch.Tensor,
                     predictions_source: torch.Tensor, predictions_target: torch.Tensor,
                     margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of MDD's objective: ``margin * CE(f'(x_s), y_hat_s)`` and ``-log(1 - p'_t[y_hat_t])``."""
    source = margin * F.cross_entropy(adversarial_source, predictions_source)
    target = F.nll_loss(shifted_log(1.0 - F.softmax(adversarial_target, dim=1)), predictions_target)
    return source, target


@register("mdd")
class MDD(AdaptationMethod):
    """``width``: the adversarial head's hidden width (TLlib: the bottleneck's; null = the features' size)."""

    def __init__(self, features_dim: int, num_classes: int, trade_off: float = 1.0, margin: float = 4.0,
                 width: int | None = None, grl: dict | None = None):
        super().__init__()
        self.trade_off = trade_off
        self.margin = margin
        self.adversarial_head = mlp_head(features_dim, num_classes, width or features_dim, weight_std=0.01)
        self.grl_schedule = WarmStartSchedule(**(grl or TLLIB_GRL))

    def forward(self, outputs: StepOutputs, step: int) -> dict[str, torch.Tensor | float]:
        coefficient = self.grl_schedule(step)
        n_source = outputs.features_source.shape[0]
        features = torch.cat([outputs.features_source, outputs.features_target])
        adversarial = self.adversarial_head(grad_reverse(features, coefficient))
        with torch.no_grad():
            predictions = torch.cat([outputs.logits_source, outputs.logits_target]).argmax(dim=1)
        source, target = margin_disparity(adversarial[:n_source], adversarial[n_source:], predictions[:n_source],
                                          predictions[n_source:], self.margin)
        return {
            "loss": self.trade_off * (source + target),
            "disparity_source": source.detach(),
            "disparity_target": target.detach(),
            "grl_coefficient": coefficient,
        }
