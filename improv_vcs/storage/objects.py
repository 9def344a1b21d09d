"""The object database: content-addressed objects and packs over a store.

Loose objects live at ``objects/<2 hex>/<62 hex>``; their id is the SHA-256 of
the stored bytes and is re-checked on every read. Packs are described in
:mod:`improv_vcs.storage.packs`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

from ..core.errors import IntegrityError, NotFoundError
from ..core.hashing import LargeFile
from ..core.ids import ObjectId, hash_bytes, is_hex_prefix, object_id
from ..core.model import Commit, Tag, canonical_json, decode_object
from . import Staging, Store
from .packs import PackBuilder, PackIndex, index_key, pack_key


def blob_cache_key(blob_id: str) -> str:
    """Where a metadata-only clone keeps a blob it fetched on demand."""
    object_id(blob_id)
    return f"blobs/{blob_id[:2]}/{blob_id[2:]}"


def object_key(oid: str) -> str:
    object_id(oid)
    return f"objects/{oid[:2]}/{oid[2:]}"


class _Cache:
    """A thread-safe LRU bounded by entry count and by the ``nbytes`` of the
    values that report one (Arrow tables)."""

    def __init__(self, max_entries: int, max_bytes: int):
        self._items: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._max_entries, self._max_bytes, self._bytes = max_entries, max_bytes, 0
        self._lock = threading.Lock()

    def get(self, key: str) -> object | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: str, value: object) -> None:
        size = int(getattr(value, "nbytes", 0))
        if size > self._max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes += size - (old[1] if old else 0)
            self._items[key] = (value, size)
            while len(self._items) > self._max_entries or self._bytes > self._max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped


class ObjectDatabase:
    """Reads and writes immutable objects, verifying every hash.

    Parsed objects (commits, index segments, manifests, pack indexes) are
    cached in memory: they are immutable and were verified when loaded.
    """

    def __init__(self, store: Store, cache_entries: int = 8192, cache_bytes: int = 256 * 2**20):
        self.store = store
        self._cache = _Cache(cache_entries, cache_bytes)
        self.remote_blobs: Callable[[str, int, int], bytes] | None = None
        """Set for a metadata-only clone: reads a blob the local store lacks."""

    # -- loose objects -------------------------------------------------
    def put_bytes(self, data: bytes) -> ObjectId:
        """Store an object (or, if it exists, freshen it: a writer may be
        reusing garbage that only its age protects from gc)."""
        oid = hash_bytes(data)
        self.store.put_or_freshen(object_key(oid), data)
        return oid

    def get_bytes(self, oid: str) -> bytes:
        try:
            data = self.store.get(object_key(oid))
        except NotFoundError:
            raise NotFoundError(f"object {oid} is missing") from None
        if hash_bytes(data) != oid:
            raise IntegrityError(f"object {oid} is corrupt: its bytes hash differently")
        return data

    def has(self, oid: str) -> bool:
        return self.store.exists(object_key(oid))

    def is_json_object(self, oid: str) -> bool:
        """Whether ``oid`` is a commit or tag (JSON), judged by its first byte."""
        return self.store.get_range(object_key(oid), 0, 1) == b"{"

    def expand_prefix(self, prefix: str) -> list[ObjectId]:
        """Every stored loose object id starting with ``prefix`` (≥ 4 hex digits)."""
        if not is_hex_prefix(prefix):
            return []
        keys = self.store.list(f"objects/{prefix[:2]}/{prefix[2:]}")
        return [ObjectId(k[8:10] + k[11:]) for k in keys]

    # -- commits and tags ------------------------------------------------
    def put_object(self, obj: Commit | Tag) -> ObjectId:
        oid = self.put_bytes(canonical_json(obj))
        self._cache.put(oid, obj)
        return oid

    def get_object(self, oid: str) -> Commit | Tag:
        return self.cached(oid, lambda: decode_object(self.get_bytes(oid), f"object {oid}"))

    def get_commit(self, oid: str) -> Commit:
        obj = self.get_object(oid)
        if not isinstance(obj, Commit):
            raise NotFoundError(f"{oid} is a {obj.kind}, not a commit")
        return obj

    def cached(self, key: str, load):  # type: ignore[no-untyped-def]
        """Memoize ``load()`` under ``key``; only for immutable, verified values."""
        value = self._cache.get(key)
        if value is None:
            value = load()
            self._cache.put(key, value)
        return value

    # -- packs -------------------------------------------------------------
    def pack_writer(self) -> PackWriter:
        """Stream blobs into a new pack."""
        return PackWriter(self.store)

    def pack_index(self, pack_id: str) -> PackIndex:
        def load() -> PackIndex:
            data = self.store.get(index_key(object_id(pack_id)))
            if hash_bytes(data) != pack_id:
                raise IntegrityError(f"pack index {pack_id} is corrupt")
            return PackIndex.parse(data)

        return self.cached(f"idx:{pack_id}", load)

    def read_blob(self, pack_id: str, offset: int, length: int, blob_id: str) -> bytes:
        """One blob by its location, verified against ``blob_id``. A
        metadata-only clone fetches a missing blob from its remote once and
        keeps it under ``blobs/``."""
        object_id(blob_id)
        try:
            data = self.store.get_range(pack_key(object_id(pack_id)), offset, length)
        except NotFoundError:
            if self.remote_blobs is None:
                raise NotFoundError(f"pack {pack_id} is missing") from None
            return self._remote_blob(pack_id, offset, length, blob_id)
        if hashlib.sha256(data).hexdigest() != blob_id:
            raise IntegrityError(f"blob {blob_id} in pack {pack_id} is corrupt")
        return data

    def _remote_blob(self, pack_id: str, offset: int, length: int, blob_id: str) -> bytes:
        key = blob_cache_key(blob_id)
        data = self.store.get_if_exists(key)
        if data is not None and hashlib.sha256(data).hexdigest() == blob_id:
            return data
        assert self.remote_blobs is not None
        data = self.remote_blobs(pack_id, offset, length)
        if hashlib.sha256(data).hexdigest() != blob_id:
            raise IntegrityError(f"blob {blob_id} from the remote is corrupt; it was not kept")
        self.store.put_if_absent(key, data)
        return data


class PackWriter:
    """Streams blobs into a store's staging area and publishes the pack:
    data first, then the index whose existence makes the pack visible. A
    pack that already exists is freshened instead."""

    def __init__(self, store: Store):
        self._store = store
        self._staging: Staging = store.staging()
        self._layout = PackBuilder()

    def __len__(self) -> int:
        return len(self._layout)

    @property
    def blob_count(self) -> int:
        return self._layout.blob_count

    def add(self, digest: bytes, data: bytes | LargeFile) -> int:
        """Append a blob (``digest`` = its SHA-256); returns its offset in the
        pack. A large file is copied block by block."""
        offset, new = self._layout.add(digest, len(data))
        if new:
            if isinstance(data, LargeFile):
                for block in data.blocks():
                    self._staging.write(block)
            else:
                self._staging.write(data)
        return offset

    def finish(self) -> ObjectId:
        pack_id, index = self._layout.finish()
        self._staging.publish(pack_key(pack_id))
        self._store.put_or_freshen(index_key(pack_id), index)
        return pack_id

    def discard(self) -> None:
        self._staging.discard()
