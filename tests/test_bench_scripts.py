"""The benchmark scripts run end to end and write their report (a tiny setting; no timing is asserted)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_script
from normda.reporting.benchmark import median_interval

ROOT = Path(__file__).resolve().parents[1]


def test_bench_norms_writes_a_ratio_for_every_norm_including_the_plain_formulations(tmp_path):
    out = tmp_path / "norms.json"
    norms = ["transnorm", "dsbn", "autodial", "transnorm[plain ops]", "dsbn[plain ops]", "autodial[plain ops]"]
    load_script("bench_norms").main(["--norms", *norms, "--backbones", "dtn", "--repeats", "2", "--warmup", "0",
                                     "--batch", "4", "--device", "cpu", "--out", str(out)])
    report = json.loads(out.read_text())
    results = report["backbones"]["dtn"]["norms"]
    assert list(results) == ["bn", *norms]
    assert results["bn"]["ratio_to_bn"] == 1.0
    assert all(len(r["step_s"]) == 2 and r["ratio_to_bn"] > 0 for r in results.values())
    for result in results.values():  # each ratio is the median of the repetitions' ratios to BN's time
        ratios = sorted(t / b for t, b in zip(result["step_s"], results["bn"]["step_s"]))
        assert result["ratio_to_bn"] == pytest.approx((ratios[0] + ratios[1]) / 2)
    assert out.with_suffix(".md").exists()


def test_median_interval_is_the_binomial_order_statistics_interval():
    # n = 15: P(Binomial(15, 1/2) <= 3) = 576 / 32768 = 0.018 (two tails 0.035 <= 0.05) and P(<= 4) = 0.059, so the
    # interval is the 4th and 12th smallest values (coverage 0.965)
    assert median_interval(list(range(15, 0, -1))) == (4, 12)
    # n = 9: P(<= 1) = 10 / 512 = 0.0195, P(<= 2) = 0.09: the 2nd and 8th
    assert median_interval(list(range(1, 10))) == (2, 8)
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few values for 95%: the whole range
    assert median_interval([7.0]) == (7.0, 7.0)


def test_bench_train_times_the_whole_run_against_as_many_bare_steps(tmp_path):
    out = tmp_path / "train.json"
    load_script("bench_train").main(["--overrides", "data=synthetic", "backbone=lenet", "--iterations", "2",
                                     "--repeats", "2", "--options", "--whole", "4", "--out", str(out)])
    results = json.loads(out.read_text())["results"]
    whole = results["train.py, whole run of 4 (its evaluations)"]
    assert (results["train.py"]["baseline"], whole["baseline"]) == ("bare loop", "bare loop, 4 steps")
    bare = results["bare loop, 4 steps"]["step_s"]
    ratios = sorted(t / b for t, b in zip(whole["step_s"], bare))
    assert whole["ratio"] == pytest.approx((ratios[0] + ratios[1]) / 2)  # the median of the repetitions' ratios
