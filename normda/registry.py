"""Registries by name, and the one place where an option's settings are checked.

Every axis of a run (normalization, method, dataset, backbone) keeps one ``Registry`` in its package's ``base.py``. A
module registers its entry with the package's ``@register("name")`` decorator. The registry knows its names without
importing anything (it reads the ``register("...")`` calls in its package's files, :func:`registered_in`) and imports
only the module of a name that a run looks up, so a run never imports the backbones, datasets and libraries it does
not use; adding an entry stays one new file (plus its YAML) and nothing else.

An option's settings are the keyword arguments of its constructor, and their types are its annotations:
``Literal["adaptive", "one", "none"]`` names the allowed values, ``bool``, ``int`` and ``float`` the types,
``Annotated[int, AtLeast(1)]`` a lower bound. :meth:`Registry.build` checks a config node against them (an unknown
key, a value outside the ``Literal``, a string where a number belongs) and raises one :class:`ConfigError` naming the
key and the fix, so no option validates its settings by hand.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Callable, Generic, Literal, Mapping, Sequence, TypeVar

from normda.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class AtLeast:
    """``Annotated[int, AtLeast(1)]``: the smallest value a setting may take."""

    minimum: float


@dataclass(frozen=True)
class Below:
    """``Annotated[float, Below(1)]``: a value a setting must stay under."""

    limit: float


def closest(word: str, choices: list[str]) -> str | None:
    """The choice closest to ``word`` in spelling, if any is close (letter case aside: ``CDAN`` finds ``cdan``)."""
    by_lower = {str(choice).lower(): str(choice) for choice in choices}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def suggestion(word: str, choices: list[str]) -> str:
    """`` (did you mean X?)`` for the choice closest to ``word``, or nothing."""
    close = closest(word, choices)
    return f" (did you mean {close}?)" if close else ""


def _fits(value: Any, kind: Any) -> bool:
    if kind is Any or kind is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(kind)
    if origin is Annotated:
        return _fits(value, typing.get_args(kind)[0])
    if origin is Literal:
        return value in typing.get_args(kind)
    if origin in (typing.Union, UnionType):
        return any(_fits(value, option) for option in typing.get_args(kind))
    if kind is NoneType or kind is None:
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)

    if origin in (list, tuple) or kind in (list, tuple):
        items = typing.get_args(kind)
        return (isinstance(value, Sequence) and not isinstance(value, str)
                and (origin is tuple or not items or all(_fits(item, items[0]) for item in value)))
    if origin is dict or kind is dict:
        items = typing.get_args(kind)
        return isinstance(value, Mapping) and (not items or all(_fits(item, items[1]) for item in value.values()))
    return True


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is Annotated:
        return _describe(typing.get_args(kind)[0])
    if origin is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(kind))
    if origin in (typing.Union, UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(kind))
    if kind is NoneType or kind is None:
        return "null"
    if kind is bool:
        return "true or false"
    if typing.get_origin(kind) is list or kind is list:
        items = typing.get_args(kind)
        return f"a list, each {_describe(items[0])}" if items else "a list"
    if typing.get_origin(kind) is dict or kind is dict:
        return "a mapping, quoted for the shell: '{name: value, ...}'"
    return {int: "a whole number", float: "a number", str: "a string"}.get(kind, getattr(kind, "__name__", str(kind)))


def check_setting(key: str, value: Any, kind: Any) -> None:
    """Raise :class:`ConfigError` when ``value`` does not fit the annotation ``kind`` of setting ``key``."""
    if not _fits(value, kind):
        choices = [str(v) for v in typing.get_args(kind)] if typing.get_origin(kind) is Literal else []
        raise ConfigError(f"{key}={value!r}{suggestion(value, choices)}: give {_describe(kind)}")
    if typing.get_origin(kind) in (typing.Union, UnionType):  # ``Annotated[int, AtLeast(1)] | None``: the member
        kind = next((option for option in typing.get_args(kind) if _fits(value, option)), kind)  # the value takes
    if typing.get_origin(kind) is Annotated:
        for bound in typing.get_args(kind)[1:]:
            if isinstance(bound, AtLeast) and value < bound.minimum:
                raise ConfigError(f"{key}={value!r}: give a value of at least {bound.minimum:g}")
            if isinstance(bound, Below) and value >= bound.limit:
                raise ConfigError(f"{key}={value!r}: give a value below {bound.limit:g}")


def settings_of(factory: Callable) -> dict[str, inspect.Parameter]:
    """The keyword settings of ``factory`` (a class, a dataclass or a function) with their annotations resolved."""
    target = factory.__init__ if inspect.isclass(factory) and not dataclasses.is_dataclass(factory) else factory
    hints = typing.get_type_hints(target, include_extras=True)
    return {name: parameter.replace(annotation=hints.get(name, inspect.Parameter.empty))
            for name, parameter in inspect.signature(factory).parameters.items()
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)}


def check_settings(factory: Callable, values: Mapping[str, Any], group: str, option: str | None = None,
                   fixed: tuple[str, ...] = (), complete: bool = False) -> None:
    """Every key of ``values`` is a setting of ``factory`` and fits its annotation. ``group`` is the config node the
    values come from (``norm`` for ``norm.alpha``), ``option`` the name chosen in it (``transnorm``); with
    ``complete``, every setting without a default is given (a node's schema: each key its YAML must have)."""
    settings = {name: p for name, p in settings_of(factory).items() if name not in fixed}
    owner = f"{group}={option}" if option else group
    if complete:
        absent = [name for name, p in settings.items() if p.default is p.empty and name not in values]
        if absent:
            raise ConfigError(f"{owner} lacks the setting {group}.{absent[0]}: add +{group}.{absent[0]}=<value> (its "
                              f"settings: {', '.join(sorted(settings))})")
    for key, value in values.items():
        if key not in settings:
            known = ", ".join(sorted(settings)) or "none"
            raise ConfigError(f"{owner} has no setting {key}{suggestion(key, list(settings))} (its settings: "
                              f"{known})")
        check_setting(f"{group}.{key}", value, settings[key].annotation)


def node_settings(node: Any, *not_settings: str, resolve: bool = True) -> dict[str, Any]:
    """The settings a config node gives its option: its keys but ``name``, ``not_settings`` and the lookup tables
    (``_``-prefixed keys, such as BGN's ``_paper_groups``); with ``resolve=False``, only the keys set directly (not by
    interpolation from another axis)."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(node, DictConfig):
        node = OmegaConf.create(dict(node))
    values = OmegaConf.to_container(node, resolve=True)
    return {key: values[key] for key in node if key != "name" and key not in not_settings
            and not str(key).startswith("_") and (resolve or not OmegaConf.is_interpolation(node, key))}


def changed_settings(factory: Callable, values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings in ``values`` that differ from ``factory``'s own defaults (what a table label shows)."""
    settings = settings_of(factory)
    return {key: value for key, value in values.items()
            if key in settings and value != settings[key].default}


def registered_in(source: str) -> list[str]:
    """The names a module's source registers: the string arguments of its ``register("name")`` calls (as a decorator
    or called on a function), read without importing the module."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "register"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.append(node.args[0].value)
    return names


class Registry(Generic[T]):
    """A name -> factory table for one axis (``kind``) whose entries live in the modules of ``package``;
    ``config_group`` is the ``conf/`` folder whose options name its entries."""

    def __init__(self, kind: str, package: str, config_group: str):
        self.kind = kind
        self.package = package
        self.config_group = config_group
        self._entries: dict[str, T] = {}
        self._schemas: dict[str, type] = {}
        self._modules: dict[str, str] | None = None

    def register(self, name: str, settings: type | None = None) -> Callable[[T], T]:
        """Register the decorated factory as ``name``. Its settings are its keyword arguments, unless ``settings``
        declares them (a dataclass: the keys of a config node that the factory receives whole, as datasets and
        backbones do)."""
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            if settings is not None:
                self._schemas[name] = settings
            return obj

        return decorator

    def modules(self) -> dict[str, str]:
        """name -> the module that registers it, from the package's source files (nothing is imported)."""
        if self._modules is None:
            folder = Path(importlib.util.find_spec(self.package).submodule_search_locations[0])
            self._modules = {}
            for path in sorted(folder.glob("*.py")):
                if path.name.startswith("_"):
                    continue
                for name in registered_in(path.read_text(encoding="utf-8")):
                    if name in self._modules:
                        raise ValueError(f"{self.kind} {name!r} is registered twice ({self._modules[name]}, "
                                         f"{path.stem})")
                    self._modules[name] = f"{self.package}.{path.stem}"
        return self._modules

    def names(self) -> list[str]:
        return sorted(set(self.modules()) | set(self._entries))

    def get(self, name: str) -> T:
        if name not in self._entries and name in self.modules():
            importlib.import_module(self.modules()[name])
        if name not in self._entries:
            raise ConfigError(f"unknown {self.config_group}={name}{suggestion(name, self.names())}: choose one of "
                              f"{', '.join(self.names())}")
        return self._entries[name]

    def schema(self, name: str) -> type | None:
        """The node schema ``name`` declared when it registered (None: its factory's signature is its schema)."""
        self.get(name)
        return self._schemas.get(name)

    def check(self, name: str, settings: Mapping[str, Any], fixed: tuple[str, ...] = ()) -> None:
        """``settings`` against ``name``'s declared schema (the whole node, every key present) or its factory's
        keyword arguments but ``fixed`` (those the framework supplies)."""
        factory = self.get(name)
        if name in self._schemas:
            check_settings(self._schemas[name], settings, self.config_group, name, complete=True)
        else:
            check_settings(factory, settings, self.config_group, name, fixed)

    def build(self, name: str, settings: Mapping[str, Any], **fixed: Any) -> Any:
        """``name``'s factory called with ``settings`` (checked against its annotations) and ``fixed`` (the
        arguments the framework supplies: sizes, a config node)."""
        self.check(name, settings, tuple(fixed))
        return self.get(name)(**fixed, **settings)
