"""The resolvers the configs use: ``${run_name:}``, ``${task_domain:A2W,0}`` and ``${ratio:a,b}``."""
from __future__ import annotations

from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from normda.config_identity import run_name


def checked_run_name(cfg: DictConfig) -> str:
    """The run folder's name; a single run's config passes its checks (``normda.schema``) first, so that a wrong
    setting is refused before Hydra makes the folder. A sweep's job is checked when it starts instead (Hydra names
    every job's folder before it runs), so that one wrong job fails alone, its reason in its folder's ``failed``.
    (The schema imports the axes: registering the resolvers imports nothing.)"""
    if OmegaConf.select(cfg, "hydra.mode", default=None) == RunMode.RUN:
        from normda.schema import check_config

        check_config(cfg)
    return run_name(cfg)


def task_domain(task: str, index: int) -> str:
    """``A2W`` -> ``A`` (0) or ``W`` (1): the domains of a task written source-2-target, as experiment presets sweep
    them (``data.task=A2W,D2W``)."""
    parts = str(task).split("2")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"data.task={task!r} is not <source>2<target>, e.g. A2W")
    return parts[index]


def register_resolvers() -> None:
    """``${run_name:}`` in the config (Hydra's run and sweep folders) resolves to :func:`run_name` of the whole
    config; ``${task_domain:A2W,0}`` to a task's source (0) or target (1); ``${ratio:a,b}`` to a / b (a learning
    rate given absolutely, as a multiple of the base one: DAFT's head), null while either is null (a value the
    command must give; the run's checks name it)."""
    OmegaConf.register_new_resolver("run_name", lambda *, _root_: checked_run_name(_root_), replace=True)
    OmegaConf.register_new_resolver("task_domain", task_domain, replace=True)
    OmegaConf.register_new_resolver("ratio", ratio, replace=True)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or denominator is None else float(numerator) / float(denominator)
