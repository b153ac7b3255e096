"""What an adaptation method is to the training loop, the table of ``method=`` options (``METHODS``), ``register`` and
``build``.

The trainer runs one forward pass over ``[x_source; x_target]``, computes the source cross-entropy, and asks the
method for its own contribution. A method is a small ``nn.Module`` holding its own parameters (a discriminator, an
adversarial head) that maps the step's outputs to named terms; it never runs the backbone itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader

from normda.registry import Registry, node_settings

METHODS: Registry[type["AdaptationMethod"]] = Registry("method", "normda.dann_cdan", "method")
#: ``@register("name")`` on an :class:`AdaptationMethod` subclass
register = METHODS.register


@dataclass
class StepOutputs:
    """The classifier's outputs for one training step, split by domain (target entries are None when the method
    trains on source batches only)."""

    logits_source: torch.Tensor
    features_source: torch.Tensor
    labels_source: torch.Tensor
    logits_target: torch.Tensor | None = None
    features_target: torch.Tensor | None = None


class AdaptationMethod(nn.Module):
    """Base class. ``forward(outputs, step)`` returns a dict whose ``"loss"`` entry is the method's (weighted) term
    of the training objective ``CE(source) + loss``; other entries are detached diagnostics (tensors or floats) that
    get logged."""

    #: whether each training step also forwards a target batch.
    uses_target: bool = True

    @classmethod
    def table_label(cls, name: str, settings: Mapping[str, Any]) -> str:
        """The method's name in tables (its ``method=`` name; CDAN with entropy conditioning is ``cdan_e``)."""
        return name

    def forward(self, outputs: StepOutputs, step: int) -> dict[str, torch.Tensor | float]:
        raise NotImplementedError

    def before_training(self, model: nn.Module, loaders: Mapping[str, DataLoader], device: torch.device) -> None:
        """Called once before the first training step (not on resume), after the normalization's own hook."""


def build(cfg: Any, features_dim: int, num_classes: int) -> AdaptationMethod:
    """The ``method=cfg.name`` option, with the other keys of ``cfg`` as its settings."""
    return METHODS.build(cfg["name"], node_settings(cfg), features_dim=features_dim, num_classes=num_classes)
