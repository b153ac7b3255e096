"""Feature extractors, chosen by ``backbone=<name>``.

``base.py`` holds the table of options (``BACKBONES``), ``register`` and ``build``; each other file registers the
builders of one family: ``resnet.py`` (torchvision or timm ResNet-50/101), ``timm_model.py`` (any timm model),
``efficientnet_lite0.py`` (real ImageNet weights offline), ``digits.py`` (LeNet, DTN), ``inception_bn.py``;
``weights.py`` loads weights from files and turns failed downloads into one-line errors. A new backbone is one file
here and one YAML in ``conf/backbone/``.
"""
from normda.backbones.base import BACKBONES, build, register

__all__ = ["BACKBONES", "build", "register"]
