"""Every published number regenerates from the run records committed beside it: each table under results/tables/
comes byte for byte out of ``scripts/collect.py`` over ``results/runs/<study>/``, the records hold no checkpoint, and
the README quotes tables only as they stand there."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT, load_script
from normda.run_folder import RunFolder

TABLES = ROOT / "results" / "tables"
RECORDS = ROOT / "results" / "runs"
PUBLISHED = sorted(TABLES.glob("*.md"))


def study_and_selection(table) -> tuple[str, str]:
    study, _, selection = table.stem.rpartition("-")
    return study, selection


@pytest.mark.parametrize("table", PUBLISHED, ids=[table.stem for table in PUBLISHED])
def test_a_published_table_regenerates_from_its_committed_runs(table, tmp_path):
    study, selection = study_and_selection(table)
    assert (RECORDS / study).is_dir(), f"{table.name} has no run records in results/runs/{study}/"
    collect = load_script("collect")
    assert collect.main([str(RECORDS / study), "--selection", selection, "--out", str(tmp_path), "--name", study]) == 0
    for suffix in (".md", ".tex", ".csv"):
        regenerated = tmp_path / f"{study}-{selection}{suffix}"
        assert regenerated.read_text() == table.with_suffix(suffix).read_text(), f"{study}-{selection}{suffix}"


def test_every_study_of_records_has_its_tables():
    studies = {study_and_selection(table)[0] for table in PUBLISHED}
    assert {folder.name for folder in RECORDS.iterdir() if folder.is_dir()} == studies


def test_the_records_hold_no_checkpoint_and_no_log():
    kept = {path.name for path in RECORDS.rglob("*") if path.is_file()}
    assert kept <= set(RunFolder.RECORDS), kept - set(RunFolder.RECORDS)


def test_the_readme_quotes_tables_as_they_are_published():
    """Each table row the README shows with a seed count is a row of a committed table."""
    published = {line for table in PUBLISHED for line in table.read_text().splitlines()}
    readme = (ROOT / "README.md").read_text().splitlines()
    quoted = [line for line in readme if line.startswith("| ") and re.search(r"\(n=\d+\)", line)]
    assert quoted, "the README quotes no table"
    assert [line for line in quoted if line not in published] == []


def test_the_runs_of_a_preset_in_progress_keep_their_names_under_this_code():
    """A preset whose sweep is still running (cpu_digits_dtn) must find its finished runs as finished: the command of
    each kept run composes, with this code, to the config id in its folder's name."""
    from conftest import compose_config
    from normda.config_identity import config_id
    from normda.reporting.tables import find_runs

    runs = find_runs([RECORDS / "cpu_digits_dtn"])
    assert runs
    for run in runs:
        labels = run.labels
        cell = [f"data.task={labels['task_label'].replace('->', '2')}", f"method={labels['method_label']}",
                f"norm={labels['norm_label']}", f"seed={labels['seed']}"]
        assert config_id(compose_config(["experiment=cpu_digits_dtn", *cell])) == run.name.rsplit("-", 1)[1], run.name
    validating = compose_config(["experiment=cpu_digits_dtn", "trainer.validators=[im]", *cell])
    assert config_id(validating) != run.name.rsplit("-", 1)[1]  # a run that computes more is another run
