"""Build ``datasets/embedded/mnist_usps.npz``, the small MNIST/USPS task that ``python train.py`` runs with no download.

    python scripts/make_embedded_digits.py --mnist ../shared/data/mnist/mnist_uint8.npz \
        --usps-train ../shared/data/usps/zip.train.gz --usps-test ../shared/data/usps/zip.test.gz

Images are stored at their native sizes as uint8 (MNIST 28x28, USPS 16x16, USPS rescaled from [-1, 1] to [0, 255] as
torchvision's USPS does). Training subsets are class-balanced samples drawn with a fixed seed; the USPS test set is
complete.
"""
from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

PER_CLASS_TRAIN = 300
MNIST_TEST = 2000
OUTPUT = Path(__file__).resolve().parents[1] / "datasets" / "embedded" / "mnist_usps.npz"


def balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return rng.permutation(np.concatenate(picks))


def read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path) as handle:
        table = np.loadtxt(handle)
    images = np.clip((table[:, 1:] + 1.0) * 127.5, 0, 255).round().astype(np.uint8).reshape(-1, 16, 16)
    return images, table[:, 0].astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, required=True)
    parser.add_argument("--usps-train", type=Path, required=True)
    parser.add_argument("--usps-test", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    mnist = np.load(args.mnist)
    usps_train_x, usps_train_y = read_usps(args.usps_train)
    usps_test_x, usps_test_y = read_usps(args.usps_test)
    mnist_train = balanced_subset(mnist["y_train"], PER_CLASS_TRAIN, rng)
    mnist_test = rng.choice(len(mnist["y_test"]), MNIST_TEST, replace=False)
    usps_train = balanced_subset(usps_train_y, PER_CLASS_TRAIN, rng)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        mnist_train_x=mnist["x_train"][mnist_train], mnist_train_y=mnist["y_train"][mnist_train].astype(np.int64),
        mnist_test_x=mnist["x_test"][mnist_test], mnist_test_y=mnist["y_test"][mnist_test].astype(np.int64),
        usps_train_x=usps_train_x[usps_train], usps_train_y=usps_train_y[usps_train],
        usps_test_x=usps_test_x, usps_test_y=usps_test_y,
    )
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
