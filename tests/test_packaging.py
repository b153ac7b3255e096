"""normda installs and imports under the one name ``normda``: beside Hugging Face's ``datasets`` (a package most ML
environments hold), ``python train.py`` runs and ``import datasets`` is Hugging Face's; and a wheel works from the
repository and from elsewhere."""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

GENERIC_NAMES = {"datasets", "normalization", "dann_cdan"}


def python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_normda_claims_no_generic_top_level_name(tmp_path):
    """A run's whole import graph lives under normda: no module named datasets, normalization or dann_cdan."""
    result = python("import sys; from normda import experiment, datasets, normalization, dann_cdan, backbones; "
                    "from normda.dann_cdan import METHODS; METHODS.names(); "
                    "print(sorted({name.split('.')[0] for name in sys.modules} & {'datasets', 'normalization', "
                    "'dann_cdan'}))", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_method_lookup_imports_no_reporting_code(tmp_path):
    result = python("import sys; from normda import dann_cdan, normalization; dann_cdan.METHODS.names(); "
                    "normalization.NORMALIZATIONS.names(); print(sorted(name for name in ('pandas', 'scipy', 'sklearn', "
                    "'matplotlib', 'normda.reporting') if name in sys.modules))", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def hugging_face_installed() -> bool:
    try:
        importlib.metadata.distribution("datasets")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.slow  # 16 s: it imports Hugging Face's datasets in fresh interpreters
@pytest.mark.skipif(not hugging_face_installed(),
                    reason="Hugging Face's datasets is not installed (pip install -e '.[dev]' installs it)")
def test_beside_hugging_face_datasets(tmp_path):
    both = python("import datasets; from normda import datasets as ours; print(datasets.load_dataset.__module__, "
                  "datasets.__file__, ours.DATASETS.names())", tmp_path)
    assert both.returncode == 0, both.stderr
    hugging_face_module, hugging_face_file, ours = both.stdout.split(" ", 2)
    assert hugging_face_module == "datasets.load" and "site-packages" in hugging_face_file
    assert ours.startswith("['digits', 'digits_embedded'")
    run = subprocess.run([sys.executable, str(ROOT / "train.py"), "logger=none", "trainer.progress=false",
                          "data=synthetic", f"trainer.output_dir={tmp_path / 'runs'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "target accuracy on shifted (32 test images)" in run.stdout


@pytest.mark.slow
def test_a_wheel_works_from_the_repository_and_from_elsewhere(tmp_path):
    """``pip wheel .`` holds normda/ only (the three folders inside it, the embedded digits too); installed into a
    folder of its own, it runs a training step from elsewhere and from the repository root."""
    source = tmp_path / "source"  # a copy: building leaves build/ beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "normda", "dann_cdan", "normalization", "datasets"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, *([shutil.ignore_patterns("__pycache__")] if copy is shutil.copytree else []))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp_path / "wheel").glob("normda-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names if not name.startswith("normda-")} == {"normda"}
    assert {"normda/datasets/embedded/mnist_usps.npz", "normda/normalization/transnorm.py",
            "normda/dann_cdan/cdan.py", "normda/backbones/digits.py",
            "normda/reporting/published/paper_tables.csv", "normda/reporting/published/tllib_digits.csv"} <= set(names)
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    code = ("from normda import datasets, normalization, dann_cdan; print(datasets.__file__); "
            "from normda.experiment import train; from hydra import compose, initialize_config_dir; "
            "from normda.resolvers import register_resolvers; register_resolvers(); "
            f"initialize_config_dir(config_dir={str(ROOT / 'conf')!r}, version_base='1.3'); "
            "cfg = compose('config', overrides=['logger=none', 'data=synthetic', 'trainer.progress=false', "
            "'trainer.iterations=1', 'trainer.eval_every=1']); import tempfile; run = tempfile.mkdtemp(); "
            "iterations = train(cfg, run)['iterations']; "
            "from normda.reporting.tables import collect_tables, find_runs, read_paper; "
            "[table] = collect_tables(find_runs([run])); "
            "print(len(read_paper('transnorm_table1')), table.cells.seeds.max(), iterations)")
    for cwd in (tmp_path, ROOT):
        result = python(code, cwd, PYTHONPATH=str(target))
        assert result.returncode == 0, (cwd, result.stderr[-2000:])
        # the installed package's published numbers (35 of Table 1) and a table of the run it trained
        assert str(target / "normda" / "datasets") in result.stdout and result.stdout.strip().endswith("35 1 1")


def test_reporting_reads_what_the_package_installs_and_creates_no_folder(tmp_path):
    """The published numbers are package data (no path of the checkout), and reading a run that is not there is an
    error that leaves nothing behind."""
    from normda.errors import DataNotFoundError
    from normda.reporting import tables
    from normda.reporting.analysis import load_trained
    from normda.reporting.tables import PUBLISHED_NUMBERS, read_paper

    assert PUBLISHED_NUMBERS.parent == Path(tables.__file__).parent
    assert len(read_paper("transnorm_table1")) == 35
    with pytest.raises(DataNotFoundError, match="is not a run folder with a checkpoint"):
        load_trained(tmp_path / "no" / "run")
    assert not (tmp_path / "no").exists()


#: what the default run (logger=none) must not import: the libraries of other backbones, datasets and loggers, the
#: reporting stack, and the modules of the options it does not use (the registries read their names from the files)
NOT_IMPORTED = ("timm", "wandb", "torchvision", "pandas", "matplotlib", "sklearn", "normda.backbones.resnet",
                "normda.backbones.timm_model", "normda.datasets.digits", "normda.datasets.office31",
                "normda.normalization.autodial", "normda.dann_cdan.mdd", "normda.reporting.tables")


def test_a_run_imports_only_what_it_uses(tmp_path):
    """The default run with logger=none: timm (and the wandb that timm itself imports) load only for a timm-built
    backbone, torchvision only for its backbones and image files, and no option's module loads unless it is chosen."""
    result = python("import sys; from normda.resolvers import register_resolvers; register_resolvers(); "
                    "from hydra import compose, initialize_config_dir; "
                    f"initialize_config_dir(config_dir={str(ROOT / 'conf')!r}, version_base='1.3'); "
                    "cfg = compose('config', overrides=['logger=none', 'trainer.progress=false', "
                    f"'trainer.iterations=1', 'trainer.eval_every=1', 'trainer.output_dir={tmp_path}']); "
                    "from normda.experiment import train; train(cfg, '" + str(tmp_path / "run") + "'); "
                    f"print(sorted(name for name in {NOT_IMPORTED!r} if name in sys.modules))", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
