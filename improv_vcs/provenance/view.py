"""Reading provenance at a snapshot: segments, records, per-image history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import NotFoundError
from ..core.ids import image_id as check_image_id
from ..snapshot.reader import SnapshotReader
from . import records
from .catalog import get_kind
from .kinds import BLOB_COLUMNS, ENVELOPE

RUN_LATEST = "latest"


@dataclass(frozen=True)
class Record:
    """One provenance record: its envelope and the kind's own values."""

    image_id: str
    kind: str
    source: str
    run_id: str
    recorded_at: datetime
    record_id: str
    values: dict[str, Any]
    blob_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {
            "image_id": self.image_id,
            "kind": self.kind,
            "source": self.source,
            "run_id": self.run_id,
            "recorded_at": self.recorded_at.isoformat(),
            "record_id": self.record_id,
            "values": self.values,
        }
        if self.blob_id is not None:
            data["blob_id"] = self.blob_id
        return data


def segments(
    snapshot: SnapshotReader,
    kind: str | None = None,
    run: str | None = None,
    id_range: tuple[str, str] | None = None,
) -> pa.Table:
    """Index rows of the provenance segments that can hold matching records."""
    table = snapshot.provenance_segments
    mask = pa.array([True] * table.num_rows, pa.bool_())
    if kind is not None:
        mask = pc.and_(mask, pc.equal(table.column("kind"), kind))
    if run is not None and run != RUN_LATEST:
        mask = pc.and_(mask, _contains(table.column("runs"), run))
    if id_range is not None:
        mask = pc.and_(
            mask,
            pc.and_(
                pc.greater_equal(table.column("image_id_max"), id_range[0]),
                pc.less_equal(table.column("image_id_min"), id_range[1]),
            ),
        )
    return table.filter(mask)


def _contains(lists: pa.ChunkedArray, value: str) -> pa.Array:
    """Per row: does the list hold ``value``?"""
    lists = lists.combine_chunks()
    hits = pc.equal(pc.list_flatten(lists), value)
    rows = pc.filter(pc.list_parent_indices(lists), hits)
    found = pa.array([False] * len(lists), pa.bool_()).to_numpy(zero_copy_only=False)
    found[rows.to_numpy()] = True
    return pa.array(found)


def known_types(snapshot: SnapshotReader, kind: str) -> dict[str, str]:
    """Column → Arrow type name, from this kind's segments in the snapshot."""
    table = segments(snapshot, kind)
    found: dict[str, str] = {}
    for names, kinds in zip(table.column("columns").to_pylist(), table.column("types").to_pylist()):
        for name, type_name in zip(names, kinds):
            if found.get(name, "null") == "null":
                found[name] = type_name
    return found


def read(
    snapshot: SnapshotReader,
    segment_ids: Sequence[str],
    columns: Sequence[str] | None = None,
    id_range: tuple[str, str] | None = None,
) -> pa.Table:
    """Records of the given segments (``columns`` only, when given), all
    segments' columns unified; with ``id_range``, only records whose image
    id falls in it."""
    wanted = list(columns) if columns is not None else None
    tables = []
    for segment_id in segment_ids:
        key = f"prov:{segment_id}:{','.join(wanted) if wanted is not None else '*'}"
        table = snapshot.odb.cached(
            key, lambda s=segment_id: records.decode(snapshot.odb.get_bytes(s), wanted)
        )
        if id_range is not None:
            ids = table.column("image_id")
            table = table.filter(
                pc.and_(pc.greater_equal(ids, id_range[0]), pc.less_equal(ids, id_range[1]))
            )
        tables.append(table)
    if not tables:
        names = wanted or list(ENVELOPE)
        return pa.table({n: pa.array([], pa.string()) for n in names})
    return pa.concat_tables(tables, promote_options="permissive")


def record_ids_for(
    snapshot: SnapshotReader, kind: str, source: str, run_id: str, id_range: tuple[str, str]
) -> pa.Array:
    """Ids of the records of one (kind, source, run) whose images lie in ``id_range``."""
    found = run_records(snapshot, kind, source, run_id, id_range, ["record_id"])
    return found.column("record_id").combine_chunks()


def run_records(
    snapshot: SnapshotReader,
    kind: str,
    source: str,
    run_id: str,
    id_range: tuple[str, str],
    columns: Sequence[str],
) -> pa.Table:
    """``columns`` of the records of one (kind, source, run) whose images lie in ``id_range``."""
    found = segments(snapshot, kind, run_id, id_range)
    wanted = list(dict.fromkeys(["image_id", "source", "run_id", *columns]))
    table = read(snapshot, found.column("id").to_pylist(), wanted, id_range)
    same = pc.and_(
        pc.equal(table.column("source"), source), pc.equal(table.column("run_id"), run_id)
    )
    return table.filter(same).select(list(columns))


def history(snapshot: SnapshotReader, image: str, kind: str | None = None) -> list[Record]:
    """Every record of one image, oldest first (by recorded_at, then run and record id)."""
    check_image_id(image)
    if kind is not None:
        get_kind(kind)
    snapshot.record(image)  # the image must exist here
    found = segments(snapshot, kind, id_range=(image, image))
    out: list[Record] = []
    for segment_id in found.column("id").to_pylist():
        table = read(snapshot, [segment_id], None, (image, image))
        for row in table.to_pylist():
            out.append(_record(row))
    out.sort(key=lambda r: (r.recorded_at, r.kind, r.run_id, r.record_id))
    return out


def _record(row: dict[str, Any]) -> Record:
    values = {
        k: v
        for k, v in row.items()
        if k not in ENVELOPE and k not in BLOB_COLUMNS and v is not None
    }
    return Record(
        image_id=row["image_id"],
        kind=row["kind"],
        source=row["source"],
        run_id=row["run_id"],
        recorded_at=row["recorded_at"],
        record_id=row["record_id"],
        values=values,
        blob_id=row.get("blob_id"),
    )


def mask_location(snapshot: SnapshotReader, image: str, run: str | None = None) -> dict[str, Any]:
    """Where the segmentation mask of ``image`` is (the latest run, or ``run``)."""
    masks = [
        r for r in history(snapshot, image, "segmentation") if run in (None, RUN_LATEST, r.run_id)
    ]
    if not masks:
        which = f" from run {run!r}" if run not in (None, RUN_LATEST) else ""
        raise NotFoundError(f"no segmentation mask{which} for image {image!r}")
    latest = masks[-1]
    found = segments(snapshot, "segmentation", latest.run_id, (image, image))
    table = read(
        snapshot,
        found.column("id").to_pylist(),
        ["image_id", "record_id", *BLOB_COLUMNS],
        (image, image),
    )
    row = table.filter(pc.equal(table.column("record_id"), latest.record_id)).to_pylist()[0]
    return row
