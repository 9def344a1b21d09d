"""Plugins published under an entry point group (provenance kinds, ingest adapters)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, TypeVar

from .errors import InvalidInputError

T = TypeVar("T")


def load(group: str, builtins: dict[str, T], cls: type[T], what: str) -> dict[str, T]:
    """``builtins`` plus every plugin of ``group`` by name. An entry point
    gives an instance of ``cls`` (or something callable returning one) whose
    ``name`` equals the entry point's; built-ins cannot be replaced."""
    found = dict(builtins)
    for point in entry_points(group=group):
        if point.name in found:
            continue
        loaded: Any = point.load()
        plugin = loaded() if callable(loaded) and not isinstance(loaded, cls) else loaded
        if not isinstance(plugin, cls) or getattr(plugin, "name", None) != point.name:
            raise InvalidInputError(
                f"entry point {point.name!r} in {group} does not give {what} named {point.name!r}"
            )
        found[point.name] = plugin
    return found
