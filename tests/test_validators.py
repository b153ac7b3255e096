"""The label-free validators against hand computations on small arrays (protocols.md section 9)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from normda.validators import VALIDATORS, Outputs


def outputs(logits, features=None, labels=None) -> Outputs:
    logits = torch.as_tensor(logits, dtype=torch.float64)
    return Outputs(features if features is not None else logits, logits, labels)


def score(name: str, **sets: Outputs) -> float:
    return VALIDATORS.get(name)(sets)


def one_hot(classes: list[int], n_classes: int, scale: float = 60.0) -> torch.Tensor:
    """Logits whose softmax is one-hot to within exp(-60)."""
    return scale * torch.nn.functional.one_hot(torch.tensor(classes), n_classes).double()


def test_every_validator_is_registered_with_its_direction():
    assert {"source_val", "entropy", "im", "bnm", "snd", "ami", "v_measure", "rankme"} <= set(VALIDATORS.names())
    assert all(VALIDATORS.get(name).direction == "max" for name in ("entropy", "im", "bnm", "snd", "rankme"))


def test_entropy_of_uniform_predictions_is_minus_log_c():
    assert score("entropy", target=outputs(torch.zeros(6, 4))) == pytest.approx(-math.log(4))
    assert score("entropy", target=outputs(one_hot([0, 1, 2], 4))) == pytest.approx(0.0, abs=1e-20)


def test_information_maximisation_on_uniform_and_one_hot_predictions():
    assert score("im", target=outputs(torch.zeros(8, 4))) == pytest.approx(0.0, abs=1e-12)  # H(mean) = mean H = log 4
    assert score("im", target=outputs(one_hot([0, 1, 2, 3] * 2, 4))) == pytest.approx(math.log(4))  # diverse
    assert score("im", target=outputs(one_hot([2] * 8, 4))) == pytest.approx(0.0, abs=1e-12)  # one class everywhere


def test_bnm_of_a_matrix_of_known_rank():
    # one-hot over 3 of 5 classes, 4 samples each: singular values 2, 2, 2 -> nuclear norm 6, over N = 12
    assert score("bnm", target=outputs(one_hot([0, 1, 2] * 4, 5))) == pytest.approx(6 / 12)
    assert score("bnm", target=outputs(one_hot([0] * 12, 5))) == pytest.approx(math.sqrt(12) / 12)


def test_rankme_of_a_matrix_of_known_rank():
    generator = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(20, 4, generator=generator, dtype=torch.float64))  # orthonormal columns
    v, _ = torch.linalg.qr(torch.randn(8, 4, generator=generator, dtype=torch.float64))
    features = 3.0 * u @ v.T  # rank 4, four singular values of 3
    assert score("rankme", target=Outputs(features, torch.zeros(20, 2))) == pytest.approx(4.0, rel=1e-4)
    skewed = u[:, :2] @ torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ v[:, :2].T
    p = torch.tensor([0.75, 0.25])  # singular values 3 and 1: exp(H(3/4, 1/4))
    assert score("rankme", target=Outputs(skewed, torch.zeros(20, 2))) == pytest.approx(
        math.exp(-(p * p.log()).sum().item()), rel=1e-4)


def test_snd_uses_its_temperature():
    # three unit features at 0, 60 and 90 degrees: cosines 0.5 (0-60), 0 (0-90), cos 30 (60-90)
    angles = torch.tensor([0.0, math.pi / 3, math.pi / 2], dtype=torch.float64)
    features = torch.stack([angles.cos(), angles.sin()], dim=1)
    cosines = {(0, 1): 0.5, (0, 2): 0.0, (1, 2): math.cos(math.pi / 6)}

    def by_hand(temperature: float) -> float:
        total = 0.0
        for i in range(3):
            others = [cosines[tuple(sorted((i, j)))] / temperature for j in range(3) if j != i]
            weights = [math.exp(s - max(others)) for s in others]
            p = [w / sum(weights) for w in weights]
            total -= sum(x * math.log(x) for x in p)
        return total / 3

    target = Outputs(features, torch.zeros(3, 2))
    assert score("snd", target=target) == pytest.approx(by_hand(0.05), rel=1e-4)  # float32 similarities
    assert by_hand(0.05) != pytest.approx(by_hand(1.0), rel=0.1)


def test_ami_and_v_measure_on_a_clustering_built_by_hand():
    generator = torch.Generator().manual_seed(0)
    centres = 10.0 * torch.eye(3, dtype=torch.float64)
    blobs = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    features = centres[blobs] + 0.1 * torch.randn(30, 3, generator=generator, dtype=torch.float64)
    agreeing = Outputs(features, one_hot(((blobs + 1) % 3).tolist(), 3))  # the clusters, under other names
    constant = Outputs(features, one_hot([0] * 30, 3))
    for name in ("ami", "v_measure"):
        assert score(name, target=agreeing) == pytest.approx(1.0)
        assert score(name, target=constant) == pytest.approx(0.0, abs=1e-12)


def test_source_validation_accuracy_by_hand():
    held_out = outputs(one_hot([0, 1, 1, 2], 3), labels=torch.tensor([0, 1, 2, 2]))
    assert score("source_val", source_val=held_out) == pytest.approx(75.0)


def test_dev_control_variate_by_hand():
    from normda.validation import dev_risk

    # w = [1, 2, 3], e = [1, 0, 1]: L = w e = [1, 0, 3]; Cov(L, w) = 1, Var(w) = 1 (ddof 1), eta = -1;
    # risk = mean(L) + eta mean(w) - eta = 4/3 - 2 + 1
    assert dev_risk(np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 1.0])) == pytest.approx(1 / 3)


def test_devn_max_normalisation_by_hand():
    from normda.validation import dev_risk
    from normda.validators.dev import max_normalised

    weights = max_normalised(np.array([1.0, 2.0, 3.0]))  # [1/3, 2/3, 1], shifted to mean 1
    assert weights == pytest.approx([2 / 3, 1.0, 4 / 3])
    # L = [2/3, 0, 4/3]: Cov(L, w) = 1/9 = Var(w), eta = -1: risk = 2/3 - 1 + 1
    assert dev_risk(weights, np.array([1.0, 0.0, 1.0])) == pytest.approx(2 / 3)


@pytest.mark.parametrize("recipe,samples", [("REFERENCE_FIT", 200), ("FAST_FIT", 1500)])
def test_the_mlp_density_ratio_tells_the_domains_apart(recipe, samples):
    """Both fits of the official classifier, each on a set it has steps enough for (two epochs of 32 are too few on
    200 samples: the fast fit is for the thousands of samples an evaluation keeps)."""
    from normda.validators import dev

    generator = torch.Generator().manual_seed(0)
    source = torch.randn(samples * 3 // 5, 4, generator=generator) - 2.0
    target = torch.randn(samples * 2 // 5, 4, generator=generator) + 2.0
    ratios = dev.mlp_density_ratios(source, target, torch.cat([source[:20], target[:20]]),
                                    recipe=getattr(dev, recipe))
    assert ratios[20:].min() > ratios[:20].max()  # every target-like sample weighs more than any source-like one
    assert np.median(ratios[20:]) > 10 * np.median(ratios[:20])


def test_dev_scores_a_model_whose_target_errors_are_like_its_source_errors():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(120, 4, generator=generator)
    labels = torch.randint(0, 3, (120,), generator=generator)
    right = Outputs(features[:40], one_hot(labels[:40].tolist(), 3, 5.0), labels[:40])
    wrong = Outputs(features[:40], one_hot(((labels[:40] + 1) % 3).tolist(), 3, 5.0), labels[:40])
    sets = {"source_train": Outputs(features[40:80], torch.zeros(40, 3)),
            "target": Outputs(features[80:], torch.zeros(40, 3))}
    for name in ("dev", "dev_logistic"):  # devn: the same fit, normalised (test_devn_max_normalisation_by_hand)
        assert VALIDATORS.get(name).direction == "min"
        assert score(name, **sets, source_val=right) < score(name, **sets, source_val=wrong)


def test_a_run_records_the_validators_it_is_asked_for(make_config, tmp_path):
    from normda.experiment import train
    from normda.reporting.tables import find_runs

    train(make_config("trainer.validators=[im,entropy,source_val]", "data.source_val_fraction=0.25",
                      "trainer.iterations=4", "trainer.eval_every=2"), tmp_path / "run")
    [run] = find_runs([tmp_path])
    assert [sorted(key for key in record if key.startswith("validator/")) for record in run.metrics] == [
        ["validator/entropy", "validator/im", "validator/source_val"]] * 2
    # the validator and the trainer's own source-validation evaluation read the same pass
    assert all(record["validator/source_val"] == pytest.approx(record["source_val_accuracy"]) for record in run.metrics)


def test_validator_settings_are_checked_before_the_run(make_config):
    from normda.errors import ConfigError
    from normda.schema import check_config

    with pytest.raises(ConfigError, match=r"unknown trainer.validators=imm \(did you mean im\?\)"):
        check_config(make_config("trainer.validators=[imm]"))
    with pytest.raises(ConfigError, match="trainer.validators has dev, which reads source samples held out of training"):
        check_config(make_config("trainer.validators=[dev]"))


def test_a_held_out_target_part_leaves_adaptation_and_the_test_split_stays(make_config):
    """Digits-like data (a target test split of its own): the held-out part comes out of the target training set
    only; the two parts are disjoint and together the whole set."""
    from normda import datasets

    whole = datasets.build(make_config().data)
    task = datasets.build(make_config("data.target_val_fraction=0.25").data)
    assert (len(task.target_val), len(task.target_train)) == (round(len(whole.target_train) * 0.25),
                                                              len(whole.target_train) - len(task.target_val))
    assert set(task.target_val.indices).isdisjoint(task.target_train.indices)
    assert torch.equal(torch.stack([task.target_test[i][0] for i in range(len(task.target_test))]),
                       torch.stack([whole.target_test[i][0] for i in range(len(whole.target_test))]))
    assert "accuracy on the target test split" in task.notes["target_validation"]


def test_image_files_tested_on_the_target_report_on_the_images_not_held_out(make_config, tmp_path):
    """Office-31-like data (the target test set is the target's own images): the held-out images leave both the
    adaptation and the test set, and are read with the test transform; a separate test folder stays whole."""
    from test_custom_domains import folders_config, make_domains

    from normda import datasets

    root = make_domains(tmp_path / "mine", per_class=4)
    task = datasets.build(folders_config(make_config, root, "backbone=dtn", "data.target_val_fraction=0.25").data)
    held = {path for path, _ in task.target_val.samples}
    assert len(held) == 3 and len(task.target_train.samples) == 9  # of 12 sketches
    assert held.isdisjoint(path for path, _ in task.target_test.samples)
    assert task.target_test.samples == task.target_train.samples
    assert task.target_val.transform is task.target_test.transform
    assert "accuracy on the other target images" in task.notes["target_validation"]
    separate = datasets.build(folders_config(make_config, root, "backbone=dtn", "data.target_val_fraction=0.25",
                                             "data.target_test=photos").data)
    assert len(separate.target_test.samples) == 12 and len(separate.target_val.samples) == 3


def test_the_validators_read_the_held_out_target_part_and_the_test_pass_keeps_nothing(make_config, tmp_path,
                                                                                      monkeypatch):
    import normda.trainer as trainer_module
    from normda.experiment import train

    passes = []
    real_evaluate = trainer_module.evaluate

    def recording(model, loader, *args, keep_features=0, **kwargs):
        passes.append((len(loader.dataset), keep_features))
        return real_evaluate(model, loader, *args, keep_features=keep_features, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate", recording)
    summary = train(make_config("trainer.validators=[im]", "data.target_val_fraction=0.25", "trainer.iterations=2",
                                "trainer.eval_every=2"), tmp_path / "run")
    sizes = summary["dataset_sizes"]
    assert passes == [(sizes["target_test"], 0), (sizes["target_val"], 2000)]
    assert "validator/im" in (tmp_path / "run" / "metrics.jsonl").read_text()


def test_weighted_spearman_by_hand():
    """Dense ranks /4 = [.25, .5, .75, 1] against [.5, .25, .75, 1], weights max(r)^2 = [.25, .25, .5625, 1]: weighted
    means 1.609375/2.0625, covariance 0.059688, variances 0.067264, correlation 0.8874. A swap among the worst
    evaluations costs less than the plain Spearman's 0.8 says; the same swap among the best costs more."""
    from normda.reporting.validator_ranking import weighted_spearman

    assert weighted_spearman(np.array([1, 2, 3, 4]), np.array([2, 1, 3, 4])) == pytest.approx(0.8874, abs=1e-4)
    assert weighted_spearman(np.array([1, 2, 3, 4]), np.array([1, 2, 4, 3])) < 0.8
    assert weighted_spearman(np.array([3.0, 1.0, 2.0]), np.array([30.0, 10.0, 20.0])) == pytest.approx(1.0)
    assert weighted_spearman(np.array([3.0, 1.0, 2.0]), np.array([10.0, 30.0, 20.0])) == pytest.approx(-1.0)


def test_the_ranking_orients_each_validator_and_measures_its_gap_to_the_oracle():
    from normda.reporting.tables import Run
    from normda.reporting.validator_ranking import evaluations, rank

    labels = {"method_label": "dann", "norm_label": "bn", "task_label": "M->U"}
    accuracies = {"a": [50.0, 70.0], "b": [60.0, 90.0]}
    # im rises with the accuracy; the DEV risk falls with it (lower is better); entropy picks the second-best
    scores = {"a": ([1.0, 2.0], [0.9, 0.7], [0.0, 3.0]), "b": ([1.5, 4.0], [0.8, 0.1], [1.0, 2.0])}
    runs = [Run(name, labels, [{"step": step, "target_accuracy": accuracy, "validator/im": im, "validator/dev": dev,
                                "validator/entropy": entropy}
                               for step, accuracy, im, dev, entropy in zip((1, 2), accuracies[name], *scores[name])],
                "done") for name in ("a", "b")]
    table = rank(evaluations(runs)).set_index("validator")
    assert table.weighted_spearman["im"] == pytest.approx(1.0) and table.weighted_spearman["dev"] == pytest.approx(1.0)
    assert (table.selected_accuracy["dev"], table.oracle_accuracy["dev"], table.gap["dev"]) == (90.0, 90.0, 0.0)
    assert (table.selected_run["entropy"], table.selected_accuracy["entropy"], table.gap["entropy"]) == ("a", 70.0,
                                                                                                          -20.0)
    assert list(table.index)[-1] == "entropy"  # best correlation first


def test_rank_validators_reads_a_sweeps_run_folders(make_config, tmp_path):
    from conftest import load_script
    from normda.experiment import train

    for seed in (0, 1):
        train(make_config("trainer.validators=[im,entropy]", f"seed={seed}", "trainer.iterations=4",
                          "trainer.eval_every=2"), tmp_path / "runs" / f"run{seed}")
    script = load_script("rank_validators")
    assert script.main([str(tmp_path / "runs"), "--out", str(tmp_path / "tables"), "--name", "mine"]) == 0
    table = pd.read_csv(tmp_path / "tables" / "mine-validators.csv")
    assert sorted(table.validator) == ["entropy", "im"] and set(table.runs) == {2} and set(table.evaluations) == {4}
    assert (tmp_path / "tables" / "mine-validators.png").stat().st_size > 0
    assert script.main([str(tmp_path / "nothing")]) == 2
