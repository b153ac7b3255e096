"""Tables from run folders (a golden file), the selection rules, DEV, the experiment presets, reproduce.py end to end,
and the analysis figures."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from itertools import product

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, compose_config, load_script
from normda.reporting.analysis import a_distance, ideal_joint_error
from normda.experiment import train
from normda.reporting.tables import (PUBLISHED_NUMBERS, SELECTIONS, Run, build_table, collect_tables, find_runs,
                                     read_paper, recorded_choice, row_text, runs_frame, wandb_runs)
from normda.labels import table_labels
from normda.reporting.protocols import reference_settings
from normda.run_folder import RunFolder
from normda.validation import density_ratios, dev_risk
from normda.validators import VALIDATORS, Outputs

GOLDEN = ROOT / "tests" / "data"


def test_golden_table(tmp_path):
    assert load_script("collect").main([str(GOLDEN / "golden_runs"), "--out", str(tmp_path), "--name", "golden"]) == 0
    assert (tmp_path / "golden-best.md").read_text() == (GOLDEN / "golden_table.md").read_text()
    assert "\\begin{tabular}" in (tmp_path / "golden-best.tex").read_text()
    tidy = (tmp_path / "golden-best.csv").read_text().splitlines()
    assert tidy[0] == "method_label,norm_label,variant,task_label,mean,std,seeds,paper,published_by,difference"


def test_collect_without_out_prints_and_writes_no_file(monkeypatch, capsys):
    """A few ablation runs of a preset carry its name; collecting them must not replace its tables of record."""
    collect = load_script("collect")
    monkeypatch.setattr(collect, "write_table", lambda *args: pytest.fail("collect.py wrote a table without --out"))
    assert collect.main([str(GOLDEN / "golden_runs")]) == 0
    printed = capsys.readouterr().out
    assert (GOLDEN / "golden_table.md").read_text().strip() in printed and "written:" not in printed
    with pytest.raises(SystemExit) as exit_info:
        collect.main([str(GOLDEN / "golden_runs"), "--name", "mine"])
    assert exit_info.value.code == 2 and "give --out FOLDER too" in capsys.readouterr().err


@pytest.mark.parametrize("selection,expected", [("last", [82.0, 85.0]), ("best", [84.0, 85.0]),
                                                ("source_val", [82.0, 81.0]), ("dev_logistic", [84.0, 81.0])])
def test_selection_rules_on_hand_made_metrics(selection, expected):
    runs = [run for run in find_runs([GOLDEN / "golden_runs"]) if run.name.startswith("dann-bn-A2W")]
    frame = runs_frame(runs, selection).sort_values("seed")
    # seed 0: targets 80/84/82, source val 90/92/92 (a tie: the later wins), DEV 0.9/0.7/0.8
    # seed 1: targets 81/83/85, source val 91/90/89, DEV 0.6/0.8/0.9
    assert frame.accuracy.tolist() == expected


def test_selection_without_a_signal_is_a_gap():
    run = Run("r", {}, [{"step": 1, "target_accuracy": 50.0}], "done")
    assert SELECTIONS["dev"][1](run.metrics, "target_accuracy") is None
    assert SELECTIONS["dev_logistic"][1](run.metrics, "target_accuracy") is None
    assert SELECTIONS["best"][1](run.metrics, "target_accuracy")["step"] == 1


def test_table_labels_are_decided_at_training_time():
    labels = table_labels(compose_config(["seed=3", "backbone=timm", "backbone.model=convnext_tiny", "data=office31",
                                          "method=cdan_e", "norm=transnorm", "norm.alpha=one", "norm.exclude=[x]",
                                          "norm.test_stats=target", "protocol=transnorm"]))
    assert labels == {"experiment": "", "protocol": "transnorm", "dataset": "office31", "backbone": "convnext_tiny",
                      "method_label": "cdan_e", "norm_label": "transnorm[alpha=one,test_stats=target]",
                      "variant": "", "task_label": "A->W", "seed": 3, "metric": "target_accuracy_10crop",
                      "selection": "best"}
    # BGN's G comes from the task (Table 7's per-task value): the row stays "bgn" for every task; a G one chose is shown
    bgn = [table_labels(compose_config(["data=office31", f"data.source={s}", f"data.target={t}", "norm=bgn", *extra]))
           for s, t, extra in (("A", "W", []), ("D", "A", []), ("A", "W", ["norm.groups=16"]))]
    assert [labels["norm_label"] for labels in bgn] == ["bgn", "bgn", "bgn[groups=16]"]
    # a boolean setting is written as the override that sets it
    preserved = table_labels(compose_config(["norm=transnorm", "norm.preserve_function=true"]))
    assert preserved["norm_label"] == "transnorm[preserve_function=true]"
    # source only that passes the target batches through (their statistics) is another row than the plain baseline
    source_only = [table_labels(compose_config(["method=source_only", "norm=transnorm", *extra]))["method_label"]
                   for extra in ([], ["method.forward_target=true"])]
    assert source_only == ["source_only", "source_only[forward_target=true]"]


def test_collect_labels_runs_by_their_own_record_not_by_todays_configs(make_config, tmp_path):
    train(make_config("norm=transnorm", "norm.alpha=one", "trainer.iterations=2", "trainer.eval_every=2"),
          tmp_path / "runs" / "ablation")
    (tmp_path / "runs" / "old").mkdir()
    (tmp_path / "runs" / "old" / "config.yaml").write_text("seed: 0\n")  # a folder from before labels.json
    runs = {run.name: run for run in find_runs([tmp_path / "runs"])}
    assert runs["ablation"].labels["norm_label"] == "transnorm[alpha=one]"
    assert runs["old"].status == "unlabelled" and "no labels.json" in runs["old"].reason


def test_paper_numbers_per_preset():
    table1 = read_paper("transnorm_table1")
    assert len(table1) == 35
    row = table1[(table1.method_label == "cdan_e") & (table1.norm_label == "transnorm") & (table1.task_label == "avg")]
    assert row.accuracy.item() == 89.3
    assert set(read_paper("bgn_table7").method_label) == {"cdan_e"}
    tllib = read_paper("cpu_digits").set_index(["method_label", "task_label"]).accuracy
    assert (tllib[("cdan", "M->U")], tllib[("cdan", "U->M")], tllib[("source_only", "U->M")]) == (96.0, 97.7, 74.6)


def test_every_published_number_names_its_source():
    for path in PUBLISHED_NUMBERS.glob("*.csv"):
        table = pd.read_csv(path, keep_default_na=False)
        if path.name == "protocols.csv":  # the recipes' settings: each names the code or document it is read from
            assert (table["source"].str.len() > 20).all()
            continue
        assert (table["paper"] != "").all(), path
        if path.name != "paper_tables.csv":  # the five papers: the paper and table columns are the source
            assert (table["source"].str.len() > 20).all(), path


def test_wandb_runs_through_a_fake_api(tmp_path):
    class Remote:
        name, state = "remote-1", "finished"
        config = {"seed": 0, "labels": json.loads((GOLDEN / "golden_runs" / "dann-bn-A2W-s0" / "labels.json").read_text())}

        def scan_history(self):
            return [{"_step": 500, "target_accuracy": 70.0}, {"_step": 600, "train/loss": 1.0},
                    {"_step": 1000, "target_accuracy": 75.0, "dev_risk": 0.2}]

    class Api:
        def runs(self, path):
            assert path == "me/normda"
            return [Remote()]

    [run] = wandb_runs("me/normda", api=Api())
    assert run.status == "done" and [m["step"] for m in run.metrics] == [500, 1000]
    assert (run.labels["method_label"], run.labels["norm_label"]) == ("dann", "bn")
    assert runs_frame([run], "dev_logistic").accuracy.item() == 75.0


# -- DEV ---------------------------------------------------------------------------------------------------------------

def test_dev_risk_by_hand():
    losses = np.array([1.0, 2.0, 3.0, 4.0])
    assert dev_risk(np.ones(4), losses) == pytest.approx(losses.mean())  # w = 1: the plain validation loss
    weights = np.array([0.5, 1.0, 1.5, 1.0])
    weighted = weights * losses
    eta = -np.cov(weighted, weights, ddof=1)[0, 1] / np.var(weights, ddof=1)
    assert dev_risk(weights, losses) == pytest.approx(weighted.mean() + eta * weights.mean() - eta)


def test_density_ratios():
    rng = np.random.default_rng(0)
    same = density_ratios(rng.normal(size=(400, 3)), rng.normal(size=(400, 3)), rng.normal(size=(50, 3)))
    assert abs(np.median(same) - 1.0) < 0.2
    shifted = density_ratios(rng.normal(size=(400, 1)), rng.normal(2.0, size=(400, 1)), np.array([[-2.0], [3.0]]))
    assert shifted[0] < 0.1 < 10 < shifted[1]  # far from the target: small ratio; deep in it: large
    source, validation, target = torch.randn(200, 4), torch.randn(50, 4), torch.randn(200, 4)
    logits, labels = torch.randn(50, 3), torch.randint(0, 3, (50,))
    weights = density_ratios(source.numpy(), target.numpy(), validation.numpy())  # DEV: the ratios, then the risk
    losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none").double().numpy()
    sets = {"source_train": Outputs(source, torch.zeros(200, 3)), "source_val": Outputs(validation, logits, labels),
            "target": Outputs(target, torch.zeros(200, 3))}
    assert VALIDATORS.get("dev_logistic")(sets) == pytest.approx(dev_risk(weights, losses))


def test_runs_record_source_validation_and_dev(make_config, tmp_path):
    train(make_config("data.source_val_fraction=0.25", "trainer.iterations=4", "trainer.eval_every=2"),
          tmp_path / "run")
    [run] = find_runs([tmp_path])
    assert all({"source_val_accuracy", "dev_risk"} <= set(record) for record in run.metrics)


# -- presets -----------------------------------------------------------------------------------------------------------

JOBS = {"transnorm_table1": 108, "transnorm_table1_heldout": 108, "transnorm_table2": 108, "transnorm_table3": 216,
        "transnorm_table4_mdd": 36, "transnorm_table4_inception": 72, "transnorm_table4_digits": 12,
        "transnorm_table4_visda": 12, "transnorm_table5": 72, "transnorm_table6": 108, "weightalign_table6": 162,
        "bgn_table7": 90, "daft_sweep_features": 180, "daft_sweep_head": 90, "smoke": 8, "cpu_digits": 36,
        "cpu_office31": 10, "cpu_digits_dtn": 54}


@pytest.mark.parametrize("preset", sorted(JOBS))
def test_preset_composes_expands_and_covers_the_papers_rows(preset):
    params = compose_config([f"experiment={preset}"], hydra_node=True).hydra.sweeper.params
    values = {key: str(value).split(",") for key, value in params.items()}
    cells = [dict(override.split("=", 1) for override in cell) for cell in load_script("reproduce").sweeps(preset)]
    swept = [{**values, **{key: [value] for key, value in cell.items()}} for cell in cells]  # a cell's keys win
    assert sum(math.prod(len(v) for v in sweep.values()) for sweep in swept) == JOBS[preset]
    groups = [key for key in values if key in ("method", "norm", "+transnorm_ablation")]
    rows = set()
    combinations = sorted({combination for sweep in swept for combination in product(*(sweep[k] for k in groups))})
    for combination in combinations:
        task = values["data.task"][len(rows) % len(values["data.task"])]  # the tasks in turn
        cfg = compose_config([f"experiment={preset}", f"data.task={task}"]
                             + [f"{k}={v}" for k, v in zip(groups, combination)])
        labels = table_labels(cfg)
        assert labels["task_label"] == task.replace("2", "->")
        assert labels["experiment"] == preset
        rows.add((labels["method_label"], labels["norm_label"]))
    paper = read_paper(preset)
    assert set(zip(paper.method_label, paper.norm_label)) <= rows


def test_slurm_and_joblib_launchers_compose():
    slurm = compose_config(["hydra/launcher=slurm"], hydra_node=True)
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher") and slurm.hydra.launcher.gpus_per_node == 1
    joblib = compose_config(["hydra/launcher=joblib"], hydra_node=True)
    assert joblib.hydra.launcher._target_.endswith("JoblibLauncher")


@pytest.mark.slow
def test_reproduce_end_to_end_with_failing_jobs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reproduce.py"), "smoke", "--output-dir", str(tmp_path / "runs"),
         "--tables", str(tmp_path / "tables"), "--records", str(tmp_path / "records"), "logger=none", "seed=0",
         "norm=bn,in", "norm.exclude=[]",
         "trainer.iterations=4", "trainer.eval_every=2"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "4 runs in" in result.stdout and "2 done, 2 failed" in result.stdout
    assert "source_only / in / M->U / seed 0: failed (norm=in cannot replace backbone.14" in result.stdout
    assert {p.name for p in (tmp_path / "tables").iterdir()} == {  # no held-out source: no source_val, dev tables
        f"smoke-{selection}.{suffix}" for selection in ("last", "best") for suffix in ("md", "tex", "csv")}
    assert "no dev table: no finished run has the evaluation with the lowest Deep Embedded" in result.stdout
    again = subprocess.run([sys.executable, str(ROOT / "scripts" / "reproduce.py"), "smoke", "--collect-only",
                            "--output-dir", str(tmp_path / "runs"), "--tables", str(tmp_path / "tables"),
                            "--records", str(tmp_path / "records")], capture_output=True, text=True)
    assert again.returncode == 0 and "2 done, 2 failed" in again.stdout
    kept = {path.name for path in (tmp_path / "records" / "smoke").glob("*/*")}
    assert kept == {"config.yaml", "labels.json", "metrics.jsonl", "summary.json", "done", "failed"}
    assert load_script("collect").main([str(tmp_path / "records" / "smoke"), "--selection", "last", "--out",
                                        str(tmp_path / "again"), "--name", "smoke"]) == 0
    assert (tmp_path / "again" / "smoke-last.md").read_text() == (tmp_path / "tables" / "smoke-last.md").read_text()
    unknown = subprocess.run([sys.executable, str(ROOT / "scripts" / "reproduce.py"), "table9"], capture_output=True,
                             text=True)
    assert unknown.returncode == 2 and "no preset 'table9': choose one of bgn_table7" in unknown.stderr


def test_reproduce_continues_the_finished_runs_of_its_records(tmp_path, capsys):
    """--continue-recorded copies each finished run kept in results/runs/<preset>/ into the output folder (where
    train.py finds its done marker and skips it), leaving a run folder already there as it is; the tables built
    from the output folder are then the published ones."""
    import shutil

    shutil.copytree(ROOT / "results" / "runs" / "smoke", tmp_path / "records" / "smoke")
    recorded = sorted(path.name for path in (tmp_path / "records" / "smoke").iterdir())
    unfinished = tmp_path / "runs" / recorded[0]  # a run of this machine's that has not finished yet
    shutil.copytree(tmp_path / "records" / "smoke" / recorded[0], unfinished)
    (unfinished / "done").unlink()
    reproduce = load_script("reproduce")
    arguments = ["smoke", "--collect-only", "--continue-recorded", "--output-dir", str(tmp_path / "runs"),
                 "--records", str(tmp_path / "records"), "--tables", str(tmp_path / "tables"), "--selection", "last"]
    assert reproduce.main(arguments) == 0
    assert f"8 finished runs continued from their records in {tmp_path / 'records' / 'smoke'}" in capsys.readouterr().out
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == recorded
    assert [(tmp_path / "runs" / name / "done").exists() for name in recorded] == [False] + [True] * 7
    (unfinished / "done").write_text("")  # as if it finished here: the table is the published one again
    assert reproduce.main(arguments) == 0
    assert (tmp_path / "tables" / "smoke-last.md").read_text() == (ROOT / "results" / "tables" / "smoke-last.md"
                                                                    ).read_text()


# -- analysis ----------------------------------------------------------------------------------------------------------

def test_a_distance_and_ideal_joint_error():
    rng = np.random.default_rng(0)
    same = a_distance(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)))
    apart = a_distance(rng.normal(size=(300, 4)), rng.normal(5.0, size=(300, 4)))
    assert same < 0.4 and apart > 1.9
    features = np.concatenate([rng.normal(size=(100, 2)), rng.normal(6.0, size=(100, 2))])
    labels = np.repeat([0, 1], 100)
    assert ideal_joint_error(features, labels, features + 0.1, labels) < 0.02


def test_plots_render_from_a_tiny_run(make_config, tmp_path):
    train(make_config("norm=transnorm", "trainer.iterations=4", "trainer.eval_every=2"), tmp_path / "run")
    plots = load_script("plots")
    for figure in ("convergence", "tsne", "adistance", "alpha"):
        out = tmp_path / f"{figure}.png"
        assert plots.main([figure, str(tmp_path / "run"), "--out", str(out), "--limit", "32"]) == 0
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    with pytest.raises(SystemExit, match="error: no run with evaluations at or below"):
        plots.main(["convergence", str(tmp_path / "empty"), "--out", str(tmp_path / "none.png")])
    train(make_config("norm=bn", "trainer.iterations=2", "trainer.eval_every=2"), tmp_path / "bn")
    with pytest.raises(SystemExit, match=r"no TransNorm layer \(norm bn\): give a run trained with norm=transnorm"):
        plots.main(["alpha", str(tmp_path / "bn"), "--out", str(tmp_path / "none.png")])


# -- what each preset's table holds (issue 16: whole source, the paper's accuracy) -----------------------------------

def test_held_out_and_daft_presets_say_so_in_their_rows():
    heldout = table_labels(compose_config(["experiment=transnorm_table1_heldout"]))
    assert heldout["variant"] == "source held out 0.1" and heldout["selection"] == "source_val"
    assert heldout["metric"] == "target_accuracy_10crop" and heldout["experiment"] == "transnorm_table1_heldout"
    daft = table_labels(compose_config(["experiment=daft_sweep_features", "optim.optimizer.lr=0.0003"]))
    assert daft["variant"] == "lr=0.0003, head_lr=1.0, source held out 0.1" and daft["selection"] == "source_val"


def test_best_selects_by_the_reported_metric():
    records = [{"step": 1, "target_accuracy": 80.0, "target_accuracy_10crop": 83.0},
               {"step": 2, "target_accuracy": 81.0, "target_accuracy_10crop": 82.0}]
    run = Run("r", {"method_label": "dann", "norm_label": "bn", "variant": "", "task_label": "A->W", "seed": 0},
              records, "done")
    assert runs_frame([run], "best", "target_accuracy").accuracy.item() == 81.0
    assert runs_frame([run], "best", "target_accuracy_10crop").accuracy.item() == 83.0  # step 1, not step 2's 82


def test_runs_trained_differently_never_share_a_cell():
    def run(variant: str, seed: int, accuracy: float) -> Run:
        labels = {"method_label": "cdan_e", "norm_label": "transnorm", "variant": variant, "task_label": "A->W",
                  "seed": seed, "metric": "target_accuracy", "selection": "best"}
        return Run(f"{variant}{seed}", labels, [{"step": 1, "target_accuracy": accuracy}], "done")

    runs = [run("", 0, 90.0), run("", 1, 92.0), run("source held out 0.1", 0, 80.0)]
    paper = read_paper("transnorm_table1")
    table = build_table(runs_frame(runs, "best"), paper, "best", "target_accuracy")
    whole = table.cell_text(("cdan_e", "transnorm", ""), "A->W")
    held = table.cell_text(("cdan_e", "transnorm", "source held out 0.1"), "A->W")
    assert whole.startswith("91.0 ± 1.4 (n=2) [paper 95.7") and held == "80.0 (n=1)"
    assert "cdan_e / transnorm (source held out 0.1)" in table.markdown()


def test_collect_uses_the_recorded_metric_and_refuses_to_mix(tmp_path):
    labels = {"experiment": "", "method_label": "dann", "norm_label": "bn", "variant": "", "task_label": "A->W",
              "seed": 0, "selection": "best"}
    ten_crop = Run("a", {**labels, "metric": "target_accuracy_10crop"}, [], "done")
    single = Run("b", {**labels, "metric": "target_accuracy"}, [], "done")
    assert recorded_choice([ten_crop], "metric") == "target_accuracy_10crop"
    with pytest.raises(ValueError, match="different metrics .* choose one with --metric"):
        recorded_choice([ten_crop, single], "metric")
    for name, metric in (("ten_crop", "target_accuracy_10crop"), ("single", "target_accuracy")):
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("seed: 0\n")
        (folder / "labels.json").write_text(json.dumps({**labels, "metric": metric}))
        (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "target_accuracy": 70.0,
                                                          "target_accuracy_10crop": 72.0}) + "\n")
        (folder / "done").write_text("")
    collect = load_script("collect")
    assert collect.main([str(tmp_path / "runs" / "ten_crop"), "--out", str(tmp_path), "--name", "t"]) == 0
    assert "72.0 (n=1)" in (tmp_path / "t-best.md").read_text()
    assert collect.main([str(tmp_path / "runs"), "--out", str(tmp_path), "--name", "t"]) == 2
    assert collect.main([str(tmp_path / "runs"), "--metric", "target_accuracy", "--out", str(tmp_path), "--name",
                         "t"]) == 0


#: the presets the reference file gives settings for (the held-out and DAFT sweeps are variants of their own)
REFERENCE_PRESETS = sorted({recipe.split("=", 1)[1] for recipe in reference_settings().recipe
                            if recipe.startswith("experiment=")})


@pytest.mark.parametrize("preset", REFERENCE_PRESETS)
def test_a_paper_preset_trains_each_row_as_the_paper_and_reports_what_its_table_reports(preset):
    """A preset's runs are its paper's rows (no variant label), the whole source, and record the reference file's
    metric and selection (``normda/reporting/published/protocols.csv``) as their labels."""
    settings = reference_settings()
    reference = settings[settings.recipe == f"experiment={preset}"]
    expected = dict(zip(reference.key, reference.value))
    labels = table_labels(compose_config([f"experiment={preset}"]))
    assert (labels["variant"], labels["metric"], labels["selection"]) == (
        "", expected["report.metric"], expected["report.selection"])


def test_cpu_office31_gives_source_only_and_cdan_one_optimizer():
    """At 120 iterations TLlib's ERM step (lr 0.001) would leave source only near chance, so the preset trains both
    methods with CDAN's optimizer and the comparison measures the transfer loss, not a 10x larger step."""
    optimizers = {method: compose_config(["experiment=cpu_office31", f"method={method}"]).optim
                  for method in ("source_only", "cdan")}
    assert {(o.optimizer.lr, o.optimizer.weight_decay, o.lr_schedule.gamma) for o in optimizers.values()} == {
        (0.01, 1e-3, 0.001)}


# -- a cell never mixes what differs (runs pool as seeds only when their configs differ in the seed alone) -----------

def recorded_run(folder, overrides: list[str], accuracy: float) -> None:
    """A finished run folder as train.py writes it (config.yaml and labels.json of the composed config), with one
    evaluation of ``accuracy``: what collect.py reads, without the training."""
    cfg = compose_config(["logger=none", *overrides])
    run = RunFolder(folder)
    run.write_config(cfg)
    run.write_labels(table_labels(cfg))
    run.append_metrics({"step": 1, "target_accuracy": accuracy})
    run.mark_done()


#: (a setting, two values): each pair of runs differs in that setting only, besides the seed
TABLE_SPLITS = [("experiment", "experiment=smoke", None), ("protocol", "protocol=tllib", "protocol=transnorm"),
                ("dataset", "data=digits_embedded", "data=synthetic"), ("backbone", "backbone=dtn", "backbone=lenet")]


@pytest.mark.parametrize("key,first,second", TABLE_SPLITS, ids=[case[0] for case in TABLE_SPLITS])
def test_runs_of_another_preset_protocol_dataset_or_network_get_a_table_of_their_own(tmp_path, key, first, second):
    for index, overrides in enumerate((first, second)):
        for seed in (0, 1):
            recorded_run(tmp_path / f"{index}-{seed}", [*([overrides] if overrides else []), f"seed={seed}",
                                                        "report.metric=target_accuracy"], 50.0 + 10 * index + seed)
    tables = collect_tables(find_runs([tmp_path]))
    assert len(tables) == 2 and len({table.scope[key] for table in tables}) == 2
    for table in tables:
        [row] = table.rows
        mean = 50.5 if table.cells[table.cells.task_label != "Avg"]["mean"].max() < 55 else 60.5
        assert table.cell_text(row, table.tasks[0]) == f"{mean:.1f} ± 0.7 (n=2)"


def test_a_swept_setting_outside_the_labels_makes_rows_not_seeds(tmp_path):
    """The issue's case: two learning rates x two seeds pooled as four seeds ("49.0 ± 12.2 (n=4)")."""
    for lr, seed, accuracy in ((0.01, 0, 60.0), (0.01, 1, 62.0), (0.0001, 0, 30.0), (0.0001, 1, 34.0)):
        recorded_run(tmp_path / f"{lr}-{seed}", [f"optim.optimizer.lr={lr}", f"seed={seed}"], accuracy)
    recorded_run(tmp_path / "trade_off", ["optim.optimizer.lr=0.01", "method.trade_off=0.5"], 70.0)
    [table] = collect_tables(find_runs([tmp_path]))
    cells = {row_text(row): table.cell_text(row, "M->U") for row in table.rows}
    assert cells == {"cdan_e / transnorm (trade_off=1.0, lr=0.0001)": "32.0 ± 2.8 (n=2)",
                     "cdan_e / transnorm (trade_off=1.0, lr=0.01)": "61.0 ± 1.4 (n=2)",
                     "cdan_e / transnorm (trade_off=0.5, lr=0.01)": "70.0 (n=1)"}


def test_runs_that_differ_in_where_they_live_pool_as_seeds(tmp_path):
    recorded_run(tmp_path / "a", ["seed=0", "trainer.output_dir=/somewhere", "data.num_workers=0"], 60.0)
    recorded_run(tmp_path / "b", ["seed=1", "trainer.output_dir=/elsewhere", "data.num_workers=4"], 62.0)
    [table] = collect_tables(find_runs([tmp_path]))
    assert [table.cell_text(row, "M->U") for row in table.rows] == ["61.0 ± 1.4 (n=2)"]


def test_a_failed_run_is_listed_under_the_table_never_a_column_of_its_own(tmp_path):
    """A typo (data.source=Z) leaves a failed folder; the real table keeps its columns and its average."""
    for seed in (0, 1):
        recorded_run(tmp_path / f"good-{seed}", [f"seed={seed}"], 60.0 + seed)
    cfg = compose_config(["logger=none", "data.source=Z", "data.target=U"])
    typo = RunFolder(tmp_path / "typo")
    typo.write_config(cfg)
    typo.write_labels(table_labels(cfg))
    typo.mark_failed("data=digits_embedded has no domain 'Z' (data.source): choose one of M (mnist), U (usps)")
    [table] = collect_tables(find_runs([tmp_path]))
    assert table.tasks == ["M->U", "Avg"] and [row_text(row) for row in table.rows] == ["cdan_e / transnorm"]
    assert table.cell_text(table.rows[0], "Avg") == "60.5 (n=2)"
    assert "Z->U / seed 0: failed (data=digits_embedded has no domain 'Z'" in table.markdown()


def test_a_validator_selection_can_fall_back_on_the_source_only_run():
    """Ericsson et al.'s pool: an adaptation that destroyed accuracy can score worse than source only by the
    validator, and then the source-only checkpoint of the same task and seed is the one reported."""
    def run(name, method, seed, scores, accuracies):
        labels = {"method_label": method, "norm_label": "bn", "variant": "", "task_label": "M->U", "seed": seed}
        return Run(name, labels, [{"step": 100 * (i + 1), "validator/im": score, "target_accuracy": accuracy}
                                  for i, (score, accuracy) in enumerate(zip(scores, accuracies))], "done")

    runs = [run("dann0", "dann", 0, [1.0, 2.0], [50.0, 40.0]), run("dann1", "dann", 1, [1.0, 2.0], [50.0, 60.0]),
            run("src0", "source_only", 0, [3.0], [70.0])]  # seed 1 has no source-only run: its own evaluations only
    own = runs_frame(runs, "im").set_index("run")
    pooled = runs_frame(runs, "im", pool_source_only=True).set_index("run")
    assert own.accuracy.to_dict() == {"dann0": 40.0, "dann1": 60.0, "src0": 70.0}
    assert pooled.accuracy.to_dict() == {"dann0": 70.0, "dann1": 60.0, "src0": 70.0}
    assert pooled.source_only_chosen.to_dict() == {"dann0": True, "dann1": False, "src0": False}
    table = build_table(pooled.reset_index(), read_paper(""), "im", "target_accuracy", pool_source_only=True)
    assert "the source-only model was chosen for 1 of 2 adapted runs" in table.caption()
    assert table.file_name("digits", False) == "digits-im-with-source-only"
    assert "label-free validator im scores best" in table.caption()
    with pytest.raises(ValueError, match="pooling the source-only runs applies to a selection by a label-free"):
        collect_tables(runs, "best", pool_source_only=True)
