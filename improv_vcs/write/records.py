"""Provenance records a transaction stages: normalized against their kind,
deduplicated against the base and each other, masks packed with the images."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError
from ..core.hashing import hash_blobs
from ..core.ids import ObjectId, label
from ..core.media import media_type
from ..provenance import catalog, kinds, records, view
from ..snapshot.reader import SnapshotReader
from .tables import as_table


@dataclass
class Staged:
    kind: kinds.Kind
    table: pa.Table  # segment columns; for blob kinds ``pack`` holds pack numbers


class RecordBuffer:
    """The records staged so far, by submission (pack numbers until the
    packs are published)."""

    def __init__(self) -> None:
        self.pending: list[Staged] = []

    @property
    def empty(self) -> bool:
        return not self.pending

    def add(
        self,
        base: SnapshotReader,
        kind_name: str,
        rows: pa.Table | Sequence[dict[str, Any]],
        source: str,
        run_id: str | None,
        masks: Mapping[str, bytes] | None,
        require_images: Callable[[pa.Array], None],
        pack_blob: Callable[[bytes, bytes], tuple[int, int]],
        now: datetime,
    ) -> int:
        """Stage records of ``kind_name`` on ``base``; how many are new."""
        kind = catalog.get_kind(kind_name)
        source = label(source, "source")
        if run_id is not None:
            run_id = label(run_id, "run id")
        table = as_table(rows)
        if table.num_rows == 0:
            raise InvalidInputError("no records to add")
        known = view.known_types(base, kind.name)
        for pending in self.pending:
            if pending.kind is kind:
                for field in pending.table.schema:
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
        keep = self._new(base, kind.name, source, run, table.column("image_id"), ids)
        if not len(keep):
            return 0
        table, ids = table.take(keep), ids.take(keep)
        if kind.blob:
            digests = [bytes.fromhex(b) for b in table.column("blob_id").to_pylist()]
            placed = [pack_blob(d, blobs[i]) for d, i in zip(digests, keep.to_pylist())]
            table = table.append_column("pack", pa.array([p[0] for p in placed], pa.int64()))
            table = table.append_column("offset", pa.array([p[1] for p in placed], pa.int64()))
        recorded_at = now
        segment = records.segment_table(kind, table, source, run, recorded_at, ids)
        self.pending.append(Staged(kind, segment))
        return len(keep)

    def _new(
        self,
        base: SnapshotReader,
        kind: str,
        source: str,
        run: str,
        image_ids: pa.ChunkedArray,
        ids: pa.Array,
    ) -> pa.Array:
        """Rows whose record id is neither committed, pending, nor repeated."""
        bounds = pc.min_max(image_ids)
        seen = [
            view.record_ids_for(
                base,
                kind,
                source,
                run,
                (bounds["min"].as_py(), bounds["max"].as_py()),
            )
        ]
        seen += [
            p.table.column("record_id").combine_chunks()
            for p in self.pending
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

    def groups(self, packs: list[ObjectId]) -> list[tuple[kinds.Kind, pa.Table]]:
        """Pending records by kind, pack numbers replaced by pack ids, sorted
        by image id (then time and record id)."""
        by_kind: dict[str, list[Staged]] = {}
        for pending in self.pending:
            by_kind.setdefault(pending.kind.name, []).append(pending)
        groups = []
        for name in sorted(by_kind):
            tables = []
            for pending in by_kind[name]:
                table = pending.table
                if "pack" in table.column_names:
                    packs = pa.array(packs, pa.string()).take(table.column("pack"))
                    table = table.set_column(table.schema.get_field_index("pack"), "pack", packs)
                tables.append(table)
            table = pa.concat_tables(tables, promote_options="permissive")
            order = [
                ("image_id", "ascending"),
                ("recorded_at", "ascending"),
                ("record_id", "ascending"),
            ]
            groups.append((by_kind[name][0].kind, table.sort_by(order)))
        return groups


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
