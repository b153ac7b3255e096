"""Every option of every config group composes, and train.py's command line (--help, --cfg, -m, errors) works."""
from __future__ import annotations

import dataclasses

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from conftest import CONF, compose_config, run_in_process
from normda.backbones import BACKBONES
from normda.dann_cdan import METHODS
from normda.datasets import DATASETS
from normda.datasets.base import COMMON_SETTINGS
from normda.normalization import NORMALIZATIONS
from normda.trainer import TrainerConfig

#: groups chosen by interpolation of the protocol's and the method's or dataset's choices, never on the command line
SPECIALIZATIONS = ("protocol_method", "protocol_data")
#: groups that are not in the defaults list: added with +group=option
ADDED = ("transnorm_ablation",)
GROUPS = sorted(path.name for path in CONF.iterdir()
                if path.is_dir() and path.name not in ("local", "hydra", *SPECIALIZATIONS))
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]
#: options that need a value no default can give
#: what an option needs from the command (its ``???`` values)
CUSTOM = ["data.root=/data/mine", "data.source=photos", "data.target=sketches"]
REQUIRED = {("backbone", "timm"): ["backbone.model=resnet18"], ("data", "folders"): CUSTOM,
            ("data", "image_list"): [*CUSTOM, "data.classes=[cat,dog]"]}


def test_every_group_is_present():
    assert GROUPS == ["backbone", "data", "experiment", "logger", "method", "norm", "optim", "protocol",
                      "transnorm_ablation"]


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_resolves(group, option, tmp_path):
    prefix = "+" if group in ADDED else ""
    cfg = compose_config([f"{prefix}{group}={option}", *REQUIRED.get((group, option), [])], hydra_node=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["hydra"]["run"]["dir"].startswith("outputs/")
    registries = {"backbone": BACKBONES, "norm": NORMALIZATIONS, "method": METHODS, "data": DATASETS}
    if group in registries:
        assert resolved[group]["name"] in registries[group].names()  # each YAML names code that exists


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def combinations() -> list[tuple[str, str, str]]:
    """Each protocol with every method and every dataset (in turn, not every pair), and every protocol's
    specialisation for a method or a dataset (conf/protocol_method, conf/protocol_data)."""
    methods, data = options("method"), options("data")
    chosen = {(protocol, methods[i % len(methods)], data[(i + shift) % len(data)])
              for shift, protocol in enumerate(options("protocol")) for i in range(max(len(methods), len(data)))}
    for group, other in (("protocol_method", 1), ("protocol_data", 2)):
        for name in options(group):
            protocol, _, choice = name.partition("_")
            chosen.add((protocol, choice, data[0]) if other == 1 else (protocol, methods[0], choice))
    return sorted(chosen)


@pytest.mark.parametrize("protocol,method,data", combinations(), ids="-".join)
def test_protocols_methods_and_datasets_compose(protocol, method, data):
    cfg = compose_config([f"protocol={protocol}", f"method={method}", f"data={data}",
                          *REQUIRED.get(("data", data), [])])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert (resolved["protocol"], resolved["method"]["name"], resolved["data"]["name"]) == (
        protocol, method.replace("cdan_e", "cdan"), data)


def test_specializations_name_existing_options():
    for group, other in (("protocol_method", "method"), ("protocol_data", "data")):
        for name in options(group):
            protocol, _, choice = name.partition("_")
            assert protocol in options("protocol") and choice in options(other), name


def test_config_files_mirror_registered_names():
    for group, registry in (("norm", NORMALIZATIONS), ("data", DATASETS), ("backbone", BACKBONES)):
        assert {p.stem for p in (CONF / group).glob("*.yaml")} == set(registry.names()), group
    assert set(METHODS.names()) <= {p.stem for p in (CONF / "method").glob("*.yaml")}


def test_help_lists_the_groups(tmp_path):
    result = run_in_process("--help", cwd=tmp_path)
    assert result.returncode == 0
    for group in ("backbone", "norm", "method", "data", "protocol", "logger"):
        assert f"{group}:" in result.stdout
    assert "transnorm" in result.stdout and "python train.py" in result.stdout


def test_cfg_job_prints_the_composed_config(tmp_path):
    result = run_in_process("--cfg", "job", "norm=bn", "method=dann", cwd=tmp_path)
    assert result.returncode == 0
    cfg = OmegaConf.create(result.stdout)
    assert cfg.norm.name == "bn" and cfg.method.name == "dann"


def test_default_command_trains_and_prints_target_accuracy(tmp_path):
    result = run_in_process("logger=none", "trainer.iterations=6", "trainer.eval_every=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "target accuracy on usps (2007 test images)" in result.stdout
    [run_dir] = (tmp_path / "outputs").iterdir()
    assert run_dir.name.startswith("digits_embedded-M2U-cdan-transnorm-dtn-seed0-")
    assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt", "done", "train.log"} <= {
        p.name for p in run_dir.iterdir()}
    again = run_in_process("logger=none", "trainer.iterations=6", "trainer.eval_every=3", cwd=tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout + again.stderr


def test_the_schemas_mirror_the_config_nodes_they_check():
    """The trainer node and TrainerConfig, and every data config and the keys every dataset must have, list the same
    keys: the schema is the one statement of each key's type."""
    cfg = compose_config([])
    assert set(cfg.trainer) == {field.name for field in dataclasses.fields(TrainerConfig)}
    for data in options("data"):
        assert set(COMMON_SETTINGS) <= set(compose_config([f"data={data}"]).data), data
