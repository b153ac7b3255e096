"""Domain adaptation benchmarks, chosen by ``data=<name>``.

``base.py`` holds what a dataset builds (:class:`DomainAdaptationTask`), the table of options (``DATASETS``),
``register`` and ``build``. Each benchmark is one file registering a builder ``builder(cfg) -> DomainAdaptationTask``
that reads the ``data`` config node (``office31.py``, ``officehome.py``, ``visda2017.py``, ``imageclef.py``,
``digits.py``, ``digits_embedded.py``, ``synthetic.py``), beside what they share: ``imagelist.py`` (image-list
benchmarks), ``download.py`` (verified downloads), ``transforms.py`` and ``sampling.py`` (the resumable data order).
A new dataset is one file here and one YAML in ``conf/data/``.
"""
from normda.datasets.base import DATASETS, DomainAdaptationTask, build, check_common_settings, register

__all__ = ["DATASETS", "DomainAdaptationTask", "build", "check_common_settings", "register"]
