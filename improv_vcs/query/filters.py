"""Queries: a pure description of a selection, its parsing from text, batch
pruning by statistics, and compilation into one parameterized SQL statement.

Nothing here runs SQL or reads objects; :mod:`improv_vcs.query.engine` does.
User values only ever reach DuckDB as bound parameters; column names are
checked against the snapshot's columns and the identifier grammar first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Union

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.errors import InvalidInputError
from ..core.ids import column_name, instrument_name, label
from ..core.model import Span
from ..core.times import parse_time

Operator = Literal["=", "!=", "<", "<=", ">", ">=", "like"]
_WHERE = re.compile(
    r"^\s*(?P<column>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>!=|<=|>=|=|<|>|\s+like\s+)\s*(?P<value>.*?)\s*$",
    re.IGNORECASE,
)
Scalar = Union[bool, int, float, str]


class Where(BaseModel):
    """``column op value`` on a manifest column: ``Where("operator", "=", "ada")``.
    The value is typed by the column it is compared with."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    column: str
    op: Operator
    value: Scalar

    def __init__(self, column: str, op: Operator, value: Scalar, **fields: Any) -> None:
        super().__init__(column=column, op=op, value=value, **fields)

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        return column_name(value)

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value!r}"


class ProvenanceWhere(Where):
    """``kind.column op value``: the image has a record of ``kind`` matching
    (all conditions on one kind must hold for the same record):
    ``ProvenanceWhere("classification", "class_name", "=", "diatom")``."""

    kind: str

    def __init__(self, kind: str, column: str, op: Operator, value: Scalar) -> None:
        super().__init__(column, op, value, kind=kind)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        return column_name(value)

    def __str__(self) -> str:
        return f"{self.kind}.{self.column} {self.op} {self.value!r}"


class Run(BaseModel):
    """Which run of a kind's records a query uses: ``latest`` (per image, the
    run recorded last) or one run id; ``kind`` None means every kind:
    ``Run("latest")``, ``Run("cnn-2024", kind="classification")``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: str | None = None
    run: str

    def __init__(self, run: str, kind: str | None = None) -> None:
        super().__init__(run=run, kind=kind)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str | None) -> str | None:
        return None if value is None else column_name(value)

    @field_validator("run")
    @classmethod
    def _run(cls, value: str) -> str:
        return label(value, "run id")


class Query(BaseModel):
    """A selection of images; every filter present is ANDed. Its canonical
    JSON form (``model_dump(mode="json")``) identifies it in citations."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    instruments: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    bbox: tuple[float, float, float, float] | None = Field(
        default=None, description="lat_min, lon_min, lat_max, lon_max"
    )
    depth: tuple[float | None, float | None] | None = None
    dataset: str | None = None
    samples: tuple[str, ...] = ()
    where: tuple[Where, ...] = ()
    kinds: tuple[str, ...] = Field(default=(), description="images having records of every one of these kinds")
    provenance: tuple[ProvenanceWhere, ...] = ()
    runs: tuple[Run, ...] = ()
    provenance_columns: tuple[str, ...] = Field(
        default=(), description="KIND.COLUMN values joined into the result"
    )
    sample_quality: tuple[Literal["good", "questionable", "bad"], ...] = Field(
        default=(), description="only images whose sample's latest record has one of these qualities"
    )
    sample_columns: tuple[str, ...] = Field(default=(), description="sample record columns joined as sample.COLUMN")
    columns: tuple[str, ...] | None = None
    limit: int | None = Field(default=None, ge=0)

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({column_name(v) for v in value}))

    @field_validator("provenance_columns")
    @classmethod
    def _provenance_columns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            kind, dot, column = item.partition(".")
            if not dot:
                raise ValueError(f"{item!r}: use KIND.COLUMN")
            column_name(kind)
            column_name(column)
        return tuple(dict.fromkeys(value))

    @field_validator("sample_columns")
    @classmethod
    def _sample_columns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from ..snapshot.registry import SAMPLE_COLUMNS

        for name in value:
            if name not in SAMPLE_COLUMNS:
                raise ValueError(f"sample.{name}: sample records have {', '.join(SAMPLE_COLUMNS)}")
        return tuple(dict.fromkeys(value))

    def provenance_kinds(self) -> list[str]:
        """Every kind the query names, sorted."""
        named = {*self.kinds, *(c.kind for c in self.provenance), *(r.kind for r in self.runs if r.kind)}
        named.update(c.partition(".")[0] for c in self.provenance_columns)
        return sorted(named)

    def filtering_kinds(self) -> set[str]:
        """Kinds an image must have records of: named by --kind, by a
        condition, or by a run choice for that kind."""
        return {*self.kinds, *(c.kind for c in self.provenance), *(r.kind for r in self.runs if r.kind)}

    def run_for(self, kind: str) -> str | None:
        """The run choice that applies to ``kind`` (its own, else the general one)."""
        own = [r.run for r in self.runs if r.kind == kind]
        general = [r.run for r in self.runs if r.kind is None]
        return (own or general or [None])[0]

    @field_validator("instruments")
    @classmethod
    def _instruments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({instrument_name(v) for v in value}))

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)  # a time without an offset is UTC, as everywhere
        return value.astimezone(timezone.utc) if value else value

    @field_validator("depth")
    @classmethod
    def _depth(cls, value: tuple[float | None, float | None] | None) -> tuple[float | None, float | None] | None:
        return None if value == (None, None) else value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(column_name(v) for v in value)


def build_query(**options: object) -> Query:
    """A :class:`Query` from keyword options, errors as :class:`InvalidInputError`."""
    from pydantic import ValidationError

    try:
        query = Query(**options)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InvalidInputError(f"{where}: {error['msg'].removeprefix('Value error, ')}") from None
    if query.start and query.end and query.start >= query.end:
        raise InvalidInputError("--start must be before --end")
    if query.bbox and (query.bbox[0] > query.bbox[2] or query.bbox[1] > query.bbox[3]):
        raise InvalidInputError("bbox must be LAT_MIN,LON_MIN,LAT_MAX,LON_MAX with min <= max")
    if query.depth and None not in query.depth and query.depth[0] > query.depth[1]:  # type: ignore[operator]
        raise InvalidInputError("depth must be MIN:MAX with MIN <= MAX")
    return query


# -- parsing text options ------------------------------------------------------
def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"{what}: {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInputError(f"{what}: {text!r} is not a finite number")
    return value


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    parts = text.split(",")
    if len(parts) != 4:
        raise InvalidInputError(f"--bbox needs LAT_MIN,LON_MIN,LAT_MAX,LON_MAX, got {text!r}")
    lat_min, lon_min, lat_max, lon_max = (_number(p, "--bbox") for p in parts)
    return lat_min, lon_min, lat_max, lon_max


def parse_depth(text: str) -> tuple[float | None, float | None]:
    """``MIN:MAX``, either side may be empty."""
    low, colon, high = text.partition(":")
    if not colon or not (low.strip() or high.strip()):
        raise InvalidInputError(f"--depth needs MIN:MAX (either may be empty), got {text!r}")
    lower = _number(low, "--depth") if low.strip() else None
    upper = _number(high, "--depth") if high.strip() else None
    if lower is not None and upper is not None and lower > upper:
        raise InvalidInputError(f"--depth {text!r}: MIN is greater than MAX")
    return lower, upper


def parse_where(text: str) -> Where:
    """``COLUMN OP VALUE`` with OP one of = != < <= > >= like; VALUE is text
    (optionally quoted), typed later by the column it is compared with."""
    match = _WHERE.match(text)
    if not match or not match.group("value"):
        raise InvalidInputError(
            f"--where needs 'COLUMN OP VALUE' with OP one of = != < <= > >= like, got {text!r}"
        )
    raw = match.group("value")
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    column = match.group("column")
    try:
        column_name(column)
    except InvalidInputError as exc:
        raise InvalidInputError(f"--where {text!r}: {exc}") from None
    return Where(column=column, op=match.group("op").strip().lower(), value=raw)


def parse_provenance(text: str) -> ProvenanceWhere:
    """``KIND.COLUMN OP VALUE`` (the ``--where`` grammar with a kind)."""
    kind, dot, rest = text.strip().partition(".")
    if not dot:
        raise InvalidInputError(f"--prov needs 'KIND.COLUMN OP VALUE', got {text!r}")
    try:
        column_name(kind)
        condition = parse_where(rest)
    except InvalidInputError as exc:
        raise InvalidInputError(f"--prov {text!r}: {exc}") from None
    return ProvenanceWhere(kind=kind, **condition.model_dump())


def parse_run(text: str) -> Run:
    """``latest``, ``RUN_ID``, ``KIND=latest`` or ``KIND=RUN_ID``."""
    kind, equals, run = text.partition("=")
    from pydantic import ValidationError

    try:
        return Run(kind=kind.strip() if equals else None, run=run.strip() if equals else text.strip())
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise InvalidInputError(f"--run {text!r}: {reason}") from None
    except ValueError as exc:
        raise InvalidInputError(f"--run {text!r}: {exc}") from None


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
    if query.bbox or query.depth or query.samples or query.sample_quality or query.where or query.filtering_kinds():
        return pa.array([False] * batches.num_rows, pa.bool_())
    mask = _time_mask(batches, query.start, query.end, whole=True)
    if query.instruments:
        mask = pc.and_(mask, pc.is_in(batches.column("instrument"), value_set=pa.array(query.instruments)))
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


def _time_mask(batches: pa.Table, start: datetime | None, end: datetime | None, whole: bool) -> pa.Array:
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
        needed.update(("sample_id", "instrument", "timestamp"))  # a sample also holds its window's rows
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
        add(f"images.instrument IN ({', '.join('?' for _ in query.instruments)})", *query.instruments)
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
                f"(({inside}) OR ((images.lat IS NULL OR images.lon IS NULL) AND images.image_id IN "
                f"(SELECT {located}.image_id FROM {located} WHERE {inside.replace('images.', located + '.')})))",
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
                "(images.instrument = ? AND images.timestamp >= ? AND images.timestamp < ?)" for _ in spans
            )
            add(f"({ors})", *[v for s in spans for v in (s.instrument, s.start, s.end)])
    if query.samples:
        marks = ", ".join("?" for _ in query.samples)
        add(
            f"(images.sample_id IN ({marks}) OR {_IN_WINDOW.format(f'windows.sample_id IN ({marks})')})",
            *query.samples,
            *query.samples,
        )
    for condition in query.where:
        op = "LIKE" if condition.op == "like" else condition.op
        add(f'images."{condition.column}" {op} ?', typed_value(condition, schema))
    if query.sample_quality:
        marks = ", ".join("?" for _ in query.sample_quality)
        add(
            f"(images.sample_id IN (SELECT samples.sample_id FROM samples WHERE samples.quality IN ({marks})) "
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
    columns = ", ".join([columns, *provenance.columns, *(f'samples."{c}" AS "sample.{c}"' for c in query.sample_columns)])
    joins = "".join(f" {j}" for j in provenance.joins)
    if query.sample_columns:
        joins += (
            " LEFT JOIN window_sample ON window_sample.image_id = images.image_id"
            " LEFT JOIN samples ON samples.sample_id = coalesce(nullif(images.sample_id, ''), window_sample.sample_id)"
        )
    sql = f"{ctes}SELECT {columns} FROM images{joins}{where} ORDER BY images.timestamp, images.image_id"
    if query.limit is not None:
        sql += " LIMIT ?"
        params.append(query.limit)
    return sql, params


_IN_WINDOW = (
    "(coalesce(images.sample_id, '') = '' AND EXISTS (SELECT 1 FROM samples AS windows WHERE {} "
    "AND windows.instrument = images.instrument AND images.timestamp >= windows.\"start\" "
    'AND images.timestamp < windows."end"))'
)
"""An image without a ``sample_id`` (null, or empty in older manifests)
belongs to every sample of its instrument whose window ``[start, end)`` holds
its timestamp; ``{}`` picks the samples."""

_WINDOW_SAMPLE = (
    "window_sample AS (SELECT image_id, sample_id FROM (SELECT i.image_id, w.sample_id, row_number() OVER "
    "(PARTITION BY i.image_id ORDER BY w.\"start\" DESC, w.sample_id DESC) AS n FROM images AS i JOIN samples AS w "
    "ON coalesce(i.sample_id, '') = '' AND w.instrument = i.instrument AND i.timestamp >= w.\"start\" AND i.timestamp < w.\"end\") "
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
            return _number(value, f"--where {condition.column}")
        if isinstance(value, bool):
            raise InvalidInputError(f"{condition.column} is numeric; got {value!r}")
        return value
    return str(value)


def query_from_options(
    instrument: list[str] | None,
    start: str | None,
    end: str | None,
    bbox: str | None,
    depth: str | None,
    dataset: str | None,
    sample: list[str] | None,
    where: list[str] | None,
    columns: str | None,
    limit: int | None,
    kind: list[str] | None = None,
    prov: list[str] | None = None,
    run: list[str] | None = None,
    with_: list[str] | None = None,
    sample_quality: list[str] | None = None,
) -> Query:
    """The :class:`Query` that query options given as text describe (the
    CLI's and the HTTP API's): each is parsed, and errors name the option.
    ``--with sample.COLUMN`` joins sample records; other ``--with`` values
    name provenance ``KIND.COLUMN``."""
    joined = [w.strip() for w in with_ or ()]
    return build_query(
        instruments=tuple(instrument or ()),
        start=parse_time(start, "--start") if start else None,
        end=parse_time(end, "--end") if end else None,
        bbox=parse_bbox(bbox) if bbox else None,
        depth=parse_depth(depth) if depth else None,
        dataset=dataset,
        samples=tuple(sample or ()),
        where=tuple(parse_where(w) for w in where or ()),
        kinds=tuple(kind or ()),
        provenance=tuple(parse_provenance(p) for p in prov or ()),
        runs=tuple(parse_run(r) for r in run or ()),
        provenance_columns=tuple(w for w in joined if not w.startswith("sample.")),
        sample_columns=tuple(w.removeprefix("sample.") for w in joined if w.startswith("sample.")),
        sample_quality=tuple(q.strip() for q in sample_quality or ()),
        columns=parse_columns(columns),
        limit=limit,
    )


def parse_columns(text: str | None) -> tuple[str, ...] | None:
    """``--columns``: comma-separated names; ``*`` (or nothing) means every column."""
    if text is None or not text.strip() or text.strip() == "*":
        return None
    names = tuple(c.strip() for c in text.split(","))
    if "*" in names:
        raise InvalidInputError("--columns: '*' means every column and stands alone")
    return names
