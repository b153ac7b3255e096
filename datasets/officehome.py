"""Office-Home (Venkateswara et al., CVPR 2017): 65 classes of office and home objects in four domains, Art,
Clipart, Product and Real-World. Labels follow the class order of the standard lists (TLlib's and the TransNorm
code's: Drill = 0, ..., Marker = 64), which is not alphabetical.

Layout under ``data.root``: ``{Art,Clipart,Product,Real_World}/<class>/*.jpg`` and ``image_list/<domain>.txt``.
"""
from __future__ import annotations

from normda.datasets.download import Archive
from normda.datasets.image_files import ImageListBenchmark
from normda.datasets.base import register
from normda.datasets.settings import BenchmarkConfig

CLASSES = [
    "Drill", "Exit_Sign", "Bottle", "Glasses", "Computer", "File_Cabinet", "Shelf", "Toys", "Sink", "Laptop", "Kettle",
    "Folder", "Keyboard", "Flipflops", "Pencil", "Bed", "Hammer", "ToothBrush", "Couch", "Bike", "Postit_Notes", "Mug",
    "Webcam", "Desk_Lamp", "Telephone", "Helmet", "Mouse", "Pen", "Monitor", "Mop", "Sneakers", "Notebook", "Backpack",
    "Alarm_Clock", "Push_Pin", "Paper_Clip", "Batteries", "Radio", "Fan", "Ruler", "Pan", "Screwdriver", "Trash_Can",
    "Printer", "Speaker", "Eraser", "Bucket", "Chair", "Calendar", "Calculator", "Flowers", "Lamp_Shade", "Spoon",
    "Candles", "Clipboards", "Scissors", "TV", "Curtains", "Fork", "Soda", "Table", "Knives", "Oven", "Refrigerator",
    "Marker",
]

OFFICE_HOME = ImageListBenchmark(
    title="Office-Home",
    domains={"Ar": "Art", "Cl": "Clipart", "Pr": "Product", "Rw": "Real_World"},
    lists={"Ar": "image_list/Art.txt", "Cl": "image_list/Clipart.txt", "Pr": "image_list/Product.txt",
           "Rw": "image_list/Real_World.txt"},
    classes=CLASSES,
    counts={"Ar": 2427, "Cl": 4365, "Pr": 4439, "Rw": 4357},
    archives=(  # the locations TLlib's officehome.py gives (restored after the 2023 outage)
        Archive("image_list.zip", "https://cloud.tsinghua.edu.cn/f/ca3a3b6a8d554905b4cd/?dl=1", "image_list"),
        Archive("Art.tgz", "https://cloud.tsinghua.edu.cn/f/4691878067d04755beab/?dl=1", "Art"),
        Archive("Clipart.tgz", "https://cloud.tsinghua.edu.cn/f/0d41e7da4558408ea5aa/?dl=1", "Clipart"),
        Archive("Product.tgz", "https://cloud.tsinghua.edu.cn/f/76186deacd7c4fa0a679/?dl=1", "Product"),
        Archive("Real_World.tgz", "https://cloud.tsinghua.edu.cn/f/dee961894cc64b1da1d7/?dl=1", "Real_World"),
    ),
    how_to_get="download Office-Home as the README's Data section says and extract it there",
)

register("officehome", settings=BenchmarkConfig)(OFFICE_HOME.build)
