"""VisDA-2017 classification (Peng et al., 2017): 12 classes, from synthetic renderings (S, the train split, 152,397
images) to real photos (R, the validation split, 55,388). Papers report the class-averaged accuracy beside the
overall one; both are in every run's metrics and summary.

Layout under ``data.root``: ``train/<class>/*.png``, ``validation/<class>/*.jpg``, ``image_list/{train,validation}.txt``.
"""
from __future__ import annotations

from normda.datasets.download import Archive
from normda.datasets.image_files import ImageListBenchmark
from normda.datasets.base import register
from normda.datasets.settings import BenchmarkConfig

CLASSES = ["aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person", "plant", "skateboard",
           "train", "truck"]

VISDA2017 = ImageListBenchmark(
    title="VisDA-2017",
    domains={"S": "Synthetic", "R": "Real"},
    lists={"S": "image_list/train.txt", "R": "image_list/validation.txt"},
    classes=CLASSES,
    counts={"S": 152_397, "R": 55_388},
    archives=(  # the locations TLlib's visda2017.py gives
        Archive("image_list.zip", "https://cloud.tsinghua.edu.cn/f/c107de37b8094c5398dc/?dl=1", "image_list"),
        Archive("train.tar", "https://cloud.tsinghua.edu.cn/f/c5f3ce59139144ec8221/?dl=1", "train"),
        Archive("validation.tar", "https://cloud.tsinghua.edu.cn/f/da70e4b1cf514ecea562/?dl=1", "validation"),
    ),
    how_to_get="download VisDA-2017 as the README's Data section says and extract it there",
)

register("visda2017", settings=BenchmarkConfig)(VISDA2017.build)
