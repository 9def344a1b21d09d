"""Images over time: counts per instrument and time bucket, the volume
sampled behind them, and counts per class from a classification run.

Counts come from the snapshot index where they can: a batch whose images all
fall in one bucket (and inside the range) adds its stored row count without
being read; only batches that straddle a bucket edge or an end of the range
are scanned, and then only their ``instrument`` and ``timestamp`` columns.
Per-sample buckets read ``sample_id`` too. Volumes come from the sample
records (``ml_analyzed`` or ``volume_ml`` in their metadata).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError
from ..core.sql import thread_connection
from ..snapshot.reader import SnapshotReader
from ..snapshot.registry import latest

BUCKETS = ("sample", "hour", "day", "week")
"""Bucket widths, finest first; ``sample`` is one bar per sample (at its first image)."""


def bucket_for(start: datetime, end: datetime) -> str:
    """The bucket a range is drawn in: per sample up to a week, hourly up to
    a month, daily up to a year, weekly beyond."""
    span = end - start
    if span <= timedelta(days=7):
        return "sample"
    if span <= timedelta(days=31):
        return "hour"
    if span <= timedelta(days=366):
        return "day"
    return "week"


@dataclass(frozen=True)
class Timeline:
    """``table``: ``instrument``, ``bucket`` (its start; a sample's first
    image), ``sample_id`` (per-sample buckets only, else null), ``images``,
    ``volume_ml`` (null where no sample names one) and ``concentration``
    (images per mL)."""

    bucket: str
    start: datetime
    end: datetime
    table: pa.Table
    scanned_batches: int
    """Batches read to answer (the others were counted from the index)."""


def timeline(
    reader: SnapshotReader,
    start: datetime,
    end: datetime,
    instruments: tuple[str, ...] = (),
    bucket: str | None = None,
) -> Timeline:
    """Images in ``[start, end)`` per instrument and bucket."""
    bucket = _checked(start, end, bucket)
    batches = overlapping(reader.batches, start, end, instruments)
    if bucket == "sample":
        rows = reader.rows(_manifests(batches), ["instrument", "timestamp", "sample_id"])
        counts, scanned = _sql(_PER_SAMPLE, {"rows": rows}, start, end), batches.num_rows
    else:
        counts, scanned = _per_bucket(reader, batches, start, end, bucket)
    volumes = _volumes(reader, bucket)
    table = _sql(
        """
        SELECT c.instrument, c.bucket, c.sample_id, c.images::BIGINT AS images,
               v.volume_ml, c.images / v.volume_ml AS concentration
        FROM counts c LEFT JOIN volumes v
          ON v.instrument = c.instrument AND v.key IS NOT DISTINCT FROM c.key
        ORDER BY c.instrument, c.bucket, c.sample_id
        """,
        {"counts": counts, "volumes": volumes},
        start,
        end,
    )
    return Timeline(bucket, start, end, table, scanned)


def class_counts(
    reader: SnapshotReader,
    winners: pa.Table,
    start: datetime,
    end: datetime,
    instruments: tuple[str, ...] = (),
    bucket: str | None = None,
) -> pa.Table:
    """Images per instrument, bucket and class (``instrument``, ``bucket``,
    ``winner``, ``images``) among ``winners`` (``image_id``, ``winner``: one
    classification run's records), for images in ``[start, end)``."""
    bucket = _checked(start, end, bucket)
    batches = overlapping(reader.batches, start, end, instruments)
    images = reader.rows(_manifests(batches), ["image_id", "instrument", "timestamp", "sample_id"])
    key = "f.first" if bucket == "sample" else f"date_trunc('{bucket}', i.timestamp)"
    return _sql(
        f"""
        WITH inside AS (
            SELECT * FROM images WHERE timestamp >= $start AND timestamp < $end
        ), firsts AS (  -- a sample's bucket is its first image, classified or not
            SELECT instrument, sample_id, min(timestamp) AS first FROM inside GROUP BY ALL
        ), keyed AS (
            SELECT i.instrument, {key} AS bucket, r.winner
            FROM inside i JOIN winners r USING (image_id)
            LEFT JOIN firsts f ON f.instrument = i.instrument
                AND f.sample_id IS NOT DISTINCT FROM i.sample_id
        )
        SELECT instrument, bucket, winner, count(*) AS images
        FROM keyed GROUP BY ALL ORDER BY instrument, bucket, winner
        """,
        {"images": images, "winners": winners.select(["image_id", "winner"])},
        start,
        end,
    )


def overlapping(
    batches: pa.Table, start: datetime, end: datetime, instruments: tuple[str, ...] = ()
) -> pa.Table:
    """The batches with images in ``[start, end)`` (by their statistics)."""
    kind = batches.schema.field("time_min").type
    keep = pc.and_(
        pc.greater_equal(batches.column("time_max"), pa.scalar(start, kind)),
        pc.less(batches.column("time_min"), pa.scalar(end, kind)),
    )
    if instruments:
        keep = pc.and_(keep, pc.is_in(batches.column("instrument"), pa.array(instruments)))
    return batches.filter(keep)


_PER_SAMPLE = """
    SELECT instrument, min(timestamp) AS bucket, sample_id, count(*) AS images,
           sample_id AS key
    FROM rows WHERE timestamp >= $start AND timestamp < $end
    GROUP BY instrument, sample_id
"""


def _per_bucket(
    reader: SnapshotReader, batches: pa.Table, start: datetime, end: datetime, bucket: str
) -> tuple[pa.Table, int]:
    """Counts per instrument and bucket: batches inside one bucket from the
    index, the others by scanning their times."""
    kind = batches.schema.field("time_min").type
    low = _floor(batches.column("time_min"), bucket)
    whole = pc.and_(
        pc.equal(low, _floor(batches.column("time_max"), bucket)),
        pc.and_(
            pc.greater_equal(batches.column("time_min"), pa.scalar(start, kind)),
            pc.less(batches.column("time_max"), pa.scalar(end, kind)),
        ),
    )
    counted = pa.table(
        {"instrument": batches.column("instrument"), "bucket": low, "rows": batches["rows"]}
    ).filter(whole)
    straddling = batches.filter(pc.invert(whole))
    rows = reader.rows(_manifests(straddling), ["instrument", "timestamp"])
    counts = _sql(
        f"""
        WITH parts AS (
            SELECT instrument, bucket, rows::BIGINT AS images FROM counted
            UNION ALL
            SELECT instrument, date_trunc('{bucket}', timestamp), count(*) FROM rows
            WHERE timestamp >= $start AND timestamp < $end GROUP BY ALL
        )
        SELECT instrument, bucket, NULL::VARCHAR AS sample_id, sum(images) AS images,
               strftime(bucket, '%Y-%m-%dT%H') AS key
        FROM parts GROUP BY instrument, bucket
        """,
        {"counted": counted, "rows": rows},
        start,
        end,
    )
    return counts, straddling.num_rows


def _volumes(reader: SnapshotReader, bucket: str) -> pa.Table:
    """Volume analysed per instrument and bucket key, from the samples'
    metadata (``key``: the sample id, or the bucket's start as text)."""
    samples = latest(reader.sample_versions())
    key = (
        "sample_id"
        if bucket == "sample"
        else f"strftime(date_trunc('{bucket}', start), '%Y-%m-%dT%H')"
    )
    return _sql(
        f"""
        WITH volumes AS (
            SELECT instrument, {key} AS key,
                   TRY_CAST(coalesce(json_extract_string(meta, '$.ml_analyzed'),
                                     json_extract_string(meta, '$.volume_ml')) AS DOUBLE) AS ml
            FROM samples WHERE meta IS NOT NULL
        )
        SELECT instrument, key, sum(ml) AS volume_ml FROM volumes
        WHERE ml > 0 GROUP BY ALL
        """,
        {"samples": samples},
        None,
        None,
    )


def _checked(start: datetime, end: datetime, bucket: str | None) -> str:
    if end <= start:
        raise InvalidInputError("the end of a timeline must be after its start")
    bucket = bucket or bucket_for(start, end)
    if bucket not in BUCKETS:
        raise InvalidInputError(f"unknown bucket {bucket!r}; use one of {', '.join(BUCKETS)}")
    return bucket


def _manifests(batches: pa.Table) -> list[str]:
    return batches.column("manifest").to_pylist()


def _floor(times: pa.ChunkedArray, bucket: str) -> pa.Array:
    """Each time's bucket start (weeks start on Monday, as DuckDB's ``date_trunc``)."""
    return pc.floor_temporal(times, unit=bucket, week_starts_monday=True).combine_chunks()


def _sql(
    sql: str, tables: dict[str, pa.Table], start: datetime | None, end: datetime | None
) -> pa.Table:
    """Run ``sql`` over ``tables`` on this thread's connection."""
    connection = thread_connection()
    for name, table in tables.items():
        connection.register(name, table)
    params = {k: v for k, v in (("start", start), ("end", end)) if v is not None and f"${k}" in sql}
    try:
        return connection.sql(sql, params=params or None).to_arrow_table()
    finally:
        for name in tables:
            connection.unregister(name)
