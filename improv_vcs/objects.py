"""The object database: content-addressed objects and packs over a store.

Loose objects live at ``objects/<2 hex>/<62 hex>``; their id is the SHA-256 of
the stored bytes and is re-checked on every read. Packs are described in
:mod:`improv_vcs.packs`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from .errors import IntegrityError, NotFoundError
from .ids import ObjectId, hash_bytes, is_hex_prefix, object_id
from .model import Commit, Tag, canonical_json, decode_object
from .packs import PackBuilder, PackIndex, index_key, pack_key
from .store import Staging, Store


def object_key(oid: str) -> str:
    object_id(oid)
    return f"objects/{oid[:2]}/{oid[2:]}"


class ObjectDatabase:
    """Reads and writes immutable objects, verifying every hash."""

    def __init__(self, store: Store, cache_entries: int = 4096):
        self.store = store
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._cache_entries = cache_entries
        self._lock = threading.Lock()

    # -- loose objects -------------------------------------------------
    def put_bytes(self, data: bytes) -> ObjectId:
        oid = hash_bytes(data)
        self.store.put_if_absent(object_key(oid), data)
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
        self._remember(oid, obj)
        return oid

    def get_object(self, oid: str) -> Commit | Tag:
        cached = self._recall(oid)
        if cached is not None:
            return cached  # type: ignore[return-value]
        obj = decode_object(self.get_bytes(oid), f"object {oid}")
        self._remember(oid, obj)
        return obj

    def get_commit(self, oid: str) -> Commit:
        obj = self.get_object(oid)
        if not isinstance(obj, Commit):
            raise NotFoundError(f"{oid} is a {obj.kind}, not a commit")
        return obj

    def cached(self, key: str, load):  # type: ignore[no-untyped-def]
        """Memoize ``load()`` under ``key``; only for immutable, verified values."""
        value = self._recall(key)
        if value is None:
            value = load()
            self._remember(key, value)
        return value

    def _recall(self, key: str) -> object | None:
        with self._lock:
            value = self._cache.get(key)
            if value is not None:
                self._cache.move_to_end(key)
            return value

    def _remember(self, key: str, value: object) -> None:
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)

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
        """One blob by its location, verified against ``blob_id``."""
        try:
            data = self.store.get_range(pack_key(object_id(pack_id)), offset, length)
        except NotFoundError:
            raise NotFoundError(f"pack {pack_id} is missing") from None
        if hashlib.sha256(data).hexdigest() != blob_id:
            raise IntegrityError(f"blob {blob_id} in pack {pack_id} is corrupt")
        return data


class PackWriter:
    """Streams blobs into a store's staging area and publishes the pack:
    data first, then the index whose existence makes the pack visible."""

    def __init__(self, store: Store):
        self._store = store
        self._staging: Staging = store.staging()
        self._layout = PackBuilder()

    def __len__(self) -> int:
        return len(self._layout)

    @property
    def blob_count(self) -> int:
        return self._layout.blob_count

    def add(self, digest: bytes, data: bytes) -> int:
        """Append a blob (``digest`` = its SHA-256); returns its offset in the pack."""
        offset, new = self._layout.add(digest, len(data))
        if new:
            self._staging.write(data)
        return offset

    def finish(self) -> ObjectId:
        pack_id, index = self._layout.finish()
        self._staging.publish(pack_key(pack_id))
        self._store.put_if_absent(index_key(pack_id), index)
        return pack_id

    def discard(self) -> None:
        self._staging.discard()
