"""The image-list benchmarks in their on-disk layouts (generated here), downloads through the real download path from
local archives, and bad data."""
from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from normda import datasets
from conftest import run_cli
from normda.experiment import train
from normda.datasets.download import safe_extract
from normda.datasets.imageclef import IMAGECLEF
from normda.datasets.office31 import OFFICE31
from normda.datasets.officehome import OFFICE_HOME
from normda.datasets.visda2017 import VISDA2017
from normda.errors import ConfigError, DataNotFoundError

BENCHMARKS = {"office31": OFFICE31, "officehome": OFFICE_HOME, "visda2017": VISDA2017, "imageclef": IMAGECLEF}


def domain_folder(benchmark, letter: str) -> str:
    """Where a generated domain's images go: the folder its archive provides (its own name otherwise)."""
    names = {archive.provides for archive in benchmark.archives}
    name = benchmark.domains[letter]
    for candidate in (name, Path(benchmark.lists[letter]).stem):
        if candidate in names:
            return candidate
    return Path(benchmark.lists[letter]).stem


def make_layout(root: Path, benchmark, per_class: int = 2, classes: int = 3, seed: int = 0) -> dict[str, int]:
    """A benchmark's layout with ``per_class`` generated JPEGs for its first ``classes`` classes in every domain
    (Office-31 keeps its ``<domain>/images/<class>`` level); returns the image count per domain."""
    rng = np.random.default_rng(seed)
    counts = {}
    for letter, list_path in benchmark.lists.items():
        folder = domain_folder(benchmark, letter) + ("/images" if benchmark is OFFICE31 else "")
        lines = []
        for label in range(classes):
            directory = root / folder / benchmark.classes[label]
            directory.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(directory / f"{index}.jpg")
                lines.append(f"{folder}/{benchmark.classes[label]}/{index}.jpg {label}")
        (root / list_path).parent.mkdir(parents=True, exist_ok=True)
        (root / list_path).write_text("\n".join(lines) + "\n")
        counts[letter] = len(lines)
    return counts


def data_overrides(name: str, root: Path, *extra: str) -> list[str]:
    domains = list(BENCHMARKS[name].domains)
    source, target = domains[0], domains[-1]
    return [f"data={name}", f"data.root={root}", f"data.source={source}", f"data.target={target}",
            "data.num_workers=0", "data.batch_size=4", "backbone=dtn", "data.image_size=32", *extra]


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_each_benchmark_loads_and_trains_in_its_layout(make_config, tmp_path, name):
    benchmark = BENCHMARKS[name]
    counts = make_layout(tmp_path / name, benchmark)
    cfg = make_config(*data_overrides(name, tmp_path / name, "trainer.iterations=1", "trainer.eval_every=1"))
    task = datasets.build(cfg.data)
    source, target = list(benchmark.domains)[0], list(benchmark.domains)[-1]
    assert task.sizes() == {"source_train": counts[source], "target_train": counts[target],
                            "target_test": counts[target]}
    assert task.num_classes == len(benchmark.classes)
    image, label = task.target_test[counts[target] - 1]
    assert image.shape == (3, 32, 32) and label == 2
    summary = train(cfg, tmp_path / "run")
    assert summary["target_test_samples"] == counts[target]


def test_class_orders_and_domains():
    assert OFFICE_HOME.classes[:5] == ["Drill", "Exit_Sign", "Bottle", "Glasses", "Computer"]
    assert OFFICE_HOME.classes[-1] == "Marker" and len(OFFICE_HOME.classes) == 65
    assert OFFICE_HOME.counts == {"Ar": 2427, "Cl": 4365, "Pr": 4439, "Rw": 4357}
    assert OFFICE31.counts == {"A": 2817, "D": 498, "W": 795} and len(OFFICE31.classes) == 31
    assert VISDA2017.classes[0] == "aeroplane" and len(VISDA2017.classes) == 12
    assert len(IMAGECLEF.classes) == 12


def test_domains_by_name_and_unknown_ones(make_config, tmp_path):
    make_layout(tmp_path, VISDA2017)
    task = datasets.build(make_config(*data_overrides("visda2017", tmp_path, "data.source=synthetic",
                                                      "data.target=Real")).data)
    assert (task.source, task.target) == ("Synthetic", "Real")
    with pytest.raises(ConfigError, match=r"has no domain 'Q' .*choose one of S \(Synthetic\), R \(Real\)"):
        datasets.build(make_config(*data_overrides("visda2017", tmp_path, "data.source=Q")).data)


# -- downloads ---------------------------------------------------------------------------------------------------------

def pack(benchmark, layout: Path, mirror: Path) -> None:
    """Archives of a generated layout, named as the benchmark's own."""
    mirror.mkdir(parents=True)
    for archive in benchmark.archives:
        path = mirror / archive.filename
        if archive.filename.endswith(".zip"):
            with zipfile.ZipFile(path, "w") as bundle:
                for file in sorted((layout / archive.provides).rglob("*")):
                    bundle.write(file, file.relative_to(layout))
        else:
            with tarfile.open(path, "w:gz" if archive.filename.endswith("gz") else "w") as bundle:
                bundle.add(layout / archive.provides, arcname=archive.provides)


@pytest.fixture
def http_server():
    """Serve a folder on the loopback interface, so that downloads go through torchvision's real HTTP code."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()


@pytest.mark.parametrize("name,over_http", [("office31", True), ("officehome", False), ("visda2017", True)])
def test_download_from_local_archives_through_the_real_path(make_config, tmp_path, monkeypatch, http_server, name,
                                                            over_http):
    benchmark = BENCHMARKS[name]
    counts = make_layout(tmp_path / "layout", benchmark, classes=len(benchmark.classes), per_class=1)
    pack(benchmark, tmp_path / "layout", tmp_path / "mirror")
    for letter, count in counts.items():  # the generated set is smaller than the real one
        monkeypatch.setitem(benchmark.counts, letter, count)
    root = tmp_path / "data"
    location = http_server(tmp_path / "mirror") if over_http else tmp_path / "mirror"
    overrides = data_overrides(name, root, "data.download=true", f"data.download_from={location}")
    task = datasets.build(make_config(*overrides).data)
    assert task.num_classes == len(benchmark.classes) and all((root / a.provides).exists() for a in
                                                              benchmark.archives)
    assert not list(root.glob("*.tgz")) and not list(root.glob("*.zip"))  # archives removed once extracted
    import normda.datasets.download as download

    monkeypatch.setattr(download, "_retrieve", lambda *a, **k: pytest.fail("no download with the data present"))
    datasets.build(make_config(*overrides).data)


def test_download_verifies_the_counts(make_config, tmp_path):
    make_layout(tmp_path / "layout", OFFICE31, classes=3)
    pack(OFFICE31, tmp_path / "layout", tmp_path / "mirror")
    overrides = data_overrides("office31", tmp_path / "data", "data.download=true",
                               f"data.download_from={tmp_path / 'mirror'}")
    with pytest.raises(DataNotFoundError, match=r"amazon.txt lists 6 images of 3 classes where Office-31's amazon "
                                                r"has 2817 of 31: the download is incomplete"):
        datasets.build(make_config(*overrides).data)


def test_failed_download_names_the_file_the_location_and_the_fix(make_config, tmp_path):
    overrides = data_overrides("office31", tmp_path / "data", "data.download=true",
                               f"data.download_from={tmp_path / 'empty'}")
    with pytest.raises(DataNotFoundError, match=r"could not download Office-31's image_list.zip from .*empty/"
                                                r"image_list.zip .*fetch it by hand and extract it into"):
        datasets.build(make_config(*overrides).data)
    with pytest.raises(DataNotFoundError, match="ImageCLEF-DA has no public download location: ImageCLEF-DA is "
                                                "distributed on request"):
        datasets.build(make_config(*data_overrides("imageclef", tmp_path / "clef", "data.download=true")).data)


def test_archives_cannot_write_outside_the_data_folder(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as bundle:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 3
        bundle.addfile(info, io.BytesIO(b"bad"))
    (tmp_path / "root").mkdir()
    with pytest.raises(DataNotFoundError, match="would land outside the data folder"):
        safe_extract(evil, tmp_path / "root")
    assert not (tmp_path / "outside.txt").exists()
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as bundle:
        info = tarfile.TarInfo("images")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        bundle.addfile(info)
    with pytest.raises(DataNotFoundError, match="refusing to extract it"):
        safe_extract(link, tmp_path / "root")
    bad_zip = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad_zip, "w") as bundle:
        bundle.writestr("../../escape.txt", "bad")
    with pytest.raises(DataNotFoundError, match="outside the data folder"):
        safe_extract(bad_zip, tmp_path / "root")


# -- bad data ----------------------------------------------------------------------------------------------------------

def test_corrupt_image_is_named_or_left_out_and_counted(make_config, tmp_path):
    make_layout(tmp_path, OFFICE31)
    (tmp_path / "webcam/images/bike/1.jpg").write_bytes(b"not a jpeg")
    task = datasets.build(make_config(*data_overrides("office31", tmp_path)).data)
    broken = next(i for i, (path, _) in enumerate(task.target_test.samples) if path.name == "1.jpg"
                  and path.parent.name == "bike")
    with pytest.raises(DataNotFoundError, match=r"cannot read image .*webcam/images/bike/1.jpg .*data.skip_bad=true"):
        task.target_test[broken]
    kept = datasets.build(make_config(*data_overrides("office31", tmp_path, "data.skip_bad=true")).data)
    assert len(kept.target_test) == 5
    assert kept.notes["images_left_out"]["webcam"] == {"missing": 0, "unreadable": 1}


@pytest.mark.slow  # 12 s: a program with a loader worker
def test_corrupt_image_in_a_worker_is_one_line_on_the_command_line(tmp_path):
    make_layout(tmp_path / "office31", OFFICE31)
    (tmp_path / "office31/webcam/images/bike/1.jpg").write_bytes(b"not a jpeg")
    result = run_cli("logger=none", *data_overrides("office31", tmp_path / "office31", "data.num_workers=1"),
                     "trainer.iterations=2", cwd=tmp_path)
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error and "cannot read image" in error[0] and "webcam/images/bike/1.jpg" in error[0]
    assert "Traceback" not in result.stderr


def test_empty_list_and_own_list_files(make_config, tmp_path):
    make_layout(tmp_path, OFFICE31)
    (tmp_path / "mine.txt").write_text("webcam/images/bike/0.jpg 1\n")
    own = datasets.build(make_config(*data_overrides("office31", tmp_path, "+data.list_files.W=mine.txt")).data)
    assert len(own.target_test) == 1
    (tmp_path / "image_list/webcam.txt").write_text("\n")
    with pytest.raises(ConfigError, match=r"webcam.txt lists no images"):
        datasets.build(make_config(*data_overrides("office31", tmp_path)).data)


def test_absolute_paths_in_lists_load_as_they_are(make_config, tmp_path):
    make_layout(tmp_path / "elsewhere", OFFICE31)
    lines = (tmp_path / "elsewhere/image_list/webcam.txt").read_text().splitlines()
    absolute = [f"{tmp_path / 'elsewhere' / line.rsplit(maxsplit=1)[0]} {line.rsplit(maxsplit=1)[1]}" for line in lines]
    root = tmp_path / "lists_only"
    (root / "image_list").mkdir(parents=True)
    (root / "image_list/webcam.txt").write_text("\n".join(absolute) + "\n")
    (root / "image_list/amazon.txt").write_text("\n".join(absolute) + "\n")
    task = datasets.build(make_config(*data_overrides("office31", root)).data)
    assert len(task.target_test) == 6 and task.target_test.samples[0][0].is_absolute()
