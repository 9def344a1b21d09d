"""Original files (raw bins, whole stacks, metadata documents), kept byte
for byte and keyed by ``(sample_id, name)``. On a concurrent commit, files
it holds with the same bytes are dropped; other bytes under a key clash."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import ConflictError
from ..core.hashing import hash_blobs, hash_files
from ..core.ids import instrument_name
from ..snapshot import sources
from ..snapshot.reader import SnapshotReader
from ..snapshot.sources import SourceFile
from ..storage.objects import ObjectDatabase
from .packing import Packer, PendingBatch, with_pack_ids
from .stage import Stage, Written


class OriginalFiles(Stage):
    """New original files, one table per instrument (its ``pack`` column
    holds pack numbers until the packs are published)."""

    def __init__(self, base: SnapshotReader, packer: Packer):
        super().__init__(base)
        self._packer = packer
        self._tables: dict[str, pa.Table] = {}

    @property
    def empty(self) -> bool:
        return not self._tables

    def add(self, instrument: str, files: Sequence[SourceFile]) -> int:
        """Stage ``files`` of ``instrument``; returns how many are new (files
        already committed or staged with the same bytes are skipped)."""
        instrument_name(instrument)
        if not files:
            return 0
        ordered = [f for f in files if f.data is None] + [f for f in files if f.data is not None]
        table = sources.describe(ordered, instrument)
        sources.require_unique(table)
        known = committed(self.base, table)
        for staged in self._tables.values():
            known.update(
                zip(sources.keys(staged), staged.column("blob_id").to_pylist(), strict=True)
            )
        stream = itertools.chain(
            hash_files([os.fspath(f.location) for f in ordered if f.data is None]),
            hash_blobs([f.data for f in ordered if f.data is not None]),
        )
        keys = sources.keys(table)
        pending = self._packer.pack_new(instrument, table, keys, known, stream, "source file {!r}")
        if pending is None:
            return 0
        staged = self._tables.get(instrument)
        located = _located(pending)
        self._tables[instrument] = (
            located if staged is None else pa.concat_tables([staged, located])
        )
        return pending.metadata.num_rows

    def write(self, odb: ObjectDatabase) -> Written:
        packs = self._packer.finish()
        written = []
        for instrument in sorted(self._tables):
            table = with_pack_ids(self._tables[instrument], packs)
            written.append(sources.summarize(table, odb.put_bytes(sources.encode(table))))
        return Written(sources=tuple(written))

    def rebase(self, onto: SnapshotReader) -> bool:
        """Files ``onto`` holds with the same bytes are dropped; other bytes
        under the same key clash."""
        rebased = {}
        for instrument in sorted(self._tables):
            table = _without_committed(self._tables[instrument], onto)
            if table.num_rows:
                rebased[instrument] = table
        self._tables, self.base = rebased, onto
        return not self.empty


def committed(snapshot: SnapshotReader, table: pa.Table) -> dict[str, str]:
    """Key → blob id of the files of ``table``'s samples already in ``snapshot``."""
    samples = table.column("sample_id").unique().to_pylist()
    found = snapshot.source_files(samples)
    return dict(zip(sources.keys(found), found.column("blob_id").to_pylist(), strict=True))


def _located(pending: PendingBatch) -> pa.Table:
    """The descriptions of new files with where their bytes went."""
    table = pending.metadata.append_column("blob_id", pa.array(pending.blob_ids, pa.string()))
    table = table.append_column("size", pa.array(pending.sizes, pa.int64()))
    table = table.append_column("pack", pa.array(pending.pack_numbers, pa.int64()))
    return table.append_column("offset", pa.array(pending.offsets, pa.int64()))


def _without_committed(table: pa.Table, onto: SnapshotReader) -> pa.Table:
    """``table`` without the files ``onto`` holds with the same bytes; other
    bytes under the same key are a ConflictError."""
    theirs = committed(onto, table)
    ours = sources.keys(table)
    for key, blob in zip(ours, table.column("blob_id").to_pylist(), strict=True):
        if theirs.get(key, blob) != blob:
            raise ConflictError(
                f"source file {key!r} was committed concurrently with different bytes"
            )
    known = pa.array(list(theirs), pa.string())
    return table.filter(pc.invert(pc.is_in(pa.array(ours, pa.string()), value_set=known)))
