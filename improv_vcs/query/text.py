"""The text grammar of filters, shared by the CLI's options and the HTTP
API's parameters: ``--where "COLUMN OP VALUE"``, ``--prov KIND.COLUMN OP
VALUE``, ``--run``, ``--bbox``, ``--depth``, ``--columns``. Errors name the
option. Scripts build the objects (:class:`~.filters.Where` …) directly."""

from __future__ import annotations

import re

from pydantic import ValidationError

from ..core.errors import InvalidInputError
from ..core.ids import column_name
from ..core.times import parse_time
from .filters import ProvenanceWhere, Query, Run, Where, build_query

_WHERE = re.compile(
    r"^\s*(?P<column>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>!=|<=|>=|=|<|>|\s+like\s+)\s*(?P<value>.*?)\s*$",
    re.IGNORECASE,
)


def parse_number(text: str, what: str) -> float:
    """A finite number, or an error naming the option."""
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
    lat_min, lon_min, lat_max, lon_max = (parse_number(p, "--bbox") for p in parts)
    return lat_min, lon_min, lat_max, lon_max


def parse_depth(text: str) -> tuple[float | None, float | None]:
    """``MIN:MAX``, either side may be empty."""
    low, colon, high = text.partition(":")
    if not colon or not (low.strip() or high.strip()):
        raise InvalidInputError(f"--depth needs MIN:MAX (either may be empty), got {text!r}")
    lower = parse_number(low, "--depth") if low.strip() else None
    upper = parse_number(high, "--depth") if high.strip() else None
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
    try:
        return Run(
            kind=kind.strip() if equals else None, run=run.strip() if equals else text.strip()
        )
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise InvalidInputError(f"--run {text!r}: {reason}") from None
    except ValueError as exc:
        raise InvalidInputError(f"--run {text!r}: {exc}") from None


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
