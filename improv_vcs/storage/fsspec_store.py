"""Stores over fsspec filesystems: the base of the S3 store, and the in-memory
store (tests and scratch work), which gets atomic put-if-absent and
compare-and-swap from a process-wide lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from ..core.errors import (
    ConflictError,
    ImprovError,
    NotARepositoryError,
    NotFoundError,
    StorageError,
)
from .store import Bytes, Store, check_key, check_listing


class MissingBucketError(NotARepositoryError):
    """The S3 bucket of a repository URL does not exist."""


class FsspecStore(Store):
    """Common reads over any fsspec filesystem rooted at ``root``."""

    errors: tuple[type[BaseException], ...] = (OSError,)
    """What the filesystem raises when it fails; each becomes a :class:`StorageError`."""
    supports_replace = True

    def __init__(self, fs: Any, root: str, url: str, read_only: bool = False):
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        self.read_only = read_only

    def _path(self, key: str) -> str:
        self._check_open()
        return f"{self.root}/{check_key(key)}"

    def _missing(self, key: str, exc: BaseException) -> ImprovError:
        """What a "not found" from the filesystem means for ``key``."""
        return NotFoundError(f"no such key: {key}")

    def _failed(self, doing: str, exc: BaseException) -> ImprovError:
        """The error to raise when ``doing`` (e.g. "cannot read X from URL") failed with ``exc``."""
        return StorageError(f"{doing}: {exc}")

    def get(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError as exc:
            raise self._missing(key, exc) from None
        except self.errors as exc:
            raise self._failed(f"cannot read {key} from {self.url}", exc) from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if length == 0:  # S3 has no empty byte range
            if start > self.size(key):
                raise StorageError(f"range {start}+0 is past the end of {key}")
            return b""
        try:
            data = self.fs.cat_file(self._path(key), start=start, end=start + length)
        except FileNotFoundError as exc:
            raise self._missing(key, exc) from None
        except self.errors as exc:
            raise self._failed(f"cannot read {key} from {self.url}", exc) from exc
        if len(data) != length:
            raise StorageError(f"range {start}+{length} is past the end of {key}")
        return data

    def exists(self, key: str) -> bool:
        try:
            return bool(self.fs.isfile(self._path(key)))
        except self.errors as exc:
            raise self._failed(f"cannot stat {key} on {self.url}", exc) from exc

    def size(self, key: str) -> int:
        try:
            return int(self.fs.size(self._path(key)))
        except FileNotFoundError as exc:
            raise self._missing(key, exc) from None
        except self.errors as exc:
            raise self._failed(f"cannot stat {key} on {self.url}", exc) from exc

    def modified(self, key: str) -> float:
        try:
            info = self.fs.info(self._path(key))
        except FileNotFoundError as exc:
            raise self._missing(key, exc) from None
        except self.errors as exc:
            raise self._failed(f"cannot stat {key} on {self.url}", exc) from exc
        when = info.get("LastModified") or info.get("created") or info.get("mtime")
        if when is None:
            raise StorageError(f"{self.url} does not say when {key} was written")
        return when.timestamp() if hasattr(when, "timestamp") else float(when)

    def replace(self, key: str, data: Bytes) -> None:
        self._check_writable("repair")
        try:
            self.fs.pipe_file(self._path(key), bytes(data))
        except self.errors as exc:
            raise self._failed(f"cannot write {key} to {self.url}", exc) from exc

    def delete(self, key: str) -> None:
        self._check_writable("delete")
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError as exc:
            if isinstance(self._missing(key, exc), MissingBucketError):
                raise self._missing(key, exc) from None
        except self.errors as exc:
            raise self._failed(f"cannot remove {key} from {self.url}", exc) from exc

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        self._check_open()
        after = check_listing(prefix, start_after)
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = f"{self.root}/{base}" if base else self.root
        try:
            found = self.fs.find(start)
        except FileNotFoundError as exc:
            if isinstance(self._missing(prefix, exc), MissingBucketError):
                raise self._missing(prefix, exc) from None
            return iter(())
        except self.errors as exc:
            raise self._failed(f"cannot list {self.url}", exc) from exc
        cut = len(self.root.lstrip("/")) + 1
        keys = (p.lstrip("/")[cut:] for p in found)
        return iter(
            sorted(k for k in keys if k.startswith(prefix) and k > after and visible_key(k))
        )


def visible_key(key: str) -> bool:
    return not any(part.startswith(".") for part in key.split("/"))


class MemoryStore(FsspecStore):
    """fsspec's in-memory filesystem; atomic within one process."""

    _lock = threading.Lock()

    def __init__(self, url: str, read_only: bool = False):
        import fsspec

        fs = fsspec.filesystem("memory")
        super().__init__(fs, fs._strip_protocol(url), url, read_only)

    def put_if_absent(self, key: str, data: Bytes) -> bool:
        self._check_writable("write")
        path = self._path(key)
        with self._lock:
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, bytes(data))
        return True

    def freshen(self, key: str) -> bool:
        self._check_writable("freshen")
        path = self._path(key)
        with self._lock:
            if not self.fs.exists(path):
                return False
            self.fs.pipe_file(path, self.fs.cat_file(path))  # a new file: written now
        return True

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        with self._lock:  # fsspec's memory filesystem iterates a dict that writers change
            return iter(list(super().list(prefix, start_after)))

    def delete(self, key: str) -> None:
        with self._lock:
            super().delete(key)

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes) -> None:
        self._check_writable("compare and swap")
        path = self._path(key)
        with self._lock:
            current = self.fs.cat_file(path) if self.fs.exists(path) else None
            if current != expected:
                raise ConflictError(f"{key} changed concurrently")
            self.fs.pipe_file(path, bytes(new))
