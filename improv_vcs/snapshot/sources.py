"""Original files kept byte for byte: raw IFCB bins (``.hdr/.adc/.roi``),
whole microscope stacks, OME-XML documents.

A commit lists one *sources table* per instrument it added files for: a
Parquet object with one row per file, keyed by ``(sample_id, name)`` (the
file name), with the path it was ingested under (relative to the ingest
root, where ``export --raw`` restores it) and the blob's location like a
manifest row. Ingesting the same file again from another root adds nothing. Sources tables are
indexed like
batches (:data:`improv_vcs.snapshot.index.SOURCES`), so a snapshot finds every file of
a sample without walking history.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import IntegrityError, InvalidInputError
from ..core.ids import ObjectId, image_id, relative_path
from ..core.model import SourceFiles, Span
from ..core.parquet import from_parquet, to_parquet

if TYPE_CHECKING:
    from ..query.filters import Query

PARQUET_KIND = "sources"
ROLES = ("raw", "metadata")
"""``raw``: a file as the instrument wrote it; ``metadata``: a document
extracted from one (such as a stack's OME-XML)."""

TIMESTAMP = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("name", pa.string()),
        ("path", pa.string()),
        ("instrument", pa.string()),
        ("role", pa.string()),
        ("timestamp", TIMESTAMP),
        ("media_type", pa.string()),
        ("blob_id", pa.string()),
        ("size", pa.int64()),
        ("pack", pa.string()),
        ("offset", pa.int64()),
    ]
)
KEY = ["sample_id", "name"]


@dataclass(frozen=True)
class SourceFile:
    """An original file to keep: where to read it now (``location``, a local
    path, or ``data``), and what it is."""

    sample_id: str
    path: str
    timestamp: datetime
    role: str = "raw"
    media_type: str = "application/octet-stream"
    location: str | os.PathLike[str] | None = None
    data: bytes | None = None

    def __post_init__(self) -> None:
        image_id(self.sample_id)
        relative_path(self.path)
        if self.role not in ROLES:
            raise InvalidInputError(
                f"source file role must be one of {', '.join(ROLES)}, not {self.role!r}"
            )
        if (self.location is None) == (self.data is None):
            raise InvalidInputError(f"source file {self.path!r}: give either a location or data")
        if self.timestamp.tzinfo is None:
            raise InvalidInputError(f"source file {self.path!r}: the timestamp needs a time zone")


def describe(files: list[SourceFile], instrument: str) -> pa.Table:
    """The key and description columns of ``files`` (no locations yet)."""
    return pa.table(
        {
            "sample_id": pa.array([f.sample_id for f in files], pa.string()),
            "name": pa.array([f.path.rsplit("/", 1)[-1] for f in files], pa.string()),
            "path": pa.array([f.path for f in files], pa.string()),
            "instrument": pa.array([instrument] * len(files), pa.string()),
            "role": pa.array([f.role for f in files], pa.string()),
            "timestamp": pa.array([f.timestamp for f in files], TIMESTAMP),
            "media_type": pa.array([f.media_type for f in files], pa.string()),
        }
    )


def keys(table: pa.Table) -> list[str]:
    """``sample_id/name`` of each row (neither holds a ``/``): a file's key, as messages show it."""
    return [
        f"{s}/{n}"
        for s, n in zip(table.column("sample_id").to_pylist(), table.column("name").to_pylist())
    ]


def require_unique(table: pa.Table) -> None:
    """Each ``(sample_id, name)`` at most once."""
    seen: set[str] = set()
    for key in keys(table):
        if key in seen:
            raise InvalidInputError(
                f"source file {key!r} is given twice (one file name per sample)"
            )
        seen.add(key)


def encode(table: pa.Table) -> bytes:
    return to_parquet(
        table.select(SCHEMA.names).cast(SCHEMA).sort_by([(k, "ascending") for k in KEY]),
        PARQUET_KIND,
    )


def decode(data: bytes) -> pa.Table:
    """A sources table, its schema and every path checked (they come from a store)."""
    table = from_parquet(data, PARQUET_KIND)
    try:
        table = table.select(SCHEMA.names).cast(SCHEMA)
    except (KeyError, ValueError, pa.ArrowInvalid):
        raise IntegrityError("a sources table does not match format 1") from None
    try:
        for name, path in zip(table.column("name").to_pylist(), table.column("path").to_pylist()):
            if relative_path(path).rsplit("/", 1)[-1] != name:
                raise InvalidInputError(f"file name {name!r} does not end path {path!r}")
    except InvalidInputError as exc:
        raise IntegrityError(f"a sources table lists an unsafe path: {exc}") from None
    return table


def summarize(table: pa.Table, table_id: ObjectId) -> SourceFiles:
    """The commit entry (statistics included) for a sources table of one instrument."""
    times, samples = pc.min_max(table.column("timestamp")), pc.min_max(table.column("sample_id"))
    return SourceFiles(
        instrument=table.column("instrument")[0].as_py(),
        table=table_id,
        packs=tuple(sorted(set(table.column("pack").unique().to_pylist()))),
        rows=table.num_rows,
        bytes=pc.sum(table.column("size")).as_py(),
        time_min=times["min"].as_py(),
        time_max=times["max"].as_py(),
        sample_id_min=samples["min"].as_py(),
        sample_id_max=samples["max"].as_py(),
    )


IMAGE_FILTERS = ("bbox", "depth", "where", "kinds", "provenance", "runs")
"""Query filters that look at images, not samples: with any of them, original
files are those of the samples the matching images belong to."""


def select(files: pa.Table, query: Query, spans: Sequence[Span] | None) -> pa.Table:
    """The files that ``query``'s sample-level filters keep (instruments, time
    range, samples, the dataset's ``spans``)."""
    keep = pa.array([True] * files.num_rows, pa.bool_())
    when = files.column("timestamp")
    if query.instruments:
        keep = pc.and_(
            keep,
            pc.is_in(
                files.column("instrument"), value_set=pa.array(query.instruments, pa.string())
            ),
        )
    if query.samples:
        keep = pc.and_(
            keep,
            pc.is_in(files.column("sample_id"), value_set=pa.array(query.samples, pa.string())),
        )
    if query.start is not None:
        keep = pc.and_(keep, pc.greater_equal(when, pa.scalar(query.start, TIMESTAMP)))
    if query.end is not None:
        keep = pc.and_(keep, pc.less(when, pa.scalar(query.end, TIMESTAMP)))
    if spans is not None:
        inside = pa.array([False] * files.num_rows, pa.bool_())
        for span in spans:
            hit = pc.and_(
                pc.equal(files.column("instrument"), span.instrument),
                pc.and_(
                    pc.greater_equal(when, pa.scalar(span.start, TIMESTAMP)),
                    pc.less(when, pa.scalar(span.end, TIMESTAMP)),
                ),
            )
            inside = pc.or_(inside, hit)
        keep = pc.and_(keep, inside)
    return files.filter(keep)
