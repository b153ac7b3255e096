"""Registries by name, and the one place where an option's settings are checked.

Every axis of a run (normalization, method, dataset, backbone) keeps one ``Registry`` in its package's ``base.py``. A
module registers its entry with the package's ``@register("name")`` decorator; the registry imports every module of
its package the first time a name is looked up, so adding an entry is one new file (plus its YAML) and nothing else.

An option's settings are the keyword arguments of its constructor, and their types are its annotations:
``Literal["adaptive", "one", "none"]`` names the allowed values, ``bool``, ``int`` and ``float`` the types,
``Annotated[int, AtLeast(1)]`` a lower bound. :meth:`Registry.build` checks a config node against them (an unknown
key, a value outside the ``Literal``, a string where a number belongs) and raises one :class:`ConfigError` naming the
key and the fix, so no option validates its settings by hand.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import pkgutil
import typing
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Annotated, Any, Callable, Generic, Literal, Mapping, TypeVar

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
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or kind is dict:
        return isinstance(value, Mapping)
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
                   fixed: tuple[str, ...] = ()) -> None:
    """Every key of ``values`` is a setting of ``factory`` and fits its annotation. ``group`` is the config node the
    values come from (``norm`` for ``norm.alpha``), ``option`` the name chosen in it (``transnorm``)."""
    settings = {name: p for name, p in settings_of(factory).items() if name not in fixed}
    owner = f"{group}={option}" if option else group
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


class Registry(Generic[T]):
    """A name -> factory table for one axis (``kind``), discovering the modules of ``package``; ``config_group`` is
    the ``conf/`` folder whose options name its entries."""

    def __init__(self, kind: str, package: str, config_group: str):
        self.kind = kind
        self.package = package
        self.config_group = config_group
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        self._discover()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.config_group}={name}{suggestion(name, self.names())}: choose one of "
                              f"{', '.join(self.names())}")
        return self._entries[name]

    def build(self, name: str, settings: Mapping[str, Any], **fixed: Any) -> Any:
        """``name``'s factory called with ``settings`` (checked against its annotations) and ``fixed`` (the
        arguments the framework supplies: sizes, a config node)."""
        factory = self.get(name)
        check_settings(factory, settings, self.config_group, name, tuple(fixed))
        return factory(**fixed, **settings)
