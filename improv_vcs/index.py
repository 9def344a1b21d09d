"""The snapshot index: every batch reachable from a commit, without walking history.

A commit carries its snapshot index as a short list of Parquet *segments*,
each one row per batch with the batch's statistics. Appending a commit writes
one new level-0 segment holding only its own batches, then merges trailing
segments of equal level (a binary counter, as in an LSM tree) up to
``MAX_LEVEL``. Segments are immutable and shared between commits, so a commit
costs O(its batches) plus amortized O(log H) for merges, and a commit lists at
most ``MAX_LEVEL + 1 + H / 2**MAX_LEVEL`` segments. Each segment's summary
(time range) lets a reader skip it without opening it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ._parquet import from_parquet, to_parquet
from .errors import IntegrityError
from .model import Batch, IndexSegment
from .objects import ObjectDatabase

KIND = "snapshot-index"
MAX_LEVEL = 12
_TIME = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("instrument", pa.string()),
        ("manifest", pa.string()),
        ("packs", pa.list_(pa.string())),
        ("segments", pa.list_(pa.string())),
        ("rows", pa.int64()),
        ("bytes", pa.int64()),
        ("time_min", _TIME),
        ("time_max", _TIME),
        ("image_id_min", pa.string()),
        ("image_id_max", pa.string()),
        ("lat_min", pa.float64()),
        ("lat_max", pa.float64()),
        ("lon_min", pa.float64()),
        ("lon_max", pa.float64()),
        ("depth_min", pa.float64()),
        ("depth_max", pa.float64()),
        ("extra_columns", pa.list_(pa.string())),
        ("extra_types", pa.list_(pa.string())),
    ]
)


def batches_table(batches: Sequence[Batch]) -> pa.Table:
    """Batches as rows of the index schema."""
    rows = [b.model_dump() for b in batches]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def table_batches(table: pa.Table) -> list[Batch]:
    return [Batch.model_validate(row) for row in table.to_pylist()]


def _write_segment(odb: ObjectDatabase, table: pa.Table, level: int) -> IndexSegment:
    oid = odb.put_bytes(to_parquet(table, KIND))
    times = pc.min_max(table.column("time_min")), pc.min_max(table.column("time_max"))
    return IndexSegment(
        id=oid,
        level=level,
        batches=table.num_rows,
        rows=pc.sum(table.column("rows")).as_py(),
        time_min=times[0]["min"].as_py(),
        time_max=times[1]["max"].as_py(),
    )


def read_segment(odb: ObjectDatabase, segment: IndexSegment) -> pa.Table:
    def load() -> pa.Table:
        table = from_parquet(odb.get_bytes(segment.id), KIND)
        try:
            return table.cast(SCHEMA)
        except (ValueError, pa.ArrowInvalid):
            raise IntegrityError(f"snapshot index segment {segment.id} does not match format 1") from None

    return odb.cached(f"seg:{segment.id}", load)


def append(
    odb: ObjectDatabase, index: Sequence[IndexSegment], batches: Sequence[Batch]
) -> tuple[IndexSegment, ...]:
    """The index after appending ``batches`` to the snapshot ``index``."""
    segments = list(index)
    if batches:
        segments.append(_write_segment(odb, batches_table(batches), 0))
    while (
        len(segments) >= 2
        and segments[-1].level == segments[-2].level
        and segments[-1].level < MAX_LEVEL
    ):
        older, newer = segments[-2], segments[-1]
        merged = pa.concat_tables([read_segment(odb, older), read_segment(odb, newer)])
        segments[-2:] = [_write_segment(odb, merged, older.level + 1)]
    return tuple(segments)


def load(odb: ObjectDatabase, index: Sequence[IndexSegment]) -> pa.Table:
    """Every batch of a snapshot, oldest first, as one table."""
    if not index:
        return SCHEMA.empty_table()
    return pa.concat_tables([read_segment(odb, s) for s in index])
