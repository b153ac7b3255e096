"""Keep the records of runs where the published tables are regenerated from, ``results/runs/<study>/``.

    python scripts/keep_records.py outputs/experiments/cpu_digits_alpha --to results/runs/cpu_digits_transnorm_ablation
    python scripts/collect.py results/runs/cpu_digits_transnorm_ablation --selection last --out results/tables \
        --name cpu_digits_transnorm_ablation

Each run folder at or below the given folders is copied to ``<to>/<run name>/`` with its records only
(``normda.run_folder.RunFolder.RECORDS``: config.yaml, labels.json, metrics.jsonl, summary.json and the done or failed
marker), never its checkpoint, logs or W&B files: a few kilobytes a run. ``scripts/reproduce.py`` keeps its preset's
records the same way.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from normda.reporting.tables import run_folders
from normda.run_folder import RunFolder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="run folders, or folders holding them")
    parser.add_argument("--to", type=Path, required=True, help="the study's records folder, results/runs/<study>")
    args = parser.parse_args(argv)
    folders = run_folders(args.folders)
    if not folders:
        print(f"error: no run folder (with a config.yaml) under {', '.join(map(str, args.folders))}", file=sys.stderr)
        return 2
    for folder in folders:
        RunFolder.existing(folder).keep_records(args.to)
    print(f"kept the records of {len(folders)} runs in {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
