"""DAFT: Domain-Aware Fine-Tuning (Ha, Jeong & Lee, AAAI 2024), in the UDA setting.

DAFT fine-tunes a pretrained network on the labelled data after converting its BatchNorm layers (Eq. 3-5, Algorithm
1; ``normalization/daft.py``), so that train-mode BatchNorm starts at the network's own function, and trains the head
and the feature extractor together ("integrated LP-FT") with separate learning rates, a zero-initialised linear head
and a cosine schedule. Those three are training settings, set for ``method=daft`` by ``conf/protocol_method/*_daft.yaml``
(``optim.optimizer.lr`` for the feature extractor, ``optim.lr_mult.head`` for the head's rate relative to it).

Here the labelled data is the source; the target is only evaluated on (out of distribution). ``adapt`` adds an
adaptation method's loss (``method.adapt=dann``, options in ``method.adapt_options``), which then also sees the target.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader

from dann_cdan.method import METHODS, AdaptationMethod, StepOutputs, build_method
from normalization.daft import DAFTConversion


@METHODS.register("daft")
class DAFT(AdaptationMethod):
    def __init__(self, features_dim: int, num_classes: int, stats_from: str = "source", adapt: str | None = None,
                 adapt_options: dict | None = None):
        super().__init__()
        self.conversion = DAFTConversion(stats_from)
        self.adapt = None
        if adapt:
            self.adapt = build_method({"name": adapt, **(adapt_options or {})}, features_dim, num_classes)
        self.uses_target = self.adapt.uses_target if self.adapt is not None else False

    def before_training(self, model: nn.Module, loaders: Mapping[str, DataLoader], device: torch.device) -> None:
        self.conversion.before_training(model, loaders, device)

    def forward(self, outputs: StepOutputs, step: int) -> dict[str, torch.Tensor | float]:
        if self.adapt is None:
            return {"loss": outputs.logits_source.new_zeros(())}
        return self.adapt(outputs, step)
