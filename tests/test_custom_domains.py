"""Your own domains: ``data=folders`` (ImageFolder layout) and ``data=image_list`` (list files), on image folders made
here in every size and mode, with the benchmarks' one-line errors, sweeps over domain names and tables."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tv

from conftest import compose_config, load_script, run_in_process
from normda import datasets
from normda.errors import UserError
from normda.experiment import train
from normda.reporting.tables import find_runs

CLASSES = ["cat", "dog", "fox"]
#: (mode, size) of the images of each domain: grey, RGB and RGBA, small and large, square and not
DOMAINS = {"photos": [("RGB", (40, 30)), ("L", (64, 64)), ("RGBA", (20, 50))],
           "sketches": [("L", (28, 28)), ("RGB", (100, 80)), ("RGBA", (33, 33))]}


def write_image(path, mode, size, value):
    rng = np.random.default_rng(value)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)


def make_domains(root, per_class=4, domains=DOMAINS, classes=CLASSES):
    """``root/<domain>/<class>/<n>.png``: ``per_class`` images of each class in each domain, cycling through the
    domain's modes and sizes."""
    for domain, kinds in domains.items():
        for label, name in enumerate(classes):
            folder = root / domain / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                mode, size = kinds[index % len(kinds)]
                write_image(folder / f"{index}.png", mode, size, hash((domain, label, index)) % 2**32)
    return root


@pytest.fixture
def folders_root(tmp_path):
    return make_domains(tmp_path / "mine")


def folders_config(make_config, root, *extra):
    return make_config("data=folders", f"data.root={root}", "data.source=photos", "data.target=sketches",
                       "data.num_workers=0", "data.batch_size=4", *extra)


def test_folders_as_the_backbone_expects_them(make_config, folders_root):
    """Every size and mode becomes the backbone's input: 32-pixel RGB for DTN (a resize, mean/std 0.5), 28-pixel grey
    for LeNet, ImageNet-style 224-pixel crops for an ImageNet backbone."""
    task = datasets.build(folders_config(make_config, folders_root, "backbone=dtn").data)
    assert task.classes == CLASSES and (task.source, task.target) == ("photos", "sketches")
    assert task.sizes() == {"source_train": 12, "target_train": 12, "target_test": 12}
    shapes = {tuple(task.source_train[i][0].shape) for i in range(12)}
    assert shapes == {(3, 32, 32)} and task.target_test_ten_crop is None
    image, label = task.target_test[0]
    expected = Image.open(sorted((folders_root / "sketches" / "cat").iterdir())[0]).convert("RGB").resize((32, 32))
    assert label == 0 and torch.allclose(image, torch.from_numpy(np.array(expected)).permute(2, 0, 1) / 127.5 - 1,
                                         atol=1e-6)
    grey = datasets.build(folders_config(make_config, folders_root, "backbone=lenet").data)
    assert {tuple(grey.target_train[i][0].shape) for i in range(12)} == {(1, 28, 28)}
    imagenet = datasets.build(folders_config(make_config, folders_root, "backbone=efficientnet_lite0").data)
    assert tuple(imagenet.source_train[0][0].shape) == (3, 224, 224)
    assert tuple(imagenet.target_test_ten_crop[0][0].shape) == (10, 3, 224, 224)
    assert imagenet.source_train.transform.transforms[-1].transforms[-1].mean == [0.485, 0.456, 0.406]


def test_folders_trains_end_to_end_with_the_names_as_given(make_config, folders_root, tmp_path):
    cfg = folders_config(make_config, folders_root, "backbone=dtn", "data.source_val_fraction=0.25",
                         "trainer.iterations=2", "trainer.eval_every=2")
    summary = train(cfg, tmp_path / "run")
    assert summary["dataset_sizes"] == {"source_train": 9, "target_train": 12, "target_test": 12, "source_val": 3}
    labels = json.loads((tmp_path / "run" / "labels.json").read_text())
    assert (labels["dataset"], labels["task_label"]) == ("folders", "photos->sketches")


def test_a_separate_target_test_folder(make_config, folders_root):
    make_domains(folders_root.parent / "held", per_class=2, domains={"sketches_test": DOMAINS["sketches"]})
    task = datasets.build(folders_config(make_config, folders_root, "backbone=dtn",
                                         f"data.target_test={folders_root.parent / 'held' / 'sketches_test'}").data)
    assert task.sizes() == {"source_train": 12, "target_train": 12, "target_test": 6}


@pytest.mark.parametrize("damage,expected", [
    ("missing class", "data.target=sketches and data.source=photos have different classes: data.target=sketches "
                      "lacks fox and has nothing besides"),
    ("extra class", "lacks nothing and has wolf besides"),
    ("empty class", "the class folder"),
    ("no class folders", "holds no class folders"),
    ("no such domain", "data.target=sketches: there is no folder"),
])
def test_folders_one_line_errors(make_config, folders_root, damage, expected):
    if damage == "missing class":
        for image in (folders_root / "sketches" / "fox").iterdir():
            image.unlink()
        (folders_root / "sketches" / "fox").rmdir()
    elif damage == "extra class":
        make_domains(folders_root / "extra", per_class=1, domains={"sketches": DOMAINS["sketches"]}, classes=["wolf"])
        (folders_root / "extra" / "sketches" / "wolf").rename(folders_root / "sketches" / "wolf")
    elif damage == "empty class":
        for image in (folders_root / "sketches" / "dog").iterdir():
            image.unlink()
        expected = f"{expected} {folders_root / 'sketches' / 'dog'} holds no images"
    elif damage == "no class folders":
        for folder in (folders_root / "sketches").iterdir():
            for image in folder.iterdir():
                image.unlink()
            folder.rmdir()
    else:
        (folders_root / "sketches").rename(folders_root / "drawings")
        expected += f" {folders_root / 'sketches'}: name one of the domain folders in {folders_root} (drawings, photos)"
    with pytest.raises(UserError) as error:
        datasets.build(folders_config(make_config, folders_root, "backbone=dtn").data)
    assert expected in str(error.value)


def test_a_truncated_image_is_skipped_and_counted(make_config, folders_root, caplog):
    """What an interrupted copy leaves: a JPEG cut after 2,000 bytes passes PIL's header check but not its decoder."""
    truncated = folders_root / "photos" / "dog" / "cut.jpg"
    write_image(truncated.with_suffix(".png"), "RGB", (300, 300), 7)
    Image.open(truncated.with_suffix(".png")).save(truncated, quality=95)
    truncated.with_suffix(".png").unlink()
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with caplog.at_level("WARNING"):
        task = datasets.build(folders_config(make_config, folders_root, "backbone=dtn", "data.skip_bad=true").data)
    assert len(task.source_train) == 12 and task.notes["images_left_out"]["photos"]["unreadable"] == 1
    assert "data.skip_bad: left out 0 missing and 1 unreadable of the 13 images" in caplog.text


def test_files_of_other_types_are_left_out_with_a_word(make_config, folders_root, caplog):
    (folders_root / "photos" / "cat" / "animated.gif").write_bytes(b"GIF89a")
    with caplog.at_level("WARNING"):
        task = datasets.build(folders_config(make_config, folders_root, "backbone=dtn").data)
    assert len(task.source_train) == 12
    assert "data.source=photos: left out 1 files that are not images of a known type (.gif: 1)" in caplog.text


def test_a_listed_class_without_a_source_image_is_an_error(make_config, folders_root):
    write_lists(folders_root)
    (folders_root / "classes.txt").write_text("\n".join([*CLASSES, "wolf"]) + "\n")
    with pytest.raises(UserError, match="data.classes lists wolf, which the source list .*photos.txt has no image"):
        datasets.build(lists_config(make_config, folders_root).data)


def test_a_corrupt_image_is_skipped_or_named(make_config, folders_root):
    corrupt = folders_root / "photos" / "dog" / "broken.jpg"
    corrupt.write_bytes(b"not a jpeg")
    task = datasets.build(folders_config(make_config, folders_root, "backbone=dtn", "data.skip_bad=true").data)
    assert len(task.source_train) == 12 and task.notes["images_left_out"]["photos"] == {"missing": 0,
                                                                                        "unreadable": 1}
    strict = datasets.build(folders_config(make_config, folders_root, "backbone=dtn").data)
    index = [path for path, _ in strict.source_train.samples].index(corrupt)
    with pytest.raises(UserError, match=f"cannot read image {corrupt}"):
        strict.source_train[index]


@pytest.mark.parametrize("arguments,expected", [
    (["data=folders", "data.source=photos", "data.target=sketches", "data.root=/nonexistent/mine"],
     "data.root=/nonexistent/mine does not exist: set data.root to the folder that holds your one folder per domain"),
    (["data=folders", "data.root=ROOT", "data.source=photos", "data.target=photos"],
     "data.source and data.target are both 'photos'"),
    (["data=folders", "data.root=ROOT"], "data.source, data.target must be set: add data.source=<value> to the command"),
    (["data=image_list", "data.root=ROOT", "data.source=photos", "data.target=sketches", "data.classes=[cat,dog,fox]"],
     "data.source=photos has no list: give data.lists='{photos: <file>, ...}'"),
    (["data=folders", "data.root=ROOT/photos/cat/0.png", "data.source=photos", "data.target=sketches"],
     "data.root=ROOT/photos/cat/0.png is a file, not a folder"),
    (["data=folders", "data.root=ROOT", "data.source=photos/", "data.target=sketches"],
     "data.source='photos/' is a path: name the domain alone, data.source=photos"),
    # what bash's brace expansion leaves of an unquoted data.lists={photos:photos.txt,sketches:sketches.txt}
    (["data=image_list", "data.root=ROOT", "data.source=photos", "data.target=sketches", "data.classes=[cat,dog,fox]",
      "data.lists=sketches:sketches.txt"], "data.lists='sketches:sketches.txt': give a mapping, quoted for the shell: '{name: value, ...}'"),
])
def test_custom_domains_bad_input_is_one_line(folders_root, tmp_path, arguments, expected):
    result = run_in_process(*[a.replace("ROOT", str(folders_root)) for a in arguments], "logger=none",
                            "backbone=dtn", cwd=tmp_path)
    assert result.returncode == 2 and expected.replace("ROOT", str(folders_root)) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def write_lists(root, label_offset=0):
    """``<domain>.txt`` lists of the folders' images (relative paths), and ``classes.txt``."""
    for domain in DOMAINS:
        lines = [f"{path.relative_to(root)} {CLASSES.index(path.parent.name) + label_offset}"
                 for path in sorted((root / domain).rglob("*.png"))]
        (root / f"{domain}.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")


def lists_config(make_config, root, *extra):
    return make_config("data=image_list", f"data.root={root}", "data.classes=classes.txt",
                       "data.lists={photos: photos.txt, sketches: sketches.txt}", "data.source=photos",
                       "data.target=sketches", "data.num_workers=0", "data.batch_size=4", "backbone=dtn", *extra)


def test_image_lists_train_end_to_end(make_config, folders_root, tmp_path):
    write_lists(folders_root)
    (folders_root / "sketches_test.txt").write_text("\n".join(
        (folders_root / "sketches.txt").read_text().splitlines()[:5]) + "\n")
    cfg = lists_config(make_config, folders_root, "data.test_lists={sketches: sketches_test.txt}",
                       "trainer.iterations=2", "trainer.eval_every=2")
    summary = train(cfg, tmp_path / "run")
    assert summary["dataset_sizes"] == {"source_train": 12, "target_train": 12, "target_test": 5}
    inline = datasets.build(lists_config(make_config, folders_root, "data.classes=[cat,dog,fox]").data)
    assert inline.classes == CLASSES and inline.sizes()["target_test"] == 12


@pytest.mark.parametrize("damage,expected", [
    ("label outside the classes", "has label 3, outside 0..2"),
    ("missing list", "the list of sketches (data.target), ROOT/sketches.txt, does not exist"),
    ("empty list", "sketches.txt lists no images"),
    ("missing classes file", "data.classes=classes.txt: there is no file"),
    ("missing image", "1 of the 12 images listed in ROOT/photos.txt are missing"),
])
def test_image_list_one_line_errors(make_config, folders_root, damage, expected):
    write_lists(folders_root, label_offset=1 if damage == "label outside the classes" else 0)
    if damage == "missing list":
        (folders_root / "sketches.txt").unlink()
    elif damage == "empty list":
        (folders_root / "sketches.txt").write_text("\n")
    elif damage == "missing classes file":
        (folders_root / "classes.txt").unlink()
    elif damage == "missing image":
        next((folders_root / "photos" / "cat").iterdir()).unlink()
    with pytest.raises(UserError) as error:
        datasets.build(lists_config(make_config, folders_root).data)
    assert expected.replace("ROOT", str(folders_root)) in str(error.value)


def test_a_sweep_over_domain_names_tabulates_like_a_benchmark(folders_root, tmp_path):
    make_domains(folders_root.parent / "third", domains={"paintings": DOMAINS["photos"]})
    (folders_root.parent / "third" / "paintings").rename(folders_root / "paintings")
    result = run_in_process("-m", "data=folders", f"data.root={folders_root}", "data.source=photos,paintings",
                            "data.target=sketches", "backbone=dtn", "logger=none", "data.num_workers=0",
                            "data.batch_size=4", "trainer.iterations=2", "trainer.eval_every=2",
                            "trainer.progress=false", f"trainer.output_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = find_runs([tmp_path / "runs"])
    assert sorted(run.name.split("-seed")[0] for run in runs) == ["folders-paintings2sketches-cdan-transnorm-dtn",
                                                                 "folders-photos2sketches-cdan-transnorm-dtn"]
    assert load_script("collect").main([str(tmp_path / "runs"), "--out", str(tmp_path), "--name", "mine"]) == 0
    table = (tmp_path / "mine-best.md").read_text()
    assert "| cdan_e / transnorm |" in table and "paintings->sketches" in table and "photos->sketches" in table


def test_custom_domain_configs_follow_the_backbone():
    cfg = compose_config(["data=folders", "backbone=lenet"])
    assert (cfg.data.transform, cfg.data.channels, cfg.data.image_size, list(cfg.data.mean)) == ("digits", 1, 28,
                                                                                                 [0.5])
    cfg = compose_config(["data=image_list", "backbone=resnet50"])
    assert (cfg.data.transform, cfg.data.channels, cfg.data.image_size) == ("imagenet", 3, 224)


def test_digits_exported_as_folders_and_lists_train_as_custom_domains(make_config, tmp_path):
    """scripts/digits_to_torchvision.py writes torchvision's files from other copies (what data=digits reads, value
    for value); scripts/export_digits.py writes them as folders and lists that data=folders and data=image_list
    read."""
    rng = np.random.default_rng(0)
    mnist = {f"x_{split}": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for split, n in (("train", 30),
                                                                                                 ("test", 20))}
    mnist |= {f"y_{split}": np.arange(n) % 10 for split, n in (("train", 30), ("test", 20))}
    np.savez(tmp_path / "mnist.npz", **mnist)
    usps = np.column_stack([np.arange(20) % 10, rng.uniform(-1, 1, (20, 256)).round(4)])
    with gzip.open(tmp_path / "zip.train.gz", "wt") as handle:
        np.savetxt(handle, usps, fmt="%.4f")
    assert load_script("digits_to_torchvision").main([
        "--mnist", str(tmp_path / "mnist.npz"), "--usps-train", str(tmp_path / "zip.train.gz"),
        "--out", str(tmp_path / "digits")]) == 0
    assert np.array_equal(tv.MNIST(str(tmp_path / "digits"), train=False).data.numpy(), mnist["x_test"])
    read_usps = tv.USPS(str(tmp_path / "digits"), train=True)
    assert read_usps.targets == usps[:, 0].astype(int).tolist()
    assert np.abs(np.asarray(read_usps.data) - (usps[:, 1:].reshape(-1, 16, 16) + 1) * 127.5).max() <= 1.0

    out = tmp_path / "folders"
    assert load_script("export_digits").main(["mnist", "mnist_coloured", "--root", str(tmp_path / "digits"),
                                              "--out", str(out), "--limit", "20"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["mnist", "mnist.txt", "mnist_coloured", "mnist_coloured.txt",
                                                     "mnist_coloured_test", "mnist_coloured_test.txt", "mnist_test",
                                                     "mnist_test.txt"]
    first = Image.open(out / "mnist_coloured" / "0" / "00000.png")
    assert first.mode == "RGB" and np.asarray(first).std(axis=(0, 1)).min() > 0  # a textured, coloured image
    by_folders = datasets.build(make_config("data=folders", f"data.root={out}", "data.source=mnist",
                                            "data.target=mnist_coloured", "data.target_test=mnist_coloured_test",
                                            "backbone=dtn").data)
    by_lists = datasets.build(make_config(
        "data=image_list", f"data.root={out}", "data.classes=[0,1,2,3,4,5,6,7,8,9]", "backbone=dtn",
        "data.lists={mnist: mnist.txt, mnist_coloured: mnist_coloured.txt}",
        "data.test_lists={mnist_coloured: mnist_coloured_test.txt}", "data.source=mnist",
        "data.target=mnist_coloured").data)
    assert by_folders.sizes() == by_lists.sizes() == {"source_train": 20, "target_train": 20, "target_test": 20}
    assert by_folders.classes == by_lists.classes == [str(digit) for digit in range(10)]
    assert sorted(by_folders.target_test.samples) == sorted(by_lists.target_test.samples)  # the same images, labels


def test_another_folder_is_another_run_and_changed_files_are_refused(make_config, folders_root, tmp_path):
    """The issue's case: the same command with another data.root must never report the first folder's result, and
    files changed under the same root must not resume or "finish" the old run."""
    from normda.errors import RunInputsChanged
    from normda.config_identity import run_name
    from normda.run_folder import RunFolder

    copy = tmp_path / "copy"
    make_domains(copy)
    first = folders_config(make_config, folders_root, "backbone=dtn", "trainer.iterations=2", "trainer.eval_every=2")
    second = folders_config(make_config, copy, "backbone=dtn", "trainer.iterations=2", "trainer.eval_every=2")
    assert run_name(first) != run_name(second)  # the resolved root is part of the identity
    benchmark = [compose_config(["data=office31", f"data.root={root}"]) for root in ("/a/office31", "/b/office31")]
    assert run_name(benchmark[0]) == run_name(benchmark[1])  # a benchmark is the same data wherever it lies

    run = RunFolder(tmp_path / "run")
    train(first, run.path)
    assert json.loads(run.inputs.read_text())["images"] == 24  # 12 source + 12 target (tested on the target)
    next((folders_root / "photos" / "cat").iterdir()).unlink()
    with pytest.raises(RunInputsChanged, match=r"differ from those the run folder .* was trained on \(then 24 "
                                               r"images, .*; now 23 images"):
        train(first, run.path)
    assert run.done and not run.failure.exists()
