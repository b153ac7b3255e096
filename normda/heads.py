"""The linear layers the classifier and the methods share, with the papers' initialisations: a linear head or MDD's
two-layer one (the classifier's head and MDD's adversarial head). A leaf module: the methods use it without importing
the engine."""
from __future__ import annotations

from torch import nn


def init_linear(layer: nn.Linear, std: float | None, bias: float | None) -> None:
    """Weights from N(0, ``std``) and biases at ``bias`` (0 when only ``std`` is given); None keeps PyTorch's."""
    if std is not None:
        nn.init.normal_(layer.weight, 0.0, std)
        nn.init.constant_(layer.bias, 0.0 if bias is None else bias)
    elif bias is not None:
        nn.init.constant_(layer.bias, bias)


def mlp_head(in_features: int, num_classes: int, hidden: int | None, weight_std: float | None) -> nn.Module:
    """A linear head, or (``hidden`` given) MDD's ``Linear -> ReLU -> Dropout(0.5) -> Linear``. ``weight_std=0``
    (DAFT's zero head) zeroes a linear head only; a multi-layer head keeps PyTorch's random initialisation."""
    if hidden is None:
        layers = [nn.Linear(in_features, num_classes)]
    else:
        layers = [nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, num_classes)]
        if weight_std == 0:
            weight_std = None
    for layer in layers:
        if isinstance(layer, nn.Linear):
            init_linear(layer, weight_std, None)
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)
