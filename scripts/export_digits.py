"""Write digits datasets as image folders, to train on them with ``data=folders`` (or any domain of your own beside
them).

    python scripts/export_digits.py --root data/digits --out data/my_digits mnist svhn     # torchvision's files
    python scripts/export_digits.py --root data/digits --out data/my_digits mnist_coloured --limit 10000
    python train.py data=folders data.root=data/my_digits data.source=svhn data.target=mnist \
        data.target_test=mnist_test backbone=dtn

Each domain becomes ``<out>/<domain>/<digit>/<n>.png`` (its training split) and ``<out>/<domain>_test/...`` (its test
split), with the lists ``<out>/<domain>.txt`` and ``<out>/<domain>_test.txt`` of ``<path> <label>`` lines for
``data=image_list`` (paths relative to ``<out>``), from torchvision's files under ``--root`` (``--download`` fetches missing ones, md5-checked): ``mnist``,
``usps``, ``svhn``. ``mnist_coloured`` is MNIST blended over coloured, textured backgrounds as MNIST-M blends it over
photo patches (``|background - digit|`` per channel), with a seeded background per image: a shift of its own, not
MNIST-M. For MNIST-M itself, see the README (its archive ships ``<path> <label>`` lists for ``data=image_list``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision import datasets as tv


def load(name: str, root: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, H, W) or (N, H, W, 3), labels) of one split, from torchvision's files."""
    if name == "svhn":
        dataset = tv.SVHN(str(root), split="train" if train else "test", download=download)
        return dataset.data.transpose(0, 2, 3, 1), np.asarray(dataset.labels)
    if name == "usps":
        dataset = tv.USPS(str(root), train=train, download=download)
        return np.asarray(dataset.data), np.asarray(dataset.targets)
    dataset = tv.MNIST(str(root), train=train, download=download)
    return dataset.data.numpy(), dataset.targets.numpy()


def coloured(images: np.ndarray, seed: int) -> np.ndarray:
    """Grey digits blended over a coloured, textured background each, ``|background - digit|`` per channel."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (len(images), 1, 1, 3))
    texture = rng.normal(0.0, 30.0, (*images.shape, 3))
    background = np.clip(colours + texture, 0, 255)
    return np.abs(background - images[..., None].astype(np.float64)).round().astype(np.uint8)


def write(images: np.ndarray, labels: np.ndarray, folder: Path) -> None:
    """The images as ``folder/<label>/<n>.png``, and their list ``<folder>.txt`` beside the folder."""
    for label in np.unique(labels):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (image, label) in enumerate(zip(images, labels)):
        path = folder / str(label) / f"{index:05d}.png"
        Image.fromarray(image).save(path)
        lines.append(f"{path.relative_to(folder.parent)} {label}")
    folder.with_name(f"{folder.name}.txt").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("domains", nargs="+", choices=["mnist", "usps", "svhn", "mnist_coloured"])
    parser.add_argument("--root", type=Path, required=True, help="torchvision's digits files (data=digits' data.root)")
    parser.add_argument("--out", type=Path, required=True, help="the folder of domains to write")
    parser.add_argument("--download", action="store_true", help="fetch missing torchvision files")
    parser.add_argument("--limit", type=int, help="at most this many images per split (the first ones)")
    args = parser.parse_args(argv)
    for domain in args.domains:
        for train, folder in ((True, args.out / domain), (False, args.out / f"{domain}_test")):
            if folder.exists():
                print(f"error: {folder} exists: remove it or choose another --out", file=sys.stderr)
                return 2
            try:
                images, labels = load(domain.removesuffix("_coloured"), args.root, train, args.download)
            except (RuntimeError, OSError) as error:
                print(f"error: {domain} is not in {args.root} ({str(error).splitlines()[0]}): pass --download, or "
                      f"place torchvision's files there", file=sys.stderr)
                return 2
            images, labels = images[: args.limit], labels[: args.limit]
            if domain == "mnist_coloured":
                images = coloured(images, seed=0 if train else 1)
            write(images, labels, folder)
            print(f"{folder}: {len(labels)} images of {len(np.unique(labels))} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
