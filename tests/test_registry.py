"""The registries: names read from the packages' files without importing them, and the checks of a schema."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Annotated

import pytest

from normda.errors import ConfigError
from normda.registry import AtLeast, Registry, check_settings, registered_in


def test_the_names_a_module_registers_are_read_from_its_source():
    source = '''
@register("first")
class First: ...

register("second", settings=Schema)(build)
other.register(name)(build)         # not a literal name: the module names it at import
register_buffer("running_mean", x)  # another function
'''
    assert registered_in(source) == ["first", "second"]


def test_listing_every_option_imports_none_of_their_modules():
    code = ("import sys\n"
            "from normda.backbones import BACKBONES\nfrom normda.datasets import DATASETS\n"
            "from normda.normalization import NORMALIZATIONS\nfrom normda.dann_cdan import METHODS\n"
            "before = set(sys.modules)\n"
            "names = [r.names() for r in (BACKBONES, DATASETS, NORMALIZATIONS, METHODS)]\n"
            "assert 'resnet50' in names[0] and 'office31' in names[1] and 'autodial' in names[2]\n"
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('normda')))\n"
            "BACKBONES.get('lenet')\n"
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('normda')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed, looked_up = result.stdout.splitlines()
    assert listed == "[]"
    assert looked_up == "['normda.backbones.digits']"  # only the module of the name looked up


def test_a_name_registered_by_two_files_is_refused(tmp_path, monkeypatch):
    package = tmp_path / "twice"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module in ("a", "b"):
        (package / f"{module}.py").write_text('register("same")(object)\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="'same' is registered twice \\(twice.a, b\\)"):
        Registry("thing", "twice", "thing").names()


@dataclass(frozen=True)
class Schema:
    width: Annotated[int, AtLeast(1)]
    label: str | None = None


def test_a_complete_node_has_every_setting_without_a_default():
    check_settings(Schema, {"width": 3}, "node", complete=True)
    with pytest.raises(ConfigError, match="node lacks the setting node.width: add \\+node.width=<value>"):
        check_settings(Schema, {"label": "x"}, "node", complete=True)
    with pytest.raises(ConfigError, match="node has no setting wdth \\(did you mean width\\?\\)"):
        check_settings(Schema, {"width": 3, "wdth": 4}, "node")
