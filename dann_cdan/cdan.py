"""CDAN: Conditional Adversarial Domain Adaptation (Long et al., NeurIPS 2018), with and without entropy conditioning."""
from __future__ import annotations

import math
from typing import Any, Literal, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from normda.dann_cdan.discriminator import DomainDiscriminator, domain_adversarial_loss
from normda.dann_cdan.grl import WarmStartSchedule, grad_reverse
from normda.dann_cdan.base import AdaptationMethod, StepOutputs, register


class MultilinearMap(nn.Module):
    """``T(f, g) = vec(g ⊗ f)``: the outer product of the class probabilities ``g`` (B, C) and the features ``f``
    (B, F), flattened to (B, C * F) (CDAN Eq. 4)."""

    def forward(self, features: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        return torch.bmm(probabilities.unsqueeze(2), features.unsqueeze(1)).flatten(1)


class RandomizedMultilinearMap(nn.Module):
    """``T(f, g) = (f R_f) ⊙ (g R_g) / sqrt(d)`` with fixed Gaussian ``R_f`` (F, d) and ``R_g`` (C, d) (CDAN Eq. 7),
    an unbiased estimate of the multilinear map's inner products in ``d`` dimensions. The matrices are buffers, so they
    are saved in the state dict and a resumed or reloaded model uses the same ones."""

    def __init__(self, features_dim: int, num_classes: int, output_dim: int = 1024):
        super().__init__()
        self.output_dim = output_dim
        self.register_buffer("random_features", torch.randn(features_dim, output_dim))
        self.register_buffer("random_classes", torch.randn(num_classes, output_dim))

    def forward(self, features: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        return (features @ self.random_features) * (probabilities @ self.random_classes) / math.sqrt(self.output_dim)


def prediction_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """``H(g) = -sum_c g_c log(g_c + 1e-5)`` per sample."""
    return -(probabilities * torch.log(probabilities + 1e-5)).sum(dim=1)


@register("cdan")
class CDAN(AdaptationMethod):
    """The discriminator sees the joint of features and predictions, ``T(f, softmax(logits))``, through a
    gradient-reversal layer; the softmax itself is detached.

    With ``entropy=true`` (CDAN+E, Eq. 9) each sample's discriminator loss is weighted by ``w = 1 + exp(-H(g))``, which
    favours confident predictions. ``entropy_weighting`` names the two ways the references do it:

    * ``tllib`` (TLlib's ``--entropy``): the weights come from the detached softmax and are normalised over the whole
      concatenated batch, ``loss = sum_i w_i BCE_i / sum_i w_i``;
    * ``official`` (the original CDAN code, and TransNorm's): the entropy comes from the un-detached softmax behind a
      gradient reversal, whose coefficient follows ``entropy_grl`` (the official TransNorm code: alpha 10 over 10,000
      iterations while its discriminator warms up over 5,000) or, when unset, the discriminator's schedule; the
      weights are normalised within each domain, ``loss = (sum_s w BCE / sum_s w + sum_t w BCE / sum_t w) / 2``.

    Each protocol picks its reference's (``conf/method/cdan.yaml`` TLlib's, ``protocol_method/transnorm_cdan.yaml``
    the official one).
    ``randomized=true`` replaces the (C * F)-dimensional multilinear map by the ``randomized_dim`` random one.
    """

    def __init__(
        self,
        features_dim: int,
        num_classes: int,
        trade_off: float = 1.0,
        entropy: bool = False,
        entropy_weighting: Literal["tllib", "official"] = "tllib",
        randomized: bool = False,
        randomized_dim: int = 1024,
        hidden: int = 1024,
        discriminator_batch_norm: bool = True,
        discriminator_xavier_init: bool = False,
        grl: dict | None = None,
        entropy_grl: dict | None = None,
    ):
        super().__init__()
        self.trade_off = trade_off
        self.entropy = entropy
        self.entropy_weighting = entropy_weighting
        if randomized:
            self.map = RandomizedMultilinearMap(features_dim, num_classes, randomized_dim)
            discriminator_input = randomized_dim
        else:
            self.map = MultilinearMap()
            discriminator_input = features_dim * num_classes
        self.discriminator = DomainDiscriminator(discriminator_input, hidden, discriminator_batch_norm,
                                                 discriminator_xavier_init)
        self.grl_schedule = WarmStartSchedule(**(grl or {}))
        self.entropy_schedule = WarmStartSchedule(**entropy_grl) if entropy_grl else self.grl_schedule

    @classmethod
    def table_label(cls, name: str, settings: Mapping[str, Any]) -> str:
        return "cdan_e" if settings.get("entropy") else name

    def forward(self, outputs: StepOutputs, step: int) -> dict[str, torch.Tensor | float]:
        coefficient = self.grl_schedule(step)
        features = torch.cat([outputs.features_source, outputs.features_target])
        probabilities = F.softmax(torch.cat([outputs.logits_source, outputs.logits_target]), dim=1)
        joint = self.map(features, probabilities.detach())
        domain_logits = self.discriminator(grad_reverse(joint, coefficient))

        n_source = outputs.features_source.shape[0]
        weights_source = weights_target = None
        diagnostics: dict[str, torch.Tensor | float] = {}
        official = self.entropy_weighting == "official"
        if self.entropy:
            entropy = prediction_entropy(probabilities if official else probabilities.detach())
            if official:
                entropy = grad_reverse(entropy, self.entropy_schedule(step))
            weights = 1.0 + torch.exp(-entropy)
            weights_source, weights_target = weights[:n_source], weights[n_source:]
            diagnostics["target_entropy"] = entropy[n_source:].detach().mean()
        adversarial, accuracy = domain_adversarial_loss(
            domain_logits[:n_source], domain_logits[n_source:], weights_source, weights_target,
            per_domain=official or not self.entropy,
        )
        return {
            "loss": self.trade_off * adversarial,
            "domain_loss": adversarial.detach(),
            "domain_accuracy": accuracy,
            "grl_coefficient": coefficient,
            **diagnostics,
        }
