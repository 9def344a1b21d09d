"""Planning a query: prune a snapshot's batches by their statistics, and
compile the query into one parameterized SQL statement.

Nothing here runs SQL or reads objects; :mod:`.engine` does. User values
only ever reach DuckDB as bound parameters; column names are checked
against the snapshot's columns and the identifier grammar first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError
from ..core.model import Span
from ..core.times import parse_time
from .filters import Query, Where
from .text import parse_number


# -- pruning -------------------------------------------------------------------
def prune(batches: pa.Table, query: Query, spans: tuple[Span, ...] | None) -> pa.Table:
    """The batches whose statistics allow a match (a superset of what is needed)."""
    keep = pa.array([True] * batches.num_rows, pa.bool_())

    def both(mask: pa.ChunkedArray | pa.Array) -> None:
        nonlocal keep
        keep = pc.and_kleene(keep, pc.fill_null(mask, False))

    if query.instruments:
        both(pc.is_in(batches.column("instrument"), value_set=pa.array(query.instruments)))
    both(_time_mask(batches, query.start, query.end, whole=False))
    if query.bbox:
        lat_min, lon_min, lat_max, lon_max = query.bbox
        both(_overlaps(batches, "lat", lat_min, lat_max))
        both(_overlaps(batches, "lon", lon_min, lon_max))
    if query.depth:
        both(_overlaps(batches, "depth", *query.depth))
    if spans is not None:
        both(_in_any_span(batches, spans, whole=False))
    return batches.filter(keep)


def fully_covered(batches: pa.Table, query: Query, spans: tuple[Span, ...] | None) -> pa.Array:
    """Batches whose every row matches (only for queries whose filters are all
    decided per batch: instruments, time range, dataset); their stored row
    counts can stand in for scanning them."""
    if (
        query.bbox
        or query.depth
        or query.samples
        or query.sample_quality
        or query.where
        or query.filtering_kinds()
    ):
        return pa.array([False] * batches.num_rows, pa.bool_())
    mask = _time_mask(batches, query.start, query.end, whole=True)
    if query.instruments:
        mask = pc.and_(
            mask, pc.is_in(batches.column("instrument"), value_set=pa.array(query.instruments))
        )
    if spans is not None:
        mask = pc.and_(mask, _in_any_span(batches, spans, whole=True))
    return mask


def _in_any_span(batches: pa.Table, spans: tuple[Span, ...], whole: bool) -> pa.Array:
    """Batches of a span's instrument that meet its time range (``whole``: lie inside it)."""
    mask = pa.array([False] * batches.num_rows, pa.bool_())
    for span in spans:
        same = pc.equal(batches.column("instrument"), span.instrument)
        mask = pc.or_(mask, pc.and_(same, _time_mask(batches, span.start, span.end, whole)))
    return mask


def _time_mask(
    batches: pa.Table, start: datetime | None, end: datetime | None, whole: bool
) -> pa.Array:
    """Batches whose time range meets ``[start, end)`` (``whole``: lies inside it)."""
    first, last = ("time_min", "time_max") if whole else ("time_max", "time_min")
    mask = pa.array([True] * batches.num_rows, pa.bool_())
    if start is not None:
        mask = pc.and_(mask, pc.greater_equal(batches.column(first), pa.scalar(start, _TS)))
    if end is not None:
        mask = pc.and_(mask, pc.less(batches.column(last), pa.scalar(end, _TS)))
    return mask


def needed_columns(query: Query, spans: tuple[Span, ...] | None, count: bool) -> list[str] | None:
    """The manifest columns a query reads (None: all of them)."""
    if not count and query.columns is None:
        return None
    needed = {*(query.columns or ()), *(("image_id",) if count else ORDER)}
    if query.instruments or spans is not None:
        needed.add("instrument")
    if query.start or query.end or spans is not None:
        needed.add("timestamp")
    if query.bbox:
        needed.update(("lat", "lon"))
    if query.depth:
        needed.add("depth")
    if query.samples or query.sample_quality or query.sample_columns:
        needed.update(
            ("sample_id", "instrument", "timestamp")
        )  # a sample also holds its window's rows
    needed.update(c.column for c in query.where)
    if query.provenance_kinds():
        needed.add("image_id")
    return sorted(needed)


def _overlaps(batches: pa.Table, name: str, low: float | None, high: float | None) -> pa.Array:
    mask = pc.is_valid(batches.column(f"{name}_min"))
    if low is not None:
        mask = pc.and_(mask, pc.greater_equal(batches.column(f"{name}_max"), low))
    if high is not None:
        mask = pc.and_(mask, pc.less_equal(batches.column(f"{name}_min"), high))
    return mask


_TS = pa.timestamp("us", tz="UTC")


# -- compilation -----------------------------------------------------------------
ORDER = ["timestamp", "image_id"]


@dataclass(frozen=True)
class ProvenanceSql:
    """What provenance adds to a query's SQL (see
    :mod:`improv_vcs.query.provenance`): common table expressions, filters
    on ``image_id``, joined columns, and the name of a CTE ``(image_id, lat,
    lon)`` giving positions to images whose manifest has none."""

    ctes: tuple[str, ...] = ()
    cte_params: tuple[object, ...] = ()
    filters: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    joins: tuple[str, ...] = ()
    located: str | None = None


def compile_sql(
    query: Query,
    spans: tuple[Span, ...] | None,
    schema: pa.Schema,
    count: bool = False,
    provenance: ProvenanceSql | None = None,
) -> tuple[str, list[object]]:
    """One SELECT over the view ``images`` (and provenance tables) and its
    bound parameters."""
    provenance = provenance or ProvenanceSql()
    available = set(schema.names)
    for name in [*(query.columns or ()), *(c.column for c in query.where)]:
        if name not in available:
            raise InvalidInputError(
                f"unknown column {name!r}; columns here: {', '.join(schema.names)}"
            )
    clauses: list[str] = []
    params: list[object] = []

    def add(clause: str, *values: object) -> None:
        clauses.append(clause)
        params.extend(values)

    if query.instruments:
        add(
            f"images.instrument IN ({', '.join('?' for _ in query.instruments)})",
            *query.instruments,
        )
    if query.start is not None:
        add("images.timestamp >= ?", query.start)
    if query.end is not None:
        add("images.timestamp < ?", query.end)
    if query.bbox:
        lat_min, lon_min, lat_max, lon_max = query.bbox
        inside = "images.lat BETWEEN ? AND ? AND images.lon BETWEEN ? AND ?"
        box = (lat_min, lat_max, lon_min, lon_max)
        if provenance.located is None:
            add(f"({inside})", *box)
        else:
            located = f'"{provenance.located}"'
            add(
                f"(({inside}) OR ((images.lat IS NULL OR images.lon IS NULL) AND images.image_id "
                f"IN "
                f"(SELECT {located}.image_id FROM {located} WHERE "
                f"{inside.replace('images.', located + '.')})))",
                *box,
                *box,
            )
    if query.depth:
        low, high = query.depth
        if low is not None:
            add("images.depth >= ?", low)
        if high is not None:
            add("images.depth <= ?", high)
    if spans is not None:
        if not spans:
            add("FALSE")
        else:
            ors = " OR ".join(
                "(images.instrument = ? AND images.timestamp >= ? AND images.timestamp < ?)"
                for _ in spans
            )
            add(f"({ors})", *[v for s in spans for v in (s.instrument, s.start, s.end)])
    if query.samples:
        marks = ", ".join("?" for _ in query.samples)
        add(
            f"(images.sample_id IN ({marks}) OR "
            f"{_IN_WINDOW.format(f'windows.sample_id IN ({marks})')})",
            *query.samples,
            *query.samples,
        )
    for condition in query.where:
        op = "LIKE" if condition.op == "like" else condition.op
        add(f'images."{condition.column}" {op} ?', typed_value(condition, schema))
    if query.sample_quality:
        marks = ", ".join("?" for _ in query.sample_quality)
        add(
            f"(images.sample_id IN (SELECT samples.sample_id FROM samples WHERE samples.quality "
            f"IN ({marks})) "
            f"OR {_IN_WINDOW.format(f'windows.quality IN ({marks})')})",
            *query.sample_quality,
            *query.sample_quality,
        )
    clauses.extend(provenance.filters)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    all_ctes = [*provenance.ctes, *([_WINDOW_SAMPLE] if query.sample_columns and not count else [])]
    ctes = f"WITH {', '.join(all_ctes)} " if all_ctes else ""
    params = [*provenance.cte_params, *params]
    if count:
        return f"{ctes}SELECT count(*) AS images FROM images{where}", params
    columns = ", ".join(f'images."{c}"' for c in query.columns) if query.columns else "images.*"
    columns = ", ".join(
        [
            columns,
            *provenance.columns,
            *(f'samples."{c}" AS "sample.{c}"' for c in query.sample_columns),
        ]
    )
    joins = "".join(f" {j}" for j in provenance.joins)
    if query.sample_columns:
        joins += (
            " LEFT JOIN window_sample ON window_sample.image_id = images.image_id"
            " LEFT JOIN samples ON samples.sample_id = coalesce(nullif(images.sample_id, ''), "
            "window_sample.sample_id)"
        )
    sql = (
        f"{ctes}SELECT {columns} FROM images{joins}{where} ORDER BY images.timestamp, "
        f"images.image_id"
    )
    if query.limit is not None:
        sql += " LIMIT ?"
        params.append(query.limit)
    return sql, params


_IN_WINDOW = (
    "(coalesce(images.sample_id, '') = '' AND EXISTS (SELECT 1 FROM samples AS windows WHERE {} "
    'AND windows.instrument = images.instrument AND images.timestamp >= windows."start" '
    'AND images.timestamp < windows."end"))'
)
"""An image without a ``sample_id`` (null, or empty in older manifests)
belongs to every sample of its instrument whose window ``[start, end)`` holds
its timestamp; ``{}`` picks the samples."""

_WINDOW_SAMPLE = (
    "window_sample AS (SELECT image_id, sample_id FROM (SELECT i.image_id, w.sample_id, "
    "row_number() OVER "
    '(PARTITION BY i.image_id ORDER BY w."start" DESC, w.sample_id DESC) AS n FROM images AS i '
    "JOIN samples AS w "
    "ON coalesce(i.sample_id, '') = '' AND w.instrument = i.instrument AND i.timestamp >= "
    'w."start" AND i.timestamp < w."end") '
    "WHERE n = 1)"
)
"""The sample whose columns ``--with sample.COLUMN`` joins to an image
without a ``sample_id``: of the windows holding it, the one starting last."""


def typed_value(condition: Where, schema: pa.Schema) -> object:
    """The condition's value converted to its column's type."""
    kind = schema.field(condition.column).type
    value = condition.value
    if pa.types.is_null(kind):  # no values here: nothing can match, any value will do
        return str(value)
    if pa.types.is_nested(kind):
        raise InvalidInputError(f"cannot compare {condition.column} ({kind}) with a value")
    if condition.op == "like":
        if not pa.types.is_string(kind) and not pa.types.is_large_string(kind):
            raise InvalidInputError(f"'like' needs a text column; {condition.column} is {kind}")
        return str(value)
    if pa.types.is_timestamp(kind):
        return parse_time(str(value), f"--where {condition.column}")
    if pa.types.is_boolean(kind):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise InvalidInputError(f"{condition.column} is true/false; got {value!r}")
        return value
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        if isinstance(value, str):
            return parse_number(value, f"--where {condition.column}")
        if isinstance(value, bool):
            raise InvalidInputError(f"{condition.column} is numeric; got {value!r}")
        return value
    return str(value)
