"""``train.py``'s errors as one line, ``error: <the problem>: <the fix>``, exit status 2, no traceback.

The config is composed once per command, by Hydra; this module only rephrases what Hydra and the run report. Hydra
composes every job of a sweep before it starts the first (its sweeper validates the whole batch), so a sweep with one
bad value stops before any job runs. What Hydra raises, and how it reads here:

* an option that is not in its group (``MissingConfigException``, with the group's options):
  ``unknown norm=groupnorm (did you mean ...?): choose one of ...``;
* a key that the composed config does not have (``ConfigCompositionException`` caused by OmegaConf's key error, with
  the node that lacks it): ``unknown key trainer.iteratons (did you mean trainer.iterations?)``, naming the option of
  a swept group that lacks it;
* an argument that is not ``key=value`` (``OverrideParseException``);
* a required value (``???``: ``data.source`` of ``data=folders``) that the command left unset (OmegaConf's
  ``MissingMandatoryValue``, also inside an interpolation, raised when Hydra resolves the run folder's name):
  ``data.source must be set``;
* a run folder that cannot be created under ``trainer.output_dir`` (an ``OSError`` before the run starts);
* an Optuna study whose every trial failed (the sweeper's ``ValueError`` on asking for the best trial):
  ``every trial of study ... failed (the last: <reason>): ...`` (:func:`normda.study_resume.no_finished_trial`).

Errors the run itself raises are :class:`normda.errors.UserError`, already one line.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable, NoReturn

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import (ConfigAttributeError, ConfigKeyError, InterpolationResolutionError,
                              MissingMandatoryValue)

from normda.errors import UserError, one_line
from normda.registry import closest, suggestion
from normda.study_resume import no_finished_trial


def fail(message: str) -> NoReturn:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


#: Hydra plugins that come with an extra of this project: group/option -> the extra that installs it
PLUGIN_EXTRAS = {"hydra/sweeper/optuna": "search", "hydra/launcher/joblib": "joblib",
                 "hydra/launcher/submitit_slurm": "slurm"}


def unknown_option(error: MissingConfigException) -> str:
    missing = str(error.missing_cfg_file)
    group, _, value = missing.rpartition("/")
    if missing in PLUGIN_EXTRAS:
        return (f"{group}={value} is a Hydra plugin that is not installed: pip install -e "
                f"\".[{PLUGIN_EXTRAS[missing]}]\"")
    options = sorted(error.options or [])
    return f"unknown {group}={value}{suggestion(value, options)}: choose one of {', '.join(options)}"


def unknown_key(error: ConfigKeyError | ConfigAttributeError) -> str:
    key = error.full_key
    parent_key, _, leaf = key.rpartition(".")
    parent = error.parent_node
    siblings = [str(sibling) for sibling in parent.keys()] if isinstance(parent, DictConfig) else []
    # a key of an axis's node (norm.alpha) names the option that lacks it: in a sweep, one of several
    owner = f" of {parent_key}={parent.name}" if "." not in parent_key and "name" in siblings else ""
    close = closest(leaf, siblings)
    hint = f" (did you mean {parent_key + '.' if parent_key else ''}{close}?)" if close else ""
    return (f"unknown key {key}{owner}{hint}: `python train.py --cfg job` lists every key, and +{key}=<value> adds "
            f"a new one")


def unreadable_argument(arguments: list[str], error: OverrideParseException) -> str:
    parser = OverridesParser.create()
    for argument in arguments:
        if argument.startswith("-"):
            continue
        try:
            parser.parse_overrides([argument])
        except OverrideParseException as cause:
            reason = str(cause).splitlines()[0]
            return (f"cannot read {argument!r} as key=value ({reason}): quote values that hold spaces, brackets or "
                    f"commas, e.g. 'norm.exclude=[fc]'")
    return str(error).splitlines()[0]


def unset_value(error: Exception) -> str:
    """A ``???`` value that the run needs (a preset's required setting) and the command did not give."""
    found = re.search(r"Missing mandatory value: ?([\w.]+)", str(error))
    key = found.group(1) if found else getattr(error, "full_key", "?")
    return f"{key} must be set: add {key}=<value> to the command"


class Started:
    """Set once the task function runs: an ``OSError`` before that is Hydra failing to create the run folder."""

    value = False


def run_with_one_line_errors(main: Callable[[], object], arguments: list[str]) -> None:
    """Run the ``@hydra.main`` function ``main`` with Hydra's own error report turned off (``HYDRA_FULL_ERROR``), so
    that its exceptions reach this function and leave as one line."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        main()
    except UserError as error:
        fail(one_line(error))
    except MissingConfigException as error:
        fail(unknown_option(error))
    except OverrideParseException as error:
        fail(unreadable_argument(arguments, error))
    except ConfigCompositionException as error:
        if isinstance(error.__cause__, (ConfigKeyError, ConfigAttributeError)):
            fail(unknown_key(error.__cause__))
        fail(f"{str(error).splitlines()[0]} {str(error.__cause__ or '').splitlines()[0] if error.__cause__ else ''}")
    except MissingMandatoryValue as error:
        fail(unset_value(error))
    except InterpolationResolutionError as error:  # raised while Hydra resolves the run folder's name
        cause = user_error_behind(error)
        if cause is not None:
            fail(one_line(cause))
        if "Missing mandatory value" not in str(error):
            raise
        fail(unset_value(error))
    except ValueError:
        message = no_finished_trial()
        if message is None:
            raise
        fail(message)
    except OSError as error:
        if Started.value or not error.filename:
            raise
        fail(f"cannot create the run folder {error.filename} ({why_not_writable(Path(error.filename))}): set "
             f"trainer.output_dir to a folder you can write")


def user_error_behind(error: BaseException) -> UserError | None:
    """The :class:`UserError` a resolver raised, which OmegaConf re-raises as another exception: it keeps the original
    as ``__cause__`` only when ``OC_CAUSE=1``, and always as ``__context__``."""
    seen = error.__cause__ or error.__context__
    while seen is not None and not isinstance(seen, UserError):
        seen = seen.__cause__ or seen.__context__
    return seen


def why_not_writable(folder: Path) -> str:
    """What stands in the way of creating ``folder``: a file where a folder should be, or a folder not writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file"
    return f"{existing} is not writable"
