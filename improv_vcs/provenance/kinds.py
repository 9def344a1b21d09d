"""Provenance kinds: what one kind of record holds and how it is checked.

A kind is a :class:`Kind`: a name, a pydantic model whose fields are the
record's own columns, the columns whose per-segment bounds are kept for
pruning, and optional extra checks. Validation is vectorized: the model's
field types become Arrow types, ``Field(ge=…, le=…)`` bounds and ``Literal``
choices become Arrow compute checks, so a million records validate in one
pass rather than a million ``model_validate`` calls.

Field annotations a kind may use: ``str``, ``int``, ``float``, ``bool``,
``datetime`` (with a time zone), ``Literal[...]`` of strings, :data:`JsonText`
(free-form JSON, stored as canonical text), :data:`Scores` (named numbers,
stored as a struct with one float field per name), :data:`Numbers` (numbers
by position, stored as an Arrow list of float64), :data:`Vector` (one
fixed-size vector per record, stored as an Arrow fixed-size list), each
optionally ``| None`` (nullable; required fields must be non-null in every
record).

Third-party kinds are :class:`Kind` objects published under the entry point
group ``improv_vcs.kinds``; the entry point's name must equal the kind's name.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal

import annotated_types
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from ..core import canonical
from ..core.errors import InvalidInputError
from ..core.ids import column_name
from . import vectors

ENTRY_POINT_GROUP = "improv_vcs.kinds"
TIMESTAMP = pa.timestamp("us", tz="UTC")
SCORE = pa.float32()

ENVELOPE = ("image_id", "kind", "source", "run_id", "recorded_at", "record_id")
"""Columns every record carries, filled in by improv except ``image_id``."""
BLOB_COLUMNS = ("blob_id", "size", "pack", "offset", "media_type")
"""Columns of kinds whose records carry a blob (a mask), filled in by improv."""


class _JsonMarker:
    """Marks a field holding free-form JSON."""


class _ScoresMarker:
    """Marks a field holding numbers by name (class scores)."""


@dataclass(frozen=True)
class _VectorMarker:
    """Marks a field holding numbers by position: a ``"list"`` of any length,
    or a ``"fixed"``-size vector."""

    shape: Literal["list", "fixed"]


JsonText = Annotated[str, _JsonMarker()]
Scores = Annotated[dict[str, float], _ScoresMarker()]
Numbers = Annotated[list[float], _VectorMarker("list")]
"""Numbers by position, any count per record (class scores): an Arrow list of
float64. JSON array text is read too; a repository whose earlier records held
the column as JSON text keeps it so (a column's type never changes)."""
Vector = Annotated[list[float], _VectorMarker("fixed")]
"""A vector of one length in every record (an embedding): an Arrow
fixed-size list of float16 (kept as given) or of float32 (any other numbers)."""
OpenColumns = Literal["numeric", "any"]


@dataclass(frozen=True)
class Column:
    """One column of a kind, derived from a model field."""

    name: str
    type: pa.DataType
    required: bool
    choices: tuple[str, ...] = ()
    bounds: tuple[tuple[str, float], ...] = ()  # (operator, value): ge, gt, le, lt
    json: bool = False
    scores: bool = False
    vector: Literal["list", "fixed"] | None = None
    default: Any = None


@dataclass(frozen=True)
class Kind:
    """A kind of provenance record.

    ``schema``: a pydantic model, one field per column (besides the envelope).
    ``indexed``: numeric columns whose per-segment min/max are kept in the
    provenance index so queries can skip whole segments.
    ``open_columns``: ``"numeric"`` or ``"any"`` admits columns beyond the
    schema (an open feature set); None refuses unknown columns.
    ``aliases``: other input names accepted for schema columns.
    ``blob``: each record carries one blob (a mask image), packed like images.
    ``check``: extra validation of the normalized table; raise
    :class:`InvalidInputError` naming the column.
    ``from_blobs``: fill columns from the blobs (e.g. a mask's area) given
    the normalized table and the blobs, aligned.
    """

    name: str
    schema: type[BaseModel]
    description: str = ""
    indexed: tuple[str, ...] = ()
    open_columns: OpenColumns | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    blob: bool = False
    check: Callable[[pa.Table], None] | None = None
    from_blobs: Callable[[pa.Table, list[bytes]], pa.Table] | None = None

    def __post_init__(self) -> None:
        column_name(self.name)
        names = {c.name for c in self.columns}
        clash = names & {*ENVELOPE, *BLOB_COLUMNS}
        if clash:
            raise ValueError(f"kind {self.name!r}: column {sorted(clash)[0]!r} is reserved")
        for name in self.indexed:
            found = self.column(name)
            if (
                found is None
                or not pa.types.is_floating(found.type)
                and not pa.types.is_integer(found.type)
            ):
                raise ValueError(
                    f"kind {self.name!r}: indexed column {name!r} is not a numeric column"
                )

    @property
    def columns(self) -> tuple[Column, ...]:
        return _columns(self.schema)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (``improv provenance kinds``)."""
        return {
            "name": self.name,
            "description": self.description,
            "columns": [
                {"name": c.name, "type": _type_name(c), "required": c.required}
                for c in self.columns
            ],
            "indexed": list(self.indexed),
            "open_columns": self.open_columns,
            "blob": self.blob,
        }


def _type_name(column: Column) -> str:
    if column.json:
        return "json"
    return "vector" if column.vector == "fixed" else str(column.type)


@cache
def _columns(schema: type[BaseModel]) -> tuple[Column, ...]:
    return tuple(_column(name, info) for name, info in schema.model_fields.items())


def _column(name: str, info: Any) -> Column:
    annotation = info.annotation
    required = info.is_required()
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"field {name!r}: unions other than X | None are not supported")
        annotation = args[0]
    markers = list(info.metadata)
    if typing.get_origin(annotation) is Annotated:
        annotation, *extra = typing.get_args(annotation)
        markers.extend(extra)
    bounds = tuple(
        (op, float(getattr(m, op)))
        for m in markers
        for op in ("ge", "gt", "le", "lt")
        if isinstance(m, getattr(annotated_types, op.capitalize()))
    )
    default = None if required else info.default
    if any(isinstance(m, _JsonMarker) for m in markers):
        return Column(name, pa.string(), required, json=True)
    if any(isinstance(m, _ScoresMarker) for m in markers):
        return Column(name, pa.struct([]), required, scores=True)
    shape = next((m.shape for m in markers if isinstance(m, _VectorMarker)), None)
    if shape is not None:
        element = pa.float64() if shape == "list" else pa.float32()
        return Column(name, pa.list_(element), required, vector=shape)
    if typing.get_origin(annotation) is Literal:
        choices = tuple(str(a) for a in typing.get_args(annotation))
        return Column(name, pa.string(), required, choices=choices, default=default)
    arrow = {
        str: pa.string(),
        int: pa.int64(),
        float: pa.float64(),
        bool: pa.bool_(),
        datetime: TIMESTAMP,
    }
    if annotation not in arrow:
        raise TypeError(
            f"field {name!r}: type {annotation!r} is not supported in a provenance kind"
        )
    return Column(name, arrow[annotation], required, bounds=bounds, default=default)


# -- validation -------------------------------------------------------------------
def normalize(kind: Kind, table: pa.Table, known_types: Mapping[str, str]) -> pa.Table:
    """``table`` validated against ``kind`` and cast to its column types.

    ``known_types`` are the column types earlier segments of this kind used
    (schema evolution: new nullable columns are fine, type changes are not).
    The result has ``image_id``, every schema column (nulls when absent) and
    any admitted open columns, in that order.
    """
    table = _rename_aliases(kind, table)
    names = table.column_names
    if len(set(names)) != len(names):
        raise InvalidInputError("records have duplicate column names")
    reserved = [n for n in names if n in ENVELOPE[1:] or n in BLOB_COLUMNS]
    if reserved:
        raise InvalidInputError(
            f"column {reserved[0]!r} is filled in by improv (give source and run id as options)"
        )
    if "image_id" not in names:
        raise InvalidInputError("records need an 'image_id' column")
    n = table.num_rows
    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        "image_id": _cast(table.column("image_id"), pa.string(), "image_id")
    }
    _require(columns["image_id"], "image_id")
    scores_inputs = _gather_scores(kind, table)
    for column in kind.columns:
        if column.scores:
            if column.name in scores_inputs:
                columns[column.name] = scores_inputs[column.name]
            elif column.required:
                raise InvalidInputError(f"column {column.name!r} is required")
            continue  # absent scores: no column (Parquet has no empty structs)
        elif column.name in names:
            values = table.column(column.name)
            if column.json:
                columns[column.name] = _json_column(values, column.name)
            elif column.vector:
                columns[column.name] = vectors.column(
                    values, column.name, column.vector, known_types.get(column.name)
                )
            else:
                columns[column.name] = _cast(values, column.type, column.name)
        else:  # absent vectors are untyped nulls: no type for later records to match
            columns[column.name] = pa.nulls(n, pa.null() if column.vector else column.type)
        if column.default is not None:
            columns[column.name] = pc.fill_null(
                columns[column.name], pa.scalar(column.default, column.type)
            )
        if column.required:
            _require(columns[column.name], column.name)
        _check_values(columns[column.name], column)
    schema_names = {c.name for c in kind.columns}
    for name in names:
        if name == "image_id" or name in schema_names or name.split(".", 1)[0] in scores_inputs:
            continue
        if kind.open_columns is None:
            raise InvalidInputError(
                f"unknown column {name!r} for kind {kind.name!r}; its columns are: "
                + ", ".join(c.name for c in kind.columns)
            )
        column_name(name)
        columns[name] = _open_column(table.column(name), name, kind.open_columns)
    result = pa.table(columns)
    _check_evolution(kind, result, known_types)
    if kind.check is not None:
        kind.check(result)
    return result


def _rename_aliases(kind: Kind, table: pa.Table) -> pa.Table:
    names = table.column_names
    renamed = [
        kind.aliases[n] if n in kind.aliases and kind.aliases[n] not in names else n for n in names
    ]
    return table.rename_columns(renamed) if renamed != names else table


def _gather_scores(kind: Kind, table: pa.Table) -> dict[str, pa.Array]:
    """Scores columns as structs of float32, from a struct/dict column or from
    flattened ``NAME.CLASS`` columns."""
    found: dict[str, pa.Array] = {}
    for column in kind.columns:
        if not column.scores:
            continue
        prefix = f"{column.name}."
        flat = [n for n in table.column_names if n.startswith(prefix)]
        if column.name in table.column_names:
            values = table.column(column.name).combine_chunks()
            if pa.types.is_map(values.type):
                raise InvalidInputError(
                    f"column {column.name!r}: give scores as a struct or as {prefix}CLASS columns"
                )
            if not pa.types.is_struct(values.type):
                if values.null_count == len(values):
                    continue
                raise InvalidInputError(f"column {column.name!r} must map class names to numbers")
            fields = {
                values.type.field(i).name: values.field(i) for i in range(values.type.num_fields)
            }
        elif flat:
            fields = {n[len(prefix) :]: table.column(n).combine_chunks() for n in flat}
        else:
            continue
        for name in fields:
            if not name or len(name) > 200 or not name.isprintable():
                raise InvalidInputError(f"column {column.name!r}: invalid class name {name!r}")
        ordered = sorted(fields)
        arrays = [_cast(fields[k], SCORE, f"{column.name}.{k}") for k in ordered]
        found[column.name] = pa.StructArray.from_arrays(
            [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays],
            names=ordered,
        )
    return found


def _cast(
    values: pa.ChunkedArray | pa.Array, target: pa.DataType, name: str
) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if pa.types.is_timestamp(values.type) and values.type.tz is None:
        raise InvalidInputError(f"column {name!r} holds timestamps without a time zone")
    if pa.types.is_floating(target) and pa.types.is_floating(values.type):
        values = pc.if_else(
            pc.is_nan(values), pa.scalar(None, values.type), values
        )  # NaN is missing
    try:
        return values.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    if pa.types.is_floating(target) and (
        pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
    ):
        lowered = pc.utf8_lower(values)
        nan = pc.or_(pc.equal(lowered, "nan"), pc.equal(lowered, ""))
        try:
            return pc.if_else(nan, pa.scalar(None, target), values).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    raise InvalidInputError(
        f"column {name!r}: values of type {values.type} cannot be read as {target}"
    )


def _json_column(values: pa.ChunkedArray, name: str) -> pa.Array:
    """Free-form JSON as canonical text (sorted keys, no whitespace)."""
    out = []
    for value in values.to_pylist():
        if value is None:
            out.append(None)
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise InvalidInputError(f"column {name!r}: {value!r} is not JSON") from None
        try:
            out.append(canonical.dumps(value))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"column {name!r}: {exc}") from None
    return pa.array(out, pa.string())


def _open_column(
    values: pa.ChunkedArray, name: str, mode: OpenColumns
) -> pa.ChunkedArray | pa.Array:
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.cast(kind.value_type)
        kind = values.type
    if mode == "numeric" or pa.types.is_floating(kind) or pa.types.is_null(kind):
        return _cast(values, pa.float64(), name)
    if pa.types.is_integer(kind):
        return _cast(values, pa.int64(), name)
    if pa.types.is_boolean(kind) or pa.types.is_string(kind) or pa.types.is_timestamp(kind):
        return _cast(values, TIMESTAMP if pa.types.is_timestamp(kind) else kind, name)
    if pa.types.is_large_string(kind):
        return values.cast(pa.string())
    raise InvalidInputError(
        f"column {name!r}: {kind} values are not supported; use numbers, text, true/false or times"
    )


def _require(values: pa.ChunkedArray | pa.Array, name: str) -> None:
    if values.null_count:
        row = pc.index(pc.is_null(values), True).as_py()
        raise InvalidInputError(f"column {name!r} is required but empty in record {row + 1}")


_COMPARE = {"ge": pc.less, "gt": pc.less_equal, "le": pc.greater, "lt": pc.greater_equal}
_WORDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _check_values(values: pa.ChunkedArray | pa.Array, column: Column) -> None:
    if column.choices:
        bad = pc.invert(pc.is_in(values, value_set=pa.array(column.choices)))
        _refuse(
            values,
            pc.and_(bad, pc.is_valid(values)),
            f"column {column.name!r} must be one of {', '.join(column.choices)}",
        )
    if pa.types.is_floating(column.type):
        _refuse(values, pc.invert(pc.is_finite(values)), f"column {column.name!r} must be finite")
    for op, limit in column.bounds:
        _refuse(
            values,
            _COMPARE[op](values, limit),
            f"column {column.name!r} must be {_WORDS[op]} {limit:g}",
        )


def _refuse(values: pa.ChunkedArray | pa.Array, mask: Any, message: str) -> None:
    mask = pc.fill_null(mask, False)
    if pc.any(mask).as_py():
        row = pc.index(mask, True).as_py()
        raise InvalidInputError(f"{message}; record {row + 1} has {values[row].as_py()!r}")


def _check_evolution(kind: Kind, table: pa.Table, known: Mapping[str, str]) -> None:
    for field_ in table.schema:
        before = known.get(field_.name)
        now = str(field_.type)
        if (
            before is None
            or pa.types.is_null(field_.type)
            or before == "null"
            or pa.types.is_struct(field_.type)
        ):
            continue
        if before != now:
            raise InvalidInputError(
                f"column {field_.name!r} of kind {kind.name!r} held {before} in earlier records, "
                f"not {now}: a column's type cannot change"
            )
