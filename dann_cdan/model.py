"""The classifier every method trains: backbone -> bottleneck -> linear head (TLlib's ``ImageClassifier``)."""
from __future__ import annotations

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """``backbone`` (returning (N, backbone.out_features) features) -> ``Linear -> BatchNorm1d -> ReLU`` bottleneck of
    ``bottleneck_dim`` -> ``Linear`` head.

    ``forward`` returns ``(logits, bottleneck_features)``; the features are what DANN and CDAN align. The bottleneck's
    BatchNorm1d is swapped by ``normalization.convert`` like every other BatchNorm (TransNorm puts TransNorm1d there).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, bottleneck_dim: int = 256):
        super().__init__()
        self.backbone = backbone
        self.bottleneck = nn.Sequential(
            nn.Linear(backbone.out_features, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim), nn.ReLU()
        )
        self.head = nn.Linear(bottleneck_dim, num_classes)
        self.features_dim = bottleneck_dim
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.bottleneck(self.backbone(x))
        return self.head(features), features

    def parameter_groups(self, backbone_lr_mult: float) -> list[dict]:
        """The backbone at ``backbone_lr_mult`` times the base learning rate (0.1 when fine-tuning a pretrained
        network, 1 when training from scratch), the new layers at 1."""
        return [
            {"params": list(self.backbone.parameters()), "lr_mult": backbone_lr_mult},
            {"params": [*self.bottleneck.parameters(), *self.head.parameters()], "lr_mult": 1.0},
        ]
