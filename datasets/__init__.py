"""Domain adaptation datasets, chosen by ``data=<name>``: the benchmarks, and one's own domains.

``base.py`` holds what a dataset builds (:class:`DomainAdaptationTask`), the table of options (``DATASETS``),
``register`` and ``build``. Each option is one file registering a builder ``builder(cfg) -> DomainAdaptationTask``
that reads the ``data`` config node: the benchmarks (``office31.py``, ``officehome.py``, ``visda2017.py``,
``imageclef.py``, ``digits.py``, ``digits_embedded.py``, ``synthetic.py``) and one's own domains (``folders.py``:
image folders; ``image_list.py``: list files), beside what they share: ``image_files.py`` (images of files and
their lists), ``download.py`` (verified downloads), ``transforms.py`` and ``sampling.py`` (the resumable data order).
A new dataset is one file here and one YAML in ``conf/data/``.
"""
from normda.datasets.base import DATASETS, DomainAdaptationTask, build, register

__all__ = ["DATASETS", "DomainAdaptationTask", "build", "register"]
