"""Byte stores: one protocol, local-directory, in-memory and S3 implementations."""

from __future__ import annotations

from typing import Any

from .bundled_store import BundledStore
from .fsspec_store import MemoryStore
from .local_store import LocalStore
from .s3_store import S3Store
from .store import CAPABILITIES, Bytes, ClosedStoreError, Staging, Store, check_key

__all__ = [
    "CAPABILITIES",
    "BundledStore",
    "Bytes",
    "ClosedStoreError",
    "LocalStore",
    "MemoryStore",
    "S3Store",
    "Staging",
    "Store",
    "check_key",
    "open_store",
]


def open_store(url: str, read_only: bool = False, **storage_options: Any) -> Store:
    """The store for ``url``: a local path, ``file://``, ``memory://``,
    ``s3://`` or ``http(s)://`` (a repository served by ``improv serve``);
    with ``read_only``, one that refuses every write."""
    from ..core.errors import InvalidInputError

    if url.startswith(("http://", "https://")):
        from .http_store import HttpStore

        return HttpStore(url, read_only=read_only, **storage_options)
    if url.startswith("s3://"):
        return S3Store(url, read_only=read_only, **storage_options)
    if url.startswith("memory://"):
        return MemoryStore(url, read_only=read_only)
    if url.startswith("file://"):
        return LocalStore(url[len("file://") :], read_only=read_only)
    if "://" in url:
        raise InvalidInputError(
            f"unsupported repository URL {url!r}: "
            "use a path, file://, s3://, http(s):// or memory://"
        )
    return LocalStore(url, read_only=read_only)
