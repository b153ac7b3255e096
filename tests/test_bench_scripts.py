"""The benchmark scripts run end to end and write their report (a tiny setting; no timing is asserted)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_norms_writes_a_ratio_for_every_norm_including_the_plain_transnorm(tmp_path):
    out = tmp_path / "norms.json"
    norms = ["transnorm", "dsbn", "autodial", "transnorm[plain ops]"]
    load_script("bench_norms").main(["--norms", *norms, "--backbones", "dtn", "--repeats", "2", "--warmup", "0",
                                     "--batch", "4", "--device", "cpu", "--out", str(out)])
    report = json.loads(out.read_text())
    results = report["backbones"]["dtn"]["norms"]
    assert list(results) == ["bn", *norms]
    assert results["bn"]["ratio_to_bn"] == 1.0
    assert all(len(r["step_s"]) == 2 and r["ratio_to_bn"] > 0 for r in results.values())
    assert out.with_suffix(".md").exists()
