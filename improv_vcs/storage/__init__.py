"""Byte stores: one protocol, local-directory, in-memory and S3 implementations."""

from __future__ import annotations

from typing import Any

from .store import Bytes, Staging, Store, check_key
from .bundled_store import BundledStore
from .fsspec_store import MemoryStore, S3Store
from .local_store import LocalStore

__all__ = ["BundledStore", "Bytes", "LocalStore", "MemoryStore", "S3Store", "Staging", "Store", "check_key", "open_store"]


def open_store(url: str, **storage_options: Any) -> Store:
    """The store for ``url``: a local path, ``file://``, ``memory://``,
    ``s3://`` or ``http(s)://`` (a repository served by ``improv serve``)."""
    from ..core.errors import InvalidInputError

    if url.startswith(("http://", "https://")):
        from .http_store import HttpStore

        return HttpStore(url, **storage_options)
    if url.startswith("s3://"):
        return S3Store(url, **storage_options)
    if url.startswith("memory://"):
        return MemoryStore(url)
    if url.startswith("file://"):
        return LocalStore(url[len("file://") :])
    if "://" in url:
        raise InvalidInputError(f"unsupported repository URL {url!r}: use a path, file://, s3://, http(s):// or memory://")
    return LocalStore(url)
