"""Snapshot indexes: every batch (and every provenance segment) reachable from
a commit, without walking history.

A commit carries its snapshot index as a short list of Parquet *segments*,
each one row per batch with the batch's statistics. Appending a commit writes
one new level-0 segment holding only its own batches, then merges trailing
segments of equal level (a binary counter, as in an LSM tree) up to
``MAX_LEVEL``. Segments are immutable and shared between commits, so a commit
costs O(its batches) plus amortized O(log H) for merges, and a commit lists at
most ``MAX_LEVEL + 1 + H / 2**MAX_LEVEL`` segments. Each segment's summary
(time range) lets a reader skip it without opening it.

The same structure indexes four things, each with its own :class:`Layout`:
batches (:data:`BATCHES`), provenance segments (:data:`PROVENANCE`),
tables of original files (:data:`SOURCES`) and the commits that record an
ingest task (:data:`TASKS`, see :mod:`improv_vcs.snapshot.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import IntegrityError
from ..core.model import Batch, IndexSegment, Part, ProvenanceSegment, SourceFiles
from ..core.parquet import from_parquet, to_parquet
from ..storage.objects import ObjectDatabase

MAX_LEVEL = 12
_TIME = pa.timestamp("us", tz="UTC")
_TEXTS = pa.list_(pa.string())
BATCH_SCHEMA = pa.schema(
    [
        ("instrument", pa.string()),
        ("manifest", pa.string()),
        ("packs", _TEXTS),
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
        ("extra_columns", _TEXTS),
        ("extra_types", _TEXTS),
    ]
)
PROVENANCE_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("id", pa.string()),
        ("packs", _TEXTS),
        ("rows", pa.int64()),
        ("image_id_min", pa.string()),
        ("image_id_max", pa.string()),
        ("time_min", _TIME),
        ("time_max", _TIME),
        ("sources", _TEXTS),
        ("runs", _TEXTS),
        ("columns", _TEXTS),
        ("types", _TEXTS),
        ("bound_columns", _TEXTS),
        ("bound_min", pa.list_(pa.float64())),
        ("bound_max", pa.list_(pa.float64())),
    ]
)
SOURCES_SCHEMA = pa.schema(
    [
        ("instrument", pa.string()),
        ("table", pa.string()),
        ("packs", _TEXTS),
        ("rows", pa.int64()),
        ("bytes", pa.int64()),
        ("time_min", _TIME),
        ("time_max", _TIME),
        ("sample_id_min", pa.string()),
        ("sample_id_max", pa.string()),
    ]
)
TASKS_SCHEMA = pa.schema(
    [
        ("task", pa.string()),
        ("commit", pa.string()),
        ("height", pa.int64()),
        ("author", pa.string()),
        ("time_min", _TIME),  # the commit's time (both bounds)
        ("time_max", _TIME),
        ("rows", pa.int64()),  # the images it added
        ("instruments", _TEXTS),
    ]
)
Entry = Batch | ProvenanceSegment | SourceFiles


@dataclass(frozen=True)
class Layout:
    """What an index holds: its Parquet kind stamp and row schema."""

    kind: str
    schema: pa.Schema


BATCHES = Layout("snapshot-index", BATCH_SCHEMA)
PROVENANCE = Layout("provenance-index", PROVENANCE_SCHEMA)
SOURCES = Layout("sources-index", SOURCES_SCHEMA)
TASKS = Layout("tasks-index", TASKS_SCHEMA)


def entries_table(entries: Sequence[Entry], layout: Layout) -> pa.Table:
    """Index entries as rows of ``layout``'s schema."""
    return pa.Table.from_pylist([e.model_dump() for e in entries], schema=layout.schema)


def _write_segment(
    odb: ObjectDatabase, table: pa.Table, level: int, layout: Layout
) -> IndexSegment:
    oid = odb.put_bytes(to_parquet(table, layout.kind))
    times = pc.min_max(table.column("time_min")), pc.min_max(table.column("time_max"))
    return IndexSegment(
        id=oid,
        level=level,
        entries=table.num_rows,
        rows=pc.sum(table.column("rows")).as_py(),
        time_min=times[0]["min"].as_py(),
        time_max=times[1]["max"].as_py(),
    )


def read_segment(odb: ObjectDatabase, segment: IndexSegment, layout: Layout) -> pa.Table:
    def load() -> pa.Table:
        table = from_parquet(odb.get_bytes(segment.id), layout.kind)
        try:
            return table.cast(layout.schema)
        except (ValueError, pa.ArrowInvalid):
            raise IntegrityError(
                f"{layout.kind} segment {segment.id} does not match format 1"
            ) from None

    return odb.cached(f"seg:{segment.id}", load)


Consolidate = Callable[[Sequence[IndexSegment], pa.Table], tuple[Part, ...]]
"""Builds the parts of a new segment from the segments it merges and its rows."""


def append(
    odb: ObjectDatabase,
    index: Sequence[IndexSegment],
    entries: Sequence[Entry] | pa.Table,
    layout: Layout = BATCHES,
    consolidate: Consolidate | None = None,
) -> tuple[IndexSegment, ...]:
    """The index after appending ``entries`` (models, or rows of ``layout``)
    to ``index``. Merges happen in memory, so only the segments the new
    index lists are written. With ``consolidate``, the new segment also
    lists the parts it returns."""
    segments = list(index)
    if not len(entries):
        return tuple(segments)
    if not isinstance(entries, pa.Table):
        entries = entries_table(entries, layout)
    pending, level, merged = entries, 0, []
    while segments and segments[-1].level == level and level < MAX_LEVEL:
        merged.insert(0, segments.pop())
        pending = pa.concat_tables([read_segment(odb, merged[0], layout), pending])
        level += 1
    segment = _write_segment(odb, pending, level, layout)
    if consolidate is not None:
        segment = segment.model_copy(update={"parts": consolidate(merged, pending)})
    segments.append(segment)
    return tuple(segments)


def load(odb: ObjectDatabase, index: Sequence[IndexSegment], layout: Layout = BATCHES) -> pa.Table:
    """Every entry of an index, oldest first, as one table."""
    if not index:
        return layout.schema.empty_table()
    return pa.concat_tables([read_segment(odb, s, layout) for s in index])
