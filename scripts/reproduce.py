"""Reproduce a paper table: run its preset's sweep, then print the table beside the paper's numbers.

    python scripts/reproduce.py transnorm_table1                              # every job, one after the other
    python scripts/reproduce.py transnorm_table1 --launcher joblib --jobs 4   # four at a time on this machine
    python scripts/reproduce.py transnorm_table1 --launcher slurm hydra.launcher.partition=gpu
    python scripts/reproduce.py smoke                                         # a few minutes on a CPU
    python scripts/reproduce.py cpu_digits_dtn --continue-recorded            # train only what results/runs lacks
    python scripts/reproduce.py transnorm_table1 data.root=/data/office31 trainer.iterations=500   # any override

The preset is ``conf/experiment/<name>.yaml``, a Hydra multirun over tasks, methods, normalizations and seeds; its
cells outside that grid (``experiment.extra_cells``, e.g. source only with BN alone beside the methods x norms) run as
one more multirun each, the cell's overrides over the preset's other swept keys. Its runs go to
``outputs/experiments/<name>/``. A run already finished there is not trained again (its folder is named by
its config, and holds a done marker), so an interrupted reproduction continues where it stopped; with
``--continue-recorded`` so do the finished runs whose records are kept (below), on a fresh clone where only the records
travelled: each is copied into the output folder first, done marker and all, and counts as finished. A job that fails
does not stop the others: the table shows its gap and lists it with its reason. The runs' records (config, labels,
metrics, summary; never checkpoints) are kept in ``results/runs/<name>/`` and the tables (Markdown, LaTeX, CSV) built
from them, so that ``scripts/collect.py results/runs/<name> --selection <s> --out results/tables --name <name>``
regenerates each. They are written to ``results/tables/<name>-<selection>.*`` for every selection rule the runs can
answer (``source_val`` and ``dev`` need held-out source data), of the accuracy the preset's paper reports
(``report.metric``); the one printed is ``--selection`` (default: the preset's ``report.selection``).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]

from normda.reporting.tables import SELECTIONS, collect_tables, find_runs, recorded_choice, run_folders, write_table
from normda.run_folder import RunFolder

LAUNCHERS = {"local": [], "joblib": ["hydra/launcher=joblib"], "slurm": ["hydra/launcher=slurm"]}


def presets() -> list[str]:
    return sorted(path.stem for path in (ROOT / "conf" / "experiment").glob("*.yaml"))


def sweeps(preset: str) -> list[list[str]]:
    """The multiruns a preset is made of: its sweep (no override), then one per cell of ``experiment.extra_cells``
    (a mapping of key -> value, given on the command line, which takes precedence over the preset's sweep)."""
    cells = OmegaConf.select(OmegaConf.load(ROOT / "conf" / "experiment" / f"{preset}.yaml"),
                             "experiment.extra_cells", default=None) or []
    return [[]] + [[f"{key}={value}" for key, value in cell.items()] for cell in cells]


def seed_from_records(records: Path, output: Path) -> int:
    """Copy each finished run kept in ``records`` that ``output`` lacks into ``output``; return how many are there."""
    finished = [run for run in map(RunFolder.existing, run_folders([records]) if records.is_dir() else []) if run.done]
    for run in finished:
        if not (output / run.path.name).exists():
            run.keep_records(output)
    return len(finished)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", help=f"one of: {', '.join(presets())}")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job (key=value)")
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS), default="local")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time with --launcher joblib")
    parser.add_argument("--output-dir", type=Path, help="where the runs go (default outputs/experiments/<preset>)")
    parser.add_argument("--selection", choices=sorted(SELECTIONS), help="the table printed (default: the preset's)")
    parser.add_argument("--tables", type=Path, default=ROOT / "results" / "tables")
    parser.add_argument("--records", type=Path, default=ROOT / "results" / "runs",
                        help="where the runs' records are kept, in <records>/<preset>/, for the tables to regenerate")
    parser.add_argument("--collect-only", action="store_true", help="build the tables from the runs there")
    parser.add_argument("--continue-recorded", action="store_true",
                        help="count the finished runs kept in <records>/<preset>/ as finished: train only the others")
    args = parser.parse_intermixed_args(argv)  # options and overrides in any order
    if args.preset not in presets():
        print(f"error: no preset {args.preset!r}: choose one of {', '.join(presets())}", file=sys.stderr)
        return 2
    output = (args.output_dir or Path("outputs") / "experiments" / args.preset).resolve()
    records = args.records / args.preset
    if args.continue_recorded:
        continued = seed_from_records(records, output)
        print(f"{continued} finished runs continued from their records in {records}", flush=True)

    if not args.collect_only:
        for cell in sweeps(args.preset):
            command = [sys.executable, str(ROOT / "train.py"), f"experiment={args.preset}", *cell,
                       f"trainer.output_dir={output}", "trainer.progress=false", *LAUNCHERS[args.launcher],
                       *([f"hydra.launcher.n_jobs={args.jobs}"] if args.launcher == "joblib" else []), *args.overrides]
            print("running: " + " ".join(command), flush=True)
            if subprocess.run(command, cwd=ROOT).returncode:
                print("some jobs failed; the table lists them", flush=True)

    folders = run_folders([output])
    if not folders:
        print(f"error: no run folder in {output}", file=sys.stderr)
        return 1
    runs = find_runs([RunFolder.existing(folder).keep_records(records) for folder in folders])
    statuses = [run.status for run in runs]
    print(f"{len(runs)} runs in {output}: " + ", ".join(f"{statuses.count(s)} {s}" for s in
                                                        ("done", "failed", "incomplete") if s in statuses)
          + f"; their records kept in {records}")
    try:
        printed = args.selection or recorded_choice(runs, "selection")
        tables = {selection: collect_tables(runs, selection, experiment=args.preset) for selection in SELECTIONS}
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for selection, collected in tables.items():
        for table in collected:
            if selection != printed and not (table.cells.seeds > 0).any():
                print(f"no {selection} table: no finished run has {SELECTIONS[selection][0]}")
                continue
            paths = write_table(table, args.tables, table.file_name(args.preset, len(collected) > 1))
            if selection == printed:
                print(table.markdown())
                print("written: " + ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
