"""Rank the label-free validators on the runs of any sweep: a table and a figure.

    python scripts/rank_validators.py results/runs/label_free_rank --out results/tables --name label_free_rank
    python scripts/rank_validators.py outputs/experiments/label_free_rank --by norm_label task_label

For each group of runs (``--by`` labels; default the normalization and the task, so that each norm's sweep is ranked
on its own), every validator the runs recorded gets: the weighted Spearman correlation of its score with the target
accuracy over all evaluations of the finished runs (Musgrave et al. 2022: dense ranks, each pair weighted by the
larger normalised rank squared), the target accuracy of the evaluation it selects, the oracle's (the best evaluation
by target labels, which no label-free method has) and the gap (``normda/reporting/validator_ranking.py``). The
figure draws each validator's score against the accuracy, one panel per validator, one colour per group. Printed;
with ``--out``, written as ``<name>-validators.{md,csv,png}``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normda.reporting.tables import find_runs  # noqa: E402
from normda.reporting.validator_ranking import evaluations, rank  # noqa: E402
from normda.run_folder import atomic_write_text  # noqa: E402
from normda.validators import VALIDATORS  # noqa: E402


def ranking_table(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    tables = []
    for group, members in frame.groupby(by, sort=True):
        ranked = rank(members)
        for key, value in zip(by, group if isinstance(group, tuple) else (group,)):
            ranked.insert(0, key, value)
        ranked.insert(len(by), "runs", members.run.nunique())
        tables.append(ranked)
    return pd.concat(tables, ignore_index=True)


def figure(frame: pd.DataFrame, by: list[str], out: Path) -> None:
    names = [name for name in VALIDATORS.names() if name in frame]
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.8 * rows), squeeze=False, sharey=True)
    for axis, name in zip(axes.flat, names):
        for group, members in frame.dropna(subset=[name]).groupby(by, sort=True):
            axis.scatter(members[name], members.accuracy, s=8, alpha=0.6,
                         label=" / ".join(map(str, group if isinstance(group, tuple) else (group,))))
        axis.set_title(f"{name} ({VALIDATORS.get(name).direction} is better)", fontsize=9)
        axis.set_xlabel("score", fontsize=8)
    for axis in axes[:, 0]:
        axis.set_ylabel("target accuracy (%)", fontsize=8)
    for axis in list(axes.flat)[len(names):]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(temporary, dpi=150)
    temporary.replace(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="run folders, or folders holding them")
    parser.add_argument("--by", nargs="+", default=["norm_label", "task_label"],
                        help="the labels that group runs into one ranking (default: norm_label task_label)")
    parser.add_argument("--metric", default="target_accuracy")
    parser.add_argument("--out", type=Path, help="write <name>-validators.{md,csv,png} into this folder")
    parser.add_argument("--name", default="sweep", help="the files' name in --out")
    args = parser.parse_args(argv)
    frame = evaluations(find_runs(args.folders), args.metric)
    scored = [name for name in VALIDATORS.names() if name in frame]
    if frame.empty or not scored:
        print(f"error: no finished run under {', '.join(map(str, args.folders))} recorded a validator's score: train "
              f"with trainer.validators=[...]", file=sys.stderr)
        return 2
    table = ranking_table(frame, args.by)
    text = table.to_markdown(index=False, floatfmt=".3f") + (
        f"\n\n{args.metric} (%) of every evaluation of {frame.run.nunique()} finished runs; weighted Spearman: "
        f"Musgrave et al. 2022; selected: the evaluation the validator scores best; oracle: the best by target labels "
        f"(no label-free method has them); gap = selected - oracle.\n")
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / f"{args.name}-validators.md", text)
        atomic_write_text(args.out / f"{args.name}-validators.csv", table.to_csv(index=False))
        figure(frame, args.by, args.out / f"{args.name}-validators.png")
        print(f"written: {args.out}/{args.name}-validators.{{md,csv,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
