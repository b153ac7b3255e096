"""Datasets: the embedded digits, torchvision digits from files in torchvision's layout, Office-31 in its standard
layout (generated here, and the real one in ../shared/data when present)."""
from __future__ import annotations

import bz2
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from normda import datasets
from conftest import SHARED_DATA
from normda.experiment import train
from normda.datasets.digits_embedded import load_arrays
from normda.errors import ConfigError, DataNotFoundError


def test_embedded_digits(make_config):
    task = datasets.build(make_config("data=digits_embedded").data)
    assert task.sizes() == {"source_train": 3000, "target_train": 3000, "target_test": 2007}
    images, labels = next(iter(task.test_loader(batch_size=2007, num_workers=0)))
    assert images.shape == (2007, 3, 32, 32) and labels.unique().tolist() == list(range(10))
    single, label = task.target_test[5]
    torch.testing.assert_close(single, images[5])
    assert label == labels[5]
    assert images.min() >= -1.0 and images.max() <= 1.0  # normalised with mean = std = 0.5
    assert images[:, 0].equal(images[:, 2])  # grey images as three equal channels for DTN
    grey = datasets.build(make_config("data=digits_embedded", "backbone=lenet", "data.source=U",
                                      "data.target=M").data)
    assert grey.source_train[0][0].shape == (1, 28, 28) and grey.target == "mnist"


def write_mnist(root, images, labels, prefix):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, len(images), 28, 28)
                                                       + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, len(labels))
                                                       + labels.astype(np.uint8).tobytes())


def write_usps(path, images, labels):
    values = images.reshape(len(images), -1) / 127.5 - 1.0
    lines = (f"{label + 1} " + " ".join(f"{i + 1}:{v:.4f}" for i, v in enumerate(row)) for label, row in
             zip(labels, values))
    path.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    """MNIST and USPS files in torchvision's layout, made from the embedded data."""
    root = tmp_path_factory.mktemp("digits")
    arrays = load_arrays()
    write_mnist(root, arrays["mnist_train_x"][:300], arrays["mnist_train_y"][:300], "train")
    write_mnist(root, arrays["mnist_test_x"][:100], arrays["mnist_test_y"][:100], "t10k")
    write_usps(root / "usps.bz2", arrays["usps_train_x"][:300], arrays["usps_train_y"][:300])
    write_usps(root / "usps.t.bz2", arrays["usps_test_x"][:100], arrays["usps_test_y"][:100])
    return root


def test_torchvision_digits_from_files(make_config, digits_root, tmp_path):
    cfg = make_config("data=digits", f"data.root={digits_root}", "backbone=lenet", "data.download=false",
                      "data.num_workers=0", "data.batch_size=16", "trainer.iterations=2", "trainer.eval_every=2")
    task = datasets.build(cfg.data)
    assert task.sizes() == {"source_train": 300, "target_train": 300, "target_test": 100}
    image, label = task.target_test[0]
    assert image.shape == (1, 28, 28) and label == load_arrays()["usps_test_y"][0]
    source_pixels = torch.from_numpy(load_arrays()["usps_test_x"][0]).float().div(255).sub(0.5).div(0.5)
    assert image.mean().item() == pytest.approx(source_pixels.mean().item(), abs=0.03)  # resizing keeps the mean
    assert train(cfg, tmp_path / "run")["iterations"] == 2


def test_missing_digits_is_a_clear_error(make_config, tmp_path):
    cfg = make_config("data=digits", f"data.root={tmp_path}", "data.download=false", "data.source=S")
    with pytest.raises(DataNotFoundError, match=r"SVHN is not in .*pass data.download=true .*train_32x32.mat"):
        datasets.build(cfg.data)


def make_office31(root, domains=("amazon", "webcam"), per_class=3, classes=(0, 5, 30)):
    """Office-31's layout with a few generated JPEGs per class."""
    from normda.datasets.office31 import CLASSES

    rng = np.random.default_rng(0)
    (root / "image_list").mkdir(parents=True)
    for domain in domains:
        lines = []
        for label in classes:
            folder = root / domain / "images" / CLASSES[label]
            folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"frame_{index:04d}.jpg")
                lines.append(f"{domain}/images/{CLASSES[label]}/frame_{index:04d}.jpg {label}")
        (root / "image_list" / f"{domain}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_office31_layout_loads_with_tllib_transforms(make_config, tmp_path):
    root = make_office31(tmp_path / "office31")
    cfg = make_config("data=office31", f"data.root={root}", "data.image_size=24", "data.batch_size=4",
                      "data.num_workers=0", "backbone=efficientnet_lite0", "backbone.pretrained=false")
    task = datasets.build(cfg.data)
    assert task.sizes() == {"source_train": 9, "target_train": 9, "target_test": 9}
    assert task.num_classes == 31 and task.source == "amazon" and task.target == "webcam"
    image, label = task.target_test[8]
    assert image.shape == (3, 24, 24) and label == 30
    train_image, _ = task.source_train[0]
    assert train_image.shape == (3, 24, 24)


def test_office31_missing_list_and_images(make_config, tmp_path):
    root = make_office31(tmp_path / "office31")
    with pytest.raises(DataNotFoundError, match=r"Office-31 list .*image_list/dslr.txt does not exist"):
        datasets.build(make_config("data=office31", f"data.root={root}", "data.target=D").data)
    (root / "webcam" / "images" / "back_pack" / "frame_0001.jpg").unlink()
    with pytest.raises(DataNotFoundError, match=r"1 of the 9 images listed in .*webcam.txt are missing .*"
                                                r"data.skip_bad=true to train on the 8 present"):
        datasets.build(make_config("data=office31", f"data.root={root}").data)
    task = datasets.build(make_config("data=office31", f"data.root={root}", "data.skip_bad=true").data)
    assert task.sizes()["target_test"] == 8
    assert task.notes == {"images_left_out": {"amazon": {"missing": 0, "unreadable": 0},
                                              "webcam": {"missing": 1, "unreadable": 0}}}


def test_office31_bad_list_lines(make_config, tmp_path):
    root = make_office31(tmp_path / "office31")
    (root / "image_list" / "webcam.txt").write_text("webcam/images/bike/frame_0000.jpg 31\n")
    with pytest.raises(ConfigError, match="label 31, outside 0..30"):
        datasets.build(make_config("data=office31", f"data.root={root}").data)


@pytest.mark.skipif(not (SHARED_DATA / "office31").is_dir(), reason="../shared/data/office31 is not on this machine")
def test_real_office31_amazon_to_webcam_with_pretrained_efficientnet(make_config, tmp_path):
    cfg = make_config("data=office31", f"data.root={SHARED_DATA / 'office31'}", "data.source=A", "data.target=W",
                      "data.skip_bad=true", "data.image_size=64", "data.batch_size=8", "data.num_workers=2",
                      "backbone=efficientnet_lite0", "method=cdan", "norm=transnorm",
                      "trainer.iterations=4", "trainer.eval_every=4")
    summary = train(cfg, tmp_path / "run")
    assert summary["dataset_sizes"] == {"source_train": 1000, "target_train": 795, "target_test": 795}
    assert summary["images_left_out"] == {"amazon": {"missing": 1817, "unreadable": 0},
                                          "webcam": {"missing": 0, "unreadable": 0}}
    assert summary["target_test_samples"] == 795 and len(summary["per_class_accuracy_last"]) == 31
