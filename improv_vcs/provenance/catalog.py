"""The provenance kinds this installation knows: the built-ins, then plugins
published under the entry point group ``improv_vcs.kinds``."""

from __future__ import annotations

from functools import cache

from ..core import plugins
from ..core.errors import InvalidInputError
from .builtin import BUILTIN_KINDS
from .kinds import ENTRY_POINT_GROUP, Kind


@cache
def known_kinds() -> dict[str, Kind]:
    """Every known kind by name: built-ins, then entry-point plugins."""
    return plugins.load(ENTRY_POINT_GROUP, {k.name: k for k in BUILTIN_KINDS}, Kind, "a Kind")


def get_kind(name: str) -> Kind:
    """The kind called ``name``, or a clear error listing the known ones."""
    found = known_kinds().get(name)
    if found is None:
        raise InvalidInputError(
            f"unknown provenance kind {name!r}; known kinds: {', '.join(sorted(known_kinds()))}"
        )
    return found
