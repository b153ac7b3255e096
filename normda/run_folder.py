"""A run's folder, the ground truth for tables: its files, and how they are written.

    <trainer.output_dir>/<run name>/   (the name: ``normda.config_identity.run_name``)
        config.yaml      the resolved config              metrics.jsonl   one line per evaluation
        labels.json      the run's table labels           checkpoint.pt   the latest training state
        inputs.json      what identifies the image files it reads (count, bytes, a hash of names and sizes)
        summary.json     last/best accuracy, timings      train.log, .hydra/  Hydra's own files
        done             written last, when the run has finished
        failed           the one-line reason, when the run stopped on an error (removed when it finishes later)
        lock             held by the process training the run (its id and host), empty otherwise

Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from normda.config_identity import recorded_config
from normda.errors import ConfigError, RunFolderBusy, RunInputsChanged

log = logging.getLogger(__name__)


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
