"""Checks of a ``train.py`` command line before Hydra runs it, so that an unknown option, a mistyped key or an output
folder that cannot be written is one line naming the problem and the fix (Hydra's own messages span a screen), and
so that a sweep with one bad value fails before its first job rather than after hours of the others."""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from normda.errors import ConfigError

#: Hydra flags that take a value; ``FLAGS_THAT_CHANGE_THE_CONFIG`` leave the checks to Hydra.
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i"}
FLAGS_THAT_CHANGE_THE_CONFIG = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                                "--experimental-rerun", "--shell-completion", "-sc"}


def command_line_overrides(argv: list[str]) -> list[str] | None:
    """The ``key=value`` arguments of ``argv`` (``None`` when a flag points Hydra at another config)."""
    overrides, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument.split("=")[0] in FLAGS_THAT_CHANGE_THE_CONFIG:
            return None
        elif argument in FLAGS_WITH_VALUE:
            skip = True
        elif not argument.startswith("-"):
            overrides.append(argument)
    return overrides


def parse(arguments: list[str]) -> list[Override]:
    parser = OverridesParser.create()
    parsed = []
    for argument in arguments:
        try:
            parsed.extend(parser.parse_overrides([argument]))
        except HydraException as error:
            raise ConfigError(f"cannot read {argument!r} as key=value ({str(error).splitlines()[0]}): quote values "
                              f"that hold spaces, brackets or commas, e.g. 'norm.exclude=[fc]'") from error
    return parsed


def values_of(override: Override) -> list[str]:
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def suggestion(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def key_suggestion(key: str, keys: list[str]) -> str:
    """The closest existing key: a sibling whose name is close to the last part, else any close dotted key."""
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.7)
    if close:
        return f" (did you mean {siblings[close[0]]}?)"
    return "" if siblings else suggestion(key, keys)


def check_groups(overrides: list[Override], conf_dir: Path) -> None:
    for override in overrides:
        group = conf_dir / override.key_or_group
        if override.is_delete() or override.key_or_group.startswith("hydra") or not group.is_dir():
            continue
        options = sorted(path.stem for path in group.glob("*.yaml"))
        for value in values_of(override):
            if value not in options:
                raise ConfigError(f"unknown {override.key_or_group}={value}{suggestion(value, options)}: choose one "
                                  f"of {', '.join(options)}")


def all_keys(cfg: DictConfig) -> list[str]:
    """Every dotted key of ``cfg`` (unresolved: interpolations are not evaluated)."""
    def walk(tree: dict, prefix: str) -> list[str]:
        keys = []
        for key, value in tree.items():
            keys.append(f"{prefix}{key}")
            if isinstance(value, dict):
                keys.extend(walk(value, f"{prefix}{key}."))
        return keys

    return walk(OmegaConf.to_container(cfg, resolve=False), "")


def compose_first(overrides: list[Override], conf_dir: Path, config_name: str,
                  chosen: dict[str, str] | None = None) -> DictConfig | None:
    """The config of the sweep's first job (every sweep at its first value; ``chosen`` fixes some of them), or
    ``None`` where Hydra's composition fails for a reason Hydra reports itself."""
    chosen = chosen or {}
    arguments = [f"{o.get_key_element()}={chosen.get(o.key_or_group, values_of(o)[0])}" for o in overrides
                 if not o.key_or_group.startswith("hydra") and not o.is_delete()]
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            return compose(config_name, overrides=arguments)
    except HydraException:
        return None


def has_key(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node.keys()


def check_keys(overrides: list[Override], conf_dir: Path, config_name: str) -> None:
    """Every ``key=value`` (not ``+key``) names a key of the config that its groups compose, for every option of a
    swept group that holds it."""
    groups = {o.key_or_group: values_of(o) for o in overrides
              if (conf_dir / o.key_or_group).is_dir() and not o.is_delete()}
    keys = [o for o in overrides if o.type == OverrideType.CHANGE and not o.key_or_group.startswith("hydra")
            and o.key_or_group not in groups]
    base = compose_first([o for o in overrides if o.key_or_group in groups], conf_dir, config_name)
    if base is None:
        return
    for override in keys:
        key = override.key_or_group
        group = key.split(".")[0]
        options = groups.get(group, [])
        for value in options if len(options) > 1 else [None]:
            cfg = base if value is None or value == options[0] else compose_first(
                [o for o in overrides if o.key_or_group in groups], conf_dir, config_name, {group: value})
            if cfg is not None and not has_key(cfg, key):
                where = f" of {group}={value}" if value else ""
                raise ConfigError(f"unknown key {key}{where}{key_suggestion(key, all_keys(cfg))}: `python train.py "
                                  f"--cfg job` lists every key, and +{key}=<value> adds a new one")


def check_output_dir(cfg: DictConfig) -> None:
    """``trainer.output_dir`` must be a folder this process can write, or one it can create."""
    output = Path(str(cfg.trainer.output_dir)).expanduser().absolute()
    existing = output
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        problem = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    else:
        return
    raise ConfigError(f"cannot write runs under trainer.output_dir={cfg.trainer.output_dir} ({problem}): choose a "
                      f"folder you can write")


def check_command_line(argv: list[str], conf_dir: Path, config_name: str = "config") -> None:
    """Raise :class:`ConfigError` for the first unknown group option, unknown key or unwritable output folder."""
    arguments = command_line_overrides(argv)
    if arguments is None:
        return
    overrides = parse(arguments)
    check_groups(overrides, conf_dir)
    check_keys(overrides, conf_dir, config_name)
    cfg = compose_first(overrides, conf_dir, config_name)
    if cfg is not None:
        check_output_dir(cfg)
