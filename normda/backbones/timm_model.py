"""Any timm model as a backbone (``backbone=timm backbone.model=<timm name>``), through timm's model factory."""
from __future__ import annotations

from typing import Any

from torch import nn

from normda.backbones.base import TimmConfig, register
from normda.backbones.weights import download_errors, load_weights, read_state_dict
from normda.errors import ConfigError


def create_timm(model_name: str, *, pretrained: bool, weights: str | None = None, in_chans: int = 3) -> nn.Module:
    """A headless timm model (``num_classes=0``: it returns pooled features), with ImageNet weights from the hub when
    ``pretrained``, or from the local file ``weights``. timm (1.4 s to import here, wandb with it) is imported by the
    runs that build one only."""
    import timm

    architecture = model_name.split(".")[0]
    if not timm.is_model(architecture):
        raise ConfigError(f"timm has no model {architecture!r}: see timm.list_models() for the names")
    download = pretrained and not weights
    if download and not timm.list_pretrained(model_name):
        raise ConfigError(f"timm has no pretrained weights for {model_name!r}: set backbone.pretrained=false, "
                          f"or pick a tag from timm.list_pretrained('{architecture}*')")
    with download_errors(
        f"the pretrained weights of timm's {model_name} from the Hugging Face hub",
        "pass backbone.weights=/path/to/weights.pth (or .safetensors; HF_HUB_OFFLINE=1 skips the hub's retries)",
    ):
        model = timm.create_model(model_name, pretrained=download, num_classes=0, in_chans=in_chans)
    if weights:
        load_weights(model, read_state_dict(weights), f"backbone.weights={weights}",
                     ignore_prefix=model.pretrained_cfg.get("classifier", ""))
    model.out_features = model.num_features
    return model


@register("timm", settings=TimmConfig)
def timm_backbone(cfg: Any) -> nn.Module:
    return create_timm(cfg.model, pretrained=cfg.pretrained, weights=cfg.weights, in_chans=cfg.in_chans)
