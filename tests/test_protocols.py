"""The two protocols, checked against the numbers of protocols.md and TLlib's scripts; transforms and subsets as the
references; 10-crop evaluation; BN-Inception; the official discriminator."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from omegaconf import OmegaConf
from PIL import Image
from torch import nn
from torchvision import datasets as tv
from torchvision import transforms as T

from normda import datasets
from conftest import compose_config
from normda import backbones
from normda.dann_cdan.cdan import CDAN
from normda.dann_cdan.discriminator import DomainDiscriminator
from normda.evaluate import predict
from normda.experiment import train
from normda.dann_cdan import build as build_method
from normda.errors import ConfigError
from normda.schema import check_config
from normda.datasets.digits import class_balanced
from normda.datasets.digit_arrays import DigitArrays
from normda.datasets.digits_embedded import load_arrays
from normda.datasets.transforms import test_transform as centre_crop_transform
from normda.datasets.transforms import digits_transform, train_transform
from test_data import make_office31, write_mnist


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


# -- issue 16: the protocols around the formulas ------------------------------------------------------------------------

@pytest.mark.parametrize("data,iterations,eval_every", [("office31", 2500, 500), ("officehome", 2500, 500),
                                                        ("visda2017", 20_000, 1000), ("imageclef", 10_000, 500),
                                                        ("digits", 50_000, 2500)])
def test_tllib_erm_length_is_erm_sh(data, iterations, eval_every):
    erm = resolved("protocol=tllib", "method=source_only", f"data={data}")
    assert (erm["trainer"]["iterations"], erm["trainer"]["eval_every"]) == (iterations, eval_every)
    dann = resolved("protocol=tllib", "method=dann", f"data={data}")
    assert dann["trainer"]["iterations"] != iterations or data == "digits"  # the adaptation scripts train longer


@pytest.mark.parametrize("method", ["source_only", "dann", "cdan_e", "mdd"])
def test_tllib_visda2017(method):
    cfg = resolved("protocol=tllib", f"method={method}", "data=visda2017")
    assert cfg["data"]["train_resizing"] == "cen.crop"
    assert cfg["data"]["batch_size"] == (36 if method == "mdd" else 32)
    assert cfg["report"]["metric"] == "target_mean_class_accuracy"
    office = resolved("protocol=tllib", f"method={method}", "data=office31")
    assert office["data"]["train_resizing"] == "default" and office["data"]["batch_size"] == 32
    assert office["report"]["metric"] == "target_accuracy"


@pytest.mark.parametrize("data,eval_every,metric", [("office31", 500, "target_accuracy_10crop"),
                                                    ("imageclef", 500, "target_accuracy_10crop"),
                                                    ("officehome", 2000, "target_accuracy_10crop"),
                                                    ("visda2017", 5000, "target_accuracy_10crop"),
                                                    ("digits", 500, "target_accuracy")])
def test_transnorm_protocol_evaluates_as_the_official_readme(data, eval_every, metric):
    cfg = resolved("protocol=transnorm", "method=cdan_e", f"data={data}")
    assert (cfg["trainer"]["eval_every"], cfg["report"]["metric"]) == (eval_every, metric)
    assert cfg["data"]["train_resizing" if data != "digits" else "interpolation"] in ("default", "bicubic")


def test_reference_protocols_resize_with_pils_default_filter():
    for protocol in ("tllib", "transnorm"):
        for data in ("office31", "digits", "digits_embedded"):
            assert resolved(f"protocol={protocol}", f"data={data}")["data"]["interpolation"] == "bicubic"
    assert resolved("protocol=daft", "data=office31")["data"]["interpolation"] == "bilinear"  # torchvision's


def photo(size=(300, 200), seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


def normalised(image: Image.Image) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(image), MEAN, STD)


MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def test_image_transforms_are_tllibs_resize_image_then_crop():
    """ResizeImage is ``img.resize((s, s))`` with PIL's default filter (bicubic); each training mode then crops (or not)
    as TLlib's get_train_transform, and flips at random."""
    image = photo()
    resized = image.resize((256, 256))  # PIL's default filter
    centre = normalised(resized.crop((16, 16, 240, 240)))
    assert torch.equal(centre_crop_transform(224, MEAN, STD, "bicubic")(image), centre)
    assert not torch.equal(centre_crop_transform(224, MEAN, STD, "bilinear")(image), centre)
    for mode, expected_windows in (("cen.crop", [(16, 16)]), ("ran.crop", None), ("res.", "whole")):
        out = train_transform(224, MEAN, STD, mode, "bicubic")(image)
        assert out.shape == (3, 224, 224)
        if expected_windows == "whole":
            candidates = [normalised(image.resize((224, 224)))]
        else:
            offsets = expected_windows or [(i, j) for i in range(33) for j in range(33)]
            candidates = [normalised(resized.crop((j, i, j + 224, i + 224))) for i, j in offsets]
        assert any(torch.equal(out, c) or torch.equal(out, c.flip(-1)) for c in candidates), mode
    default = train_transform(224, MEAN, STD, "default", "bicubic")
    assert isinstance(default.transforms[1], T.RandomResizedCrop) and default.transforms[0].interpolation.value == "bicubic"


def test_train_resizing_is_checked_by_name(make_config, tmp_path):
    make_office31(tmp_path / "office31")
    cfg = make_config("data=office31", f"data.root={tmp_path / 'office31'}", "data.train_resizing=centre")
    with pytest.raises(ConfigError, match="data.train_resizing='centre': give one of default, cen.crop, ran.crop, res."):
        check_config(cfg)


def test_embedded_digits_resize_as_pil(make_config):
    """The embedded task resizes whole uint8 batches in two rounded passes, as PIL: within 2 grey levels of PIL's
    filter of the same name; bicubic (the references') equal on all but a few pixels in a thousand, bilinear off by
    one level on about a tenth (PIL's fixed-point rounding)."""
    images = torch.from_numpy(load_arrays()["usps_train_x"][:20])
    for interpolation, pil_filter, unequal in (("bicubic", Image.BICUBIC, 0.005), ("bilinear", Image.BILINEAR, 0.15)):
        cfg = make_config("data=digits_embedded", f"data.interpolation={interpolation}").data
        batch = DigitArrays(images.numpy(), np.zeros(20, dtype=np.int64), cfg).transform(images.unsqueeze(1))
        pil = torch.stack([TF.to_tensor(Image.fromarray(image.numpy()).resize((32, 32), pil_filter))
                           for image in images])
        difference = (batch[:, :1] * 0.5 + 0.5 - pil).abs() * 255
        assert difference.max() < 2.01 and (difference > 0.01).float().mean() < unequal


def test_class_balanced_svhn(make_config, tmp_path, monkeypatch):
    """TLlib's S->M trains on a class-balanced SVHN: every class cut to the smallest, the same images every time."""
    scipy_io = pytest.importorskip("scipy.io")
    labels = np.repeat(np.arange(1, 11), [9, 5, 7, 6, 8, 6, 7, 5, 6, 12])  # SVHN's labels: 10 is the digit 0
    images = np.random.default_rng(0).integers(0, 256, (32, 32, 3, len(labels)), dtype=np.uint8)
    scipy_io.savemat(tmp_path / "train_32x32.mat", {"X": images, "y": labels[:, None]})
    monkeypatch.setattr(tv.SVHN, "_check_integrity", lambda self: True)  # not the real file's md5
    write_mnist(tmp_path, np.zeros((64, 28, 28), dtype=np.uint8), np.arange(64) % 10, "train")
    write_mnist(tmp_path, np.zeros((10, 28, 28), dtype=np.uint8), np.arange(10), "t10k")
    build = lambda *extra: datasets.build(make_config("data=digits", f"data.root={tmp_path}", "data.source=S",  # noqa
                                                      "data.target=M", "data.download=false", "backbone=dtn",
                                                      *extra).data)
    full = build("data.svhn_subset=full")
    balanced = build("data.svhn_subset=balanced")
    assert len(full.source_train) == 71 and len(balanced.source_train) == 50
    assert np.bincount(balanced.source_train.labels.numpy()).tolist() == [5] * 10
    kept = class_balanced(labels % 10)
    assert torch.equal(balanced.source_train.images, torch.from_numpy(images.transpose(3, 2, 0, 1)[kept]))
    assert torch.equal(build("data.svhn_subset=balanced").source_train.images, balanced.source_train.images)
    assert compose_config(["protocol=tllib", "data=digits"]).data.svhn_subset == "balanced"
    assert compose_config(["protocol=transnorm", "data=digits"]).data.svhn_subset == "full"


@pytest.mark.parametrize("shape,size,channels", [((28, 28), 28, 1), ((28, 28), 32, 3), ((16, 16), 28, 1),
                                                 ((3, 32, 32), 32, 3), ((3, 32, 32), 28, 1)])
def test_digits_in_memory_are_tllibs_res_transform_as_pil(make_config, shape, size, channels):
    """data=digits keeps uint8 arrays and transforms batches; each image equals TLlib's per-image PIL path (resize,
    convert, normalise) within 2 grey levels, exactly where no resize is needed."""
    images = np.random.default_rng(1).integers(0, 256, (12, *shape), dtype=np.uint8)
    cfg = make_config("data=digits", f"data.image_size={size}", f"data.channels={channels}",
                      f"data.mean={[0.5] * channels}", f"data.std={[0.5] * channels}").data
    arrays = DigitArrays(images, np.arange(12), cfg)
    batch = torch.stack([image for image, _ in arrays.__getitems__(list(range(12)))])
    pil = digits_transform(size, channels, cfg.mean, cfg.std, "bicubic")
    expected = torch.stack([pil(Image.fromarray(image if len(shape) == 2 else image.transpose(1, 2, 0)))
                            for image in images])
    assert batch.shape == expected.shape == (12, channels, size, size)
    levels = (batch - expected).abs().max().item() * 0.5 * 255  # std 0.5: one grey level is 2/255
    assert levels < (1e-3 if shape[-1] == size else 2.01)
