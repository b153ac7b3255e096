"""Office-31 (Saenko et al., ECCV 2010): 31 office object classes in three domains, Amazon, DSLR and Webcam.

Layout under ``data.root`` (TLlib's, and the lists of the CDAN/TransNorm code)::

    amazon/images/<class>/*.jpg   dslr/images/<class>/*.jpg   webcam/images/<class>/*.jpg
    image_list/amazon.txt         image_list/dslr.txt         image_list/webcam.txt     (<path> <label> lines)
"""
from __future__ import annotations

from normda.datasets.download import Archive
from normda.datasets.image_files import ImageListBenchmark
from normda.datasets.base import register
from normda.datasets.settings import BenchmarkConfig

CLASSES = [
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair", "desk_lamp",
    "desktop_computer", "file_cabinet", "headphones", "keyboard", "laptop_computer", "letter_tray", "mobile_phone",
    "monitor", "mouse", "mug", "paper_notebook", "pen", "phone", "printer", "projector", "punchers", "ring_binder",
    "ruler", "scissors", "speaker", "stapler", "tape_dispenser", "trash_can",
]

OFFICE31 = ImageListBenchmark(
    title="Office-31",
    domains={"A": "amazon", "D": "dslr", "W": "webcam"},
    lists={"A": "image_list/amazon.txt", "D": "image_list/dslr.txt", "W": "image_list/webcam.txt"},
    classes=CLASSES,
    counts={"A": 2817, "D": 498, "W": 795},
    archives=(  # the locations TLlib's office31.py gives (restored after the 2023 outage)
        Archive("image_list.zip", "https://cloud.tsinghua.edu.cn/f/2c1dd9fbcaa9455aa4ad/?dl=1", "image_list"),
        Archive("amazon.tgz", "https://cloud.tsinghua.edu.cn/f/ec12dfcddade43ab8101/?dl=1", "amazon"),
        Archive("dslr.tgz", "https://cloud.tsinghua.edu.cn/f/a41d818ae2f34da7bb32/?dl=1", "dslr"),
        Archive("webcam.tgz", "https://cloud.tsinghua.edu.cn/f/8a41009a166e4131adcd/?dl=1", "webcam"),
    ),
    how_to_get="download Office-31 as the README's Data section says and extract it there",
)

register("office31", settings=BenchmarkConfig)(OFFICE31.build)
