"""Provenance in queries: which segments to read, which records to load, and
the SQL pieces that filter images by them and join their columns.

For every kind a query names, the records of the chosen run (``latest``: per
image, the run recorded last) form ``sel_<kind>``; those meeting all of the
kind's conditions form ``match_<kind>``. An image passes when it has a
matching record of every filtering kind; joined columns come from its most
recent matching record. Geolocation records give a position to images whose
manifest has none, for ``--bbox``. Vectors (embeddings) stay out of DuckDB:
the SQL picks the record id, and the engine puts the vector in its place.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError
from ..core.model import Span
from ..provenance import view
from ..provenance.catalog import get_kind
from ..provenance.kinds import BLOB_COLUMNS, ENVELOPE, TIMESTAMP, Kind
from ..snapshot.reader import SnapshotReader
from .filters import ProvenanceWhere, Query
from .planning import ProvenanceSql, prune, typed_value

_ENVELOPE_TYPES = {"recorded_at": TIMESTAMP, "size": pa.int64(), "offset": pa.int64()}
_MAX_RANGE_CHECKS = 2000
_LOWER = {">": True, ">=": True, "=": True}
_UPPER = {"<": True, "<=": True, "=": True}


@dataclass
class Plan:
    """The batches to scan, the record tables to register, and the SQL pieces."""

    batches: pa.Table
    tables: dict[str, pa.Table] = field(default_factory=dict)
    sql: ProvenanceSql = field(default_factory=ProvenanceSql)
    vectors: dict[str, pa.Table] = field(default_factory=dict)
    """Result column → ``(record_id, vector)`` of the records it may pick."""


def plan(
    snapshot: SnapshotReader,
    query: Query,
    spans: tuple[Span, ...] | None,
    candidates: pa.Table,
    record_ids: bool = False,
) -> Plan:
    """Provenance work for ``query`` on ``snapshot``; ``candidates`` are the
    batches left after pruning by the manifest filters. With ``record_ids``
    the record tables keep their ids (to name the records a result used)."""
    named = query.provenance_kinds()
    located = _located(snapshot, query) if query.bbox else None
    if not named and located is None:
        return Plan(candidates)
    tables: dict[str, pa.Table] = {}
    if located is not None:
        candidates = _with_located_batches(snapshot, query, spans, candidates, located)
        tables["located"] = located
    filtering = query.filtering_kinds()
    ctes: list[str] = []
    params: list[object] = []
    filters: list[str] = []
    columns: list[str] = []
    joins: list[str] = []
    vectors: dict[str, pa.Table] = {}
    for name in named:
        kind = get_kind(name)
        fixed = _vector_columns(query, kind)
        segments = _segments(snapshot, query, kind, candidates, name in filtering)
        if name in filtering:
            candidates = _overlapping(candidates, segments)
        table = _records(snapshot, query, kind, segments, candidates, record_ids)
        table, apart = _vectors_apart(table, name, fixed)
        vectors.update(apart)
        tables[f"prov_{name}"] = table
        run = query.run_for(name)
        if run == view.RUN_LATEST:
            ctes.append(
                f'"sel_{name}" AS (SELECT * FROM "prov_{name}" QUALIFY run_id = '
                f"arg_max(run_id, (recorded_at, run_id)) OVER (PARTITION BY image_id))"
            )
        elif run is not None:
            ctes.append(f'"sel_{name}" AS (SELECT * FROM "prov_{name}" WHERE run_id = ?)')
            params.append(run)
        else:
            ctes.append(f'"sel_{name}" AS (SELECT * FROM "prov_{name}")')
        conditions = [c for c in query.provenance if c.kind == name]
        where = " AND ".join(
            f'"{c.column}" {"LIKE" if c.op == "like" else c.op} ?' for c in conditions
        )
        params.extend(typed_value(c, table.schema) for c in conditions)
        ctes.append(
            f'"match_{name}" AS (SELECT * FROM "sel_{name}"{" WHERE " + where if where else ""})'
        )
        if name in filtering:
            filters.append(f'image_id IN (SELECT image_id FROM "match_{name}")')
        joined = [
            c.partition(".")[2] for c in query.provenance_columns if c.partition(".")[0] == name
        ]
        if joined:
            picks = ", ".join(
                f'arg_max_null("{"record_id" if c in fixed else c}", (recorded_at, record_id)) '
                f'AS "{name}.{c}"'
                for c in joined
            )
            joins.append(
                f'LEFT JOIN (SELECT image_id, {picks} FROM "match_{name}" GROUP BY image_id) '
                f'AS "with_{name}" USING (image_id)'
            )
            columns.extend(f'"with_{name}"."{name}.{c}"' for c in joined)
    sql = ProvenanceSql(
        tuple(ctes),
        tuple(params),
        tuple(filters),
        tuple(columns),
        tuple(joins),
        located="located" if located is not None else None,
    )
    return Plan(candidates, tables, sql, vectors)


def _vector_columns(query: Query, kind: Kind) -> set[str]:
    """The kind's vector columns; conditions on them are refused (they are only joined)."""
    fixed = {c.name for c in kind.columns if c.vector == "fixed"}
    for condition in query.provenance:
        if condition.kind == kind.name and condition.column in fixed:
            raise InvalidInputError(
                f"{kind.name}.{condition.column} holds vectors: add it with --with; it cannot be "
                "compared"
            )
    return fixed


def _vectors_apart(
    table: pa.Table, name: str, fixed: set[str]
) -> tuple[pa.Table, dict[str, pa.Table]]:
    """``table`` without its (joined) vector columns, and each one's
    ``(record_id, vector)`` by result column."""
    held = [c for c in table.column_names if c in fixed]
    apart = {
        f"{name}.{c}": table.select(["record_id", c]).rename_columns(["record_id", "vector"])
        for c in held
    }
    return table.drop_columns(held), apart


def _columns_of(snapshot: SnapshotReader, kind: Kind) -> dict[str, pa.DataType]:
    """Every column a record of ``kind`` can have here, with its type."""
    found: dict[str, pa.DataType] = {n: _ENVELOPE_TYPES.get(n, pa.string()) for n in ENVELOPE}
    if kind.blob:
        found.update({n: _ENVELOPE_TYPES.get(n, pa.string()) for n in BLOB_COLUMNS})
    for column in kind.columns:
        found[column.name] = pa.string() if column.scores else column.type
    for name, type_name in view.known_types(snapshot, kind.name).items():
        found.setdefault(name, _arrow_type(type_name))
    return found


def _arrow_type(name: str) -> pa.DataType:
    simple = {
        "string": pa.string(),
        "int64": pa.int64(),
        "double": pa.float64(),
        "bool": pa.bool_(),
        "float": pa.float32(),
        "null": pa.null(),
        str(TIMESTAMP): TIMESTAMP,
    }
    return simple.get(name, pa.string())


def _needed(query: Query, kind: Kind, columns: dict[str, pa.DataType]) -> list[str]:
    """The record columns the query reads: the image id, the run's columns
    when a run is chosen, the ordering columns when values are joined."""
    wanted = [c.column for c in query.provenance if c.kind == kind.name]
    joined = [
        c.partition(".")[2] for c in query.provenance_columns if c.partition(".")[0] == kind.name
    ]
    for name in [*wanted, *joined]:
        if name not in columns:
            raise InvalidInputError(
                f"unknown column {name!r} of kind {kind.name!r}; its columns: {', '.join(columns)}"
            )
    run = query.run_for(kind.name)
    always = ["image_id"]
    if run is not None:
        always += ["run_id", "recorded_at"] if run == view.RUN_LATEST else ["run_id"]
    if joined:
        always += ["recorded_at", "record_id"]
    return list(dict.fromkeys([*always, *wanted, *joined]))


def _segments(
    snapshot: SnapshotReader, query: Query, kind: Kind, candidates: pa.Table, filtering: bool
) -> pa.Table:
    """Segments of ``kind`` that can hold records the query uses."""
    run = query.run_for(kind.name)
    segments = view.segments(snapshot, kind.name, run, _id_range(candidates))
    if not filtering or run == view.RUN_LATEST:
        return segments  # which run is latest depends on records that fail the conditions too
    keep = []
    conditions = [c for c in query.provenance if c.kind == kind.name and c.column in kind.indexed]
    for row in segments.select(["bound_columns", "bound_min", "bound_max"]).to_pylist():
        bounds = {
            n: (lo, hi)
            for n, lo, hi in zip(row["bound_columns"], row["bound_min"], row["bound_max"])
        }
        keep.append(all(_may_match(c, bounds.get(c.column)) for c in conditions))
    return segments.filter(pa.array(keep, pa.bool_()))


def _may_match(condition: ProvenanceWhere, bounds: tuple[float, float] | None) -> bool:
    if condition.op in ("!=", "like"):
        return True
    if bounds is None:
        return False  # no values at all: no comparison can hold
    try:
        value = float(condition.value)
    except (TypeError, ValueError):
        return True  # the SQL will report the bad value
    low, high = bounds
    if condition.op in _LOWER and high < value or condition.op == ">" and high <= value:
        return False
    return not (condition.op in _UPPER and low > value or condition.op == "<" and low >= value)


def _id_range(batches: pa.Table) -> tuple[str, str] | None:
    if batches.num_rows == 0:
        return ("", "")  # matches nothing
    low = pc.min(batches.column("image_id_min")).as_py()
    high = pc.max(batches.column("image_id_max")).as_py()
    return (low, high)


def _overlapping(batches: pa.Table, segments: pa.Table) -> pa.Table:
    """Batches whose image-id range meets some segment's (skipped when there
    are too many segments for it to pay)."""
    if segments.num_rows > _MAX_RANGE_CHECKS:
        return batches
    keep = pa.array([False] * batches.num_rows, pa.bool_())
    for low, high in zip(
        segments.column("image_id_min").to_pylist(), segments.column("image_id_max").to_pylist()
    ):
        meets = pc.and_(
            pc.greater_equal(batches.column("image_id_max"), low),
            pc.less_equal(batches.column("image_id_min"), high),
        )
        keep = pc.or_(keep, meets)
    return batches.filter(keep)


def _records(
    snapshot: SnapshotReader,
    query: Query,
    kind: Kind,
    segments: pa.Table,
    candidates: pa.Table,
    record_ids: bool,
) -> pa.Table:
    """The needed columns of the records in ``segments`` within the candidates'
    id range, every needed column present and typed."""
    types = _columns_of(snapshot, kind)
    needed = _needed(query, kind, types) + (["record_id"] if record_ids else [])
    needed = list(dict.fromkeys(needed))
    table = view.read(snapshot, segments.column("id").to_pylist(), needed, _id_range(candidates))
    columns = {}
    for name in needed:
        if name in table.column_names and table.num_rows:
            columns[name] = table.column(name)
        else:  # no segment has it (or none was read): typed as the kind says
            columns[name] = pa.nulls(table.num_rows, types[name])
    return pa.table(columns)


def _located(snapshot: SnapshotReader, query: Query) -> pa.Table | None:
    """``(image_id, lat, lon)`` of the latest geolocation record of each image
    that has one inside the query's box; None when there are none."""
    lat_min, lon_min, lat_max, lon_max = query.bbox
    segments = view.segments(snapshot, "geolocation")
    keep = []
    for row in segments.select(["bound_columns", "bound_min", "bound_max"]).to_pylist():
        bounds = {
            n: (lo, hi)
            for n, lo, hi in zip(row["bound_columns"], row["bound_min"], row["bound_max"])
        }
        lat, lon = bounds.get("lat"), bounds.get("lon")
        keep.append(
            bool(
                lat
                and lon
                and lat[0] <= lat_max
                and lat[1] >= lat_min
                and lon[0] <= lon_max
                and lon[1] >= lon_min
            )
        )
    segments = segments.filter(pa.array(keep, pa.bool_()))
    if segments.num_rows == 0:
        return None
    columns = ["image_id", "recorded_at", "record_id", "lat", "lon"]
    placed = view.read(snapshot, segments.column("id").to_pylist(), columns)
    placed = placed.filter(_inside(placed, query.bbox))
    if placed.num_rows == 0:
        return None
    # an image's latest position may lie in a segment outside the box
    ids = pc.unique(placed.column("image_id"))
    span = pc.min_max(ids)
    around = view.segments(
        snapshot, "geolocation", id_range=(span["min"].as_py(), span["max"].as_py())
    )
    table = view.read(snapshot, around.column("id").to_pylist(), columns)
    table = table.filter(pc.is_in(table.column("image_id"), value_set=ids))
    order = [("image_id", "ascending"), ("recorded_at", "ascending"), ("record_id", "ascending")]
    latest = (
        table.sort_by(order)
        .group_by("image_id", use_threads=False)
        .aggregate([("lat", "last"), ("lon", "last")])
    )
    latest = latest.rename_columns(["image_id", "lat", "lon"])
    latest = latest.filter(_inside(latest, query.bbox))
    return latest if latest.num_rows else None


def _inside(table: pa.Table, bbox: tuple[float, float, float, float]) -> pa.Array:
    lat_min, lon_min, lat_max, lon_max = bbox
    lat, lon = table.column("lat"), table.column("lon")
    return pc.and_(
        pc.and_(pc.greater_equal(lat, lat_min), pc.less_equal(lat, lat_max)),
        pc.and_(pc.greater_equal(lon, lon_min), pc.less_equal(lon, lon_max)),
    )


def _with_located_batches(
    snapshot: SnapshotReader,
    query: Query,
    spans: tuple[Span, ...] | None,
    candidates: pa.Table,
    located: pa.Table,
) -> pa.Table:
    """``candidates`` plus the batches (pruned by every filter but the box)
    holding images that geolocation records place inside the box."""
    unboxed = prune(snapshot.batches, query.model_copy(update={"bbox": None}), spans)
    ids = sorted(located.column("image_id").to_pylist())
    have = set(candidates.column("manifest").to_pylist())
    extra = []
    for i, (low, high, manifest) in enumerate(
        zip(
            unboxed.column("image_id_min").to_pylist(),
            unboxed.column("image_id_max").to_pylist(),
            unboxed.column("manifest").to_pylist(),
        )
    ):
        at = bisect.bisect_left(ids, low)
        if manifest not in have and at < len(ids) and ids[at] <= high:
            extra.append(i)
    if not extra:
        return candidates
    return pa.concat_tables([candidates, unboxed.take(extra)])
