"""Queries: a pure description of a selection (:class:`Query`) and its
object filters (:class:`Where`, :class:`ProvenanceWhere`, :class:`Run`).

Text forms are read by :mod:`.text`; batches are pruned and the SQL is
compiled by :mod:`.planning`; :mod:`.engine` runs it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.errors import InvalidInputError
from ..core.ids import column_name, instrument_name, label

Operator = Literal["=", "!=", "<", "<=", ">", ">=", "like"]
Scalar = bool | int | float | str


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
    kinds: tuple[str, ...] = Field(
        default=(), description="images having records of every one of these kinds"
    )
    provenance: tuple[ProvenanceWhere, ...] = ()
    runs: tuple[Run, ...] = ()
    provenance_columns: tuple[str, ...] = Field(
        default=(), description="KIND.COLUMN values joined into the result"
    )
    sample_quality: tuple[Literal["good", "questionable", "bad"], ...] = Field(
        default=(),
        description="only images whose sample's latest record has one of these qualities",
    )
    sample_columns: tuple[str, ...] = Field(
        default=(), description="sample record columns joined as sample.COLUMN"
    )
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
        named = {
            *self.kinds,
            *(c.kind for c in self.provenance),
            *(r.kind for r in self.runs if r.kind),
        }
        named.update(c.partition(".")[0] for c in self.provenance_columns)
        return sorted(named)

    def filtering_kinds(self) -> set[str]:
        """Kinds an image must have records of: named by --kind, by a
        condition, or by a run choice for that kind."""
        return {
            *self.kinds,
            *(c.kind for c in self.provenance),
            *(r.kind for r in self.runs if r.kind),
        }

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
            value = value.replace(
                tzinfo=timezone.utc
            )  # a time without an offset is UTC, as everywhere
        return value.astimezone(timezone.utc) if value else value

    @field_validator("depth")
    @classmethod
    def _depth(
        cls, value: tuple[float | None, float | None] | None
    ) -> tuple[float | None, float | None] | None:
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
