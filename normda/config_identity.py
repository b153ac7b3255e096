"""What identifies a run: the config it records, the hash of what it computes, and the name of its folder.

The recorded config is the resolved one without Hydra's node and without the lookup tables that configs read values
from (keys starting with ``_``, such as TLlib's per-task digits learning rates): the values they gave are in it, the
tables are not. The config id is a hash of the recorded config without the keys that do not change the result (where
outputs and data live, the logger, worker counts) and without the settings added later while they keep the value that
computes what earlier runs computed (:data:`ADDED_AT_NEUTRAL`), so the same command always names the same folder and a
changed setting a new one. A process hashes a config once: Hydra's ``${run_name:}`` (the folder) and the run itself (its W&B id
and summary) share the id (:func:`config_id` remembers the configs it has hashed).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from normda.errors import ConfigError

IGNORED_FOR_IDENTITY = (
    "hydra", "logger", "paths", "trainer.output_dir", "trainer.progress", "trainer.channels_last", "trainer.compile",
    "data.root", "data.num_workers", "data.download", "report", "search",
)


#: settings added after runs were made, at the value that computes what those runs computed: left out of the id at
#: that value, so a finished run keeps its folder name ("already finished"), and a run that sets another gets a new one
#: (``trainer.validators``: a run that computes none records what runs recorded before the key existed;
#: ``data.target_val_fraction``: none held out)
ADDED_AT_NEUTRAL = {"trainer.validators": [], "data.target_val_fraction": 0.0}


def with_added_settings(cfg: DictConfig) -> DictConfig:
    """A recorded config (a run's ``config.yaml``) with the settings added since it was written, at their neutral
    values (:data:`ADDED_AT_NEUTRAL`), so that the code of today rebuilds what that run trained."""
    for dotted, neutral in ADDED_AT_NEUTRAL.items():
        if OmegaConf.select(cfg, dotted, default="absent") == "absent":
            OmegaConf.update(cfg, dotted, neutral, force_add=True)
    return cfg


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.get(key)
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


def recorded_config(cfg: DictConfig) -> dict[str, Any]:
    """What a run records of its config (config.yaml, W&B, the config id): resolved, without ``hydra`` and without
    ``_``-prefixed lookup tables (``_target_`` and ``_partial_`` are kept: they say what is built)."""
    kept = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    tree = OmegaConf.to_container(kept, resolve=True)
    return _strip(tree)


def _strip(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {key: _strip(value) for key, value in tree.items()
                if not str(key).startswith("_") or key in ("_target_", "_partial_")}
    return tree


#: recorded config (its JSON text) -> its id, for the configs this process has hashed
_IDS: dict[str, str] = {}


def config_id(cfg: DictConfig) -> str:
    """12 hex digits identifying what a run computes."""
    tree = recorded_config(cfg)
    for dotted in IGNORED_FOR_IDENTITY:
        _drop(tree, dotted)
    for dotted, neutral in ADDED_AT_NEUTRAL.items():
        if OmegaConf.select(cfg, dotted, default=None) == neutral:
            _drop(tree, dotted)
    if cfg.data.get("_root_is_the_data"):  # one's own domains: another folder is other data, so another run
        tree["data"]["root"] = str(Path(str(cfg.data.root)).expanduser().resolve())
    text = json.dumps(tree, sort_keys=True, default=str)
    if text not in _IDS:
        _IDS[text] = hashlib.sha1(text.encode()).hexdigest()[:12]
    return _IDS[text]


def run_name(cfg: DictConfig) -> str:
    for key in ("source", "target"):  # a name with a slash (shell completion's "webcam/") would nest the folder
        name = str(cfg.data[key])
        if "/" in name or "\\" in name:
            raise ConfigError(f"data.{key}={name!r} is a path: name the domain alone, "
                              f"data.{key}={Path(name).name or name.strip('/')}")
    backbone = cfg.backbone.get("model") or cfg.backbone.name
    return (f"{cfg.data.name}-{cfg.data.source}2{cfg.data.target}-{cfg.method.name}-{cfg.norm.name}-{backbone}"
            f"-seed{cfg.seed}-{config_id(cfg)}")
