"""The catalogue of user mistakes (README, Troubleshooting): each one ends ``train.py`` with status 2 and one line,
``error: <the problem>: <the fix>``, and no traceback. The catalogue runs ``train.py``'s entry point in this process;
one test runs it as a program, to check the contract where it matters (exit status, stderr) end to end."""
from __future__ import annotations

import os

import pytest

from conftest import run_cli, run_in_process

#: (what the user did wrong, the command line, a part of the message)
CATALOGUE = [
    ("unknown norm", ["norm=groupnorm"], "unknown norm=groupnorm: choose one of adabn, autodial"),
    ("unknown method, close to one", ["method=dan"], "unknown method=dan (did you mean dann?)"),
    ("a method in capitals", ["method=CDAN"], "unknown method=CDAN (did you mean cdan?)"),
    ("unknown dataset", ["data=office32"], "unknown data=office32 (did you mean office31?)"),
    ("unknown backbone", ["backbone=resnet5"], "unknown backbone=resnet5 (did you mean resnet50?)"),
    ("unknown logger", ["logger=tensorboard"], "unknown logger=tensorboard"),
    ("unknown option in a sweep", ["-m", "norm=bn,trasnorm"], "unknown norm=trasnorm (did you mean transnorm?)"),
    ("typo in a key", ["trainer.iteratons=5"], "unknown key trainer.iteratons (did you mean trainer.iterations?)"),
    ("typo in a method key", ["method.trade_of=2"], "unknown key method.trade_of of method=cdan (did you mean method.trade_off?)"),
    ("a key that one swept option lacks", ["-m", "norm=transnorm,bn", "norm.alpha=one"],
     "unknown key norm.alpha of norm=bn"),
    ("unparsable override", ["norm.exclude=["], "cannot read 'norm.exclude=[' as key=value"),
    ("domain letter that does not exist", ["data.source=Z"],
     "data=digits_embedded has no domain 'Z' (data.source): choose one of M (mnist), U (usps)"),
    ("source equal to the target", ["data.target=M"], "data.source and data.target are both 'M'"),
    ("missing dataset folder", ["data=office31", "data.root=/nonexistent/office31"],
     "Office-31 folder /nonexistent/office31 does not exist"),
    ("missing torchvision dataset", ["data=digits", "data.root=/nonexistent"], "MNIST is not in /nonexistent"),
    ("output folder that cannot be written", ["trainer.output_dir=/etc/hostname/runs"],
     "cannot create the run folder /etc/hostname/runs/"),
    ("weights file that does not exist", ["backbone=resnet50", "backbone.weights=/no/such.pth"],
     "backbone.weights=/no/such.pth does not exist"),
    ("required value not given", ["backbone=timm"], "backbone.model must be set: add backbone.model=<value>"),
    ("required value inside another's interpolation", ["protocol=daft", "optim.optimizer.lr=???"],
     "optim.optimizer.lr must be set: add optim.optimizer.lr=<value>"),
    ("DAFT's head sweep without the feature rate step 1 chose", ["experiment=daft_sweep_head", "hydra.mode=RUN"],
     "optim.optimizer.lr=None: give a positive learning rate"),
    ("a negative head rate under DAFT", ["protocol=daft", "optim.head_lr=-1"],
     "optim.head_lr=-1: give a value of at least 0"),
    ("unknown resize filter", ["data.interpolation=nearest"],
     "data.interpolation='nearest': give one of bilinear, bicubic"),
    ("unknown TLlib resizing", ["data=office31", "data.root=/nonexistent", "data.train_resizing=centre"],
     "data.train_resizing='centre': give one of default, cen.crop, ran.crop, res."),
    ("unknown report metric", ["report.metric=accuracy"], "report.metric='accuracy' (did you mean target_accuracy?): give one of target_accuracy"),
    ("unknown timm model", ["backbone=timm", "backbone.model=resnet_5O"], "timm has no model 'resnet_5O'"),
    ("image size the backbone is not built for", ["backbone=lenet", "data.image_size=32"],
     "backbone=lenet is built for 28px images but data.image_size=32"),
    ("batch larger than a domain", ["data.batch_size=5000"], "fewer than data.batch_size=5000"),
    ("batch of zero", ["data.batch_size=0"], "data.batch_size=0: give a value of at least 1"),
    ("batch too small for BatchNorm", ["data.batch_size=1", "method=source_only", "norm=bn"],
     "a BatchNorm layer got a single value per channel"),
    ("batch too small for a domain-specific norm", ["norm=dsbn", "data.batch_size=1"],
     "DomainSpecificBatchNorm at backbone.14 got 1 value per channel"),
    ("norm that cannot replace a BatchNorm1d", ["norm=in", "norm.exclude=[]"],
     "norm=in cannot replace backbone.14 (BatchNorm1d)"),
    ("feature maps too small for InstanceNorm",
     ["norm=in", "backbone=resnet50", "backbone.pretrained=false", "data.image_size=32"],
     "InstanceNorm at backbone.layer4.0.bn2 got input of shape"),
    ("groups that do not divide the channels", ["norm=gn", "norm.groups=7"],
     "norm=gn cannot split the 64 channels of backbone.1 into 7 equal groups"),
    ("BGN groups that do not divide", ["norm=bgn", "norm.groups=7"], "BGN at backbone.1 cannot split its 16384"),
    ("unknown value of a norm option", ["norm=transnorm", "norm.distance=l1"],
     "norm.distance='l1': give one of normalized_mean, mean, wasserstein"),
    ("a norm setting of the wrong type", ["norm=gn", "norm.groups=many"], "norm.groups='many': give a whole number"),
    ("10-crop on a dataset without image files", ["trainer.ten_crop=true"],
     "trainer.ten_crop=true needs a dataset of image files"),
    ("CUDA asked for on a machine without it", ["trainer.device=cuda"], "no CUDA device is available"),
    ("negative learning rate", ["optim.optimizer.lr=-1"], "optim.optimizer.lr=-1: give a positive learning rate"),
    ("code named in a config", ["optim.optimizer._target_=os.system"],
     "optim.optimizer._target_=os.system is not an optimizer of torch.optim"),
    ("seed that is not a number", ["seed=abc"], "seed='abc': give a whole number"),
    ("a negative seed", ["seed=-1"], "seed=-1: give a value of at least 0"),
    ("a device name torch does not know", ["trainer.device=gpu"],
     "trainer.device=gpu is not a device: give auto, cpu, cuda or cuda:<index>"),
    ("a text file as weights", ["backbone=resnet50", "backbone.weights=/etc/hostname"],
     "cannot read backbone.weights=/etc/hostname: it is not a PyTorch (.pth, .pt) or .safetensors weights file"),
    ("a domain given as a path", ["data.source=M/"], "data.source='M/' is a path: name the domain alone, data.source=M"),
    ("zero iterations", ["trainer.iterations=0"], "trainer.iterations=0: give a value of at least 1"),
    ("zero epochs", ["protocol=daft", "trainer.epochs=0"], "trainer.epochs=0: give a value of at least 1"),
    ("a bottleneck width that is not a number", ["model.bottleneck_dim=abc"],
     "model.bottleneck_dim='abc': give a whole number or null"),
    ("a dropout of 2", ["model.bottleneck_dropout=2"], "model.bottleneck_dropout=2: give a value below 1"),
    ("a key the model node does not have", ["+model.bottleneck_width=3"], "model has no setting bottleneck_width"),
    ("an iteration count under a protocol that counts epochs", ["norm=daft", "protocol=daft", "trainer.iterations=6"],
     "trainer.iterations=6 cannot apply while trainer.epochs=50 sets the run's length in epochs"),
    ("an evaluation interval under a protocol that counts epochs", ["protocol=daft", "trainer.eval_every=3"],
     "trainer.eval_every=3 cannot apply while trainer.epochs=50"),
    ("a reported metric the run does not measure", ["report.metric=target_accuracy_10crop"],
     "report.metric=target_accuracy_10crop is never measured with trainer.ten_crop=false"),
    ("a label-free selection without held-out source data", ["report.selection=dev"],
     "report.selection=dev needs source data held out of training"),
    ("a selection by a validator the run does not compute", ["report.selection=im"],
     "report.selection=im reads a validator this run does not compute: add it to trainer.validators"),
    ("held-out fraction out of range", ["data.source_val_fraction=1.5"],
     "data.source_val_fraction=1.5: give a value below 1"),
    ("norm.sync that is not a boolean", ["norm.sync=maybe"], "norm.sync='maybe': give true or false"),
    ("norm.sync on a norm without per-domain statistics", ["norm=bn", "norm.sync=true"],
     "unknown key norm.sync of norm=bn"),
    ("unknown autocast dtype", ["trainer.amp=true", "trainer.amp_dtype=float8"],
     "trainer.amp_dtype='float8' (did you mean float16?): give one of auto, bfloat16, float16"),
    ("unknown learning-rate schedule", ["optim.lr_schedule.kind=step"],
     "optim.lr_schedule.kind='step' (did you mean multistep?): give one of inverse_decay, cosine, multistep"),
    ("a word where a width belongs", ["model.bottleneck_dim=abc"], "model.bottleneck_dim='abc': give a whole number"),
    ("a dropout out of range", ["model.bottleneck_dropout=2"], "model.bottleneck_dropout=2: give a value below 1"),
    ("a key the dataset does not have", ["+data.foo=1"], "data=digits_embedded has no setting foo (its settings:"),
    ("channels neither grey nor RGB", ["backbone.in_chans=2"], "backbone.in_chans=2: give one of 1, 3"),
    ("a setting the optimizer does not take", ["+optim.optimizer.betas=[0.9,0.99]"],
     "optim.optimizer=SGD has no setting betas"),
    ("unknown W&B mode", ["logger=wandb", "logger.mode=sometimes"],
     "logger.mode='sometimes': give one of auto, online, offline, disabled"),
    ("unknown selection", ["report.selection=oracle"], "report.selection='oracle': give one of last, best"),
]


def command_line(overrides: list[str]) -> list[str]:
    """Hydra's flags (``-m``) first, then the settings every case shares, then the case's own."""
    flags = [argument for argument in overrides if argument.startswith("-")]
    return [*flags, "logger=none", "trainer.progress=false", *(a for a in overrides if not a.startswith("-"))]


@pytest.mark.parametrize("overrides,expected", [case[1:] for case in CATALOGUE], ids=[case[0] for case in CATALOGUE])
def test_bad_input_is_one_line(tmp_path, overrides, expected):
    result = run_in_process(*command_line(overrides), cwd=tmp_path)
    status, stderr = result.returncode, result.stderr
    assert status == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], stderr
    assert "Traceback" not in stderr and "Error executing job" not in stderr


def test_a_refused_setting_leaves_no_run_folder(tmp_path):
    """The config is checked before Hydra names (and makes) the run folder."""
    result = run_in_process(*command_line(["model.bottleneck_dim=abc"]), cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "outputs").exists(), result.stderr


def test_a_mistake_ends_the_program_with_status_2_one_line_and_no_traceback(tmp_path):
    """The contract as a user sees it, from a real process: a sweep with a mistake in its second job."""
    result = run_cli(*command_line(["-m", "norm=bn,trasnorm"]), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()][-1].startswith("error: ")
    assert sum(line.startswith("error: ") for line in result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_weights_that_cannot_be_downloaded(tmp_path, monkeypatch):
    """Offline (or with the hub unreachable), ImageNet weights end the run with where to put them."""
    for name, value in (("TORCH_HOME", str(tmp_path / "hub")), ("HTTPS_PROXY", "http://127.0.0.1:9"),
                        ("https_proxy", "http://127.0.0.1:9")):
        monkeypatch.setenv(name, value)
    result = run_in_process("logger=none", "backbone=resnet50", "data.image_size=64", cwd=tmp_path)
    status, stderr = result.returncode, result.stderr
    assert status == 2
    assert "error: cannot download the ImageNet weights of resnet50" in stderr
    assert "backbone.weights=" in stderr and "backbone=efficientnet_lite0" in stderr and "Traceback" not in stderr


def test_a_damaged_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"half a file")
    result = run_in_process("logger=none", "data=synthetic", f"hydra.run.dir={run}", cwd=tmp_path)
    status, stderr = result.returncode, result.stderr
    assert status == 2 and "Traceback" not in stderr
    assert f"error: cannot read the checkpoint {run / 'checkpoint.pt'}" in stderr
    assert "delete it to train this run from the start" in stderr


@pytest.mark.slow
def test_a_failing_wandb_login_goes_on_offline(tmp_path):
    result = run_cli("logger=wandb", "logger.mode=online", "data=synthetic", "trainer.progress=false", cwd=tmp_path,
                     env={"WANDB_MODE": "", "WANDB_API_KEY": "a" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9",
                          "WANDB_INIT_TIMEOUT": "3"})
    assert result.returncode == 0, result.stderr
    assert "W&B could not start online" in result.stderr + result.stdout
    [run] = (tmp_path / "outputs").iterdir()
    assert list((run / "wandb").glob("offline-run-*")) and (run / "done").exists()


def test_the_catalogue_is_in_the_readme():
    readme = (os.path.dirname(__file__) + "/../README.md")
    text = open(readme).read()
    for _, _, expected in CATALOGUE:
        assert expected.split(":")[0][:40] in text, expected
