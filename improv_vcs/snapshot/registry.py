"""Organizing metadata, versioned with the commits: instruments (with
deployment windows), samples (time window, quality, alternate ids, free
metadata) and classifier taxonomies.

Each commit names the :class:`Registry` document in force; editing it is a
commit. Instruments and taxonomies live in the document; sample records are
Parquet segments it lists, each row one *version* of a sample (a later
quality change is a new row; the latest row of a sample wins), so the
document stays small however many samples there are. Everything here is
pure except :func:`encode_samples`/:func:`decode_samples`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from ..core import canonical
from ..core.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError
from ..core.ids import image_id, instrument_name, label
from ..core.model import Deployment, Instrument, Registry, Taxonomy
from ..core.parquet import from_parquet, to_parquet

QUALITIES = ("good", "questionable", "bad")
MAX_SAMPLE_SEGMENTS = 32
"""A registry lists at most this many sample segments; the next one merges them."""
SAMPLES_KIND = "samples"
TIMESTAMP = pa.timestamp("us", tz="UTC")
SAMPLE_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("instrument", pa.string()),
        ("start", TIMESTAMP),
        ("end", TIMESTAMP),
        ("quality", pa.string()),
        ("alt_ids", pa.list_(pa.string())),
        ("meta", pa.string()),
        ("recorded_at", TIMESTAMP),
    ]
)
SAMPLE_COLUMNS = ("instrument", "start", "end", "quality", "alt_ids", "meta", "recorded_at")
"""Columns a query may join with ``--with sample.COLUMN``."""


def _valid(build: Any) -> Any:
    try:
        return build()
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InvalidInputError(
            f"{where + ': ' if where else ''}{error['msg'].removeprefix('Value error, ')}"
        ) from None


# -- instruments --------------------------------------------------------------------
def deployment(start: datetime, end: datetime | None = None) -> Deployment:
    """A validated window; a time without an offset is UTC, as everywhere."""
    return _valid(lambda: Deployment(start=_utc_if_naive(start), end=_utc_if_naive(end)))


def _utc_if_naive(value: Any) -> Any:
    return (
        value.replace(tzinfo=timezone.utc)
        if isinstance(value, datetime) and value.tzinfo is None
        else value
    )


def add_instrument(doc: Registry, name: str, **fields: Any) -> Registry:
    """``doc`` with a new instrument (``type``, ``serial``, ``description``,
    ``deployments``); :class:`ConflictError` if it exists."""
    instrument_name(name)
    if name in doc.instruments:
        raise ConflictError(f"instrument {name!r} exists; use `improv instrument update`")
    created = _valid(lambda: Instrument(**{k: v for k, v in fields.items() if v is not None}))
    return doc.model_copy(update={"instruments": {**doc.instruments, name: created}})


def update_instrument(doc: Registry, name: str, **fields: Any) -> Registry:
    """``doc`` with a new version of instrument ``name``: given fields replace
    the old ones (``deployments`` replaces the whole list)."""
    current = doc.instruments.get(name)
    if current is None:
        raise NotFoundError(f"no instrument named {name!r}; add it with `improv instrument add`")
    changes = {k: v for k, v in fields.items() if v is not None}
    updated = _valid(
        lambda: Instrument(**{**current.model_dump(), **changes, "version": current.version + 1})
    )
    return doc.model_copy(update={"instruments": {**doc.instruments, name: updated}})


def set_strict(doc: Registry, strict: bool) -> Registry:
    return doc.model_copy(update={"strict_instruments": strict})


def outside_deployment(
    instrument: Instrument, ids: pa.Array | Sequence[str], times: pa.Array | Sequence[datetime]
) -> tuple[str, datetime] | None:
    """The first image (in row order) taken outside every deployment window,
    if any; computed column-wise."""
    ids, times = pa.array(ids, pa.string()), pa.array(times, TIMESTAMP)
    inside = pa.array([False] * len(times), pa.bool_())
    for window in instrument.deployments:
        after = pc.greater_equal(times, pa.scalar(window.start, TIMESTAMP))
        before = (
            pc.less(times, pa.scalar(window.end, TIMESTAMP)) if window.end is not None else after
        )
        inside = pc.or_(inside, pc.and_(after, before))
    if pc.all(inside).as_py() is not False:
        return None
    row = pc.index(inside, False).as_py()
    return ids[row].as_py(), times[row].as_py()


# -- taxonomies ---------------------------------------------------------------------
def taxonomy_key(classifier: str, model_version: str) -> str:
    return f"{label(classifier, 'classifier')}@{label(model_version, 'model version')}"


def add_taxonomy(
    doc: Registry, classifier: str, model_version: str, classes: Sequence[str]
) -> Registry:
    """``doc`` with the class list of a classifier version. A version's list
    never changes: the same list again is a no-op, another is a conflict."""
    key = taxonomy_key(classifier, model_version)
    taxonomy = _valid(lambda: Taxonomy(classes=tuple(str(c).strip() for c in classes)))
    current = doc.taxonomies.get(key)
    if current is not None and current != taxonomy:
        raise ConflictError(
            f"{key} already has a different class list; a model version's classes never change"
        )
    return doc.model_copy(update={"taxonomies": {**doc.taxonomies, key: taxonomy}})


def decode_scores(taxonomy: Taxonomy, vector: str | Sequence[float]) -> dict[str, float]:
    """Class name → score for a positional score vector (JSON text or numbers)."""
    values = json.loads(vector) if isinstance(vector, str) else list(vector)
    if not isinstance(values, list) or len(values) != len(taxonomy.classes):
        raise InvalidInputError(
            f"a score vector of {len(values) if isinstance(values, list) else '?'} values for "
            f"{len(taxonomy.classes)} classes"
        )
    return {name: float(v) for name, v in zip(taxonomy.classes, values)}


def with_class_scores(records: pa.Table, doc: Registry) -> pa.Table:
    """Classification records with ``class_scores`` (class name → score)
    decoded from their ``score_vector`` through the taxonomy of their model
    and model version; null where there is no vector, no such taxonomy, or a
    vector of another length."""
    if "score_vector" not in records.column_names:
        return records
    versions = (
        records.column("model_version").to_pylist()
        if "model_version" in records.column_names
        else [None] * records.num_rows
    )
    decoded = []
    for model, version, vector in zip(
        records.column("model").to_pylist(), versions, records.column("score_vector").to_pylist()
    ):
        taxonomy = (
            doc.taxonomies.get(f"{model}@{version}")
            if vector is not None and version is not None
            else None
        )
        try:
            decoded.append(
                None if taxonomy is None else list(decode_scores(taxonomy, vector).items())
            )
        except InvalidInputError:  # a vector whose length is not the taxonomy's: not decodable
            decoded.append(None)
    return records.append_column(
        "class_scores", pa.array(decoded, pa.map_(pa.string(), pa.float64()))
    )


# -- samples ------------------------------------------------------------------------
def sample_rows(rows: Iterable[Mapping[str, Any]], recorded_at: datetime) -> pa.Table:
    """Validated sample versions (``sample_id``, ``instrument``, ``start``,
    ``end``, optional ``quality``, ``alt_ids``, ``meta``)."""
    records = []
    for n, row in enumerate(rows, start=1):
        unknown = set(row) - {
            "sample_id",
            "instrument",
            "start",
            "end",
            "quality",
            "alt_ids",
            "meta",
        }
        if unknown:
            raise InvalidInputError(f"sample row {n}: unknown field {sorted(unknown)[0]!r}")
        try:
            sample = image_id(str(row["sample_id"]))
            instrument = instrument_name(str(row["instrument"]))
            start, end = row["start"], row["end"]
        except KeyError as exc:
            raise InvalidInputError(f"sample row {n}: missing {exc.args[0]!r}") from None
        window = deployment(start, end)  # the same checks: aware times, start before end
        quality = row.get("quality")
        if quality is not None and quality not in QUALITIES:
            raise InvalidInputError(
                f"sample {sample!r}: quality must be one of {', '.join(QUALITIES)}, not {quality!r}"
            )
        alt_ids = row.get("alt_ids") or []
        alt_ids = [alt_ids] if isinstance(alt_ids, str) else [str(a) for a in alt_ids]
        meta = row.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise InvalidInputError(f"sample {sample!r}: meta must be key/value pairs")
        records.append(
            {
                "sample_id": sample,
                "instrument": instrument,
                "start": window.start,
                "end": window.end,
                "quality": quality,
                "alt_ids": alt_ids,
                "meta": canonical.dumps(dict(meta), default=str),
                "recorded_at": recorded_at,
            }
        )
    if not records:
        raise InvalidInputError("no samples given")
    return pa.Table.from_pylist(records, schema=SAMPLE_SCHEMA)


def rows_from_table(table: pa.Table) -> list[dict[str, Any]]:
    """Sample rows from an imported table (CSV or Parquet): ``sample_id``,
    ``instrument``, ``start``, ``end``, optional ``quality`` and ``alt_ids``
    (``;``-separated in text), every other column as metadata; an empty cell
    is no value."""
    from ..core.times import parse_time

    rows = []
    for record in table.to_pylist():
        record = {k: v for k, v in record.items() if v not in (None, "")}
        row = {
            k: record.pop(k, None)
            for k in ("sample_id", "instrument", "start", "end", "quality", "alt_ids")
        }
        for key in ("start", "end"):
            if isinstance(row[key], str):
                row[key] = parse_time(row[key], key)
        if isinstance(row["alt_ids"], str):
            row["alt_ids"] = [a.strip() for a in row["alt_ids"].split(";") if a.strip()]
        row["meta"] = record
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def changed(known: pa.Table, new: pa.Table) -> pa.Table:
    """The rows of ``new`` that differ from their sample's latest version in
    ``known`` (``recorded_at`` aside)."""
    current = {r["sample_id"]: _content(r) for r in latest(known).to_pylist()}
    keep = [n for n, r in enumerate(new.to_pylist()) if current.get(r["sample_id"]) != _content(r)]
    return new if len(keep) == new.num_rows else new.take(pa.array(keep, pa.int64()))


def _content(row: Mapping[str, Any]) -> tuple:
    return tuple(row[c] for c in SAMPLE_SCHEMA.names if c != "recorded_at")


def encode_samples(table: pa.Table) -> bytes:
    return to_parquet(table.cast(SAMPLE_SCHEMA), SAMPLES_KIND)


def decode_samples(data: bytes) -> pa.Table:
    table = from_parquet(data, SAMPLES_KIND)
    try:
        return table.select(SAMPLE_SCHEMA.names).cast(SAMPLE_SCHEMA)
    except (KeyError, ValueError, pa.ArrowInvalid):
        raise IntegrityError("a samples segment does not match format 1") from None


def latest(versions: pa.Table) -> pa.Table:
    """The latest version of every sample (the last row of each id)."""
    if versions.num_rows == 0:
        return versions
    order = pa.array(range(versions.num_rows), pa.int64())
    ranked = versions.append_column("_row", order)
    last = (
        ranked.group_by("sample_id", use_threads=False)
        .aggregate([("_row", "max")])
        .column("_row_max")
    )
    return versions.take(last).sort_by("sample_id")
