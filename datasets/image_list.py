"""Your own domains as list files (``data=image_list``): each domain a file of ``<path> <label>`` lines, the format
of TLlib and of the CDAN/TransNorm code (paths relative to ``data.root``, or absolute), with the class names in label
order from ``data.classes`` (a list, or a file with one name per line).

    python train.py data=image_list data.root=/data/mine data.classes=classes.txt \\
        data.lists='{photos: photos.txt, sketches: sketches.txt}' data.source=photos data.target=sketches

Accuracy is reported on ``data.test_lists.<target>`` when given, else on the target's own list (the standard protocol
of unsupervised DA on Office-like data, whose labels are never read in training).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import ListConfig

from normda.datasets.base import DomainAdaptationTask, register
from normda.datasets.settings import ImageListConfig
from normda.datasets.folders import custom_domains
from normda.datasets.image_files import drop_bad, image_task, read_image_list
from normda.errors import ConfigError, DataNotFoundError

log = logging.getLogger(__name__)


def read_classes(classes: Any, root: Path) -> list[str]:
    """``data.classes``: a list of names, or a file (relative to ``data.root``, or absolute) with one per line."""
    if isinstance(classes, (list, ListConfig)):
        names = [str(name) for name in classes]
    else:
        path = root / str(classes)
        if not path.is_file():
            raise DataNotFoundError(f"data.classes={classes}: there is no file {path}: give a file with one class "
                                    f"name per line, in label order, or a list (data.classes=[cat,dog])")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"data.classes gives {len(names)} names ({len(set(names))} distinct): give at least two "
                          f"distinct class names, in label order")
    return names


def list_path(root: Path, key: str, lists: Any, domain: str) -> Path:
    if domain not in lists:
        raise ConfigError(f"{key}={domain} has no list: give data.lists='{{{domain}: <file>, ...}}' (the domains "
                          f"with lists: {', '.join(map(str, lists)) or 'none'})")
    path = root / str(lists[domain])
    if not path.is_file():
        raise DataNotFoundError(f"the list of {domain} ({key}), {path}, does not exist: fix data.lists.{domain} or "
                                f"data.root")
    return path


@register("image_list", settings=ImageListConfig)
def image_list(cfg: Any) -> DomainAdaptationTask:
    root, source, target = custom_domains(cfg, "your list files")
    classes = read_classes(cfg.classes, root)
    lists = cfg.lists or {}
    files = {"source": list_path(root, "data.source", lists, source),
             "target": list_path(root, "data.target", lists, target)}
    if target in (cfg.test_lists or {}):
        files["target_test"] = list_path(root, "data.test_lists", cfg.test_lists, target)
    else:
        log.info("accuracy is reported on the target list of %s itself (its labels are never read in training): the "
                 "standard protocol of unsupervised DA; data.test_lists.%s=<file> tests on another list", target,
                 target)
    samples, bad = {}, {}
    for part, path in files.items():
        samples[part], bad[path.name] = drop_bad(read_image_list(path, root, len(classes)), path, cfg.skip_bad)
    absent = sorted(set(classes) - {classes[label] for _, label in samples["source"]})
    if absent:
        raise ConfigError(f"data.classes lists {', '.join(absent)}, which the source list {files['source']} has no "
                          f"image of: a class the source never shows cannot be learnt; remove it from data.classes "
                          f"(and relabel), or add its images")
    return image_task(cfg, samples["source"], samples["target"], samples.get("target_test", samples["target"]),
                      classes, (source, target), {"images_left_out": bad})
