"""A run's folder, the ground truth for tables: its name, its files, and how they are written.

    <trainer.output_dir>/<data>-<S>2<T>-<method>-<norm>-<backbone>-seed<k>-<config id>/
        config.yaml      the resolved config              metrics.jsonl   one line per evaluation
        summary.json     last/best accuracy, timings      checkpoint.pt   the latest training state
        done             written last, when the run has finished          train.log, .hydra/  Hydra's own files
        failed           the one-line reason, when the run stopped on an error (removed when it finishes later)

The config id is a hash of the resolved config without the keys that do not change the result (where outputs and
data live, the logger, worker counts), so the same command always names the same folder and a changed setting a new
one. Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from normda.errors import ConfigError

IGNORED_FOR_IDENTITY = (
    "hydra", "logger", "paths", "trainer.output_dir", "trainer.progress", "trainer.channels_last", "trainer.compile",
    "data.root", "data.num_workers", "data.download",
)


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.get(key)
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


def config_id(cfg: DictConfig) -> str:
    """12 hex digits identifying what a run computes."""
    kept = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    tree = OmegaConf.to_container(kept, resolve=True)
    for dotted in IGNORED_FOR_IDENTITY:
        _drop(tree, dotted)
    return hashlib.sha1(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_name(cfg: DictConfig) -> str:
    backbone = cfg.backbone.get("model") or cfg.backbone.name
    return (f"{cfg.data.name}-{cfg.data.source}2{cfg.data.target}-{cfg.method.name}-{cfg.norm.name}-{backbone}"
            f"-seed{cfg.seed}-{config_id(cfg)}")


def task_domain(task: str, index: int) -> str:
    """``A2W`` -> ``A`` (0) or ``W`` (1): the domains of a task written source-2-target, as experiment presets sweep
    them (``data.task=A2W,D2W``)."""
    parts = str(task).split("2")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"data.task={task!r} is not <source>2<target>, e.g. A2W")
    return parts[index]


def register_resolvers() -> None:
    """``${run_name:}`` in the config (Hydra's run and sweep folders) resolves to :func:`run_name` of the whole
    config; ``${task_domain:A2W,0}`` to a task's source (0) or target (1)."""
    OmegaConf.register_new_resolver("run_name", lambda *, _root_: run_name(_root_), replace=True)
    OmegaConf.register_new_resolver("task_domain", task_domain, replace=True)


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it over ``path``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda stream: stream.write(text.encode()))


class RunFolder:
    """The files of one run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.pt"
        self.done_marker = self.path / "done"
        self.failure = self.path / "failed"

    @property
    def done(self) -> bool:
        return self.done_marker.exists()

    def write_config(self, cfg: DictConfig) -> None:
        kept = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        atomic_write_text(self.config, OmegaConf.to_yaml(kept, resolve=True))

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Add one evaluation's line (the file is rewritten whole, atomically; it holds one line per evaluation)."""
        lines = self.metrics.read_text() if self.metrics.exists() else ""
        atomic_write_text(self.metrics, lines + json.dumps(record) + "\n")

    def keep_metrics_until(self, step: int) -> list[dict]:
        """Drop the lines written after ``step`` (the checkpoint a resumed run restarts from); return the rest."""
        kept = [record for record in self.read_metrics() if record["step"] <= step]
        atomic_write_text(self.metrics, "".join(json.dumps(record) + "\n" for record in kept))
        return kept

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary, json.dumps(summary, indent=2) + "\n")

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary.read_text())

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_write(self.checkpoint, lambda stream: torch.save(state, stream))

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The training state, loaded with ``weights_only=True`` (tensors and plain containers: a checkpoint can
        never run code)."""
        if not self.checkpoint.exists():
            return None
        try:
            return torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - torch.load raises many types on a damaged or unsafe file
            reason = " ".join(str(error).split())[:160]
            raise ConfigError(f"cannot read the checkpoint {self.checkpoint} ({reason}): delete it to train this run "
                              f"from the start") from error

    def mark_done(self) -> None:
        self.failure.unlink(missing_ok=True)
        atomic_write_text(self.done_marker, "")

    def mark_failed(self, reason: str) -> None:
        atomic_write_text(self.failure, reason + "\n")
