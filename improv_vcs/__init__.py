"""improv_vcs: an immutable, content-addressed, versioned store for imaging data.

Public names are imported lazily so that ``import improv_vcs`` (and the CLI's
``--help``) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Repository": "repository.repository",
    "Transaction": "write.transaction",
    "Snapshot": "snapshot.reader",
    "Query": "query.filters",
    "QueryResult": "query.engine",
    "build_query": "query.filters",
    "Dataset": "core.model",
    "Span": "core.model",
    "Batch": "core.model",
    "Commit": "core.model",
    "Tag": "core.model",
    "ImprovError": "core.errors",
    "InvalidInputError": "core.errors",
    "NotFoundError": "core.errors",
    "NotARepositoryError": "core.errors",
    "ConflictError": "core.errors",
    "IntegrityError": "core.errors",
    "ReadOnlyError": "core.errors",
    "StorageError": "core.errors",
    "UnsupportedFormatError": "core.errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:
    from .query.engine import QueryResult
    from .core.errors import (
        ConflictError,
        ImprovError,
        IntegrityError,
        InvalidInputError,
        NotARepositoryError,
        NotFoundError,
        ReadOnlyError,
        StorageError,
        UnsupportedFormatError,
    )
    from .core.model import Batch, Commit, Dataset, Span, Tag
    from .query.filters import Query, build_query
    from .repository.repository import Repository
    from .snapshot.reader import Snapshot
    from .write.transaction import Transaction


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'improv_vcs' has no attribute {name!r}")
