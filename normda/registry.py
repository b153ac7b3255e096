"""Registries by name, filled by the modules of a package as they are imported.

Every axis of a run (normalization, method, dataset, backbone) keeps one ``Registry``. A module registers its entry with
the ``@REGISTRY.register("name")`` decorator; the registry imports every module of its package the first time a name is
looked up, so adding an entry is one new file (plus its YAML) and nothing else.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

from normda.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table for one axis (``kind``), discovering the modules of ``package``."""

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
            raise ConfigError(
                f"unknown {self.kind} {name!r}: choose one of {', '.join(self.names())} "
                f"(set {self.config_group}=<name>)"
            )
        return self._entries[name]
