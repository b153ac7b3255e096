"""A run's folder, the ground truth for tables: its name, its files, and how they are written.

    <trainer.output_dir>/<data>-<S>2<T>-<method>-<norm>-<backbone>-seed<k>-<config id>/
        config.yaml      the resolved config              metrics.jsonl   one line per evaluation
        labels.json      the run's table labels           checkpoint.pt   the latest training state
        inputs.json      what identifies the image files it reads (count, bytes, a hash of names and sizes)
        summary.json     last/best accuracy, timings      train.log, .hydra/  Hydra's own files
        done             written last, when the run has finished
        failed           the one-line reason, when the run stopped on an error (removed when it finishes later)
        lock             held by the process training the run (its id and host), empty otherwise

The recorded config is the resolved one without Hydra's node and without the lookup tables that configs read values
from (keys starting with ``_``, such as TLlib's per-task digits learning rates): the values they gave are in it, the
tables are not. The config id is a hash of the recorded config without the keys that do not change the result (where
outputs and data live, the logger, worker counts), so the same command always names the same folder and a changed
setting a new one. Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from omegaconf import DictConfig, OmegaConf

from normda.errors import ConfigError, RunFolderBusy, RunInputsChanged
from normda.registry import check_setting

log = logging.getLogger(__name__)

IGNORED_FOR_IDENTITY = (
    "hydra", "logger", "paths", "trainer.output_dir", "trainer.progress", "trainer.channels_last", "trainer.compile",
    "data.root", "data.num_workers", "data.download", "report",
)
#: what a table reports of a run (``report.metric``) and which evaluation it takes (``report.selection``); the
#: selections are defined in ``normda.reporting.tables.SELECTIONS``
Metric = Literal["target_accuracy", "target_accuracy_10crop", "target_mean_class_accuracy"]
Selection = Literal["best", "last", "source_val", "dev"]


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


def config_id(cfg: DictConfig) -> str:
    """12 hex digits identifying what a run computes."""
    tree = recorded_config(cfg)
    for dotted in IGNORED_FOR_IDENTITY:
        _drop(tree, dotted)
    if cfg.data.get("_root_is_the_data"):  # one's own domains: another folder is other data, so another run
        tree["data"]["root"] = str(Path(str(cfg.data.root)).expanduser().resolve())
    return hashlib.sha1(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:12]


def table_labels(cfg: DictConfig) -> dict[str, Any]:
    """Every label a table groups a run by, decided once, at training time, and kept in the run folder's
    ``labels.json``: the preset, the protocol, the dataset, the backbone, the method (as its class names it in tables:
    ``cdan_e`` for CDAN with entropy conditioning), the normalization with the settings that differ from its own
    defaults (``transnorm[alpha=one]``; a setting another axis chose by interpolation, such as BGN's per-task G, is not
    part of the label), the variant (the values of the keys a preset sweeps besides those, ``experiment.vary``, and the
    part of the source held out of training), the task (``A->W``) and the seed; and how its preset's table reports it
    (``report.metric`` at the evaluation ``report.selection`` picks)."""
    from normda.dann_cdan import METHODS
    from normda.normalization import NORMALIZATIONS
    from normda.registry import changed_settings, node_settings

    chosen = node_settings(cfg.norm, "exclude", resolve=False)
    changed = changed_settings(NORMALIZATIONS.get(cfg.norm.name), chosen)
    norm_label = cfg.norm.name + (f"[{','.join(f'{k}={v}' for k, v in changed.items())}]" if changed else "")
    check_setting("report.metric", cfg.report.metric, Metric)
    check_setting("report.selection", cfg.report.selection, Selection)
    return {
        "experiment": str(OmegaConf.select(cfg, "experiment.name", default="") or ""),
        "protocol": str(cfg.protocol),
        "dataset": cfg.data.name,
        "backbone": cfg.backbone.get("model") or cfg.backbone.name,
        "method_label": METHODS.get(cfg.method.name).table_label(cfg.method.name, node_settings(cfg.method)),
        "norm_label": norm_label,
        "variant": variant_label(cfg),
        "task_label": f"{cfg.data.source}->{cfg.data.target}",
        "seed": int(cfg.seed),
        "metric": str(cfg.report.metric),
        "selection": str(cfg.report.selection),
    }


def variant_label(cfg: DictConfig) -> str:
    """``lr=0.001, head_lr=1.0, source held out 0.1``: the keys the preset names in ``experiment.vary`` (by their last
    part) and a held-out part of the source; "" for a run trained as its paper row."""
    parts = [f"{key.rsplit('.', 1)[-1]}={OmegaConf.select(cfg, key)}"
             for key in OmegaConf.select(cfg, "experiment.vary", default=None) or []]
    if cfg.data.source_val_fraction:
        parts.append(f"source held out {cfg.data.source_val_fraction:g}")
    return ", ".join(parts)


def run_name(cfg: DictConfig) -> str:
    for key in ("source", "target"):  # a name with a slash (shell completion's "webcam/") would nest the folder
        name = str(cfg.data[key])
        if "/" in name or "\\" in name:
            raise ConfigError(f"data.{key}={name!r} is a path: name the domain alone, "
                              f"data.{key}={Path(name).name or name.strip('/')}")
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
    config; ``${task_domain:A2W,0}`` to a task's source (0) or target (1); ``${ratio:a,b}`` to a / b (a learning
    rate given absolutely, as a multiple of the base one: DAFT's head), null while either is null (a value the
    command must give; the run's checks name it)."""
    OmegaConf.register_new_resolver("run_name", lambda *, _root_: run_name(_root_), replace=True)
    OmegaConf.register_new_resolver("task_domain", task_domain, replace=True)
    OmegaConf.register_new_resolver("ratio", ratio, replace=True)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or denominator is None else float(numerator) / float(denominator)


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

    #: what a run keeps for its tables (``results/runs/``): every file but the checkpoint and the logs
    RECORDS = ("config.yaml", "labels.json", "inputs.json", "metrics.jsonl", "summary.json", "done", "failed")

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        self.config = self.path / "config.yaml"
        self.labels = self.path / "labels.json"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.pt"
        self.done_marker = self.path / "done"
        self.failure = self.path / "failed"
        self.lock_file = self.path / "lock"
        self.inputs = self.path / "inputs.json"

    @classmethod
    def existing(cls, path: str | Path) -> "RunFolder":
        """A folder written before, opened to read (never created)."""
        return cls(path, create=False)

    @property
    def done(self) -> bool:
        return self.done_marker.exists()

    def write_config(self, cfg: DictConfig) -> None:
        atomic_write_text(self.config, OmegaConf.to_yaml(recorded_config(cfg)))

    def write_labels(self, labels: dict[str, Any]) -> None:
        atomic_write_text(self.labels, json.dumps(labels, indent=2) + "\n")

    def read_labels(self) -> dict[str, Any] | None:
        return json.loads(self.labels.read_text()) if self.labels.exists() else None

    def check_inputs(self, inputs: dict | None) -> None:
        """Record the fingerprint of the files the run reads (``inputs.json``, at its first start), or, when one is
        recorded, refuse a command whose files differ: the folder's checkpoint and numbers belong to other data."""
        if inputs is None:
            return
        if not self.inputs.exists():
            atomic_write_text(self.inputs, json.dumps(inputs, indent=2) + "\n")
            return
        recorded = json.loads(self.inputs.read_text())
        if recorded != inputs:
            def describe(files: dict) -> str:
                return f"{files['images']} images, {files['bytes']} bytes, fingerprint {files['sha1'][:12]}"

            raise RunInputsChanged(f"the files this command reads differ from those the run folder {self.path} was "
                                   f"trained on (then {describe(recorded)}; now {describe(inputs)}): it is another "
                                   f"run: give it another trainer.output_dir, or delete the folder to train it again")

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Add one evaluation's line (the file is rewritten whole, atomically; it holds one line per evaluation)."""
        lines = self.metrics.read_text() if self.metrics.exists() else ""
        atomic_write_text(self.metrics, lines + json.dumps(record) + "\n")

    def keep_metrics_until(self, step: int) -> list[dict]:
        """Drop the lines written after ``step`` (the checkpoint a resumed run restarts from, 0 for none); return the
        rest."""
        records = self.read_metrics()
        kept = [record for record in records if record["step"] <= step]
        if len(kept) < len(records):
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

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the folder's lock while a process trains it: an exclusive ``flock`` on ``lock``, which names the
        holder (``process 1234 on host``). A second process is refused at once, naming the holder; the kernel drops
        the lock of a process that dies, so a ``lock`` that still names one but is not held was left by a dead
        process, and is taken over with a line saying so. The file is emptied on release."""
        handle = open(self.lock_file, "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunFolderBusy(f"{holder} is training the run folder {self.path}: wait for it to finish or stop "
                                    f"it; two processes would write the same files") from None
            handle.seek(0)
            left = handle.read().strip()
            if left:
                log.warning("took over the lock of %s on %s, which is no longer running", left, self.path)
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()} on {socket.gethostname()}")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                handle.flush()
        finally:
            handle.close()  # releases the lock

    def keep_records(self, folder: str | Path) -> Path:
        """Copy this run's :data:`RECORDS` into ``folder/<run name>/``, replacing an older copy whole (a record the
        run no longer has, such as a ``failed`` file of an earlier try, goes too); never the checkpoint."""
        copy = Path(folder) / self.path.name
        copy.mkdir(parents=True, exist_ok=True)
        for name in self.RECORDS:
            source, kept = self.path / name, copy / name
            if source.exists():
                atomic_write(kept, lambda stream: stream.write(source.read_bytes()))
            else:
                kept.unlink(missing_ok=True)
        return copy
