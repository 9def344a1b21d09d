"""Provenance records: canonical bytes, record ids, run ids and segments.

A record's identity is the SHA-256 of ``kind, source, run_id`` and its
*content*: ``image_id``, the kind's columns and its blob id, never when it was
recorded or where its blob is packed. Content is encoded per column in name
order, nulls left out (so adding a nullable column does not change existing
records), structs flattened to ``name.field``; see ``docs/format.md``. All of
it is encoded with Arrow compute, then hashed row by row (a hasher holding
the submission's prefix is copied for each record).
"""

from __future__ import annotations

import hashlib
import struct
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from ..core import canonical
from ..core.ids import ObjectId
from ..core.model import ProvenanceSegment
from ..core.parquet import from_parquet, to_parquet
from . import vectors
from .kinds import BLOB_COLUMNS, ENVELOPE, TIMESTAMP, Kind

PARQUET_KIND = "provenance"
SEGMENT_ROWS = 131_072
"""Records per segment; a large submission becomes several segments, each
covering an image-id range, so queries read only the ranges they need."""
_LOCATION = ("pack", "offset")  # where a blob lives is not part of a record

_TAGS = {
    "int": b"\x01",
    "float": b"\x02",
    "bool": b"\x03",
    "text": b"\x04",
    "time": b"\x05",
    "numbers": b"\x06",
}


def envelope_prefix(kind: str, source: str, run_id: str | None) -> bytes:
    """The bytes every record id of one submission starts with."""
    return canonical.encode([kind, source, run_id]) + b"\n"


def content_rows(table: pa.Table) -> pa.Array:
    """Each record's canonical content bytes (``large_binary``)."""
    columns = _flatten(table)
    names = sorted(n for n in columns if n not in _LOCATION)
    if table.num_rows == 0:
        return pa.array([], pa.large_binary())
    parts = [_encode_column(name, columns[name]) for name in names]
    return pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary()))


def _flatten(table: pa.Table) -> dict[str, pa.Array]:
    out: dict[str, pa.Array] = {}

    def visit(name: str, values: pa.Array) -> None:
        if pa.types.is_struct(values.type):
            for i in range(values.type.num_fields):
                child = values.field(i)
                if values.null_count:
                    child = pc.if_else(pc.is_valid(values), child, pa.scalar(None, child.type))
                visit(f"{name}.{values.type.field(i).name}", child)
        else:
            out[name] = values

    for name in table.column_names:
        visit(name, table.column(name).combine_chunks())
    return out


def _fixed(values: pa.Array, width: int) -> pa.Array:
    """Each value's raw little-endian bytes."""
    return pa.Array.from_buffers(
        pa.binary(width), len(values), [None, values.buffers()[1]], offset=values.offset
    ).cast(pa.large_binary())


def _encode_column(name: str, values: pa.Array) -> pa.Array:
    kind = values.type
    if pa.types.is_null(kind):
        return pa.array([b""] * len(values), pa.large_binary())
    if pa.types.is_floating(kind):
        tag, data = _TAGS["float"], _fixed(pc.add(values.cast(pa.float64()), 0.0), 8)  # -0.0 → 0.0
    elif pa.types.is_integer(kind):
        tag, data = _TAGS["int"], _fixed(values.cast(pa.int64()), 8)
    elif pa.types.is_boolean(kind):
        tag, data = _TAGS["bool"], _fixed(values.cast(pa.uint8()), 1)
    elif pa.types.is_timestamp(kind):
        tag, data = _TAGS["time"], _fixed(values.cast(TIMESTAMP).cast(pa.int64()), 8)
    elif pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind):
        width = bytes([kind.value_type.bit_width // 8])
        tag, data = _TAGS["numbers"] + width, vectors.digests(values)
    else:
        text = values.cast(pa.large_binary())
        length = _fixed(pc.binary_length(text).cast(pa.uint32()), 4)
        tag, data = (
            _TAGS["text"],
            pc.binary_join_element_wise(length, text, pa.scalar(b"", pa.large_binary())),
        )
    encoded = name.encode()
    head = pa.scalar(struct.pack("<I", len(encoded)) + encoded + tag, pa.large_binary())
    joined = pc.binary_join_element_wise(head, data, pa.scalar(b"", pa.large_binary()))
    return pc.if_else(pc.is_valid(values), joined, pa.scalar(b"", pa.large_binary()))


def record_ids(prefix: bytes, content: pa.Array) -> pa.Array:
    """SHA-256 (hex) of ``prefix`` + each record's content."""
    if len(content) == 0:
        return pa.array([], pa.string())
    base = hashlib.sha256(prefix)
    data = _data(content)
    offsets = memoryview(content.buffers()[1]).cast("q")
    bounds = offsets[content.offset : content.offset + len(content) + 1].tolist()
    start = bounds[0]
    out = []
    for begin, end in zip(bounds, bounds[1:]):
        digest = base.copy()
        digest.update(data[begin - start : end - start])
        out.append(digest.hexdigest())
    return pa.array(out, pa.string())


def default_run_id(kind: str, source: str, content: pa.Array) -> str:
    """A run id derived from a submission's content: re-submitting the same
    records without a run id finds the same run, so nothing is added twice."""
    digest = hashlib.sha256(envelope_prefix(kind, source, None))
    ordered = content.take(pc.sort_indices(content))
    lengths = _fixed(pc.binary_length(ordered).cast(pa.uint64()), 8)
    framed = pc.binary_join_element_wise(lengths, ordered, pa.scalar(b"", pa.large_binary()))
    digest.update(_data(framed))
    return "auto-" + digest.hexdigest()[:16]


def _data(values: pa.Array) -> memoryview:
    """The concatenated value bytes of a ``large_binary`` array, without copying."""
    offsets = memoryview(values.buffers()[1]).cast("q")
    start, end = offsets[values.offset], offsets[values.offset + len(values)]
    return memoryview(values.buffers()[2])[start:end]


def segment_table(
    kind: Kind,
    records: pa.Table,
    source: str,
    run_id: str,
    recorded_at: datetime,
    ids: pa.Array,
) -> pa.Table:
    """Envelope columns first, then blob columns, then the kind's columns."""
    n = records.num_rows
    envelope = {
        "image_id": records.column("image_id"),
        "kind": pa.repeat(pa.scalar(kind.name, pa.string()), n),
        "source": pa.repeat(pa.scalar(source, pa.string()), n),
        "run_id": pa.repeat(pa.scalar(run_id, pa.string()), n),
        "recorded_at": pa.repeat(pa.scalar(recorded_at, TIMESTAMP), n),
        "record_id": ids,
    }
    rest = {name: records.column(name) for name in records.column_names if name != "image_id"}
    blobs = {name: rest.pop(name) for name in BLOB_COLUMNS if name in rest}
    return pa.table({**envelope, **blobs, **rest})


def encode(table: pa.Table) -> bytes:
    return to_parquet(table, PARQUET_KIND, row_group_size=16_384)


def decode(data: bytes, columns: list[str] | None = None) -> pa.Table:
    return from_parquet(data, PARQUET_KIND, columns)


def summarize(kind: Kind, table: pa.Table, segment_id: ObjectId) -> ProvenanceSegment:
    """The index entry of a segment table (sorted by image id)."""
    ids = pc.min_max(table.column("image_id"))
    times = pc.min_max(table.column("recorded_at"))
    pairs = table.select(["source", "run_id"]).group_by(["source", "run_id"]).aggregate([])
    pairs = pairs.sort_by([("source", "ascending"), ("run_id", "ascending")])
    own = [f for f in table.schema if f.name not in ENVELOPE and f.name not in BLOB_COLUMNS]
    bounds = []
    for name in kind.indexed:
        if name in table.column_names:
            found = pc.min_max(table.column(name))
            if found["min"].is_valid:
                bounds.append((name, float(found["min"].as_py()), float(found["max"].as_py())))
    packs = (
        sorted(set(table.column("pack").unique().to_pylist()))
        if "pack" in table.column_names
        else []
    )
    return ProvenanceSegment(
        kind=kind.name,
        id=segment_id,
        packs=tuple(packs),
        rows=table.num_rows,
        image_id_min=ids["min"].as_py(),
        image_id_max=ids["max"].as_py(),
        time_min=times["min"].as_py(),
        time_max=times["max"].as_py(),
        sources=tuple(pairs.column("source").to_pylist()),
        runs=tuple(pairs.column("run_id").to_pylist()),
        columns=tuple(f.name for f in own),
        types=tuple(str(f.type) for f in own),
        bound_columns=tuple(b[0] for b in bounds),
        bound_min=tuple(b[1] for b in bounds),
        bound_max=tuple(b[2] for b in bounds),
    )
