"""normda: unsupervised domain adaptation with swappable normalization layers.

One run composes four axes, each a package with a registry by name and a ``conf/`` group of the same name:

* ``normda.normalization`` (folder ``normalization/``): the layers (TransNorm, DSBN, AutoDIAL, AdaBN, DAFT's
  conversion, BGN, SN, WeightAlign, BN/GN/IN/LN) and ``convert``, which swaps them into any model.
* ``normda.dann_cdan`` (folder ``dann_cdan/``): the adaptation methods (source only, DANN, CDAN, MDD): a loss term each.
* ``normda.datasets`` (folder ``datasets/``): the benchmarks and their loaders.
* ``normda.backbones``: the feature extractors.

This package is the engine that composes them into a run: ``experiment`` (one run from one config), ``model`` (the
classifier), ``trainer`` (the one loop), ``evaluate``, ``validation`` (DEV), ``optim``, ``run_folder`` (the run
folder), ``config_identity`` (the recorded config, its id, the run's name), ``labels`` (its table labels),
``resolvers``, ``loggers``, ``distributed``, ``acceleration``, ``cli`` (one-line errors for ``train.py``), ``registry``
and ``errors``. ``normda.reporting`` turns run folders into tables, figures and benchmark reports; a training run
imports only its ``selections`` (what a table reports, which ``report`` is checked against).
"""
from pkgutil import extend_path

# A wheel installs normda.datasets etc. under site-packages/normda; a script run from the repository (which puts the
# checkout first on sys.path) imports this folder as normda: let it find its installed subpackages too.
__path__ = extend_path(__path__, __name__)

from normda.errors import (  # noqa: E402
    BatchTooSmallError,
    ConfigError,
    DataNotFoundError,
    UserError,
    WeightsUnavailableError,
)

__all__ = [
    "BatchTooSmallError",
    "ConfigError",
    "DataNotFoundError",
    "UserError",
    "WeightsUnavailableError",
]
