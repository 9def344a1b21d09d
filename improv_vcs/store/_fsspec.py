"""Stores over fsspec filesystems: S3 (through s3fs) and in-memory.

S3 gets atomic put-if-absent and compare-and-swap from conditional writes
(``If-None-Match: *`` and ``If-Match: <etag>``). The in-memory store, used by
tests and scratch work, gets the same guarantees from a process-wide lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from ..errors import ConflictError, NotFoundError, StorageError
from ._base import Bytes, Store, check_key, check_prefix


class FsspecStore(Store):
    """Common reads over any fsspec filesystem rooted at ``root``."""

    errors: tuple[type[BaseException], ...] = (OSError,)
    """What the filesystem raises when it fails; each becomes a :class:`StorageError`."""

    def __init__(self, fs: Any, root: str, url: str):
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def get(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            raise NotFoundError(f"no such key: {key}") from None
        except self.errors as exc:
            raise StorageError(f"cannot read {key} from {self.url}: {exc}") from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if length == 0:  # S3 has no empty byte range
            if start > self.size(key):
                raise StorageError(f"range {start}+0 is past the end of {key}")
            return b""
        try:
            data = self.fs.cat_file(self._path(key), start=start, end=start + length)
        except FileNotFoundError:
            raise NotFoundError(f"no such key: {key}") from None
        except self.errors as exc:
            raise StorageError(f"cannot read {key} from {self.url}: {exc}") from exc
        if len(data) != length:
            raise StorageError(f"range {start}+{length} is past the end of {key}")
        return data

    def exists(self, key: str) -> bool:
        try:
            return bool(self.fs.isfile(self._path(key)))
        except self.errors as exc:
            raise StorageError(f"cannot stat {key} on {self.url}: {exc}") from exc

    def size(self, key: str) -> int:
        try:
            return int(self.fs.size(self._path(key)))
        except FileNotFoundError:
            raise NotFoundError(f"no such key: {key}") from None
        except self.errors as exc:
            raise StorageError(f"cannot stat {key} on {self.url}: {exc}") from exc

    def modified(self, key: str) -> float:
        try:
            info = self.fs.info(self._path(key))
        except FileNotFoundError:
            raise NotFoundError(f"no such key: {key}") from None
        except self.errors as exc:
            raise StorageError(f"cannot stat {key} on {self.url}: {exc}") from exc
        when = info.get("LastModified") or info.get("created") or info.get("mtime")
        if when is None:
            raise StorageError(f"{self.url} does not say when {key} was written")
        return when.timestamp() if hasattr(when, "timestamp") else float(when)

    def replace(self, key: str, data: Bytes) -> None:
        try:
            self.fs.pipe_file(self._path(key), bytes(data))
        except self.errors as exc:
            raise StorageError(f"cannot write {key} to {self.url}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass
        except self.errors as exc:
            raise StorageError(f"cannot remove {key} from {self.url}: {exc}") from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = f"{self.root}/{base}" if base else self.root
        try:
            found = self.fs.find(start)
        except FileNotFoundError:
            return iter(())
        except self.errors as exc:
            raise StorageError(f"cannot list {self.url}: {exc}") from exc
        cut = len(self.root.lstrip("/")) + 1
        keys = (p.lstrip("/")[cut:] for p in found)
        return iter(sorted(k for k in keys if k.startswith(prefix) and _visible(k)))


def _visible(key: str) -> bool:
    return not any(part.startswith(".") for part in key.split("/"))


class MemoryStore(FsspecStore):
    """fsspec's in-memory filesystem; atomic within one process."""

    _lock = threading.Lock()

    def __init__(self, url: str):
        import fsspec

        fs = fsspec.filesystem("memory")
        super().__init__(fs, fs._strip_protocol(url), url)

    def put_if_absent(self, key: str, data: Bytes) -> bool:
        path = self._path(key)
        with self._lock:
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, bytes(data))
        return True

    def freshen(self, key: str) -> bool:
        path = self._path(key)
        with self._lock:
            if not self.fs.exists(path):
                return False
            self.fs.pipe_file(path, self.fs.cat_file(path))  # a new file: written now
        return True

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes) -> None:
        path = self._path(key)
        with self._lock:
            current = self.fs.cat_file(path) if self.fs.exists(path) else None
            if current != expected:
                raise ConflictError(f"{key} changed concurrently")
            self.fs.pipe_file(path, bytes(new))


class S3Store(FsspecStore):
    """An ``s3://bucket/prefix`` store through s3fs, using conditional writes."""

    def __init__(self, url: str, **storage_options: Any):
        import s3fs

        options = {"use_listings_cache": False, "skip_instance_cache": True}
        options.update(storage_options)
        fs = s3fs.S3FileSystem(**options)
        super().__init__(fs, fs._strip_protocol(url), url)
        from aiohttp import ClientError
        from botocore.exceptions import BotoCoreError

        # an unreachable endpoint, a timeout, missing credentials: not OSErrors
        self.errors = (OSError, BotoCoreError, ClientError)

    def _bucket_key(self, key: str) -> tuple[str, str]:
        bucket, _, path = self._path(key).partition("/")
        return bucket, path

    def put_if_absent(self, key: str, data: Bytes) -> bool:
        try:
            self.fs.pipe_file(self._path(key), bytes(data), mode="create")
        except FileExistsError:
            return False
        except self.errors as exc:
            if _s3_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise StorageError(f"cannot write {key} to {self.url}: {exc}") from exc
        return True

    def freshen(self, key: str) -> bool:
        """Copy the object onto itself, which sets its ``LastModified`` to now."""
        bucket, path = self._bucket_key(key)
        source = {"Bucket": bucket, "Key": path}
        try:
            self.fs.call_s3("copy_object", Bucket=bucket, Key=path, CopySource=source, MetadataDirective="REPLACE")
        except FileNotFoundError:
            return False
        except self.errors as exc:
            if _s3_code(exc) in ("NoSuchKey", "404"):
                return False
            raise StorageError(f"cannot refresh {key} on {self.url}: {exc}") from exc
        return True

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes) -> None:
        bucket, path = self._bucket_key(key)
        condition: dict[str, str]
        if expected is None:
            condition = {"IfNoneMatch": "*"}
        else:
            try:
                content, etag = _get_with_etag(self.fs, bucket, path)
            except FileNotFoundError:
                raise ConflictError(f"{key} changed concurrently") from None
            except self.errors as exc:
                raise StorageError(f"cannot read {key} from {self.url}: {exc}") from exc
            if content != expected:
                raise ConflictError(f"{key} changed concurrently")
            condition = {"IfMatch": etag}
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=path, Body=new, **condition)
        except FileExistsError:
            raise ConflictError(f"{key} changed concurrently") from None
        except self.errors as exc:
            if _s3_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise ConflictError(f"{key} changed concurrently") from None
            raise StorageError(f"cannot write {key} to {self.url}: {exc}") from exc


def _get_with_etag(fs: Any, bucket: str, key: str) -> tuple[bytes, str]:
    """Body and ETag of one object from a single GET (no race between them)."""
    from fsspec.asyn import sync

    async def get() -> tuple[bytes, str]:
        response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
        async with response["Body"] as body:
            return await body.read(), response["ETag"]

    return sync(fs.loop, get)


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code behind an exception s3fs translated, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code"))
        seen = seen.__cause__ or seen.__context__
    return None
