"""ImageCLEF-DA (the ImageCLEF 2014 domain adaptation challenge): the 12 classes common to Caltech-256 (C), ImageNet
ILSVRC 2012 (I) and Pascal VOC 2012 (P), 600 images per domain (50 per class).

It is distributed on request by the challenge's organisers, so there is nothing to download automatically. Layout
under ``data.root``: ``{c,i,p}/...`` images and ``image_list/{c,i,p}.txt`` (``<path> <label>`` lines, classes in the
order below); the lists of the CDAN/TransNorm code (``c_list.txt``...) work as they are through ``data.list_files``.
"""
from __future__ import annotations

from normda.datasets.image_files import ImageListBenchmark
from normda.datasets.base import register
from normda.datasets.settings import BenchmarkConfig

CLASSES = ["aeroplane", "bike", "bird", "boat", "bottle", "bus", "car", "dog", "horse", "monitor", "motorbike",
           "people"]

IMAGECLEF = ImageListBenchmark(
    title="ImageCLEF-DA",
    domains={"C": "caltech", "I": "imagenet", "P": "pascal"},
    lists={"C": "image_list/c.txt", "I": "image_list/i.txt", "P": "image_list/p.txt"},
    classes=CLASSES,
    counts={"C": 600, "I": 600, "P": 600},
    how_to_get="ImageCLEF-DA is distributed on request by the ImageCLEF 2014 domain adaptation task "
               "(imageclef.org/2014/adaptation); place c/, i/, p/ and image_list/ there",
)

register("imageclef", settings=BenchmarkConfig)(IMAGECLEF.build)
