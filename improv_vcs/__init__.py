"""improv_vcs: an immutable, content-addressed, versioned store for imaging data.

Public names are imported lazily so that ``import improv_vcs`` (and the CLI's
``--help``) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Repository": "repository",
    "Transaction": "transaction",
    "Snapshot": "snapshot",
    "Query": "query",
    "QueryResult": "engine",
    "build_query": "query",
    "Dataset": "model",
    "Span": "model",
    "Batch": "model",
    "Commit": "model",
    "Tag": "model",
    "ImprovError": "errors",
    "InvalidInputError": "errors",
    "NotFoundError": "errors",
    "NotARepositoryError": "errors",
    "ConflictError": "errors",
    "IntegrityError": "errors",
    "ReadOnlyError": "errors",
    "StorageError": "errors",
    "UnsupportedFormatError": "errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:
    from .engine import QueryResult
    from .errors import (
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
    from .model import Batch, Commit, Dataset, Span, Tag
    from .query import Query, build_query
    from .repository import Repository
    from .snapshot import Snapshot
    from .transaction import Transaction


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'improv_vcs' has no attribute {name!r}")
