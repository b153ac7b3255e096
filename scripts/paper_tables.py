"""Build ``normda/reporting/published/paper_tables.csv`` (installed with the package): the numbers the papers report,
labelled the way this framework's runs are.

    python scripts/paper_tables.py ../shared/reference/paper_tables.csv

Each row of the reference file (paper, table, dataset, backbone, method, norm, task, accuracy, note) gains:
``experiment`` (the preset that reproduces it, ``conf/experiment/<name>.yaml``), ``method_label`` and ``norm_label``
(what ``scripts/collect.py`` derives from a run's config) and ``task_label`` (``A->W``, ``avg``). The paper's CAN
(Batch Group Normalization's Table 7) is labelled ``cdan_e``, the method its preset uses instead, with a note.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

OUTPUT = Path(__file__).resolve().parents[1] / "normda" / "reporting" / "published" / "paper_tables.csv"

TABLE4 = {("office31", "resnet50"): "transnorm_table4_mdd", ("office31", "inception_bn"): "transnorm_table4_inception",
          ("digits", "dtn"): "transnorm_table4_digits", ("visda2017", "resnet50"): "transnorm_table4_visda"}
NORMS = {"transnorm[alpha=1]": "transnorm[alpha=one]", "bn+wa": "bn_wa", "gn+wa": "gn_wa", "in+wa": "in_wa",
         "ln+wa": "ln_wa"}


def experiment(row: pd.Series) -> str:
    if row.paper == "transnorm" and str(row.table) == "4":
        return TABLE4[(row.dataset, row.backbone)]
    return {"transnorm": f"transnorm_table{row.table}", "weightalign": "weightalign_table6",
            "bgn": "bgn_table7"}[row.paper]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", type=Path)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    table = pd.read_csv(args.reference, dtype={"table": str}, keep_default_na=False)
    table["experiment"] = table.apply(experiment, axis=1)
    table["method_label"] = table["method"].replace({"can": "cdan_e"})
    table.loc[table["method"] == "can", "note"] = "the paper's CAN; its preset runs CDAN+E instead"
    table["norm_label"] = table["norm"].replace(NORMS)
    table["task_label"] = table["task"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.output, index=False)
    print(f"wrote {len(table)} rows to {args.output}")


if __name__ == "__main__":
    main()
