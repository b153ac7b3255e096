"""The adaptation methods, chosen by ``method=<name>``: what each adds to the source cross-entropy.

``base.py`` holds what a method is to the training loop (:class:`AdaptationMethod`, a small ``nn.Module`` with its
own parameters that maps a step's outputs to its loss term), the table of options (``METHODS``), ``register`` and
``build``. Each method is one file: ``source_only.py``, ``dann.py``, ``cdan.py`` (with and without entropy
conditioning), ``mdd.py``; ``grl.py`` (gradient reversal and its schedule) and ``discriminator.py`` are their parts.
A new method is one file here and one YAML in ``conf/method/``. DAFT is not a method here: its BatchNorm conversion is
``norm=daft`` and its fine-tuning recipe ``protocol=daft``, so it combines with any method.
"""
from normda.dann_cdan.base import METHODS, AdaptationMethod, StepOutputs, build, register

__all__ = ["METHODS", "AdaptationMethod", "StepOutputs", "build", "register"]
