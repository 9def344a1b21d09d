"""Ingest adapters: turn what an instrument writes into batches of images and
original files to keep.

An adapter is an :class:`Adapter`: a name (``improv commit --format NAME``),
the options it accepts, and :meth:`Adapter.plan`, which reads a path and
returns an :class:`IngestPlan` without writing anything. Image bytes may be
produced lazily (decoded ROIs, planes of a stack), so a plan holds little
memory; :func:`apply_plan` streams it into a transaction.

Built-ins: ``files`` (a directory of image files with metadata tables),
``ifcb`` (raw IFCB bins) and ``tiff`` (TIFF / OME-TIFF stacks). Third-party
adapters are :class:`Adapter` objects (or classes) published under the entry
point group ``improv_vcs.adapters``; the entry point's name must equal the
adapter's name.
"""

from __future__ import annotations

from functools import cache

from ...core import plugins
from ...core.errors import InvalidInputError
from .base import Adapter, IngestPlan, PlannedBatch, apply_plan, parse_options

__all__ = [
    "Adapter",
    "ENTRY_POINT_GROUP",
    "IngestPlan",
    "PlannedBatch",
    "apply_plan",
    "get_adapter",
    "known_adapters",
    "parse_options",
]

ENTRY_POINT_GROUP = "improv_vcs.adapters"


def _builtin() -> dict[str, Adapter]:
    from .files import FilesAdapter
    from .ifcb import IfcbAdapter
    from .tiff import TiffAdapter

    return {a.name: a for a in (FilesAdapter(), IfcbAdapter(), TiffAdapter())}


@cache
def known_adapters() -> dict[str, Adapter]:
    """Every known adapter by name: built-ins, then entry-point plugins."""
    return plugins.load(ENTRY_POINT_GROUP, _builtin(), Adapter, "an Adapter")


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``, or a clear error listing the known ones."""
    known = known_adapters()
    if name not in known:
        raise InvalidInputError(
            f"unknown format {name!r}; known formats: {', '.join(sorted(known))}"
        )
    return known[name]
