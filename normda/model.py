"""The classifier every method trains: backbone -> bottleneck -> head (TLlib's ``ImageClassifier``).

The ``model`` config shapes it, so that each protocol can build the network of the code it reproduces:

* ``bottleneck_dim``: ``Linear -> BatchNorm1d -> ReLU [-> Dropout]`` of this width between backbone and head (TLlib
  DANN/CDAN: 256; MDD: 1024); ``null`` for none (TLlib's ERM puts the head on the pooled features).
* ``bottleneck_dropout``: the dropout after the bottleneck's ReLU (MDD: 0.5).
* ``head_hidden``: ``null`` for a linear head, or the width of MDD's ``Linear -> ReLU -> Dropout(0.5) -> Linear``.
* ``bottleneck_weight_std``, ``bottleneck_bias``, ``head_weight_std``: ``null`` keeps PyTorch's initialisation; a
  number draws weights from N(0, std) (the official TransNorm code: 0.005 and 0.01; MDD: 0.005 with bias 0.1, 0.01),
  head biases then start at 0. ``head_weight_std: 0`` is DAFT's zero-initialised head; a multi-layer head keeps
  PyTorch's random initialisation then (zero weights in every layer would give no gradient; DAFT, "Head layer").
* ``bottleneck_gamma_init``: ``copy`` keeps what the normalization layer starts with; ``uniform`` draws the bottleneck
  normalization's gamma from U(0, 1), as the official TransNorm1d.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from torch import nn

from normda.errors import ConfigError
from normda.heads import init_linear, mlp_head
from normda.registry import AtLeast, Below


class ImageClassifier(nn.Module):
    """``forward`` returns ``(logits, features)``, the features being the bottleneck's output (what DANN, CDAN and MDD
    work on). The bottleneck's BatchNorm1d is swapped by ``normalization.convert`` like every other BatchNorm."""

    def __init__(self, backbone: nn.Module, num_classes: int, bottleneck_dim: int | None = 256,
                 bottleneck_dropout: float = 0.0, head_hidden: int | None = None,
                 bottleneck_weight_std: float | None = None, bottleneck_bias: float | None = None,
                 head_weight_std: float | None = None):
        super().__init__()
        self.backbone = backbone
        if bottleneck_dim is None:
            self.bottleneck = nn.Identity()
            self.features_dim = backbone.out_features
        else:
            linear = nn.Linear(backbone.out_features, bottleneck_dim)
            init_linear(linear, bottleneck_weight_std, bottleneck_bias)
            layers = [linear, nn.BatchNorm1d(bottleneck_dim), nn.ReLU()]
            if bottleneck_dropout:
                layers.append(nn.Dropout(bottleneck_dropout))
            self.bottleneck = nn.Sequential(*layers)
            self.features_dim = bottleneck_dim
        self.head = mlp_head(self.features_dim, num_classes, head_hidden, head_weight_std)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.bottleneck(self.backbone(x))
        return self.head(features), features

    def parameter_groups(self, lr_mult: Any) -> list[dict]:
        """The backbone, the bottleneck and the head, each at its ``lr_mult`` times the base learning rate (TLlib:
        0.1 for a pretrained backbone, 1 for the new layers; DAFT: its own rate for the head)."""
        return [{"name": part, "params": list(getattr(self, part).parameters()), "lr_mult": lr_mult[part]}
                for part in ("backbone", "bottleneck", "head")]


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` node of ``conf/config.yaml``: one field per key, with its type and range (``experiment`` checks
    the node against it before anything is built)."""

    bottleneck_dim: Annotated[int, AtLeast(1)] | None
    bottleneck_dropout: Annotated[float, AtLeast(0), Below(1)]
    bottleneck_weight_std: Annotated[float, AtLeast(0)] | None
    bottleneck_bias: float | None
    bottleneck_gamma_init: Literal["copy", "uniform"]
    head_hidden: Annotated[int, AtLeast(1)] | None
    head_weight_std: Annotated[float, AtLeast(0)] | None


def build_classifier(backbone: nn.Module, num_classes: int, cfg: Any) -> ImageClassifier:
    """An ``ImageClassifier`` from the ``model`` config node (before the normalization is swapped in)."""
    return ImageClassifier(
        backbone, num_classes, bottleneck_dim=cfg.bottleneck_dim, bottleneck_dropout=cfg.bottleneck_dropout,
        head_hidden=cfg.head_hidden, bottleneck_weight_std=cfg.bottleneck_weight_std,
        bottleneck_bias=cfg.bottleneck_bias, head_weight_std=cfg.head_weight_std,
    )


def init_bottleneck_gamma(model: ImageClassifier, how: str) -> None:
    """After the normalization swap: ``uniform`` redraws the bottleneck normalization's gamma from U(0, 1)."""
    if how == "copy":
        return
    norm = model.bottleneck[1] if isinstance(model.bottleneck, nn.Sequential) else None
    weight = getattr(norm, "weight", None)
    if weight is None:
        raise ConfigError("model.bottleneck_gamma_init=uniform needs a bottleneck with an affine normalization "
                          "(model.bottleneck_dim set, a norm with gamma)")
    with torch.no_grad():
        nn.init.uniform_(weight)
