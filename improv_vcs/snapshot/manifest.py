"""Manifests: one Parquet row per image of a batch, and their validation.

Validation runs per batch with Arrow compute; Python loops only run to name
the first offending row once something is known to be wrong.
"""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError
from ..core.ids import IMAGE_ID_PATTERN, ObjectId, column_name, image_id
from ..core.model import Batch
from ..core.parquet import from_parquet, to_parquet

KIND = "manifest"
TIMESTAMP = pa.timestamp("us", tz="UTC")

USER_COLUMNS: dict[str, pa.DataType] = {
    "image_id": pa.string(),
    "timestamp": TIMESTAMP,
    "lat": pa.float64(),
    "lon": pa.float64(),
    "depth": pa.float64(),
    "sample_id": pa.string(),
    "media_type": pa.string(),
}
"""Columns a metadata table may give; ``image_id`` and ``timestamp`` are required."""

STORED_COLUMNS: dict[str, pa.DataType] = {
    "instrument": pa.string(),
    "blob_id": pa.string(),
    "size": pa.int64(),
    "pack": pa.string(),
    "offset": pa.int64(),
}
"""Columns improv fills in. A table given to a transaction may not carry them;
ingest of a folder (:mod:`improv_vcs.ingest.folders`) checks ``blob_id`` and ``size``
against the bytes, ignores ``pack`` and ``offset``, and splits batches by
``instrument``."""

CORE_ORDER = [
    "image_id",
    "instrument",
    "timestamp",
    "lat",
    "lon",
    "depth",
    "sample_id",
    "media_type",
    "blob_id",
    "size",
    "pack",
    "offset",
]

_RANGES = {"lat": (-90.0, 90.0), "lon": (-180.0, 180.0), "depth": (-math.inf, math.inf)}


def normalize_metadata(table: pa.Table) -> pa.Table:
    """Validate a batch's metadata table and cast it to the manifest types.

    Raises :class:`InvalidInputError` naming the first offending column or row.
    """
    for name in table.column_names:
        column_name(name)
        if name in STORED_COLUMNS:
            raise InvalidInputError(f"column {name!r} is reserved; improv fills it in")
    if len(set(table.column_names)) != len(table.column_names):
        raise InvalidInputError("metadata has duplicate column names")
    for required in ("image_id", "timestamp"):
        if required not in table.column_names:
            raise InvalidInputError(f"metadata is missing the required column {required!r}")
    if table.num_rows == 0:
        raise InvalidInputError("a batch needs at least one image")

    columns = dict(zip(table.column_names, cast_known_columns(table).columns))
    for name, kind in USER_COLUMNS.items():
        columns.setdefault(name, pa.nulls(table.num_rows, kind))
    table = pa.table(columns)

    ids = table.column("image_id")
    _require_no_nulls(table, "image_id")
    _require_no_nulls(table, "timestamp")
    bad = pc.invert(pc.match_substring_regex(ids, IMAGE_ID_PATTERN))
    if pc.any(bad).as_py():
        first = _first(ids, bad)
        image_id(first)  # raises with the explanation
        raise InvalidInputError(f"invalid image id {first!r}")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        counts = pc.value_counts(ids)
        dup = pc.filter(counts, pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        raise InvalidInputError(f"image id {dup!r} appears more than once in the batch")
    for name, (low, high) in _RANGES.items():
        values = table.column(name)
        outside = pc.fill_null(
            pc.or_(
                pc.or_(pc.less(values, low), pc.greater(values, high)),
                pc.invert(pc.is_finite(values)),
            ),
            False,
        )
        if pc.any(outside).as_py():
            row = _first(ids, outside)
            raise InvalidInputError(
                f"{name} of image {row!r} is not a finite number in [{low}, {high}]"
            )
    return table


def cast_known_columns(table: pa.Table, zone: str = "UTC") -> pa.Table:
    """``table`` with every column of :data:`USER_COLUMNS` cast to its type.

    Times without a UTC offset (naive Arrow timestamps, or text such as
    ``2024-05-01T12:00:00``) are read in ``zone``: UTC unless told otherwise
    (``improv commit --timezone``); an IANA name or a ``±HH:MM`` offset."""
    for i, name in enumerate(table.column_names):
        if name in USER_COLUMNS:
            table = table.set_column(
                i, name, _cast(name, table.column(i), USER_COLUMNS[name], zone)
            )
    return table


_OFFSET = r"\d:\d\d(?::\d\d(?:[.,]\d*)?)?\s*(?:[Zz]|[+-]\d\d(?::?\d\d)?)$"
"""Text that ends in a time of day with a UTC offset (``…12:00:00Z``, ``…12:00+02:00``)."""
_TIME_HINT = (
    " (ISO 8601, e.g. 2024-05-01T12:00:00Z; without an offset it is read as UTC or in --timezone)"
)


def _cast(
    name: str, column: pa.ChunkedArray, target: pa.DataType, zone: str = "UTC"
) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if target == TIMESTAMP:
        column = _localized(name, column, zone)
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for value in column.to_pylist():
        try:
            pa.array([value]).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            hint = _TIME_HINT if target == TIMESTAMP else ""
            raise InvalidInputError(
                f"column {name!r}: cannot read {value!r} as {target}{hint}"
            ) from None
    raise InvalidInputError(f"column {name!r} cannot be read as {target}")


def _localized(name: str, column: pa.ChunkedArray, zone: str) -> pa.ChunkedArray:
    """Times without an offset (naive timestamps, text without one) placed in
    ``zone``; anything else unchanged (cast, and refused, by the caller)."""
    if pa.types.is_timestamp(column.type):
        return (
            column if column.type.tz is not None else _assume(name, column.combine_chunks(), zone)
        )
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    text = column.combine_chunks()
    naive = pc.invert(
        pc.fill_null(pc.match_substring_regex(text, _OFFSET), True)
    )  # nulls: not naive
    if not pc.any(naive).as_py():
        return column
    plain = _parsed(name, pc.if_else(naive, text, pa.scalar(None, text.type)), pa.timestamp("us"))
    offset = _parsed(name, pc.if_else(naive, pa.scalar(None, text.type), text), TIMESTAMP)
    return pa.chunked_array([pc.if_else(naive, _assume(name, plain, zone).cast(TIMESTAMP), offset)])


def _parsed(name: str, text: pa.Array, target: pa.DataType) -> pa.Array:
    """``text`` cast to ``target``; the first value that will not cast is refused."""
    try:
        return text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for value in text.to_pylist():
        try:
            pa.array([value], text.type).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InvalidInputError(
                f"column {name!r}: cannot read {value!r} as {TIMESTAMP}{_TIME_HINT}"
            ) from None
    raise InvalidInputError(f"column {name!r} cannot be read as {TIMESTAMP}")


def _assume(name: str, values: pa.Array, zone: str) -> pa.Array:
    """Naive ``values`` read in ``zone`` (the result carries the zone; casting
    it to :data:`TIMESTAMP` gives UTC); a time the clocks skip or pass twice
    in ``zone`` is refused, naming its row."""
    try:
        return pc.assume_timezone(values, timezone=zone)
    except pa.ArrowInvalid as exc:
        if "ambiguous" not in str(exc) and "nonexistent" not in str(exc):
            return _assume_in_python(name, values, zone)  # a zone Arrow's database lacks
    for kind, why in (
        ("ambiguous", "passes twice (the clocks go back)"),
        ("nonexistent", "never happens (the clocks skip it)"),
    ):
        early = pc.assume_timezone(
            values, timezone=zone, ambiguous="earliest", nonexistent="earliest"
        )
        late = pc.assume_timezone(
            values,
            timezone=zone,
            ambiguous="latest" if kind == "ambiguous" else "earliest",
            nonexistent="latest" if kind == "nonexistent" else "earliest",
        )
        differs = pc.fill_null(pc.not_equal(early, late), False)
        if pc.any(differs).as_py():
            _refuse_local_time(name, values, pc.index(differs, True).as_py(), zone, why)
    raise InvalidInputError(f"column {name!r}: cannot read its times in {zone}")


def _assume_in_python(name: str, values: pa.Array, zone: str) -> pa.Array:
    """:func:`_assume` with the standard library's zone database."""
    from datetime import timezone as fixed

    from ..core.times import zone_info

    info = zone_info(zone)
    out = []
    for row, value in enumerate(values.to_pylist()):
        if value is None:
            out.append(None)
            continue
        first, second = value.replace(tzinfo=info), value.replace(tzinfo=info, fold=1)
        if first.utcoffset() != second.utcoffset():
            aware = first.astimezone(fixed.utc)
            skipped = aware.astimezone(info).replace(tzinfo=None) != value
            why = (
                "never happens (the clocks skip it)"
                if skipped
                else "passes twice (the clocks go back)"
            )
            _refuse_local_time(name, values, row, zone, why)
        out.append(first.astimezone(fixed.utc))
    return pa.array(out, pa.timestamp(values.type.unit, tz="UTC"))


def _refuse_local_time(name: str, values: pa.Array, row: int, zone: str, why: str) -> None:
    shown = values[row].as_py().isoformat()
    raise InvalidInputError(
        f"column {name!r}, row {row + 1}: {shown} {why} in {zone}; give that time a UTC offset"
    )


def _require_no_nulls(table: pa.Table, name: str) -> None:
    column = table.column(name)
    if column.null_count:
        row = pc.index(pc.is_null(column), True).as_py()
        raise InvalidInputError(f"column {name!r} is empty in row {row + 1}")


def _first(ids: pa.ChunkedArray, mask: pa.ChunkedArray) -> str:
    return pc.filter(ids, mask)[0].as_py()


def check_extra_columns(metadata: pa.Table, known: dict[str, str]) -> None:
    """Refuse extra columns that clash with the snapshot's: a different type
    for the same name (nulls and integer/float mixes are fine), or a name that
    differs from a core or known column only by letter case (SQL would not
    tell them apart). ``known`` maps column names to Arrow type names."""
    reserved = {c.lower(): c for c in CORE_ORDER}
    seen = {**reserved, **{name.lower(): name for name in known}}
    for name in metadata.column_names:
        if name in USER_COLUMNS:
            continue
        other = seen.get(name.lower())
        if other is not None and other != name:
            raise InvalidInputError(
                f"column {name!r} differs from column {other!r} only by letter case"
            )
        seen[name.lower()] = name
        kind = str(metadata.schema.field(name).type)
        if name in known and not _compatible(known[name], kind):
            raise InvalidInputError(
                f"column {name!r} holds {kind} here but {known[name]} in earlier batches"
            )


def _compatible(a: str, b: str) -> bool:
    numeric = ("int", "uint", "float", "double", "halffloat")
    return a == b or "null" in (a, b) or (a.startswith(numeric) and b.startswith(numeric))


def build_manifest(
    metadata: pa.Table,
    instrument: str,
    blob_ids: pa.Array,
    sizes: pa.Array,
    packs: pa.Array,
    offsets: pa.Array,
) -> pa.Table:
    """The manifest table of a batch, sorted by timestamp then image id.

    ``metadata`` must come from :func:`normalize_metadata`; the other arrays
    are aligned with its rows.
    """
    n = metadata.num_rows
    stored = {
        "instrument": pa.array([instrument] * n, pa.string()),
        "blob_id": blob_ids,
        "size": sizes,
        "pack": packs,
        "offset": offsets,
    }
    extras = [c for c in metadata.column_names if c not in USER_COLUMNS]
    columns = {
        name: stored[name] if name in stored else metadata.column(name) for name in CORE_ORDER
    }
    columns.update({name: metadata.column(name) for name in extras})
    table = pa.table(columns)
    return table.sort_by([("timestamp", "ascending"), ("image_id", "ascending")])


def encode(manifest: pa.Table) -> bytes:
    return to_parquet(manifest, KIND)


def decode(data: bytes, columns: list[str] | None = None) -> pa.Table:
    return from_parquet(data, KIND, columns)


def summarize(manifest: pa.Table, manifest_id: ObjectId) -> Batch:
    """The :class:`Batch` entry (statistics included) for a manifest."""

    def bounds(name: str) -> tuple:
        result = pc.min_max(manifest.column(name))
        return result["min"].as_py(), result["max"].as_py()

    extras = [c for c in manifest.column_names if c not in CORE_ORDER]
    time_min, time_max = bounds("timestamp")
    id_min, id_max = bounds("image_id")
    lat_min, lat_max = bounds("lat")
    lon_min, lon_max = bounds("lon")
    depth_min, depth_max = bounds("depth")
    packs = sorted(set(manifest.column("pack").unique().to_pylist()))
    return Batch(
        instrument=manifest.column("instrument")[0].as_py(),
        manifest=manifest_id,
        packs=tuple(packs),
        rows=manifest.num_rows,
        bytes=pc.sum(manifest.column("size")).as_py(),
        time_min=time_min,
        time_max=time_max,
        image_id_min=id_min,
        image_id_max=id_max,
        lat_min=lat_min,
        lat_max=lat_max,
        lon_min=lon_min,
        lon_max=lon_max,
        depth_min=depth_min,
        depth_max=depth_max,
        extra_columns=tuple(extras),
        extra_types=tuple(str(manifest.schema.field(c).type) for c in extras),
    )
