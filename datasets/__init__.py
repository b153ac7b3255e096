"""Domain adaptation benchmarks, chosen by ``data=<name>``.

Each file of this package registers a builder ``builder(cfg) -> DomainAdaptationTask`` that reads the ``data`` config
node; a new dataset is one file here and one YAML in ``conf/data/``. (The package name is the one the project's layout
asks for; it shadows Hugging Face's ``datasets`` in the same environment.)
"""
from datasets.task import DATASETS, DomainAdaptationTask, build

__all__ = ["DATASETS", "DomainAdaptationTask", "build"]
