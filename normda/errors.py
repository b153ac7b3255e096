"""Errors that are the user's to fix, reported as one line naming the problem and the fix, never as a traceback."""


class UserError(Exception):
    """Base class: ``train.py`` prints ``error: <message>`` and exits with status 2."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (unknown option, incompatible combination)."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset folder, list file or image that is not where the config says."""


class WeightsUnavailableError(UserError, RuntimeError):
    """Pretrained weights that can be neither found locally nor downloaded."""


class BatchTooSmallError(UserError, ValueError):
    """A batch (or a domain's part of it) too small for a layer that computes batch statistics."""
