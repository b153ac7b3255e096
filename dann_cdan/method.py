"""What an adaptation method is to the training loop, and the table of ``method=`` options.

The trainer runs one forward pass over ``[x_source; x_target]``, computes the source cross-entropy, and asks the
method for its own contribution. A method is a small ``nn.Module`` holding its own parameters (a discriminator, an
adversarial head) that maps the step's outputs to named terms; it never runs the backbone itself.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from normda.errors import ConfigError
from normda.registry import Registry

METHODS: Registry[type["AdaptationMethod"]] = Registry("method", "dann_cdan", "method")


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

    @property
    def evaluation_domain(self) -> str | None:
        """Whose statistics domain-aware layers evaluate with: their own setting (``norm.test_stats``, target by
        default), or the source's when training never showed them a target batch."""
        return None if self.uses_target else "source"

    def forward(self, outputs: StepOutputs, step: int) -> dict[str, torch.Tensor | float]:
        raise NotImplementedError

    def before_training(self, model: nn.Module, loaders: Mapping[str, DataLoader], device: torch.device) -> None:
        """Called once before the first training step (not on resume), after the normalization's own hook."""


def build_method(cfg: Any, features_dim: int, num_classes: int) -> AdaptationMethod:
    """Instantiate ``cfg.name`` from the registry with the other keys of ``cfg`` as options."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    options = {key: value for key, value in cfg.items() if key != "name"}
    method_class = METHODS.get(cfg["name"])
    accepted = set(inspect.signature(method_class).parameters) - {"features_dim", "num_classes"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"method={cfg['name']} has no option {', '.join(unknown)} (its options: {', '.join(sorted(accepted))})"
        )
    return method_class(features_dim=features_dim, num_classes=num_classes, **options)
