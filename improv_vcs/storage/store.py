"""The store protocol: a flat namespace of keys holding immutable bytes,
plus compare-and-swap for the few small mutable files (refs).

A store moves bytes and knows nothing of commits or manifests.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.errors import InvalidInputError, ReadOnlyError, StorageError

_FRESHEN_ATTEMPTS = 5
_KEY_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")

Bytes = bytes | bytearray | memoryview


def check_key(key: str) -> str:
    """Validate a store key: ``/``-separated components, none hidden or ``..``."""
    if not isinstance(key, str) or not key or len(key) > 1024:
        raise InvalidInputError(f"invalid store key: {key!r}")
    for part in key.split("/"):
        if not _KEY_COMPONENT.match(part):
            raise InvalidInputError(f"invalid store key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """Validate a listing prefix: empty, or a key optionally ending in ``/``."""
    if prefix:
        check_key(prefix.rstrip("/"))
    return prefix


class Staging(ABC):
    """A value being written: ``write`` pieces, then ``publish`` under a key
    (put-if-absent semantics) or ``discard``. Use as a context manager: leaving
    the block without publishing discards."""

    @abstractmethod
    def write(self, data: Bytes) -> None: ...

    @abstractmethod
    def publish(self, key: str, replace: bool = False) -> bool:
        """Store what was written under ``key``, or freshen it if it exists
        (see :meth:`Store.put_or_freshen`); True if written. With
        ``replace``, overwrite it atomically instead (see :meth:`Store.replace`:
        only for a value that failed verification)."""

    @abstractmethod
    def discard(self) -> None: ...

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *_: object) -> None:
        self.discard()


class BufferStaging(Staging):
    """Staging in memory, published with one :meth:`Store.put_if_absent`."""

    def __init__(self, store: Store):
        self._store = store
        self._buffer: bytearray | None = bytearray()

    def write(self, data: Bytes) -> None:
        assert self._buffer is not None, "staging already published or discarded"
        self._buffer += data

    def publish(self, key: str, replace: bool = False) -> bool:
        assert self._buffer is not None, "staging already published or discarded"
        if replace:
            self._store.replace(key, self._buffer)
            written = True
        else:
            written = self._store.put_or_freshen(key, self._buffer)
        self._buffer = None
        return written

    def discard(self) -> None:
        self._buffer = None


class Store(ABC):
    """Bytes under string keys.

    Implementations must make :meth:`put_if_absent` atomic (a reader never sees
    a partial value) and :meth:`compare_and_swap` linearizable for a key.
    """

    url: str
    resolves_bundles = False
    """Whether keys held in bundles are read through this store as loose
    ones (a served repository does it on the server)."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The whole value; :class:`NotFoundError` if absent."""

    @abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start``; :class:`StorageError` past the end."""

    @abstractmethod
    def put_if_absent(self, key: str, data: Bytes) -> bool:
        """Write ``data`` unless the key exists; True when this call wrote it."""

    @abstractmethod
    def freshen(self, key: str) -> bool:
        """Make ``key`` look just written (its modification time becomes now),
        so gc's grace period protects it again; False if it is absent."""

    def put_or_freshen(self, key: str, data: Bytes) -> bool:
        """Write ``data`` unless the key exists, in which case freshen it.
        Afterwards the key holds its value and is young, even when a gc
        deleted it in between. True when this call wrote it.

        Writers of immutable objects use this rather than
        :meth:`put_if_absent`: an object they reuse may be garbage that a gc
        is about to remove (see :mod:`improv_vcs.storage.fence`)."""
        for _ in range(_FRESHEN_ATTEMPTS):
            if self.put_if_absent(key, data):
                return True
            if self.freshen(key):
                return False
        raise StorageError(f"{key} kept disappearing while it was written to {self.url}")

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the key holds a value."""

    def exists_as_listed(self, key: str) -> bool:
        """:meth:`exists`, except that a store wrapping another may answer
        False for a key moved since it last listed what it holds (no listing
        again): for callers to whom a wrong "absent" only costs a resend."""
        return self.exists(key)

    @abstractmethod
    def size(self, key: str) -> int:
        """Length of the value in bytes; :class:`NotFoundError` if absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, in sorted order."""

    @abstractmethod
    def modified(self, key: str) -> float:
        """When the value was written, as a POSIX timestamp."""

    def sweep_temporaries(self, before: float, dry_run: bool = False) -> list[str]:
        """Remove unfinished writes (temporary files) older than ``before``;
        returns their names. Stores whose writes are atomic have none."""
        return []

    def replace(self, key: str, data: Bytes) -> None:
        """Overwrite ``key`` atomically: only to repair a value that failed
        verification with one that passed (values never change otherwise)."""
        raise ReadOnlyError(f"{self.url} cannot be repaired from here; repair it on its own machine")

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` if it exists (only for local state and garbage)."""

    @abstractmethod
    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes) -> None:
        """Replace the value of ``key`` with ``new`` iff it currently equals
        ``expected`` (``None``: the key must not exist). Raises
        :class:`ConflictError` when the current value differs."""

    def staging(self) -> Staging:
        """A place to stream a large value whose key is known only at the end."""
        return BufferStaging(self)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes; what was written is durable when the block
        exits (stores whose every write is durable do nothing special)."""
        yield

    def get_view(self, key: str) -> Bytes:
        """The whole value as a read-only buffer (a local store maps the file)."""
        return self.get(key)

    def adopt(self, source: Store, key: str) -> bool:
        """Make ``key`` hold what ``source`` holds under it without copying
        bytes, when both stores can share them (hard links on one file
        system); False when this store cannot, or the key already exists.
        Only for immutable, already verified values."""
        return False

    def get_if_exists(self, key: str) -> bytes | None:
        from ..core.errors import NotFoundError

        try:
            return self.get(key)
        except NotFoundError:
            return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
