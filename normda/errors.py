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


class TrainingDivergedError(UserError, FloatingPointError):
    """A loss term that became NaN or infinite; the run folder keeps the last checkpoint taken before it."""


class OutOfMemory(UserError, MemoryError):
    """The device ran out of memory for this batch size / image size."""


class RunFolderGone(UserError, FileNotFoundError):
    """The run folder was deleted while the run was writing to it."""


class RunFolderBusy(UserError, RuntimeError):
    """Another process holds the run folder's lock: it is training the same run."""


class RunInputsChanged(UserError, ValueError):
    """The files a command reads differ from those its run folder was trained on."""


def one_line(error: UserError) -> str:
    """The message of ``error`` on one line. An error raised in a DataLoader worker comes back wrapped in the
    worker's traceback ("Caught X in DataLoader worker process 0. Original Traceback ..."); its last line holds the
    original message after the exception's name."""
    text = str(error).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())
