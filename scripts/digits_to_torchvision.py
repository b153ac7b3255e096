"""Write MNIST and USPS from other copies into torchvision's layout, which ``data=digits`` reads, for a machine that
cannot download them (this project's machines have ``../shared/data``: MNIST as one ``.npz``, USPS as the gzipped
zip-code tables of "The Elements of Statistical Learning").

    python scripts/digits_to_torchvision.py --mnist ../shared/data/mnist/mnist_uint8.npz \
        --usps-train ../shared/data/usps/zip.train.gz --usps-test ../shared/data/usps/zip.test.gz --out data/digits

MNIST becomes ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (the idx format), USPS ``usps.bz2`` and
``usps.t.bz2`` (torchvision's libsvm lines: ``<label + 1> 1:<value> ...`` with values in [-1, 1]). torchvision then
reads them as if it had downloaded them (it checks USPS's md5 only when it downloads).
"""
from __future__ import annotations

import argparse
import bz2
import gzip
import struct
import sys
from pathlib import Path

import numpy as np


def write_mnist(raw: Path, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">iiii", 2051, len(images), *images.shape[1:]) + images.astype(np.uint8).tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">ii", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_usps(source: Path, target: Path) -> int:
    with gzip.open(source, "rt") as handle:
        rows = [line.split() for line in handle if line.strip()]
    lines = (f"{int(float(row[0])) + 1} " + " ".join(f"{i + 1}:{value}" for i, value in enumerate(row[1:]))
             for row in rows)
    target.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, help="an .npz with x_train, y_train, x_test, y_test (uint8)")
    parser.add_argument("--usps-train", type=Path, help="zip.train.gz")
    parser.add_argument("--usps-test", type=Path, help="zip.test.gz")
    parser.add_argument("--out", type=Path, required=True, help="data=digits' data.root")
    args = parser.parse_args(argv)
    if args.mnist:
        with np.load(args.mnist) as arrays:
            for split, prefix in (("train", "train"), ("test", "t10k")):
                write_mnist(args.out / "MNIST" / "raw", arrays[f"x_{split}"], arrays[f"y_{split}"], prefix)
                print(f"MNIST {split}: {len(arrays[f'y_{split}'])} images")
    for source, name in ((args.usps_train, "usps.bz2"), (args.usps_test, "usps.t.bz2")):
        if source:
            print(f"USPS {name}: {write_usps(source, args.out / name)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
