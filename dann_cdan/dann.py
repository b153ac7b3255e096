"""DANN: Domain-Adversarial Neural Networks (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016)."""
from __future__ import annotations

import torch

from normda.dann_cdan.discriminator import DomainDiscriminator, domain_adversarial_loss
from normda.dann_cdan.grl import WarmStartSchedule, grad_reverse
from normda.dann_cdan.base import AdaptationMethod, StepOutputs, register


@register("dann")
class DANN(AdaptationMethod):
    """A discriminator tells source features from target features through a gradient-reversal layer, so the
    features are trained to confuse it: ``loss = trade_off * 0.5 [BCE(D(f_s), 1) + BCE(D(f_t), 0)]``, with the
    reversal coefficient warming up from 0 to 1 (:class:`WarmStartSchedule`)."""

    def __init__(
        self,
        features_dim: int,
        num_classes: int,
        trade_off: float = 1.0,
        hidden: int = 1024,
        discriminator_batch_norm: bool = True,
        discriminator_xavier_init: bool = False,
        grl: dict | None = None,
    ):
        super().__init__()
        self.trade_off = trade_off
        self.discriminator = DomainDiscriminator(features_dim, hidden, discriminator_batch_norm,
                                                 discriminator_xavier_init)
        self.grl_schedule = WarmStartSchedule(**(grl or {}))

    def forward(self, outputs: StepOutputs, step: int) -> dict[str, torch.Tensor | float]:
        coefficient = self.grl_schedule(step)
        features = torch.cat([outputs.features_source, outputs.features_target])
        domain_logits = self.discriminator(grad_reverse(features, coefficient))
        n_source = outputs.features_source.shape[0]
        adversarial, accuracy = domain_adversarial_loss(domain_logits[:n_source], domain_logits[n_source:])
        return {
            "loss": self.trade_off * adversarial,
            "domain_loss": adversarial.detach(),
            "domain_accuracy": accuracy,
            "grl_coefficient": coefficient,
        }
