"""Image-list benchmarks: domains of image files described by lists of ``<path> <label>`` lines (the format of TLlib
and of the CDAN/TransNorm code; relative paths are joined to ``data.root``, absolute ones used as they are).

A dataset file declares an :class:`ImageListBenchmark` (its domains, list files, class order, image counts and
archives) and registers its ``build``; everything else is shared:

* ``data.download=true`` fetches missing archives (``datasets.download``) and then checks each domain's list against
  the known number of images and classes; with the data in place nothing is downloaded.
* ``data.list_files={A: my_amazon.txt}`` uses a list of one's own for a domain (relative to ``data.root``).
* A listed image that is missing is an error naming it; ``data.skip_bad=true`` leaves out missing images, and decodes
  every image once so that unreadable and truncated ones (what an interrupted copy leaves) are left out too; both are
  counted in the log and in ``summary.json``. Without it, an unreadable image stops the run with an error naming the
  file when it is loaded.
"""
from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import default_loader

from normda.datasets.download import Archive, fetch
from normda.datasets.base import DomainAdaptationTask, check_domains, hold_out
from normda.datasets.transforms import image_transforms
from normda.errors import ConfigError, DataNotFoundError

log = logging.getLogger(__name__)

Sample = tuple[Path, int]


def read_image_list(list_file: Path, root: Path, num_classes: int) -> list[Sample]:
    """Parse ``list_file`` into (image path, label) pairs, checking each label is in ``[0, num_classes)``."""
    samples = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ConfigError(f"line {number} of {list_file} is {line.strip()!r}, not '<path> <label>'")
        label = int(parts[1])
        if not 0 <= label < num_classes:
            raise ConfigError(f"line {number} of {list_file} has label {label}, outside 0..{num_classes - 1}")
        samples.append((root / parts[0], label))
    if not samples:
        raise ConfigError(f"{list_file} lists no images: give a list of '<path> <label>' lines")
    return samples


def is_readable(path: Path) -> bool:
    """Whether ``path`` decodes whole: a truncated JPEG passes PIL's ``verify`` (headers only) but not ``load``."""
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def drop_bad(samples: list[Sample], list_file: Path, skip_bad: bool) -> tuple[list[Sample], dict[str, int]]:
    """The samples whose image exists (and, with ``skip_bad``, can be read). A missing image is an error unless
    ``skip_bad``; returns the kept samples and how many were missing or unreadable."""
    present = [sample for sample in samples if sample[0].is_file()]
    missing = len(samples) - len(present)
    if missing and not skip_bad:
        first = next(path for path, _ in samples if not path.is_file())
        raise DataNotFoundError(
            f"{missing} of the {len(samples)} images listed in {list_file} are missing (first: {first}): "
            f"put them in place, or pass data.skip_bad=true to train on the {len(present)} present"
        )
    unreadable = 0
    if skip_bad:
        readable = [sample for sample in present if is_readable(sample[0])]
        unreadable = len(present) - len(readable)
        present = readable
    if not present:
        raise DataNotFoundError(f"none of the {len(samples)} images listed in {list_file} can be used: check "
                                f"data.root")
    if missing or unreadable:
        log.warning("data.skip_bad: left out %d missing and %d unreadable of the %d images of %s", missing,
                    unreadable, len(samples), list_file)
    return present, {"missing": missing, "unreadable": unreadable}


class ImageList(Dataset):
    """(image, label) pairs from a parsed list, each image loaded with PIL (RGB) and passed through ``transform``."""

    def __init__(self, samples: list[Sample], transform: Callable | None = None):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            image = default_loader(str(path))
        except (OSError, SyntaxError, ValueError) as error:
            raise DataNotFoundError(f"cannot read image {path} ({error}): replace it, or pass data.skip_bad=true to "
                                    f"leave unreadable images out") from error
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def fingerprint(samples: list[Sample], root: Path) -> dict[str, Any]:
    """What identifies a task's image files, cheaply: how many, their bytes, and a hash of their names (relative to
    ``root``, so that the same data under another folder matches) and sizes; a run records it (``inputs.json``) and
    checks it when it resumes or reports itself finished."""
    lines, total = [], 0
    for path in sorted({path for path, _ in samples}):
        size = path.stat().st_size
        total += size
        name = path.relative_to(root) if path.is_relative_to(root) else path
        lines.append(f"{name}\t{size}")
    return {"images": len(lines), "bytes": total, "sha1": hashlib.sha1("\n".join(lines).encode()).hexdigest()}


def image_task(cfg: Any, source: list[Sample], target: list[Sample], target_test: list[Sample], classes: list[str],
               names: tuple[str, str], notes: dict) -> DomainAdaptationTask:
    """The task of image files: the source (less the ``data.source_val_fraction`` held out, with the test transform),
    the target to adapt to (less the ``data.target_val_fraction`` held out for the validators, with the test
    transform), and the target test images (also as ten crops where the transforms crop), transformed as ``data``
    says (``transforms.image_transforms``). Where the target test images are the target's own (the standard
    protocol), the held-out part leaves them too: accuracy is reported on the rest."""
    train, test, ten_crop = image_transforms(cfg)
    kept, held = hold_out(len(source), cfg.get("source_val_fraction") or 0.0, seed=0)
    adapted, validation = hold_out(len(target), cfg.get("target_val_fraction") or 0.0, seed=1)
    if validation:
        tested_on_target = target_test is target
        notes = {**notes, "target_validation": f"validators on {len(validation)} target images held out of "
                 f"adaptation; accuracy on " + ("the other target images" if tested_on_target else
                                                "the target test images")}
        if tested_on_target:
            target_test = [target[i] for i in adapted]
    return DomainAdaptationTask(
        source_train=ImageList([source[i] for i in kept], train),
        source_val=ImageList([source[i] for i in held], test) if held else None,
        target_train=ImageList([target[i] for i in adapted], train),
        target_val=ImageList([target[i] for i in validation], test) if validation else None,
        target_test=ImageList(target_test, test),
        classes=list(classes),
        source=names[0],
        target=names[1],
        notes=notes,
        target_test_ten_crop=ImageList(target_test, ten_crop) if ten_crop else None,
        inputs=fingerprint([*source, *target, *target_test], Path(str(cfg.root)).expanduser()),
    )


@dataclass(frozen=True)
class ImageListBenchmark:
    """What defines an image-list benchmark; ``build(cfg)`` makes its task from the ``data`` config."""

    title: str
    domains: dict[str, str]  # letter -> domain name
    lists: dict[str, str]  # letter -> list file, relative to the root
    classes: list[str]
    counts: dict[str, int]  # letter -> images in the standard list
    archives: tuple[Archive, ...] = ()
    how_to_get: str = "download it as the README's Data section says"
    notes: dict[str, Any] = field(default_factory=dict)

    def build(self, cfg: Any) -> DomainAdaptationTask:
        source, target = check_domains(cfg, self.domains)
        root = Path(cfg.root).expanduser()
        if cfg.download:
            if not self.archives and not all((root / self.lists[d]).is_file() for d in (source, target)):
                raise DataNotFoundError(f"{self.title} has no public download location: {self.how_to_get}, into "
                                        f"{root}")
            if fetch(self.archives, root, cfg.get("download_from"), self.title):
                self.verify(root)
        samples, bad = {}, {}
        for letter in (source, target):
            samples[letter], bad[self.domains[letter]] = self._domain_samples(root, letter, cfg)
        return image_task(cfg, samples[source], samples[target], samples[target], self.classes,
                          (self.domains[source], self.domains[target]), {"images_left_out": bad})

    def list_file(self, root: Path, letter: str, cfg: Any) -> Path:
        own = (cfg.get("list_files") or {}).get(letter)
        return root / own if own else root / self.lists[letter]

    def _domain_samples(self, root: Path, letter: str, cfg: Any) -> tuple[list[Sample], dict[str, int]]:
        if not root.is_dir():
            raise DataNotFoundError(f"{self.title} folder {root} does not exist: {self.how_to_get} (or pass "
                                    f"data.download=true), or set data.root")
        list_file = self.list_file(root, letter, cfg)
        if not list_file.is_file():
            raise DataNotFoundError(f"{self.title} list {list_file} does not exist: {self.how_to_get} (or pass "
                                    f"data.download=true), or set data.root")
        samples = read_image_list(list_file, root, len(self.classes))
        if list_file == root / self.lists[letter] and len(samples) != self.counts[letter]:
            log.warning("%s lists %d images where %s's %s domain has %d", list_file, len(samples), self.title,
                        self.domains[letter], self.counts[letter])
        return drop_bad(samples, list_file, cfg.skip_bad)

    def verify(self, root: Path) -> None:
        """After a download: every domain's list has the known number of images and every class."""
        for letter, relative in self.lists.items():
            labels = [label for _, label in read_image_list(root / relative, root, len(self.classes))]
            if len(labels) != self.counts[letter] or len(Counter(labels)) != len(self.classes):
                raise DataNotFoundError(
                    f"{root / relative} lists {len(labels)} images of {len(Counter(labels))} classes where "
                    f"{self.title}'s {self.domains[letter]} has {self.counts[letter]} of {len(self.classes)}: the "
                    f"download is incomplete or not the standard one; delete {root} and download again"
                )
