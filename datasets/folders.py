"""Your own domains as image folders (``data=folders``): ``<data.root>/<domain>/<class>/<image>``, torchvision's
``ImageFolder`` layout, every domain named by its folder and holding the same class folders.

    python train.py data=folders data.root=/data/mine data.source=photos data.target=sketches

Classes are the class folders in sorted order (torchvision's ``find_classes``); images are the files with an image
extension (``IMG_EXTENSIONS``). Accuracy is reported on ``data.target_test`` (a folder under ``data.root``, or a path)
or, by default, on the target domain's own images: the standard protocol of unsupervised DA on Office-like data, whose
labels are never read in training. Images of any size and mode are prepared as the backbone expects
(``data.transform``: ImageNet-style resizing and statistics, or a digits CNN's resize; ``datasets/transforms.py``).
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from normda.datasets.base import DomainAdaptationTask, register
from normda.datasets.settings import FoldersConfig
from normda.datasets.image_files import Sample, drop_bad, image_task
from normda.errors import ConfigError, DataNotFoundError

log = logging.getLogger(__name__)


def custom_domains(cfg: Any, what: str) -> tuple[Path, str, str]:
    """``data.root`` of one's own domains (which must exist: it holds ``what``) and the source and target names (two
    different ones), after the image settings are checked."""
    root = Path(str(cfg.root)).expanduser()
    if root.is_file():
        raise DataNotFoundError(f"data.root={root} is a file, not a folder: set data.root to the folder that holds "
                                f"your {what}")
    if not root.is_dir():
        raise DataNotFoundError(f"data.root={root} does not exist: set data.root to the folder that holds your "
                                f"{what}")
    source, target = str(cfg.source), str(cfg.target)
    if source == target:
        raise ConfigError(f"data.source and data.target are both {source!r}: adaptation needs two domains")
    return root, source, target


def scan_domain(folder: Path, key: str, root: Path) -> tuple[list[Sample], list[str]]:
    """The (image, label) pairs of one domain folder and its classes, with one-line errors for what is not an
    ``ImageFolder``: a missing folder, no class folders, a class folder without images."""
    if not folder.is_dir():
        found = sorted(path.name for path in root.iterdir() if path.is_dir())
        raise DataNotFoundError(f"{key}: there is no folder {folder}: name one of the domain folders in {root} "
                                f"({', '.join(found) or 'none'})")
    try:
        classes, class_to_index = find_classes(str(folder))
    except FileNotFoundError as error:
        raise DataNotFoundError(f"{key}: {folder} holds no class folders ({error}): arrange it as "
                                f"<domain>/<class>/<image>") from error
    pairs = make_dataset(str(folder), class_to_index, extensions=IMG_EXTENSIONS, allow_empty=True)
    others = Counter(path.suffix.lower() or path.name for name in classes for path in (folder / name).rglob("*")
                     if path.is_file() and not path.name.lower().endswith(IMG_EXTENSIONS))
    if others:
        log.warning("%s: left out %d files that are not images of a known type (%s) in %s: convert them to .jpg or "
                    ".png to train on them", key, sum(others.values()),
                    ", ".join(f"{suffix}: {count}" for suffix, count in sorted(others.items())), folder)
    counts = dict.fromkeys(classes, 0)
    for _, label in pairs:
        counts[classes[label]] += 1
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise DataNotFoundError(f"{key}: the class folder{'s' if len(empty) > 1 else ''} "
                                f"{', '.join(str(folder / name) for name in empty)} hold{'' if len(empty) > 1 else 's'}"
                                f" no images ({', '.join(IMG_EXTENSIONS)}): add images, or remove the folder from "
                                f"every domain")
    return [(Path(path), label) for path, label in pairs], classes


def check_same_classes(classes: dict[str, list[str]]) -> list[str]:
    """The class list every domain shares; an error naming the classes some domains lack."""
    first_key, first = next(iter(classes.items()))
    for key, other in classes.items():
        if other != first:
            missing = sorted(set(first) - set(other))
            extra = sorted(set(other) - set(first))
            raise ConfigError(
                f"{key} and {first_key} have different classes: {key} lacks {', '.join(missing) or 'nothing'}"
                f" and has {', '.join(extra) or 'nothing'} besides: give every domain the same class folders"
            )
    return first


@register("folders", settings=FoldersConfig)
def folders(cfg: Any) -> DomainAdaptationTask:
    root, source, target = custom_domains(cfg, "one folder per domain")
    test = str(cfg.target_test) if cfg.target_test is not None else None
    if test is None:
        log.info("accuracy is reported on the target domain %s itself (its labels are never read in training): the "
                 "standard protocol of unsupervised DA; data.target_test=<folder> tests on another folder", target)
    domains = {"data.source": root / source, "data.target": root / target}
    if test is not None:
        domains["data.target_test"] = root / test  # an absolute path stays as it is
    samples, classes, bad = {}, {}, {}
    for key, folder in domains.items():
        found, classes[f"{key}={folder.name}"] = scan_domain(folder, f"{key}={folder.name}", root)
        samples[key], bad[folder.name] = drop_bad(found, folder, cfg.skip_bad)
    shared = check_same_classes(classes)
    return image_task(cfg, samples["data.source"], samples["data.target"],
                      samples.get("data.target_test", samples["data.target"]), shared, (source, target),
                      {"images_left_out": bad})
