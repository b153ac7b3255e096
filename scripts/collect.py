"""Collect run folders into paper-style tables (Markdown, LaTeX, CSV), beside the published numbers.

    python scripts/collect.py outputs/experiments/transnorm_table1                 # every run below the folder
    python scripts/collect.py outputs/experiments/transnorm_table1 --selection dev --metric target_accuracy_10crop
    python scripts/collect.py outputs/experiments/label_free_rank --selection v_measure --pool-source-only
    python scripts/collect.py --wandb my-entity/normda --experiment transnorm_table1   # W&B instead (network)
    python scripts/collect.py results/runs/cpu_digits --selection last --out results/tables --name cpu_digits
                                                    # writes results/tables/cpu_digits-last.{md,tex,csv}

Runs of different presets, protocols, datasets or networks never share a table: each such group gets its own (with
several, the files are ``<name>-<preset>-<protocol>-<dataset>-<network>-<selection>.*``). Rows are method /
normalization and the variant (a held-out part of the source, a preset's swept settings, and any other setting whose
recorded value differs between runs of one cell: runs pool as seeds only when their configs differ in the seed
alone), columns tasks and their average; each cell is the mean ± std over finished seeds, the number of seeds, and the
published number with our difference. The checkpoint of each run is chosen here, not in training: ``last``, ``best``
(the papers' protocol, the oracle: the best evaluation on the target test set, selecting with target labels), or
any label-free validator the runs recorded (``source_val``: held-out source accuracy; ``dev``: Deep Embedded
Validation; ``im``, ``v_measure``, ...: ``normda/validators/``), the table naming the validator that chose;
``--pool-source-only`` lets a validator fall back on the source-only run of the same task and seed. By default the
metric and the selection are those the runs' preset reports with (``report`` in the config, recorded in each run's
labels.json: the 10-crop accuracy under protocol=transnorm, ...). Failed and unfinished runs are listed under the table. Reads run folders only; W&B is
optional. The tables are printed; they are written as files only into the folder ``--out`` names, so that tabulating
a few ablation runs never replaces a preset's tables of record in results/tables.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

from normda.reporting.selections import Metric
from normda.reporting.tables import SELECTIONS, collect_tables, find_runs, wandb_runs, write_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, help="run folders, or folders holding them")
    parser.add_argument("--selection", choices=sorted(SELECTIONS), help="default: the one the runs recorded")
    parser.add_argument("--metric", choices=get_args(Metric), help="default: the one the runs recorded")
    parser.add_argument("--pool-source-only", action="store_true",
                        help="with a validator's --selection: choose each adapted run's checkpoint among its own and "
                             "its task and seed's source-only run's evaluations")
    parser.add_argument("--experiment", help="the preset whose paper numbers to show (default: the runs' own)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B's public API instead")
    parser.add_argument("--out", type=Path, help="also write the tables into this folder (default: print them only)")
    parser.add_argument("--name", help="the files' name in --out, before -<selection> (default: the runs' preset, "
                                       "or 'table')")
    args = parser.parse_args(argv)
    if args.name and not args.out:
        parser.error("--name names the files that --out writes: give --out FOLDER too")

    runs = wandb_runs(args.wandb) if args.wandb else find_runs(args.folders)
    if not runs:
        print(f"error: no run folder (with a config.yaml) under {', '.join(map(str, args.folders)) or 'nothing'}",
              file=sys.stderr)
        return 2
    try:
        tables = collect_tables(runs, args.selection, args.metric, args.experiment, args.pool_source_only)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for table in tables:
        if len(tables) > 1:
            print(f"## {table.slug}\n")
        print(table.markdown())
        if args.out:
            stem = args.name or table.scope["experiment"] or "table"
            paths = write_table(table, args.out, table.file_name(stem, len(tables) > 1))
            print("written: " + ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
