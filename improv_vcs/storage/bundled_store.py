"""Bundles: many small immutable values in one file, still read by their keys.

A site that commits every few minutes writes a handful of small values per
commit (a commit, a manifest, an index segment, a pack and its index).
Bundling moves them into a few large files, so listing, copying and
checking a repository costs requests per bundle, not per value.

A bundle is two keys: ``bundles/<id>.bundle`` (the values back to back) and
``bundles/<id>.idx``, whose SHA-256 is the bundle id::

    b"IMPRVBDL" | u32 version | u32 0 | u64 data length | u64 entry count | 32-byte SHA-256 of the
    data
    entry*: u8 role | 32-byte digest | u64 offset | u64 length

sorted by ``(role, digest)``. Only content-addressed keys are bundled, so
each value is still verified by what names it:

====  ===========================  ==========================================
role  key                          verified by
====  ===========================  ==========================================
0     ``objects/<aa>/<62 hex>``    its SHA-256 is the digest
1     ``packs/<id>.idx``           its SHA-256 is the digest (the pack id)
2     ``packs/<id>.pack``          every blob against the pack's index
====  ===========================  ==========================================

:class:`BundledStore` wraps a store and answers for bundled keys as if they
were loose: a key is read from its loose file when there is one, else from
the bundle holding it. A bundle is published when its index exists (data
first). Deleting a bundled key does nothing: a bundle goes as a whole (see
:mod:`improv_vcs.maintenance.repack` and :mod:`improv_vcs.maintenance.gc`).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator

from ..core.errors import IntegrityError, NotFoundError, StorageError
from ..core.ids import hash_bytes
from .store import CAPABILITIES, Bytes, Staging, Store, check_listing

PREFIX = "bundles/"
MAGIC = b"IMPRVBDL"
VERSION = 1
_HEADER = struct.Struct("<8sIIQQ32s")
_ENTRY = struct.Struct("<B32sQQ")
_KEY = re.compile(r"objects/([0-9a-f]{2})/([0-9a-f]{62})\Z|packs/([0-9a-f]{64})\.(idx|pack)\Z")
OBJECT, PACK_INDEX, PACK_DATA = 0, 1, 2
_RETRIES = 3
FRESH_FOR = 60.0
"""Seconds a freshened bundle is not freshened again by the same reader."""


def data_key(bundle_id: str) -> str:
    return f"{PREFIX}{bundle_id}.bundle"


def index_key(bundle_id: str) -> str:
    return f"{PREFIX}{bundle_id}.idx"


def entry_of(key: str) -> tuple[int, bytes] | None:
    """``(role, digest)`` of a key bundles may hold, else None."""
    found = _KEY.match(key)
    if found is None:
        return None
    if found.group(1):
        return OBJECT, bytes.fromhex(found.group(1) + found.group(2))
    return (PACK_INDEX if found.group(4) == "idx" else PACK_DATA), bytes.fromhex(found.group(3))


def key_of(role: int, digest: bytes) -> str:
    text = digest.hex()
    if role == OBJECT:
        return f"objects/{text[:2]}/{text[2:]}"
    return f"packs/{text}.{'idx' if role == PACK_INDEX else 'pack'}"


def data_digest(store: Store, bundle_id: str, length: int, chunk: int = 16 * 2**20) -> bytes:
    """SHA-256 of a bundle's data, read in chunks (a bundle may be gigabytes)."""
    digest = hashlib.sha256()
    for start in range(0, length, chunk):
        digest.update(store.get_range(data_key(bundle_id), start, min(chunk, length - start)))
    return digest.digest()


class BundleIndex:
    """A bundle index, searched in place (parsing costs nothing per entry, so
    opening a repository of many bundles stays cheap)."""

    def __init__(self, data: bytes):
        if len(data) < _HEADER.size:
            raise IntegrityError("bundle index is truncated")
        magic, version, _, self.data_length, self.count, self.data_digest = _HEADER.unpack_from(
            data
        )
        if magic != MAGIC or version != VERSION:
            raise IntegrityError(f"not a version-{VERSION} bundle index")
        if len(data) != _HEADER.size + self.count * _ENTRY.size:
            raise IntegrityError("bundle index length does not match its entry count")
        self._data = data

    def _name(self, i: int) -> bytes:
        start = _HEADER.size + i * _ENTRY.size
        return self._data[start : start + 33]

    def locate(self, role: int, digest: bytes) -> tuple[int, int] | None:
        name = bytes([role]) + digest
        i = bisect.bisect_left(range(self.count), name, key=self._name)
        if i < self.count and self._name(i) == name:
            _, _, offset, length = _ENTRY.unpack_from(self._data, _HEADER.size + i * _ENTRY.size)
            return offset, length
        return None

    def entries(self) -> Iterator[tuple[int, bytes, int, int]]:
        """``(role, digest, offset, length)``, in order."""
        return _ENTRY.iter_unpack(memoryview(self._data)[_HEADER.size :])

    def key_names(self) -> list[str]:
        return [key_of(role, digest) for role, digest, _, _ in self.entries()]

    def check(self) -> None:
        """Raise :class:`IntegrityError` unless entries are sorted, unique,
        of known roles and inside the data (fsck's check; readers trust a
        verified index)."""
        previous = b""
        for role, digest, offset, length in self.entries():
            name = bytes([role]) + digest
            if name <= previous:
                raise IntegrityError("bundle index entries are not sorted and unique")
            if role > PACK_DATA or offset + length > self.data_length:
                raise IntegrityError(
                    "bundle index has an unknown role or points past the end of its data"
                )
            previous = name


def build_index(
    entries: list[tuple[int, bytes, int, int]], data_length: int, data_digest: bytes
) -> bytes:
    """Index bytes for ``entries`` (``(role, digest, offset, length)``) of
    data of ``data_length`` bytes whose SHA-256 is ``data_digest``."""
    entries = sorted(entries)
    out = bytearray(_HEADER.pack(MAGIC, VERSION, 0, data_length, len(entries), data_digest))
    for entry in entries:
        out += _ENTRY.pack(*entry)
    return bytes(out)


class BundleWriter:
    """Streams values into a new bundle; :meth:`finish` publishes it (data,
    then index) and returns its id. A value whose key was added already is
    skipped."""

    def __init__(self, store: Store):
        self._store = store
        self._staging: Staging = store.staging()
        self._entries: dict[tuple[int, bytes], tuple[int, int]] = {}
        self._length = 0
        self._digest = hashlib.sha256()

    def __len__(self) -> int:
        return self._length

    @property
    def count(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return entry_of(key) in self._entries

    def add(self, key: str, data: Bytes) -> None:
        entry = entry_of(key)
        if entry is None:
            raise ValueError(f"{key} cannot be bundled")
        if entry in self._entries:
            return
        self._staging.write(data)
        self._digest.update(data)
        self._entries[entry] = (self._length, len(data))
        self._length += len(data)

    def finish(self) -> str:
        """Publish the bundle. When one with the same id exists (the very same
        values rewritten) its data is kept if it is whole, and replaced if it
        was damaged (a repair)."""
        digest = self._digest.digest()
        index = build_index([(*k, *v) for k, v in self._entries.items()], self._length, digest)
        bundle_id = hash_bytes(index)
        key = data_key(bundle_id)
        damaged = (
            self._store.exists(key) and data_digest(self._store, bundle_id, self._length) != digest
        )
        self._staging.publish(key, replace=damaged)
        self._store.put_or_freshen(index_key(bundle_id), index)
        return bundle_id

    def discard(self) -> None:
        self._staging.discard()


class BundledStore(Store):
    """A store whose content-addressed keys may live in bundles. It can do
    what the inner store can (the same capabilities), is read-only when that
    is, and closes it when closed."""

    resolves_bundles = True

    def __init__(self, inner: Store):
        self.inner = inner
        self.url = inner.url
        for flag in CAPABILITIES:
            setattr(self, flag, getattr(inner, flag))
        self.maps_values = inner.maps_values
        self._bundles: dict[str, BundleIndex] = {}
        self._lock = threading.Lock()
        self._loaded = False
        self._freshened: dict[str, float] = {}
        self._mapped: dict[str, memoryview] = {}  # bundle id → its mapped data file

    @property
    def read_only(self) -> bool:  # type: ignore[override]
        return self.inner.read_only

    def close(self) -> None:
        self.inner.close()
        with self._lock:
            self._bundles, self._loaded, self._mapped = {}, False, {}
        super().close()

    # -- bundles ---------------------------------------------------------------
    def bundles(self, refresh: bool = False) -> dict[str, BundleIndex]:
        """The published bundles, by id, largest first (the likeliest to hold
        a key); listed again when ``refresh``."""
        self._check_open()
        with self._lock:
            if refresh or not self._loaded:
                found = {}
                for key in self.inner.list(PREFIX):
                    if key.endswith(".idx"):
                        bundle_id = key[len(PREFIX) : -len(".idx")]
                        found[bundle_id] = self._bundles.get(bundle_id) or self._load(bundle_id)
                largest_first = sorted((v.count, k) for k, v in found.items() if v is not None)[
                    ::-1
                ]
                self._bundles, self._loaded = {k: found[k] for _, k in largest_first}, True
                self._mapped = {k: v for k, v in self._mapped.items() if k in found}
            return self._bundles

    def _load(self, bundle_id: str) -> BundleIndex | None:
        try:
            data = self.inner.get(index_key(bundle_id))
        except NotFoundError:
            return None  # removed since the listing
        if hash_bytes(data) != bundle_id:
            return None  # damaged: its keys read as missing (and repairable); fsck reports it
        try:
            return BundleIndex(data)
        except IntegrityError:
            return None

    def locate(
        self, key: str, refresh: bool = False, look_again: bool = True
    ) -> tuple[str, int, int] | None:
        """``(bundle id, offset, length)`` of a bundled key, or None. The
        bundles are listed again before answering None (a maintenance run
        may have bundled the key since), unless ``look_again`` is False."""
        entry = entry_of(key)
        if entry is None:
            return None
        passes = (True,) if refresh else (False, True) if look_again else (False,)
        for again in passes:
            for bundle_id, parsed in self.bundles(refresh=again).items():
                where = parsed.locate(*entry)
                if where is not None:
                    return bundle_id, *where
        return None

    def _bundled(self, key: str, start: int, length: int | None) -> bytes:
        """Bytes of a key that has no loose file, from its bundle; retried
        when a maintenance run merged that bundle away meanwhile."""
        for attempt in range(_RETRIES):
            found = self.locate(key, refresh=attempt > 0)
            if found is None:
                break
            bundle_id, offset, size = found
            if length is None:
                length = size
            if start + length > size:
                raise StorageError(f"range past the end of {key}")
            try:
                return self.inner.get_range(data_key(bundle_id), offset + start, length)
            except NotFoundError:
                continue
        raise NotFoundError(f"{key} not found in {self.url}")

    # -- reading -----------------------------------------------------------------
    def _known(self, key: str) -> tuple[str, int, int] | None:
        """Where the bundles as last listed hold ``key`` (no request)."""
        return self.locate(key, look_again=False)

    def _read(self, key: str, start: int, length: int | None, loose: Callable[[], Bytes]) -> Bytes:
        """A key's bytes: from a bundle known to hold it (one request), else
        its loose file, else a bundle listed anew. A repaired loose copy of a
        bundled value is read once maintenance has merged that bundle (see
        :func:`improv_vcs.sync.sites.repair`)."""
        if self._known(key) is not None:
            try:
                return self._bundled(key, start, length)
            except NotFoundError:
                pass
        try:
            return loose()
        except NotFoundError:
            return self._bundled(key, start, length)

    def get(self, key: str) -> bytes:
        return bytes(self._read(key, 0, None, lambda: self.inner.get(key)))

    def get_view(self, key: str) -> Bytes:
        found = self._known(key) if self.maps_values else None
        if found is not None:
            bundle_id, offset, size = found
            try:
                return self._map(bundle_id)[offset : offset + size]
            except NotFoundError:
                pass  # merged away meanwhile: read it as below
        return self._read(key, 0, None, lambda: self.inner.get_view(key))

    def _map(self, bundle_id: str) -> memoryview:
        """A bundle's data file, mapped once (until it is merged away)."""
        view = self._mapped.get(bundle_id)
        if view is None:
            view = self._mapped[bundle_id] = memoryview(self.inner.get_view(data_key(bundle_id)))
        return view

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return bytes(
            self._read(key, start, length, lambda: self.inner.get_range(key, start, length))
        )

    def exists(self, key: str) -> bool:
        return (
            self._known(key) is not None or self.inner.exists(key) or self.locate(key) is not None
        )

    def exists_as_listed(self, key: str) -> bool:
        return self._known(key) is not None or self.inner.exists(key)

    def size(self, key: str) -> int:
        found = self._known(key)
        if found is not None:
            return found[2]
        try:
            return self.inner.size(key)
        except NotFoundError:
            found = self.locate(key)
            if found is None:
                raise
            return found[2]

    def modified(self, key: str) -> float:
        """When a key was last written or freshened: the younger of its loose
        file and its bundle (its index: freshening rewrites only that)."""
        times = []
        try:
            times.append(self.inner.modified(key))
        except NotFoundError:
            pass
        for attempt in range(_RETRIES):
            found = self.locate(key, refresh=attempt > 0, look_again=not times)
            if found is None:
                break
            try:
                times.append(self.inner.modified(index_key(found[0])))
                break
            except NotFoundError:
                continue  # merged away meanwhile
        if not times:
            raise NotFoundError(f"{key} not found in {self.url}")
        return max(times)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        after = check_listing(prefix, start_after)
        names = {k for parsed in self.bundles(refresh=True).values() for k in parsed.key_names()}
        bundled = sorted(k for k in names if k.startswith(prefix) and k > after)
        return _unique(heapq.merge(self.inner.list(prefix, start_after), bundled))

    # -- writing -----------------------------------------------------------------
    def put_if_absent(self, key: str, data: Bytes) -> bool:
        self._check_writable("write")
        if self.locate(key, look_again=False) is not None:
            return False  # a stale view of the bundles at worst writes a loose duplicate
        return self.inner.put_if_absent(key, data)

    def freshen(self, key: str) -> bool:
        """A bundled key is freshened by freshening its bundle's index (the
        small half, whose age is the bundle's: see :meth:`modified`), at most
        once a minute per bundle: a transfer relying on thousands of values
        of one bundle costs one request, not thousands."""
        self._check_writable("freshen")
        if self._known(key) is None and self.inner.freshen(key):
            return True
        for attempt in range(_RETRIES):
            found = self.locate(key, refresh=attempt > 0)
            if found is None:
                return self.inner.freshen(key)
            with self._lock:
                if time.monotonic() - self._freshened.get(found[0], -FRESH_FOR) < FRESH_FOR:
                    return True
            if self.inner.freshen(index_key(found[0])):
                with self._lock:
                    self._freshened[found[0]] = time.monotonic()
                return True
        return False

    def delete(self, key: str) -> None:
        """Delete a loose key; a bundled one stays until its bundle goes."""
        self._check_writable("delete")
        self.inner.delete(key)
        if key.startswith(PREFIX):
            with self._lock:
                self._loaded = False

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes) -> None:
        self._check_writable("compare and swap")
        self.inner.compare_and_swap(key, expected, new)

    def replace(self, key: str, data: Bytes) -> None:
        """A repaired value is written loose, where it is read first."""
        self._check_writable("repair")
        self.inner.replace(key, data)

    def staging(self) -> Staging:
        self._check_writable("write")
        return self.inner.staging()

    def batch(self):  # type: ignore[no-untyped-def]
        return self.inner.batch()

    def sweep_temporaries(self, before: float, dry_run: bool = False) -> list[str]:
        self._check_open()
        return self.inner.sweep_temporaries(before, dry_run)

    def adopt(self, source: Store, key: str) -> bool:
        """Share a loose file of ``source`` (a bundled value is copied instead)."""
        self._check_writable("write")
        if isinstance(source, BundledStore):
            if not source.is_loose(key):
                return False
            source = source.inner
        return self.inner.adopt(source, key)

    def is_loose(self, key: str) -> bool:
        """Whether ``key`` has a file of its own (not only a bundle entry)."""
        return self.inner.exists(key)

    def __repr__(self) -> str:
        return f"BundledStore({self.inner!r})"


def _unique(keys: Iterator[str]) -> Iterator[str]:
    """Sorted ``keys`` without repeats."""
    last = None
    for key in keys:
        if key != last:
            yield key
        last = key
