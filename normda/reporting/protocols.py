"""The protocols' numbers as their references give them (``published/protocols.csv``): one row per setting of a recipe
(its command, the dotted key, the value, the reference it comes from). ``tests/test_protocols.py`` composes every
recipe's command and compares each key with this file; the README's table of the protocols is this file, rendered by
``scripts/protocol_tables.py``. A key ``rate.<part>`` is a part's effective learning rate, ``optim.optimizer.lr``
times ``optim.lr_mult.<part>``.
"""
from __future__ import annotations

from importlib.resources import files
from typing import Any

import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

PROTOCOLS = files("normda.reporting") / "published" / "protocols.csv"


def reference_settings(parse: bool = True) -> pd.DataFrame:
    """recipe, command, key, value (parsed as YAML: numbers, booleans, null, lists; or the file's text), source."""
    frame = pd.read_csv(PROTOCOLS, dtype=str, keep_default_na=False)
    if parse:
        frame["value"] = [yaml.safe_load(value) for value in frame["value"]]
    return frame


def composed_value(cfg: DictConfig, key: str) -> Any:
    """The value a composed config gives ``key`` (``rate.<part>``: the part's effective learning rate)."""
    if key.startswith("rate."):
        return cfg.optim.optimizer.lr * cfg.optim.lr_mult[key.split(".", 1)[1]]
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def markdown() -> str:
    """One row per recipe: its command and its settings, each as the override that sets it."""
    frame = reference_settings(parse=False)
    lines = ["| recipe | command | settings (as the reference gives them) |", "|---|---|---|"]
    for (recipe, command), rows in frame.groupby(["recipe", "command"], sort=False):
        settings = ", ".join(f"`{key}={value}`" for key, value in zip(rows.key, rows.value))
        lines.append(f"| {recipe} | `{command}` | {settings} |")
    return "\n".join(lines) + "\n"
