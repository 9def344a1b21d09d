"""Reading many blobs by where they are, for loaders and cluster workers.

A local repository's packs are read through mapped views (one per pack, the
most recent :data:`VIEWS` kept), so a blob costs a slice and its hash;
any other store by ranged requests, a run of neighbours in one pack with one
request. Every blob is checked against its id. A pack the store does not
hold (a metadata-only clone) is read through
:meth:`~.objects.ObjectDatabase.read_blob`, which fetches it from the remote.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import pyarrow as pa

from ..core.errors import IntegrityError, NotFoundError
from ..core.ids import hash_bytes
from .objects import ObjectDatabase
from .packs import pack_key

VIEWS = 1024
"""Packs a reader keeps mapped (a local store)."""


class Location(NamedTuple):
    """Where one blob is: its pack, offset and size, and its id."""

    pack: str
    offset: int
    size: int
    blob_id: str


def locations(rows: pa.Table) -> list[Location]:
    """The location of each row of a table with the columns of :class:`Location`."""
    columns = (rows.column(name).to_pylist() for name in Location._fields)
    return [Location(*where) for where in zip(*columns, strict=True)]


class BlobReader:
    """Verified blobs of one object database, read as cheaply as its store allows."""

    def __init__(self, odb: ObjectDatabase):
        self.odb = odb
        self._views: OrderedDict[str, memoryview] = OrderedDict()

    def read(self, where: Location) -> bytes:
        view = self._view(where.pack)
        if view is None:
            return self.odb.read_blob(*where)
        return _verified(where, view[where.offset : where.offset + where.size])

    def read_run(self, run: Sequence[Location]) -> list[bytes]:
        """The blobs of ``run`` (one pack, ascending offsets) by one read."""
        first = run[0]
        start, end = first.offset, max(w.offset + w.size for w in run)
        view = self._view(first.pack)
        if view is None:
            try:
                span = self.odb.store.get_range(pack_key(first.pack), start, end - start)
            except NotFoundError:
                return [self.read(w) for w in run]
        else:
            span = view[start:end]
        return [_verified(w, span[w.offset - start : w.offset - start + w.size]) for w in run]

    def _view(self, pack: str) -> memoryview | None:
        """A mapped view of ``pack`` when the store maps files and holds it."""
        view = self._views.get(pack)
        if view is not None:
            self._views.move_to_end(pack)
            return view
        store = self.odb.store
        if not store.maps_values:
            return None
        try:
            view = memoryview(store.get_view(pack_key(pack)))
        except NotFoundError:
            return None
        self._views[pack] = view
        if len(self._views) > VIEWS:
            self._views.popitem(last=False)
        return view


def runs(locations: Sequence[Location], longest: int) -> list[list[int]]:
    """Indexes of ``locations`` in pack order, cut into runs of at most
    ``longest`` neighbours in one pack."""
    order = sorted(range(len(locations)), key=lambda i: locations[i][:2])
    out: list[list[int]] = []
    for i in order:
        if out and len(out[-1]) < longest and locations[out[-1][0]].pack == locations[i].pack:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _verified(where: Location, data: object) -> bytes:
    blob = bytes(data)  # type: ignore[call-overload]
    if hash_bytes(blob) != where.blob_id:
        raise IntegrityError(f"blob {where.blob_id} in pack {where.pack} is corrupt")
    return blob
