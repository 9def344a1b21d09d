"""A store in a local directory.

Values are written to a hidden temporary file, flushed to disk, then published
with ``os.link`` (fails if the key exists: atomic put-if-absent) or
``os.replace`` under an ``flock`` (compare-and-swap). Locks held by a killed
process are released by the kernel, so a crash never leaves a ref locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConflictError, NotFoundError, StorageError
from ._base import Bytes, Staging, Store, check_key, check_prefix

_LOCK_FILE = ".cas.lock"


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).absolute()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no such key: {key}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(length)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no such key: {key}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if len(data) != length:
            raise StorageError(f"range {start}+{length} is past the end of {key}")
        return data

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no such key: {key}") from None

    def list(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*base.split("/")) if base else self.root
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            keys.extend(rel + name for name in filenames if not name.startswith("."))
        return iter(sorted(k for k in keys if k.startswith(prefix)))

    def _write_temp(self, directory: Path, data: Bytes) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write in {directory}: {exc.strerror or exc}") from exc
        return tmp

    def put_if_absent(self, key: str, data: Bytes) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        return self._publish(self._write_temp(path.parent, data), path)

    def _publish(self, tmp: Path, path: Path) -> bool:
        """Link a flushed temporary file to ``path`` unless it exists, then drop it."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return True

    def staging(self) -> Staging:
        return _FileStaging(self)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes) -> None:
        path = self._path(key)
        with self._locked():
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                current = None
            if current != expected:
                raise ConflictError(f"{key} changed concurrently")
            tmp = self._write_temp(path.parent, new)
            try:
                os.replace(tmp, path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
            _fsync_dir(path.parent)


class _FileStaging(Staging):
    """Streams into a hidden temporary file at the store root, then links it."""

    def __init__(self, store: LocalStore):
        store.root.mkdir(parents=True, exist_ok=True)
        self._store = store
        self._tmp = store.root / f".tmp-{uuid.uuid4().hex}"
        self._file = open(self._tmp, "wb", buffering=8 * 2**20)

    def write(self, data: Bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            self.discard()
            raise StorageError(f"cannot write in {self._store.root}: {exc.strerror or exc}") from exc

    def publish(self, key: str) -> bool:
        path = self._store._path(key)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            self.discard()
            raise StorageError(f"cannot write in {self._store.root}: {exc.strerror or exc}") from exc
        return self._store._publish(self._tmp, path)

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
