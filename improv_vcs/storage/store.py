"""The store protocol: a flat namespace of keys holding immutable bytes,
plus compare-and-swap for the few small mutable files (refs).

A store moves bytes and knows nothing of commits or manifests. Opened with
``read_only=True`` it refuses every write (:class:`ReadOnlyError`) before
touching anything; once closed, every call raises :class:`ClosedStoreError`.
What a backend can do is told by its capability flags (:data:`CAPABILITIES`;
see ``docs/design/011-store-protocol-v2.md``), and
:class:`improv_vcs.testing.StoreTests` checks that it does it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.errors import ImprovError, InvalidInputError, NotFoundError, ReadOnlyError, StorageError

_FRESHEN_ATTEMPTS = 5
_KEY_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")

Bytes = bytes | bytearray | memoryview

CAPABILITIES = (
    "supports_writes",
    "supports_deletes",
    "supports_listing",
    "supports_conditional_writes",
    "supports_freshen",
    "supports_replace",
)
"""The capability flags every store class sets (see :class:`Store`)."""


class ClosedStoreError(ImprovError, ValueError):
    """A closed store was used (like I/O on a closed file: a programming
    error, never retried as a storage failure)."""


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


def check_listing(prefix: str, start_after: str | None) -> str:
    """Validate the arguments of :meth:`Store.list`; ``start_after`` as a
    string (``""``: from the first key)."""
    check_prefix(prefix)
    if start_after is not None and not isinstance(start_after, str):
        raise InvalidInputError(f"start_after must be a string, not {start_after!r}")
    return start_after or ""


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

    Capability flags (class attributes; :data:`CAPABILITIES`) say what the
    backend can do. An operation it lacks raises :class:`ReadOnlyError`
    (writes) or ``NotImplementedError`` (listing):

    - ``supports_writes``: values can be written at all;
    - ``supports_deletes``: :meth:`delete` removes keys;
    - ``supports_listing``: :meth:`list` enumerates keys;
    - ``supports_conditional_writes``: :meth:`put_if_absent` and
      :meth:`compare_and_swap` are atomic (else refs cannot live here, and
      :meth:`compare_and_swap` is refused);
    - ``supports_freshen``: :meth:`freshen` makes a value young again (else
      it only says whether the key exists: something else keeps it young);
    - ``supports_replace``: :meth:`replace` overwrites a damaged value.

    A store is a context manager; :meth:`close` releases what it holds.
    """

    url: str
    resolves_bundles = False
    """Whether keys held in bundles are read through this store as loose
    ones (a served repository does it on the server)."""
    maps_values = False
    """Whether :meth:`get_view` maps a value's file instead of reading it
    (a local store): a view of a large value then costs nothing until read."""
    read_only = False
    """Whether every write is refused (set by ``read_only=True`` when opening)."""
    supports_writes = True
    supports_deletes = True
    supports_listing = True
    supports_conditional_writes = True
    supports_freshen = True
    supports_replace = False
    _closed = False

    # -- state -------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release what the store holds (connections, sessions); afterwards
        every call raises :class:`ClosedStoreError`. Closing again does nothing."""
        self._closed = True

    def __enter__(self) -> Store:
        self._check_open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedStoreError(f"{self.url} is closed")

    def _check_writable(self, doing: str) -> None:
        """Refuse ``doing`` on a read-only (or closed) store, before anything else."""
        self._check_open()
        if self.read_only:
            raise ReadOnlyError(f"cannot {doing}: {self.url} is open read-only")

    # -- reading -----------------------------------------------------------------
    @abstractmethod
    def get(self, key: str) -> bytes:
        """The whole value; :class:`NotFoundError` if absent."""

    @abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start``; :class:`StorageError` past the end."""

    def get_view(self, key: str) -> Bytes:
        """The whole value as a read-only buffer (a local store maps the file)."""
        return self.get(key)

    def get_if_exists(self, key: str) -> bytes | None:
        try:
            return self.get(key)
        except NotFoundError:
            return None

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
    def modified(self, key: str) -> float:
        """When the value was written, as a POSIX timestamp."""

    @abstractmethod
    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """Every key starting with ``prefix`` and greater than ``start_after``
        (any string; None or ``""``: from the first), in sorted order. The
        arguments are checked when called, the keys found as they are read."""

    # -- writing -----------------------------------------------------------------
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
        self._check_writable("write")
        for _ in range(_FRESHEN_ATTEMPTS):
            if self.put_if_absent(key, data):
                return True
            if self.freshen(key):
                return False
        raise StorageError(f"{key} kept disappearing while it was written to {self.url}")

    def replace(self, key: str, data: Bytes) -> None:
        """Overwrite ``key`` atomically: only to repair a value that failed
        verification with one that passed (values never change otherwise)."""
        self._check_writable("repair")
        check_key(key)
        raise ReadOnlyError(
            f"{self.url} cannot be repaired from here; repair it on its own machine"
        )

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
        self._check_writable("write")
        return BufferStaging(self)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes; what was written is durable when the block
        exits (stores whose every write is durable do nothing special)."""
        yield

    def sweep_temporaries(self, before: float, dry_run: bool = False) -> list[str]:
        """Remove unfinished writes (temporary files) older than ``before``;
        returns their names. Stores whose writes are atomic have none. A dry
        run only reads, so a read-only store answers it."""
        self._check_open()
        if not dry_run:
            self._check_writable("remove temporary files")
        return []

    def adopt(self, source: Store, key: str) -> bool:
        """Make ``key`` hold what ``source`` holds under it without copying
        bytes, when both stores can share them (hard links on one file
        system); False when this store cannot, or the key already exists.
        Only for immutable, already verified values."""
        self._check_writable("write")
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
