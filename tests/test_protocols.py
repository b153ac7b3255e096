"""The two protocols, checked against the numbers of protocols.md; 10-crop evaluation; BN-Inception; the official
discriminator."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from normda import datasets
from conftest import compose_config
from normda import backbones
from normda.dann_cdan.cdan import CDAN
from normda.dann_cdan.discriminator import DomainDiscriminator
from normda.evaluate import predict
from normda.experiment import train
from normda.dann_cdan import build as build_method
from normda.errors import ConfigError
from test_data import make_office31


def resolved(*overrides: str) -> dict:
    return OmegaConf.to_container(compose_config(["logger=none", *overrides]), resolve=True)


def effective_rates(cfg: dict) -> dict[str, float]:
    return {part: cfg["optim"]["optimizer"]["lr"] * mult for part, mult in cfg["optim"]["lr_mult"].items()}


# -- TLlib (protocols.md 1.3-1.7) --------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["dann", "cdan", "cdan_e"])
def test_tllib_dann_cdan_on_office31(method):
    cfg = resolved("protocol=tllib", f"method={method}", "data=office31", "backbone=resnet50")
    optimizer = cfg["optim"]["optimizer"]
    assert (optimizer["lr"], optimizer["momentum"], optimizer["weight_decay"], optimizer["nesterov"]) == (
        0.01, 0.9, 1e-3, True)
    assert effective_rates(cfg) == pytest.approx({"backbone": 0.001, "bottleneck": 0.01, "head": 0.01, "method": 0.01})
    schedule = cfg["optim"]["lr_schedule"]
    assert (schedule["kind"], schedule["gamma"], schedule["power"]) == ("inverse_decay", 0.001, 0.75)
    assert cfg["data"]["batch_size"] == 32 and cfg["trainer"]["iterations"] == 20_000
    assert cfg["trainer"]["eval_every"] == 1000 and not cfg["trainer"]["ten_crop"]
    assert cfg["model"]["bottleneck_dim"] == 256 and cfg["model"]["head_hidden"] is None
    assert cfg["method"]["discriminator_batch_norm"] and cfg["method"]["grl"] == {
        "alpha": 1.0, "lo": 0.0, "hi": 1.0, "max_iters": 1000}
    if method.startswith("cdan"):
        assert cfg["method"]["entropy_weighting"] == "tllib"


def test_tllib_erm_and_mdd():
    erm = resolved("protocol=tllib", "method=source_only", "data=office31", "backbone=resnet50")
    assert (erm["optim"]["optimizer"]["lr"], erm["optim"]["lr_schedule"]["gamma"],
            erm["optim"]["optimizer"]["weight_decay"]) == (0.001, 0.0003, 5e-4)
    assert erm["model"]["bottleneck_dim"] is None
    mdd = resolved("protocol=tllib", "method=mdd", "data=office31", "backbone=resnet50")
    assert (mdd["optim"]["optimizer"]["lr"], mdd["optim"]["lr_schedule"]["gamma"],
            mdd["optim"]["optimizer"]["weight_decay"]) == (0.004, 0.0002, 5e-4)
    assert mdd["model"]["bottleneck_dim"] == 1024 and mdd["model"]["head_hidden"] == 1024
    assert mdd["model"]["bottleneck_dropout"] == 0.5 and mdd["method"]["width"] == 1024
    assert mdd["method"]["margin"] == 4.0 and mdd["method"]["grl"]["hi"] == 0.1
    assert effective_rates(mdd)["backbone"] == pytest.approx(0.0004)
    office_home = resolved("protocol=tllib", "method=mdd", "data=officehome", "backbone=resnet50")
    assert office_home["model"]["bottleneck_dim"] == 2048 and office_home["method"]["width"] == 2048


@pytest.mark.parametrize("method,task,lr", [("source_only", "M2U", 0.01), ("source_only", "U2M", 0.1),
                                            ("dann", "S2M", 0.03), ("cdan", "U2M", 0.1), ("cdan_e", "S2M", 0.01),
                                            ("mdd", "U2M", 0.01)])
def test_tllib_digits_rates(method, task, lr):
    source, target = task[0], task[2]
    cfg = resolved("protocol=tllib", f"method={method}", "data=digits", f"data.source={source}",
                   f"data.target={target}", "backbone=lenet")
    assert cfg["optim"]["optimizer"]["lr"] == lr
    assert cfg["data"]["batch_size"] == 128 and cfg["trainer"]["iterations"] == 50_000
    assert cfg["trainer"]["eval_every"] == 2500
    assert cfg["data"]["image_size"] == 28 and cfg["data"]["channels"] == 1 and cfg["data"]["mean"] == [0.5]
    if method != "mdd":
        assert cfg["optim"]["lr_mult"]["backbone"] == 1.0  # --scratch


# -- the official TransNorm code (protocols.md 3.3) ---------------------------------------------------------------------

@pytest.mark.parametrize("method", ["cdan", "cdan_e", "dann"])
def test_transnorm_protocol(method):
    cfg = resolved("protocol=transnorm", f"method={method}", "data=office31", "backbone=resnet50")
    assert cfg["data"]["batch_size"] == 36
    rates = effective_rates(cfg)
    assert rates["backbone"] == pytest.approx(0.001) and rates["head"] == pytest.approx(0.01)  # lr 0.001, lr_mult 10
    assert cfg["optim"]["optimizer"]["weight_decay"] == pytest.approx(5e-4 * 2)
    assert (cfg["optim"]["lr_schedule"]["gamma"], cfg["optim"]["lr_schedule"]["power"]) == (0.001, 0.75)
    assert cfg["trainer"]["iterations"] == 100_000 and cfg["trainer"]["eval_every"] == 500
    assert cfg["trainer"]["ten_crop"]
    model = cfg["model"]
    assert (model["bottleneck_dim"], model["bottleneck_weight_std"], model["bottleneck_bias"],
            model["head_weight_std"], model["bottleneck_gamma_init"]) == (256, 0.005, 0.0, 0.01, "uniform")
    assert not cfg["method"]["discriminator_batch_norm"] and cfg["method"]["discriminator_xavier_init"]
    grl = cfg["method"]["grl"]
    assert (grl["alpha"], grl["max_iters"]) == (10.0, 5000)
    if method.startswith("cdan"):
        assert cfg["method"]["entropy_grl"]["max_iters"] == 10_000
        assert cfg["method"]["entropy_weighting"] == "official"
    assert cfg["method"].get("entropy", False) == (method == "cdan_e")


def test_cdan_entropy_weights_follow_their_own_schedule():
    method = build_method(resolved("protocol=transnorm", "method=cdan_e")["method"], 8, 3)
    assert method.grl_schedule(5000) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert method.entropy_schedule(5000) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    default = CDAN(8, 3)
    assert default.entropy_schedule is default.grl_schedule


def test_official_discriminator():
    torch.manual_seed(0)
    discriminator = DomainDiscriminator(512, hidden=1024, batch_norm=False, xavier_init=True)
    layers = [m for m in discriminator if isinstance(m, nn.Linear)]
    assert all(torch.all(layer.bias == 0) for layer in layers)
    expected_std = math.sqrt(2.0 / (512 + 1024))  # Xavier normal
    assert layers[0].weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in discriminator)


# -- 10-crop evaluation ------------------------------------------------------------------------------------------------

def test_ten_crop_prediction_sums_softmaxes():
    class Fixed(nn.Module):
        """Image 0's first crop: class 1 at probability ~1; its nine other crops: class 2 at e / (e + 2) = 0.58."""

        def forward(self, x):
            logits = torch.zeros(x.shape[0], 3)
            logits[0, 1] = 10.0
            logits[1:10, 2] = 1.0
            return logits, logits

    # the sum of softmaxes (1.0 for class 1 against 9 x 0.58 for class 2) picks class 2, not the single sure crop
    assert predict(Fixed(), torch.zeros(2, 10, 3, 4, 4)).tolist() == [2, 0]


def test_ten_crop_dataset_and_recorded_accuracies(make_config, tmp_path):
    root = make_office31(tmp_path / "office31", per_class=2)
    # 28 px crops of a 32 px resize: an even margin, so the centre crop sits symmetrically (as 224 of 256)
    cfg = make_config("data=office31", f"data.root={root}", "data.image_size=28", "data.batch_size=4",
                      "data.num_workers=0", "backbone=efficientnet_lite0", "backbone.pretrained=false",
                      "trainer.ten_crop=true", "trainer.iterations=2", "trainer.eval_every=2")
    task = datasets.build(cfg.data)
    crops, label = task.target_test_ten_crop[0]
    assert crops.shape == (10, 3, 28, 28)
    # the last five crops are those of the mirrored image (the official ForceFlip): its centre crop is mirrored
    torch.testing.assert_close(crops[9], crops[4].flip(-1))
    summary = train(cfg, tmp_path / "run")
    assert {"target_accuracy_last", "target_accuracy_10crop_last", "target_accuracy_10crop_best",
            "target_accuracy_10crop_best_step"} <= set(summary)
    assert "selects with the target test labels" in summary["selection"]


def test_ten_crop_needs_image_files(make_config, tmp_path):
    with pytest.raises(ConfigError, match="trainer.ten_crop=true needs a dataset of image files"):
        train(make_config("trainer.ten_crop=true", "trainer.iterations=1"), tmp_path / "run")


# -- BN-Inception ------------------------------------------------------------------------------------------------------

def test_inception_bn_layout():
    cfg = OmegaConf.create({"name": "inception_bn", "pretrained": False, "weights": None, "in_chans": 3,
                            "input_size": 224, "lr_mult": 1.0})
    model = backbones.build(cfg).eval()
    widths = {name: block.out_channels for name, block in model.blocks.named_children()}
    assert widths == {"3a": 256, "3b": 320, "3c": 576, "4a": 576, "4b": 576, "4c": 608, "4d": 608, "4e": 1056,
                      "5a": 1024, "5b": 1024}
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 69  # AutoDIAL's 69 DIAL layers
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1024)
    with pytest.raises(ConfigError, match="backbone=inception_bn has no pretrained weights"):
        backbones.build(OmegaConf.merge(cfg, {"pretrained": True}))
