"""From run folders to paper-style tables: load runs, select a checkpoint by a rule, aggregate seeds, and format.

A run folder (or a W&B run) gives the labels it recorded when it trained (``labels.json``, ``normda.run.table_labels``)
and one metrics line per evaluation. Its table row is ``method_label / norm_label`` (``cdan_e / transnorm[alpha=one]``),
its column the task ``A->W``; nothing is read from today's ``conf/``, so a run is labelled as it was trained. The
checkpoint is chosen when the table is built, by one of :data:`SELECTIONS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from normda.run import RunFolder, atomic_write_text

#: published numbers, one CSV per source: ``paper_tables.csv`` (the five papers, ``scripts/paper_tables.py``) and
#: others such as ``tllib_digits.csv`` (each row citing where its number was published)
PUBLISHED_NUMBERS = Path(__file__).resolve().parents[2] / "results" / "paper"
#: what a table needs of a run that recorded no labels (a folder written before labels.json existed)
UNLABELLED = {"experiment": "", "protocol": "", "dataset": "", "backbone": "", "method_label": "?", "norm_label": "?",
              "task_label": "?", "seed": -1}
#: labels that runs recorded before they were labels: a run that lacks one was trained the way its value says
EARLIER_DEFAULTS = {"variant": "", "metric": "target_accuracy", "selection": "best"}


def _pick(records: list[dict], key: str, better: Callable[[float, float], bool]) -> dict | None:
    chosen = None
    for record in records:
        if key in record and (chosen is None or better(record[key], chosen[key])):
            chosen = record
    return chosen


#: selection rule -> (description, function from a run's metrics lines and the reported metric to the chosen line);
#: the names are those of ``normda.run.Selection``, which a run's ``report.selection`` is checked against
SELECTIONS: dict[str, tuple[str, Callable[[list[dict], str], dict | None]]] = {
    "last": ("the last evaluation", lambda records, metric: records[-1] if records else None),
    "best": ("the best of all evaluations on the target test set: the papers' protocol, which selects with the "
             "target labels", lambda records, metric: _pick(records, metric, lambda new, old: new > old)),
    "source_val": ("the evaluation with the best accuracy on held-out source data (no target labels)",
                   lambda records, metric: _pick(records, "source_val_accuracy", lambda new, old: new >= old)),
    "dev": ("the evaluation with the lowest Deep Embedded Validation risk (You et al., ICML 2019; no target "
            "labels)", lambda records, metric: _pick(records, "dev_risk", lambda new, old: new < old)),
}


@dataclass
class Run:
    """One run: its table labels, its metrics lines, and how it ended (``done``, ``failed`` with a reason, or
    ``incomplete``: still running, or stopped without a word)."""

    name: str
    labels: dict
    metrics: list[dict]
    status: str
    reason: str = ""


def load_run(path: Path) -> Run:
    folder = RunFolder.existing(path)
    metrics = folder.read_metrics()
    labels = folder.read_labels()
    if labels is None:
        return Run(path.name, {**UNLABELLED, **EARLIER_DEFAULTS}, metrics, "unlabelled", "no labels.json (a run "
                   "folder from before normda recorded its labels): train it again to tabulate it")
    if folder.done:
        status, reason = "done", ""
    elif folder.failure.exists():
        status, reason = "failed", folder.failure.read_text().strip()
    else:
        status, reason = "incomplete", "no done marker: still running, or stopped without recording why"
    return Run(path.name, {**EARLIER_DEFAULTS, **labels}, metrics, status, reason)


def find_runs(paths: Iterable[Path]) -> list[Run]:
    """Every run folder (holding a ``config.yaml``) at or below ``paths``."""
    folders = sorted({config.parent for path in paths for config in Path(path).rglob("config.yaml")
                      if ".hydra" not in config.parts})
    return [load_run(folder) for folder in folders]


def recorded_choice(runs: list[Run], label: str) -> str:
    """The ``metric`` or ``selection`` the runs' presets report with (``report`` in the config, kept in labels.json);
    an error when the runs disagree, so that one table never mixes two."""
    values = sorted({run.labels.get(label, EARLIER_DEFAULTS[label]) for run in runs if run.status != "unlabelled"})
    if len(values) > 1:
        raise ValueError(f"these runs were trained to be reported with different {label}s ({', '.join(values)}): "
                         f"choose one with --{label}, or collect them apart")
    return values[0] if values else EARLIER_DEFAULTS[label]


def runs_frame(runs: list[Run], selection: str = "best", metric: str = "target_accuracy") -> pd.DataFrame:
    """One line per run: its labels, status, and ``metric`` at the checkpoint ``selection`` picks (NaN when the
    run has no such checkpoint: not finished, or no source validation set for ``source_val``/``dev``); ``best``
    selects by ``metric`` itself, as the papers' code keeps the maximum of the accuracy it reports."""
    describe, choose = SELECTIONS[selection]
    rows = []
    for run in runs:
        chosen = choose(run.metrics, metric) if run.status == "done" else None
        value = chosen.get(metric, np.nan) if chosen else np.nan
        rows.append({**run.labels, "run": run.name, "status": run.status, "reason": run.reason,
                     "step": chosen["step"] if chosen else np.nan, "accuracy": value})
    return pd.DataFrame(rows)


def read_paper(experiment: str, folder: Path = PUBLISHED_NUMBERS) -> pd.DataFrame:
    """The published numbers for a preset, from every CSV in ``folder``: columns method_label, norm_label, variant
    (always "": a published row trains on the whole source with its authors' settings), task_label, accuracy."""
    columns = ["method_label", "norm_label", "variant", "task_label", "accuracy"]
    files = sorted(folder.glob("*.csv")) if experiment else []
    if not files:
        return pd.DataFrame(columns=columns)
    table = pd.concat([pd.read_csv(path, dtype={"table": str}, keep_default_na=False) for path in files])
    return table[table["experiment"] == experiment].assign(variant="")[columns].reset_index(drop=True)


#: what makes a table row: the method, the normalization and the variant (a preset's own swept settings, a held-out
#: part of the source), so that runs trained differently never share a cell
ROW_KEYS = ["method_label", "norm_label", "variant"]


def row_text(row: tuple[str, str, str]) -> str:
    method, norm, variant = row
    return f"{method} / {norm}" + (f" ({variant})" if variant else "")


@dataclass
class Table:
    """Per row and task: our mean, std and number of finished seeds, the paper's number and the difference."""

    cells: pd.DataFrame  # tidy: method_label, norm_label, variant, task_label, mean, std, seeds, paper, difference
    rows: list[tuple[str, str, str]]
    tasks: list[str]
    problems: pd.DataFrame  # runs that are failed or incomplete
    selection: str
    metric: str

    def cell_text(self, row: tuple[str, str, str], task: str) -> str:
        match = (self.cells.task_label == task)
        for key, value in zip(ROW_KEYS, row):
            match &= self.cells[key] == value
        found = self.cells[match]
        if found.empty:
            return ""
        cell = found.iloc[0]
        if cell.seeds == 0 or np.isnan(cell["mean"]):
            ours = "–"
        elif cell.seeds == 1 or np.isnan(cell["std"]):
            ours = f"{cell['mean']:.1f}"
        else:
            ours = f"{cell['mean']:.1f} ± {cell['std']:.1f}"
        text = f"{ours} (n={int(cell.seeds)})"
        if not np.isnan(cell.paper):
            difference = "" if np.isnan(cell.difference) else f", {cell.difference:+.1f}"
            text += f" [paper {cell.paper:.1f}{difference}]"
        return text

    def frame(self) -> pd.DataFrame:
        """The table as text cells: one line per method/norm row, one column per task and Avg."""
        return pd.DataFrame([[row_text(row)] + [self.cell_text(row, task) for task in self.tasks]
                             for row in self.rows], columns=["method / norm"] + self.tasks)

    def caption(self) -> str:
        return (f"{self.metric} (%), checkpoint: {SELECTIONS[self.selection][0]}. Cells: mean ± std over finished "
                f"seeds (n), [the paper's number, our difference]; Avg over tasks when every task has a run.")

    def markdown(self) -> str:
        lines = [self.frame().to_markdown(index=False), "", self.caption()]
        if not self.problems.empty:
            lines += ["", "Runs missing from the table:"]
            lines += [f"- {row_text((p.method_label, p.norm_label, p.variant))} / {p.task_label} / seed {p.seed}: "
                      f"{p.status} ({p.reason}) [{p.run}]" for p in self.problems.itertuples()]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        return self.frame().style.hide(axis="index").to_latex(hrules=True, caption=self.caption())


def build_table(frame: pd.DataFrame, paper: pd.DataFrame, selection: str, metric: str) -> Table:
    finished = frame[frame.status == "done"]
    keys = [*ROW_KEYS, "task_label"]
    stats = (finished.groupby(keys)["accuracy"].agg(mean="mean", std="std", seeds="count").reset_index()
             if not finished.empty else pd.DataFrame(columns=keys + ["mean", "std", "seeds"]))
    tasks = list(dict.fromkeys([*(t for t in paper.task_label if t != "avg"), *sorted(frame.task_label.unique())]))
    rows = list(dict.fromkeys([*paper[ROW_KEYS].itertuples(index=False, name=None),
                               *sorted(frame[ROW_KEYS].itertuples(index=False, name=None))]))
    grid = pd.DataFrame([(*row, t) for row in rows for t in tasks], columns=keys).merge(stats, on=keys, how="left")
    grid["seeds"] = grid["seeds"].fillna(0).astype(int)
    averages = []
    for row in rows:
        ours = grid[(grid[ROW_KEYS] == pd.Series(row, index=ROW_KEYS)).all(axis=1)]
        complete = (ours.seeds > 0).all()
        averages.append({**dict(zip(ROW_KEYS, row)), "task_label": "Avg",
                         "mean": ours["mean"].mean() if complete else np.nan, "std": np.nan,
                         "seeds": int(ours.seeds.min()) if complete else 0})
    grid = pd.concat([grid, pd.DataFrame(averages)], ignore_index=True)
    numbers = paper.replace({"task_label": {"avg": "Avg"}}).rename(columns={"accuracy": "paper"})
    grid = grid.merge(numbers, on=keys, how="left")
    grid["paper"] = pd.to_numeric(grid["paper"], errors="coerce")
    grid["difference"] = grid["mean"] - grid["paper"]
    problems = frame[frame.status != "done"].sort_values(keys + ["seed"])
    return Table(grid, rows, [*tasks, "Avg"], problems, selection, metric)


def write_table(table: Table, folder: Path, name: str) -> list[Path]:
    """``<name>.md``, ``<name>.tex`` and ``<name>.csv`` (tidy: one line per row and task) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.md", folder / f"{name}.tex", folder / f"{name}.csv"]
    atomic_write_text(paths[0], table.markdown())
    atomic_write_text(paths[1], table.latex())
    atomic_write_text(paths[2], table.cells.to_csv(index=False))
    return paths


def wandb_runs(path: str, api: Any = None) -> list[Run]:
    """Runs of the W&B project ``entity/project`` through its public API (network and a login needed)."""
    if api is None:
        import wandb

        api = wandb.Api()
    keys = ["step", "target_accuracy", "target_accuracy_10crop", "target_mean_class_accuracy",
            "source_val_accuracy", "dev_risk"]
    runs = []
    for remote in api.runs(path):
        metrics = [{key: row[key] for key in keys if row.get(key) is not None} | {"step": row["_step"]}
                   for row in remote.scan_history() if row.get("target_accuracy") is not None]
        status = "done" if remote.state == "finished" else ("failed" if remote.state in ("failed", "crashed")
                                                            else "incomplete")
        labels = {**EARLIER_DEFAULTS, **(dict(remote.config).get("labels") or UNLABELLED)}
        runs.append(Run(remote.name, labels, metrics, status, f"W&B state {remote.state}" if status != "done" else ""))
    return runs
