"""improv_vcs: an immutable, content-addressed, versioned store for imaging data.

Everything a script needs is importable from here; the subpackages are the
layers described in ``docs/architecture.md``. Names are imported lazily, so
``import improv_vcs`` (and the CLI's ``--help``) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # repositories, read sessions, transactions
    "Repository": "repository.repository",
    "Snapshot": "repository.snapshot",
    "Transaction": "write.transaction",
    # one change, one commit
    "add_provenance": "write.shortcuts",
    "add_dataset_span": "write.shortcuts",
    "remove_dataset_span": "write.shortcuts",
    "edit_registry": "write.shortcuts",
    # queries
    "Query": "query.filters",
    "Where": "query.filters",
    "ProvenanceWhere": "query.filters",
    "Run": "query.filters",
    "build_query": "query.filters",
    "QueryResult": "query.engine",
    # what a commit holds
    "Batch": "core.model",
    "Commit": "core.model",
    "Dataset": "core.model",
    "Registry": "core.model",
    "Span": "core.model",
    "Tag": "core.model",
    # sites
    "clone": "sync.sites",
    "fetch": "sync.sites",
    "pull": "sync.sites",
    "push": "sync.sites",
    # integrity and maintenance
    "fsck": "maintenance.fsck",
    "gc": "maintenance.gc",
    "maintain": "maintenance.repack",
    # citations
    "Citation": "cite.citation",
    # stores
    "open_store": "storage",
    "Store": "storage",
    "LocalStore": "storage",
    "MemoryStore": "storage",
    "S3Store": "storage",
    "BundledStore": "storage",
    "HttpStore": "storage.http_store",
    # provenance kinds and ingest adapters (plugins)
    "Kind": "provenance.kinds",
    "get_kind": "provenance.catalog",
    "known_kinds": "provenance.catalog",
    "Adapter": "ingest.adapters",
    "IngestPlan": "ingest.adapters",
    "PlannedBatch": "ingest.adapters",
    "apply_plan": "ingest.adapters",
    "get_adapter": "ingest.adapters",
    "known_adapters": "ingest.adapters",
    "read_records": "ingest.provenance_files",
    # a served repository
    "Client": "service.client",
    # errors: one tree under ImprovError
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
_MODULES = {
    "cite": "cite",
    "cluster": "cluster",
    "publish": "publish",
    "registry": "snapshot.registry",
    "synthetic": "ingest.synthetic",
}
"""Modules of functions: citations (load, verify, export), Dask collections
and runs (to_dask, images_to_dask, attach_run), training loaders and exports
(select, ImageDataset, ImageStream, export, verify), registry edits,
generated test images."""

__all__ = sorted([*_EXPORTS, *_MODULES, "__version__"])

if TYPE_CHECKING:
    from . import cite, cluster, publish
    from .cite.citation import Citation
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
    from .core.model import Batch, Commit, Dataset, Registry, Span, Tag
    from .ingest import synthetic
    from .ingest.adapters import (
        Adapter,
        IngestPlan,
        PlannedBatch,
        apply_plan,
        get_adapter,
        known_adapters,
    )
    from .ingest.provenance_files import read_records
    from .maintenance.fsck import fsck
    from .maintenance.gc import gc
    from .maintenance.repack import maintain
    from .provenance.catalog import get_kind, known_kinds
    from .provenance.kinds import Kind
    from .query.engine import QueryResult
    from .query.filters import ProvenanceWhere, Query, Run, Where, build_query
    from .repository.repository import Repository
    from .repository.snapshot import Snapshot
    from .service.client import Client
    from .snapshot import registry
    from .storage import BundledStore, LocalStore, MemoryStore, S3Store, Store, open_store
    from .storage.http_store import HttpStore
    from .sync.sites import clone, fetch, pull, push
    from .write.shortcuts import (
        add_dataset_span,
        add_provenance,
        edit_registry,
        remove_dataset_span,
    )
    from .write.transaction import Transaction


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in _MODULES:
        return import_module(f".{_MODULES[name]}", __name__)
    raise AttributeError(f"module 'improv_vcs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
