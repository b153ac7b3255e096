"""The two protocols, checked against the numbers of protocols.md and TLlib's scripts; transforms and subsets as the
references; 10-crop evaluation; BN-Inception; the official discriminator."""
from __future__ import annotations

import json
import math
from pathlib import Path

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
from conftest import compose_config, run_in_process
from normda import backbones
from normda.dann_cdan.cdan import CDAN
from normda.dann_cdan.discriminator import DomainDiscriminator
from normda.evaluate import predict
from normda.experiment import train
from normda.dann_cdan import build as build_method
from normda.errors import ConfigError
from normda.reporting.protocols import composed_value, reference_settings
from normda.reporting.protocols import markdown as protocol_markdown
from normda.schema import check_config
from normda.datasets.digits import class_balanced
from normda.datasets.digit_arrays import DigitArrays
from normda.datasets.digits_embedded import load_arrays
from normda.datasets.transforms import test_transform as centre_crop_transform
from normda.datasets.transforms import digits_transform, train_transform
from test_data import make_office31, write_mnist


def resolved(*overrides: str) -> dict:
    return OmegaConf.to_container(compose_config(["logger=none", *overrides]), resolve=True)


# -- every number of the protocols, as their references give them (normda/reporting/published/protocols.csv) ----------

RECIPES = [name for name, _ in reference_settings().groupby(["recipe", "command"], sort=False)]


@pytest.mark.parametrize("recipe,command", RECIPES, ids=[recipe for recipe, _ in RECIPES])
def test_each_recipe_composes_to_its_references_numbers(recipe, command):
    """``python train.py <command> --cfg job`` shows each setting the reference file gives the recipe (TLlib's
    scripts, the official TransNorm code, the presets' references): the file the README's protocol table renders."""
    cfg = compose_config(["logger=none", *command.split()])
    rows = reference_settings().query("recipe == @recipe")
    for key, expected in zip(rows.key, rows.value):
        value = composed_value(cfg, key)
        if isinstance(expected, float) and not isinstance(value, bool):
            assert value == pytest.approx(expected), key
        else:
            assert (value, type(value)) == (expected, type(expected)), key


def test_the_readme_shows_the_reference_file():
    assert protocol_markdown() in (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_adaptation_scripts_train_longer_than_erm_sh():
    for data in ("office31", "officehome", "visda2017", "imageclef"):
        lengths = [compose_config(["protocol=tllib", f"method={method}", f"data={data}"]).trainer.iterations
                   for method in ("source_only", "dann")]
        assert lengths[0] < lengths[1], data


def test_cdan_entropy_weights_follow_their_own_schedule():
    method = build_method(resolved("protocol=transnorm", "method=cdan_e", "data=office31")["method"], 8, 3)
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


# -- the protocols around the formulas ------------------------------------------------------------------------------

def test_reference_protocols_resize_with_pils_default_filter():
    for protocol in ("tllib", "transnorm"):
        for data in ("office31", "digits", "digits_embedded"):
            # the CDAN code's digits script (protocol=transnorm's digits) resizes with transforms.Resize: bilinear
            expected = "bilinear" if protocol == "transnorm" and data != "office31" else "bicubic"
            assert resolved(f"protocol={protocol}", f"data={data}")["data"]["interpolation"] == expected
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
    assert compose_config(["protocol=transnorm", "data=digits"]).data.svhn_subset == "balanced"  # the CDAN code's


def test_the_table4_digits_preset_runs_end_to_end_on_stand_in_files(tmp_path, monkeypatch):
    """``experiment=transnorm_table4_digits`` (the CDAN code's train_svhnmnist.py) on small SVHN and MNIST files: 10
    epochs of max(len(source), len(target)) // 64 batches (here MNIST's 192 // 64 = 3; the source's would be 1),
    evaluated after each; the network's rate times 0.3 before epochs 3, 6 and 9, the discriminator's constant."""
    scipy_io = pytest.importorskip("scipy.io")
    labels = np.repeat(np.arange(1, 11), 7)  # SVHN's labels: 10 is the digit 0
    images = np.random.default_rng(0).integers(0, 256, (32, 32, 3, len(labels)), dtype=np.uint8)
    scipy_io.savemat(tmp_path / "train_32x32.mat", {"X": images, "y": labels[:, None]})
    monkeypatch.setattr(tv.SVHN, "_check_integrity", lambda self: True)  # not the real file's md5
    mnist = np.random.default_rng(1).integers(0, 256, (242, 28, 28), dtype=np.uint8)
    write_mnist(tmp_path, mnist[:192], np.arange(192) % 10, "train")
    write_mnist(tmp_path, mnist[192:], np.arange(50) % 10, "t10k")
    result = run_in_process("-m", "experiment=transnorm_table4_digits", "method=cdan_e", "norm=transnorm", "seed=0",
                            f"data.root={tmp_path}", "data.download=false", "logger=none", "trainer.progress=false",
                            f"trainer.output_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = [folder for folder in (tmp_path / "runs").iterdir() if folder.is_dir()]
    assert run.name.startswith("digits-S2M-cdan-transnorm-dtn-seed0") and (run / "done").exists()
    evaluations = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evaluations] == list(range(3, 31, 3))
    # the rate of the epoch after each evaluation: epochs 2 .. 11 (the last at 8 steps past the third milestone)
    network = [0.01, 0.003, 0.003, 0.003, 0.0009, 0.0009, 0.0009, 0.00027, 0.00027, 0.00027]
    assert [e["lr/backbone"] for e in evaluations] == pytest.approx(network)
    assert [e["lr/head"] for e in evaluations] == pytest.approx(network)
    assert [e["lr/method"] for e in evaluations] == pytest.approx([0.01] * 10)


@pytest.mark.parametrize("shape,size,channels", [((28, 28), 28, 1), ((28, 28), 32, 3), ((16, 16), 28, 1),
                                                 ((3, 32, 32), 32, 3), ((3, 32, 32), 28, 1)])
def test_digits_in_memory_are_tllibs_res_transform_as_pil(make_config, shape, size, channels):
    """data=digits keeps uint8 arrays and transforms batches; each image equals TLlib's per-image PIL path (resize,
    convert, normalise) within 2 grey levels, exactly where no resize is needed."""
    images = np.random.default_rng(1).integers(0, 256, (12, *shape), dtype=np.uint8)
    cfg = make_config("data=digits", f"data.image_size={size}", f"data.channels={channels}",
                      f"data.mean={[0.5] * channels}", f"data.std={[0.5] * channels}").data
    arrays = DigitArrays(images, np.arange(12), cfg)
    batch, labels = arrays.__getitems__(list(range(12)))
    assert labels.tolist() == list(range(12))
    # transformed once at construction: bit for bit what transforming any batch of them gives
    assert torch.equal(arrays.transform(arrays.images[[3, 7, 11]]), batch[[3, 7, 11]])
    pil = digits_transform(size, channels, cfg.mean, cfg.std, "bicubic")
    expected = torch.stack([pil(Image.fromarray(image if len(shape) == 2 else image.transpose(1, 2, 0)))
                            for image in images])
    assert batch.shape == expected.shape == (12, channels, size, size)
    levels = (batch - expected).abs().max().item() * 0.5 * 255  # std 0.5: one grey level is 2/255
    assert levels < (1e-3 if shape[-1] == size else 2.01)
