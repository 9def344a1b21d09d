"""Provenance records: normalized against their kind, deduplicated against
the base and each other, masks packed with the images. On a concurrent
commit, records it holds (same record ids) are dropped."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError
from ..core.hashing import hash_blobs
from ..core.ids import ObjectId, label
from ..core.media import media_type
from ..core.times import Clock
from ..provenance import catalog, kinds, records, view
from ..snapshot.reader import SnapshotReader
from ..storage.objects import ObjectDatabase
from .packing import Packer, with_pack_ids
from .stage import Stage, Written
from .tables import as_table


@dataclass
class Staged:
    kind: kinds.Kind
    table: pa.Table  # segment columns; for blob kinds ``pack`` holds pack numbers


class ProvenanceRecords(Stage):
    """The records staged so far, one table per submission (a rebase may
    leave one with no rows)."""

    def __init__(self, base: SnapshotReader, packer: Packer, clock: Clock):
        super().__init__(base)
        self._packer = packer
        self._clock = clock
        self._staged: list[Staged] = []

    @property
    def empty(self) -> bool:
        return not any(s.table.num_rows for s in self._staged)

    def add(
        self,
        kind_name: str,
        rows: pa.Table | Sequence[dict[str, Any]],
        source: str,
        run_id: str | None,
        masks: Mapping[str, bytes] | None,
        require_images: Callable[[pa.Array], None],
    ) -> int:
        """Stage records of ``kind_name`` about the images ``require_images``
        accepts; returns how many are new."""
        kind = catalog.get_kind(kind_name)
        source = label(source, "source")
        if run_id is not None:
            run_id = label(run_id, "run id")
        table = as_table(rows)
        if table.num_rows == 0:
            raise InvalidInputError("no records to add")
        known = view.known_types(self.base, kind.name)
        for staged in self._staged:
            if staged.kind is kind:
                for field in staged.table.schema:
                    known.setdefault(field.name, str(field.type))
        table = kinds.normalize(kind, table, known)
        require_images(table.column("image_id").combine_chunks())
        blobs: list[bytes] = []
        if kind.blob:
            table, blobs = _with_masks(kind, table, masks)
        elif masks:
            raise InvalidInputError(f"{kind.name} records carry no masks")
        content = records.content_rows(table)
        run = run_id or records.default_run_id(kind.name, source, content)
        ids = records.record_ids(records.envelope_prefix(kind.name, source, run), content)
        keep = self._new(kind.name, source, run, table.column("image_id"), ids)
        if not len(keep):
            return 0
        if len(keep) < table.num_rows:
            table, ids = table.take(keep), ids.take(keep)
        if kind.blob:
            digests = [bytes.fromhex(b) for b in table.column("blob_id").to_pylist()]
            placed = [
                self._packer.place(d, blobs[i])
                for d, i in zip(digests, keep.to_pylist(), strict=True)
            ]
            table = table.append_column("pack", pa.array([p[0] for p in placed], pa.int64()))
            table = table.append_column("offset", pa.array([p[1] for p in placed], pa.int64()))
        segment = records.segment_table(kind, table, source, run, self._clock(), ids)
        self._staged.append(Staged(kind, segment))
        return len(keep)

    def _new(
        self,
        kind: str,
        source: str,
        run: str,
        image_ids: pa.ChunkedArray,
        ids: pa.Array,
    ) -> pa.Array:
        """Rows whose record id is neither committed, staged, nor repeated."""
        bounds = pc.min_max(image_ids)
        seen = [
            view.record_ids_for(
                self.base,
                kind,
                source,
                run,
                (bounds["min"].as_py(), bounds["max"].as_py()),
            )
        ]
        seen += [
            p.table.column("record_id").combine_chunks()
            for p in self._staged
            if p.kind.name == kind
        ]
        known = pa.concat_arrays([a.cast(pa.string()) for a in seen])
        if pc.count_distinct(ids).as_py() == len(ids):
            first = pa.array(range(len(ids)), pa.int64())
        else:
            rows = pa.table({"id": ids, "row": pa.array(range(len(ids)), pa.int64())})
            first = (
                rows.group_by("id", use_threads=False).aggregate([("row", "min")]).column("row_min")
            )
            first = pc.take(first, pc.sort_indices(first)).combine_chunks()
        if len(known) == 0:
            return first
        return pc.filter(first, pc.invert(pc.is_in(pc.take(ids, first), value_set=known)))

    def write(self, odb: ObjectDatabase) -> Written:
        """Segments of at most ``records.SEGMENT_ROWS`` records each, by image-id range."""
        out = []
        for kind, table in self._groups(self._packer.finish()):
            for start in range(0, table.num_rows, records.SEGMENT_ROWS):
                piece = table.slice(start, records.SEGMENT_ROWS)
                out.append(records.summarize(kind, piece, odb.put_bytes(records.encode(piece))))
        return Written(segments=tuple(out))

    def _groups(self, packs: list[ObjectId]) -> list[tuple[kinds.Kind, pa.Table]]:
        """Staged records by kind, pack numbers replaced by pack ids, sorted
        by image id (then time and record id)."""
        by_kind: dict[str, list[Staged]] = {}
        for staged in self._staged:
            by_kind.setdefault(staged.kind.name, []).append(staged)
        groups = []
        for name in sorted(by_kind):
            tables = [
                with_pack_ids(s.table, packs) if "pack" in s.table.column_names else s.table
                for s in by_kind[name]
            ]
            table = pa.concat_tables(tables, promote_options="permissive")
            if not table.num_rows:
                continue  # every record was committed concurrently
            groups.append((by_kind[name][0].kind, _sorted(table)))
        return groups

    def rebase(self, onto: SnapshotReader) -> bool:
        """Records ``onto`` gained (the same record ids) are dropped; a
        submission left with no rows stays, so its kind's segments keep the
        columns they had."""
        old = set(self.base.provenance_segments.column("id").to_pylist())
        theirs: dict[str, pa.Array] = {}
        for name in sorted({s.kind.name for s in self._staged}):
            segments = view.segments(onto, name).column("id").to_pylist()
            concurrent = [s for s in segments if s not in old]
            if concurrent:
                found = view.read(onto, concurrent, ["image_id", "record_id"])
                theirs[name] = found.column("record_id").combine_chunks()
        self._staged = [
            Staged(s.kind, _without(s.table, theirs.get(s.kind.name))) for s in self._staged
        ]
        self.base = onto
        return not self.empty


def _sorted(table: pa.Table) -> pa.Table:
    """``table`` by image id, then time and record id; as it is when its
    image ids strictly increase (a submission usually comes in order)."""
    ids = table.column("image_id")
    if table.num_rows < 2 or pc.all(pc.greater(ids[1:], ids[:-1])).as_py():
        return table
    order = [("image_id", "ascending"), ("recorded_at", "ascending"), ("record_id", "ascending")]
    return table.sort_by(order)


def _without(table: pa.Table, record_ids: pa.Array | None) -> pa.Table:
    """``table`` without the records whose id is in ``record_ids`` (None: none)."""
    if record_ids is None:
        return table
    return table.filter(pc.invert(pc.is_in(table.column("record_id"), value_set=record_ids)))


def _with_masks(
    kind: kinds.Kind, table: pa.Table, masks: Mapping[str, bytes] | None
) -> tuple[pa.Table, list[bytes]]:
    """``table`` with the blob columns of each record's mask, and the masks."""
    if not masks:
        raise InvalidInputError(f"{kind.name} records need masks (one per record)")
    ids = table.column("image_id").to_pylist()
    missing = [i for i in ids if i not in masks]
    if missing:
        raise InvalidInputError(f"no mask given for image {missing[0]!r}")
    blobs = [masks[i] for i in ids]
    digests = [d.hex() for chunk, _ in hash_blobs(blobs) for d in chunk]
    table = table.append_column("blob_id", pa.array(digests, pa.string()))
    table = table.append_column("size", pa.array([len(b) for b in blobs], pa.int64()))
    table = table.append_column("media_type", pa.array([media_type(b) for b in blobs], pa.string()))
    if kind.from_blobs is not None:
        table = kind.from_blobs(table, blobs)
    return table, blobs
