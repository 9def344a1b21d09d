"""A store in a local directory.

Values are written to a hidden temporary file, flushed to disk, then published
with ``os.link`` (fails if the key exists: atomic put-if-absent) or
``os.replace`` under an ``flock`` (compare-and-swap). Locks held by a killed
process are released by the kernel, so a crash never leaves a ref locked.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import ConflictError, NotFoundError, StorageError
from .store import Bytes, Staging, Store, check_key, check_listing

_LOCK_FILE = ".cas.lock"


class LocalStore(Store):
    supports_replace = True
    maps_values = True

    def __init__(self, root: str | os.PathLike[str], read_only: bool = False):
        self.root = Path(root).absolute()
        self.url = str(self.root)
        self.read_only = read_only
        self._deferred = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Write many values with one flush of directory entries at the end
        (``os.sync``) instead of an ``fsync`` per directory per file. File
        data is still flushed before it is linked, so after a power cut a
        name either holds complete bytes or is absent; everything written in
        the block is durable when it exits. Compare-and-swap always syncs."""
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False
            os.sync()

    def _path(self, key: str) -> Path:
        self._check_open()
        return self.root.joinpath(*check_key(key).split("/"))

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no such key: {key}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def get_view(self, key: str) -> Bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size == 0:
                    return b""
                return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no such key: {key}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def adopt(self, source: Store, key: str) -> bool:
        self._check_writable("write")
        if not isinstance(source, LocalStore):
            return False
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(source._path(key), path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                return False  # another file system, or links not allowed: copy instead
            raise StorageError(f"cannot link {path}: {exc.strerror or exc}") from exc
        if not self._deferred:
            _fsync_dir(path.parent)
        return True

    def get_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(length)
                size = os.fstat(f.fileno()).st_size
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no such key: {key}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if len(data) != length or start > size:
            raise StorageError(f"range {start}+{length} is past the end of {key}")
        return data

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no such key: {key}") from None

    def modified(self, key: str) -> float:
        try:
            return self._path(key).stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no such key: {key}") from None

    def freshen(self, key: str) -> bool:
        self._check_writable("freshen")
        try:
            os.utime(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise StorageError(f"cannot touch {key}: {exc.strerror or exc}") from exc
        return True

    def sweep_temporaries(self, before: float, dry_run: bool = False) -> list[str]:
        self._check_open()
        if not dry_run:
            self._check_writable("remove temporary files")
        removed = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                path = Path(dirpath) / name
                if not name.startswith(".tmp-"):
                    continue
                try:
                    stale = path.stat().st_mtime < before
                except FileNotFoundError:
                    continue  # a write finished meanwhile
                if stale:
                    if not dry_run:
                        path.unlink(missing_ok=True)
                    removed.append(str(path.relative_to(self.root)))
        return removed

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        self._check_open()
        after = check_listing(prefix, start_after)
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        return self._walk(base, prefix, after)

    def _walk(self, rel: str, prefix: str, after: str) -> Iterator[str]:
        """Keys under the directory ``rel`` (``""`` or ending in ``/``), in
        order: a directory sorts as its name and a ``/``, and one wholly
        outside ``prefix`` or at most ``after`` is not read."""
        for name in self._entries(rel):
            key = rel + name
            if not name.endswith("/"):
                if key.startswith(prefix) and key > after:
                    yield key
            elif (key.startswith(prefix) or prefix.startswith(key)) and key >= after[: len(key)]:
                yield from self._walk(key, prefix, after)

    def _entries(self, rel: str) -> list[str]:
        """Sorted names in the directory ``rel``, directories ending in
        ``/``; hidden names and links to directories left out."""
        directory = self.root.joinpath(*rel.split("/"))
        names = []
        try:
            with os.scandir(directory) as found:
                for entry in found:
                    if entry.name.startswith("."):
                        continue
                    if not entry.is_dir():
                        names.append(entry.name)
                    elif not entry.is_symlink():
                        names.append(entry.name + "/")
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {directory}: {exc.strerror or exc}") from exc
        return sorted(names)

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
        self._check_writable("write")
        path = self._path(key)
        if path.exists():
            return False
        return self._publish(self._write_temp(path.parent, data), path)

    def _publish(self, tmp: Path, path: Path, freshen: bool = False) -> bool:
        """Link a flushed temporary file to ``path`` unless it exists (then,
        with ``freshen``, touch it, linking again if it vanished meanwhile),
        then drop the temporary file."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            while True:
                try:
                    os.link(tmp, path)
                    break
                except FileExistsError:
                    if not freshen or self.freshen(self._key(path)):
                        return False
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        if not self._deferred:
            _fsync_dir(path.parent)
        return True

    def _key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def replace(self, key: str, data: Bytes) -> None:
        """A new file renamed over the old one: a hard link elsewhere keeps
        the old bytes, so a repair never writes through to another clone."""
        self._check_writable("repair")
        self._rename_over(self._path(key), data)

    def _rename_over(self, path: Path, data: Bytes) -> None:
        """Write ``data`` to a flushed temporary file and rename it to ``path``."""
        tmp = self._write_temp(path.parent, data)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
        _fsync_dir(path.parent)

    def delete(self, key: str) -> None:
        self._check_writable("delete")
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot remove {path}: {exc.strerror or exc}") from exc
        if path.parent.exists():
            _fsync_dir(path.parent)

    def staging(self) -> Staging:
        self._check_writable("write")
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
        self._check_writable("compare and swap")
        path = self._path(key)
        with self._locked():
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                current = None
            if current != expected:
                raise ConflictError(f"{key} changed concurrently")
            self._rename_over(path, new)


class _FileStaging(Staging):
    """Streams into a hidden temporary file at the store root, then links it.

    Pieces are gathered into blocks of a few MiB and written by a background
    thread, so disk writes overlap with the caller's reading and hashing.
    """

    BLOCK = 4 * 2**20

    def __init__(self, store: LocalStore):
        from concurrent.futures import ThreadPoolExecutor

        store.root.mkdir(parents=True, exist_ok=True)
        self._store = store
        self._tmp = store.root / f".tmp-{uuid.uuid4().hex}"
        self._fd: int | None = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._parts: list[Bytes] = []
        self._buffered = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="improv-write")
        self._in_flight: list = []

    def write(self, data: Bytes) -> None:
        self._parts.append(data)
        self._buffered += len(data)
        if self._buffered >= self.BLOCK:
            self._send()

    def _send(self) -> None:
        if self._parts:
            block = b"".join(self._parts)
            self._parts, self._buffered = [], 0
            self._in_flight.append(self._writer.submit(_write_all, self._fd, block))
        while len(self._in_flight) > 2:
            self._wait(self._in_flight.pop(0))

    def _wait(self, future) -> None:  # type: ignore[no-untyped-def]
        try:
            future.result()
        except OSError as exc:
            self.discard()
            raise StorageError(
                f"cannot write in {self._store.root}: {exc.strerror or exc}"
            ) from exc

    def publish(self, key: str, replace: bool = False) -> bool:
        path = self._store._path(key)
        self._send()
        while self._in_flight:
            self._wait(self._in_flight.pop(0))
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self.discard()
            raise StorageError(
                f"cannot write in {self._store.root}: {exc.strerror or exc}"
            ) from exc
        self._close()
        if not replace:
            return self._store._publish(self._tmp, path, freshen=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, path)  # a new file: a hard link elsewhere keeps the old bytes
        _fsync_dir(path.parent)
        return True

    def _close(self) -> None:
        self._writer.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        self._close()
        self._in_flight.clear()
        self._parts.clear()
        self._tmp.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
