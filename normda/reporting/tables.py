"""From run folders to paper-style tables: load runs, select a checkpoint by a rule, aggregate seeds, and format.

A run folder (or a W&B run) gives the labels it recorded when it trained (``labels.json``, ``normda.labels.table_labels``)
and one metrics line per evaluation. Its table row is ``method_label / norm_label`` (``cdan_e / transnorm[alpha=one]``),
its column the task ``A->W``; nothing is read from today's ``conf/``, so a run is labelled as it was trained. The
checkpoint is chosen when the table is built, by one of :data:`SELECTIONS`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from normda.config_identity import ADDED_AT_NEUTRAL, IGNORED_FOR_IDENTITY
from normda.reporting.selections import SELECTIONS
from normda.run_folder import RunFolder, atomic_write_text

#: published numbers, one CSV per source, installed with the package: ``paper_tables.csv`` (the five papers,
#: ``scripts/paper_tables.py``) and others such as ``tllib_digits.csv`` (each row citing where its number was published)
PUBLISHED_NUMBERS = Path(str(files("normda.reporting") / "published"))
#: who published a number, as a cell names it: a paper's own table, or a library's documentation (by the CSV's
#: ``paper`` column)
PUBLISHERS = {"tllib": "TLlib"}
#: what a table needs of a run that recorded no labels (a folder written before labels.json existed)
UNLABELLED = {"experiment": "", "protocol": "", "dataset": "", "backbone": "", "method_label": "?", "norm_label": "?",
              "task_label": "?", "seed": -1}
#: labels that runs recorded before they were labels: a run that lacks one was trained the way its value says
EARLIER_DEFAULTS = {"variant": "", "metric": "target_accuracy", "selection": "best"}


@dataclass
class Run:
    """One run: its table labels, its metrics lines, how it ended (``done``, ``failed`` with a reason, or
    ``incomplete``: still running, or stopped without a word), and its recorded config as dotted keys."""

    name: str
    labels: dict
    metrics: list[dict]
    status: str
    reason: str = ""
    config: dict[str, Any] = field(default_factory=dict)


def dotted(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"optim.optimizer.lr": 0.01, ...}``; lists as their JSON text."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return flat


def load_run(path: Path) -> Run:
    folder = RunFolder.existing(path)
    metrics = folder.read_metrics()
    labels = folder.read_labels()
    recorded = dotted(OmegaConf.to_container(OmegaConf.load(folder.config)) or {})
    config = {**dotted(ADDED_AT_NEUTRAL), **recorded}  # a run from before a setting existed ran at its neutral value
    if folder.inputs.exists():  # the image files it read: runs on other files never pool as seeds
        config["inputs"] = json.loads(folder.inputs.read_text())["sha1"][:12]
    if labels is None:
        return Run(path.name, {**UNLABELLED, **EARLIER_DEFAULTS}, metrics, "unlabelled", "no labels.json (a run "
                   "folder from before normda recorded its labels): train it again to tabulate it", config)
    if folder.done:
        status, reason = "done", ""
    elif folder.failure.exists():
        status, reason = "failed", folder.failure.read_text().strip()
    else:
        status, reason = "incomplete", "no done marker: still running, or stopped without recording why"
    return Run(path.name, {**EARLIER_DEFAULTS, **labels}, metrics, status, reason, config)


def run_folders(paths: Iterable[Path]) -> list[Path]:
    """Every run folder (holding a ``config.yaml``) at or below ``paths``."""
    return sorted({config.parent for path in paths for config in Path(path).rglob("config.yaml")
                   if ".hydra" not in config.parts})


def find_runs(paths: Iterable[Path]) -> list[Run]:
    return [load_run(folder) for folder in run_folders(paths)]


def recorded_choice(runs: list[Run], label: str) -> str:
    """The ``metric`` or ``selection`` the runs' presets report with (``report`` in the config, kept in labels.json);
    an error when the runs disagree, so that one table never mixes two."""
    values = sorted({run.labels.get(label, EARLIER_DEFAULTS[label]) for run in runs if run.status != "unlabelled"})
    if len(values) > 1:
        raise ValueError(f"these runs were trained to be reported with different {label}s ({', '.join(values)}): "
                         f"choose one with --{label}, or collect them apart")
    return values[0] if values else EARLIER_DEFAULTS[label]


#: the labels whose values never share a table: each preset, protocol, dataset and network makes its own
TABLE_KEYS = ["experiment", "protocol", "dataset", "backbone"]
#: what makes a table row: the method, the normalization and the variant (a preset's own swept settings, a held-out
#: part of the source, any other setting that differs between runs of one cell), so that runs trained differently
#: never share a cell
ROW_KEYS = ["method_label", "norm_label", "variant"]
#: recorded settings that may differ between the runs of one cell: the seed, and what never changes a result (where
#: outputs and data live, the logger, worker counts: ``normda.config_identity.IGNORED_FOR_IDENTITY``)
POOLED = ("seed", *IGNORED_FOR_IDENTITY)


def separate_tables(runs: list[Run]) -> list[list[Run]]:
    """The runs split by :data:`TABLE_KEYS`, one list per table, in the order of those labels."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(str(run.labels.get(key, "")) for key in TABLE_KEYS), []).append(run)
    return [groups[scope] for scope in sorted(groups)]


def _pooled(key: str) -> bool:
    return any(key == pooled or key.startswith(f"{pooled}.") for pooled in POOLED)


def label_what_differs(runs: list[Run]) -> list[Run]:
    """Runs whose recorded configs differ in more than the seed never pool as seeds: every setting that differs
    between two runs of one cell (a swept learning rate, a norm setting given outside a preset's ``experiment.vary``)
    joins the variant label of every run of the table (``lr=0.01``: the key's last part, or the whole key where two
    differing keys share it), so each value gets its own row."""
    cells: dict[tuple, list[Run]] = {}
    for run in runs:
        cells.setdefault(tuple(run.labels.get(key) for key in (*ROW_KEYS, "task_label")), []).append(run)
    differing = sorted({key for members in cells.values() for key in set().union(*(m.config for m in members))
                        if not _pooled(key) and len({repr(m.config.get(key)) for m in members}) > 1})
    if not differing:
        return runs
    leaves = [key.rsplit(".", 1)[-1] for key in differing]
    names = {key: leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(differing, leaves)}

    def variant(run: Run) -> str:
        settings = [f"{names[key]}={run.config.get(key, 'absent')}" for key in differing]
        return ", ".join(part for part in (run.labels.get("variant", ""), *settings) if part)

    return [replace(run, labels={**run.labels, "variant": variant(run)}) for run in runs]


def runs_frame(runs: list[Run], selection: str = "best", metric: str = "target_accuracy",
               pool_source_only: bool = False) -> pd.DataFrame:
    """One line per run: its labels, status, and ``metric`` at the checkpoint ``selection`` picks (NaN when the
    run has no such checkpoint: not finished, or no score of the validator that selects); ``best`` selects by
    ``metric`` itself, as the papers' code keeps the maximum of the accuracy it reports. With ``pool_source_only``,
    an adapted run's choice is made among its own evaluations and those of the finished source-only runs of its task
    and seed (Ericsson et al. 2023: validators miss an adaptation that destroyed accuracy, the source-only model is the
    fallback); ``source_only_chosen`` says where the choice fell there."""
    describe, choose = SELECTIONS[selection]
    rows = []
    for run in runs:
        fallback = [record for other in runs if pool_source_only and other is not run and other.status == "done"
                    and run.labels.get("method_label") != "source_only"
                    and other.labels.get("method_label") == "source_only"
                    and (other.labels.get("task_label"), other.labels.get("seed"))
                    == (run.labels.get("task_label"), run.labels.get("seed"))
                    for record in other.metrics]
        chosen = choose(run.metrics + fallback, metric) if run.status == "done" else None
        value = chosen.get(metric, np.nan) if chosen else np.nan
        rows.append({**run.labels, "run": run.name, "status": run.status, "reason": run.reason,
                     "step": chosen["step"] if chosen else np.nan, "accuracy": value,
                     "source_only_chosen": any(chosen is record for record in fallback)})
    return pd.DataFrame(rows)


def read_paper(experiment: str, folder: Path = PUBLISHED_NUMBERS) -> pd.DataFrame:
    """The published numbers for a preset, from every CSV in ``folder``: columns method_label, norm_label, variant
    (always "": a published row trains on the whole source with its authors' settings), task_label, accuracy and
    published_by (``paper``, or the library whose documentation gives the number: :data:`PUBLISHERS`)."""
    columns = ["method_label", "norm_label", "variant", "task_label", "accuracy", "published_by"]
    sources = sorted(folder.glob("*.csv")) if experiment else []
    if not sources:
        return pd.DataFrame(columns=columns)
    table = pd.concat([pd.read_csv(path, dtype={"table": str}, keep_default_na=False) for path in sources])
    table = table.assign(variant="", published_by=[PUBLISHERS.get(paper, "paper") for paper in table["paper"]])
    return table[table["experiment"] == experiment][columns].reset_index(drop=True)


def row_text(row: tuple[str, str, str]) -> str:
    method, norm, variant = row
    return f"{method} / {norm}" + (f" ({variant})" if variant else "")


@dataclass
class Table:
    """Per row and task: our mean, std and number of finished seeds, the paper's number and the difference."""

    cells: pd.DataFrame  # tidy: method_label, norm_label, variant, task_label, mean, std, seeds, paper,
    #                      published_by, difference
    rows: list[tuple[str, str, str]]
    tasks: list[str]
    problems: pd.DataFrame  # runs that are failed or incomplete
    selection: str
    metric: str
    scope: dict[str, str] = field(default_factory=dict)  # the TABLE_KEYS labels its runs share
    source_only_chosen: tuple[int, int] | None = None  # with the source-only runs pooled: (chosen, of adapted runs)

    @property
    def slug(self) -> str:
        """``cpu_digits-tllib-digits-lenet``: the scope's values, for file names."""
        return "-".join(value for value in self.scope.values() if value) or "runs"

    def file_name(self, stem: str, one_of_several: bool) -> str:
        """``<stem>-<selection>``, or ``<stem>-<slug>-<selection>`` where the runs made several tables;
        ``-with-source-only`` after it where the source-only runs were pooled."""
        selection = self.selection + ("-with-source-only" if self.source_only_chosen else "")
        return f"{stem}-{self.slug}-{selection}" if one_of_several else f"{stem}-{selection}"

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
            text += f" [{cell.published_by} {cell.paper:.1f}{difference}]"
        return text

    def frame(self) -> pd.DataFrame:
        """The table as text cells: one line per method/norm row, one column per task and Avg."""
        return pd.DataFrame([[row_text(row)] + [self.cell_text(row, task) for task in self.tasks]
                             for row in self.rows], columns=["method / norm"] + self.tasks)

    def caption(self) -> str:
        scope = ", ".join(f"{key} {value}" for key, value in self.scope.items() if value)
        return ((f"Runs of {scope}. " if scope else "") +
                f"{self.metric} (%), checkpoint: {SELECTIONS[self.selection][0]}. Cells: mean ± std over finished "
                f"seeds (n), [the published number (the paper's, or a library's documentation's), our difference]; "
                f"Avg over tasks when every task has a run." + self._pool_note())

    def _pool_note(self) -> str:
        if not self.source_only_chosen:
            return ""
        chosen, adapted = self.source_only_chosen
        return (f" Each adapted run's checkpoint was chosen among its evaluations and those of the source-only run of "
                f"its task and seed: the source-only model was chosen for {chosen} of {adapted} adapted runs.")

    def markdown(self) -> str:
        lines = [self.frame().to_markdown(index=False), "", self.caption()]
        if not self.problems.empty:
            lines += ["", "Runs missing from the table:"]
            lines += [f"- {row_text((p.method_label, p.norm_label, p.variant))} / {p.task_label} / seed {p.seed}: "
                      f"{p.status} ({p.reason}) [{p.run}]" for p in self.problems.itertuples()]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        return self.frame().style.hide(axis="index").to_latex(hrules=True, caption=self.caption())


def build_table(frame: pd.DataFrame, paper: pd.DataFrame, selection: str, metric: str,
                scope: dict[str, str] | None = None, pool_source_only: bool = False) -> Table:
    finished = frame[frame.status == "done"]
    keys = [*ROW_KEYS, "task_label"]
    stats = (finished.groupby(keys)["accuracy"].agg(mean="mean", std="std", seeds="count").reset_index()
             if not finished.empty else pd.DataFrame(columns=keys + ["mean", "std", "seeds"]))
    # columns and rows come from the published numbers and the finished runs only: a failed or unfinished run (a
    # typo's data.source=w) is listed under the table, never a column, row or average of its own
    tasks = list(dict.fromkeys([*(t for t in paper.task_label if t != "avg"), *sorted(finished.task_label.unique())]))
    rows = list(dict.fromkeys([*paper[ROW_KEYS].itertuples(index=False, name=None),
                               *sorted(finished[ROW_KEYS].itertuples(index=False, name=None))]))
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
    adapted = finished[finished.method_label != "source_only"]
    pooled = (int(adapted.source_only_chosen.sum()), len(adapted)) if pool_source_only else None
    return Table(grid, rows, [*tasks, "Avg"], problems, selection, metric, scope or {}, pooled)


def collect_tables(runs: list[Run], selection: str | None = None, metric: str | None = None,
                   experiment: str | None = None, pool_source_only: bool = False) -> list[Table]:
    """One table per :data:`TABLE_KEYS` scope of ``runs``, each with the selection and metric its runs recorded
    (unless given), the published numbers of its preset (or of ``experiment``), and a row per setting that differs
    between runs of a cell (:func:`label_what_differs`); ``pool_source_only`` as :func:`runs_frame` says, for the
    label-free selections only (the oracle and ``last`` choose within a run)."""
    if pool_source_only and selection in (None, "last", "best"):
        raise ValueError("pooling the source-only runs applies to a selection by a label-free validator: give "
                         "--selection <validator> (source_val, im, ...)")
    tables = []
    for group in separate_tables(runs):
        scope = {key: str(group[0].labels.get(key, "")) for key in TABLE_KEYS}
        chosen_selection = selection or recorded_choice(group, "selection")
        chosen_metric = metric or recorded_choice(group, "metric")
        frame = runs_frame(label_what_differs(group), chosen_selection, chosen_metric, pool_source_only)
        tables.append(build_table(frame, read_paper(experiment or scope["experiment"]), chosen_selection,
                                  chosen_metric, scope, pool_source_only))
    return tables


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
        config = dict(remote.config)
        labels = {**EARLIER_DEFAULTS, **(config.pop("labels", None) or UNLABELLED)}
        runs.append(Run(remote.name, labels, metrics, status, f"W&B state {remote.state}" if status != "done" else "",
                        dotted(config)))
    return runs
