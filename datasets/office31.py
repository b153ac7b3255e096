"""Office-31 (Saenko et al., ECCV 2010): 31 office object classes in three domains, Amazon, DSLR and Webcam.

Layout under ``data.root`` (TLlib's, and the lists of the CDAN/TransNorm code)::

    amazon/images/<class>/*.jpg   dslr/images/<class>/*.jpg   webcam/images/<class>/*.jpg
    image_list/amazon.txt         image_list/dslr.txt         image_list/webcam.txt     (<path> <label> lines)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets.imagelist import ImageList, drop_missing, read_image_list
from datasets.task import DATASETS, DomainAdaptationTask, check_domains
from datasets.transforms import ten_crop_transform, test_transform, train_transform
from normda.errors import DataNotFoundError

DOMAINS = {"A": "amazon", "D": "dslr", "W": "webcam"}

CLASSES = [
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair", "desk_lamp",
    "desktop_computer", "file_cabinet", "headphones", "keyboard", "laptop_computer", "letter_tray", "mobile_phone",
    "monitor", "mouse", "mug", "paper_notebook", "pen", "phone", "printer", "projector", "punchers", "ring_binder",
    "ruler", "scissors", "speaker", "stapler", "tape_dispenser", "trash_can",
]

HOW_TO_GET = "download Office-31 as described in the README (section Data) and extract it there, or set data.root"


def domain_samples(root: Path, letter: str, skip_missing: bool) -> tuple[list, int]:
    list_file = root / "image_list" / f"{DOMAINS[letter]}.txt"
    if not root.is_dir():
        raise DataNotFoundError(f"Office-31 folder {root} does not exist: {HOW_TO_GET}")
    if not list_file.is_file():
        raise DataNotFoundError(f"Office-31 list {list_file} does not exist: {HOW_TO_GET}")
    samples = read_image_list(list_file, root, len(CLASSES))
    return drop_missing(samples, list_file, skip_missing)


@DATASETS.register("office31")
def office31(cfg: Any) -> DomainAdaptationTask:
    source, target = check_domains(cfg, DOMAINS)
    root = Path(cfg.root).expanduser()
    source_samples, source_missing = domain_samples(root, source, cfg.skip_bad)
    target_samples, target_missing = domain_samples(root, target, cfg.skip_bad)
    train = train_transform(cfg.image_size, cfg.mean, cfg.std)
    test = test_transform(cfg.image_size, cfg.mean, cfg.std)
    return DomainAdaptationTask(
        source_train=ImageList(source_samples, train),
        target_train=ImageList(target_samples, train),
        target_test=ImageList(target_samples, test),
        classes=CLASSES,
        source=DOMAINS[source],
        target=DOMAINS[target],
        notes={"missing_images_skipped": {DOMAINS[source]: source_missing, DOMAINS[target]: target_missing}},
        target_test_ten_crop=ImageList(target_samples, ten_crop_transform(cfg.image_size, cfg.mean, cfg.std)),
    )
