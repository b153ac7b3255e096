"""Every option of every config group composes, and train.py's command line (--help, --cfg, -m, errors) works."""
from __future__ import annotations

import dataclasses
import re

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from conftest import CONF, compose_config, run_in_process
from normda.backbones import BACKBONES
from normda.dann_cdan import METHODS
from normda.datasets import DATASETS
from normda.errors import ConfigError
from normda.normalization import NORMALIZATIONS
from normda.registry import node_settings
from normda.schema import check_config

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
            ("data", "image_list"): [*CUSTOM, "data.classes=[cat,dog]"],
            ("experiment", "daft_sweep_head"): ["optim.optimizer.lr=0.001"]}  # the rate its step 1 chose


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
    check_config(cfg)  # and every shipped option passes its own schema


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
    """What a protocol sets for a method and a dataset passes the schema and the rules between keys."""
    check_config(compose_config([f"protocol={protocol}", f"method={method}", f"data={data}",
                                 *REQUIRED.get(("data", data), [])]))


def test_specializations_name_existing_options():
    for group, other in (("protocol_method", "method"), ("protocol_data", "data")):
        for name in options(group):
            protocol, _, choice = name.partition("_")
            assert protocol in options("protocol") and choice in options(other), name


#: backbone options that choose one of the others by the task instead of naming code of their own
BACKBONE_CHOOSERS = {"tllib_digits"}


def test_config_files_mirror_registered_names():
    for group, registry in (("norm", NORMALIZATIONS), ("data", DATASETS), ("backbone", BACKBONES)):
        names = {p.stem for p in (CONF / group).glob("*.yaml")} - (BACKBONE_CHOOSERS if group == "backbone" else set())
        assert names == set(registry.names()), group
    assert set(METHODS.names()) <= {p.stem for p in (CONF / "method").glob("*.yaml")}


#: (the command, the network it trains, its input size, its channels): each benchmark composes its papers' network
#: (TLlib's scripts, protocols.md 1.7; the official TransNorm code's ResNet-50) unless the command picks one
PAPERS_NETWORKS = [
    (["norm=transnorm", "method=cdan", "data=office31", "data.source=A", "data.target=W"], "resnet50", 224, 3),
    (["data=officehome"], "resnet50", 224, 3),
    (["data=imageclef"], "resnet50", 224, 3),
    (["data=visda2017"], "resnet101", 224, 3),
    (["experiment=transnorm_table4_visda"], "resnet50", 224, 3),
    (["data=digits"], "lenet", 28, 1),
    (["data=digits", "data.source=U", "data.target=M"], "lenet", 28, 1),
    (["data=digits", "data.source=S", "data.target=M"], "dtn", 32, 3),
    (["experiment=transnorm_table4_digits"], "dtn", 32, 3),
    (["data=folders", *CUSTOM], "resnet50", 224, 3),
    (["data=image_list", *CUSTOM, "data.classes=[cat,dog]"], "resnet50", 224, 3),
    ([], "dtn", 32, 3),  # the embedded default task
    (["data=office31", "backbone=efficientnet_lite0"], "efficientnet_lite0", 224, 3),  # the command's choice wins
    (["data=digits", "data.source=S", "data.target=M", "backbone=lenet"], "lenet", 28, 1),
    (["data=folders", *CUSTOM, "backbone=dtn"], "dtn", 32, 3),
    (["experiment=cpu_office31", "backbone=resnet50"], "resnet50", 224, 3),  # and wins over a preset's
]


@pytest.mark.parametrize("overrides,network,size,channels", PAPERS_NETWORKS,
                         ids=[" ".join(case[0]) or "default" for case in PAPERS_NETWORKS])
def test_each_benchmark_composes_its_papers_network(overrides, network, size, channels):
    cfg = compose_config(overrides)
    assert (cfg.backbone.name, cfg.data.image_size, cfg.data.channels) == (network, size, channels)
    pretrained = network in ("resnet50", "resnet101", "efficientnet_lite0")
    assert cfg.backbone.pretrained is pretrained
    if "transform" in cfg.data:  # the image-file datasets: crops and ImageNet statistics for a pretrained network
        assert cfg.data.transform == ("imagenet" if pretrained else "digits")


def test_the_digits_network_is_recorded_by_its_own_name():
    """The task-dependent choice is resolved before the run records its config: config.yaml, the run name and the
    labels say ``dtn``, with DTN's own values, and none of the choice's lookup tables."""
    from normda.config_identity import recorded_config, run_name
    from normda.labels import table_labels

    cfg = compose_config(["data=digits", "data.source=S", "data.target=M"])
    recorded = recorded_config(cfg)["backbone"]
    assert recorded == {**OmegaConf.to_container(compose_config(["backbone=dtn"]).backbone), "name": "dtn"}
    assert "-dtn-seed0-" in run_name(cfg) and table_labels(cfg)["backbone"] == "dtn"


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


@pytest.mark.parametrize("group,registry", [("data", DATASETS), ("backbone", BACKBONES)])
def test_each_data_and_backbone_node_holds_exactly_its_schemas_keys(group, registry):
    """A key its YAML sets and the schema lacks would be refused; a key the schema declares and no YAML sets would be a
    setting nobody can see: the schema and the files list the same keys."""
    for option in options(group):
        if group == "backbone" and option == "tllib_digits":
            continue  # a chooser: it takes its keys from the network it picks
        node = compose_config([f"{group}={option}", *REQUIRED.get((group, option), [])])[group]
        fields = dataclasses.fields(registry.schema(node.name))
        required = {field.name for field in fields if field.default is dataclasses.MISSING}
        assert required <= set(node_settings(node)) <= {field.name for field in fields}, option


@pytest.mark.parametrize("key,value,refused", [
    ("trainer.iterations", "0", "trainer.iterations=0: give a value of at least 1"),
    ("data.batch_size", "1.5", "data.batch_size=1.5: give a whole number"),
    ("data.source_val_fraction", "1", "data.source_val_fraction=1: give a value below 1"),
    ("data.mean", "[a]", "data.mean=['a']: give a list, each a number"),
    ("backbone.lr_mult", "-0.1", "backbone.lr_mult=-0.1: give a value of at least 0"),
    ("optim.lr_mult.head", "x", "optim.lr_mult.head='x': give a number"),
    ("+optim.lr_mult.encoder", "1", "optim.lr_mult has no part encoder"),
    ("norm.exclude", "[1]", "norm.exclude=[1]: give a list, each a string"),
])
def test_the_schema_refuses_what_its_types_and_ranges_exclude(key, value, refused):
    with pytest.raises(ConfigError, match=re.escape(refused)):
        check_config(compose_config([f"{key}={value}"]))
