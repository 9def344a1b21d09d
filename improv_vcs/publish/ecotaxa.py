"""``ecotaxa``: EcoTaxa import zips ``ecotaxa_partNNN.zip``, each a complete
import: its images next to its table ``ecotaxa_partNNN.tsv``, no zip larger
than ``part_bytes``.

The table is EcoTaxa's TSV: a header row, a row of type markers (``[t]``
text, ``[f]`` number), then one row per image. Columns are grouped the way
EcoTaxa reads them: ``img_`` (the file, next to the table), ``object_`` (id,
position, date and time, depth, the manifest's extra columns, the latest
``ifcb_features`` record of the image, and the label as
``object_annotation_category`` with its status: ``predicted`` for a
classifier's, ``validated`` for a person's), ``process_`` (improv_vcs, the
commit and the citation), ``acq_`` (the acquisition: the sample and its
instrument) and ``sample_`` (the sample record's metadata, e.g.
``sample_ml_analyzed``). Numbers are plain decimals, missing values empty
cells. Parts are byte-for-byte reproducible, so an interrupted export
rewrites only the zips it had not finished.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import __version__
from ..core.errors import InvalidInputError
from ..query.export import extension
from .selection import LABEL, Selection
from .writer import ExportWriter

if TYPE_CHECKING:
    from .export import ExportOptions

TEXT, NUMBER = "[t]", "[f]"
FEATURES = "ifcb_features"
MANIFEST_COLUMNS = frozenset(
    {
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
        LABEL,
        "model",
        "model_version",
    }
)
"""Row columns with a place of their own (or none); any other is an ``object_`` column."""
RECORD_COLUMNS = frozenset({"image_id", "kind", "source", "run_id", "recorded_at", "record_id"})
STATUS = {"machine": "predicted", "human": "validated"}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
"""Every member's date: a part's bytes depend on its content only."""
_BREAKS = re.compile(r"[\t\r\n]+")
_UNSAFE = re.compile(r"[^a-z0-9_]+")
# Stored zip entries: local header 30 + name + data, central entry 46 + name;
# then the end record (22), and the zip64 end record and locator (56 + 20)
# that a zip of more than 65535 entries needs.
_LOCAL, _CENTRAL, _END, _END64 = 30, 46, 22, 76


@dataclass
class _Column:
    name: str
    kind: str  # TEXT or NUMBER
    cells: list[str]


def write(writer: ExportWriter, options: ExportOptions) -> None:
    selection = writer.selection
    limit = options.part_bytes
    if not isinstance(limit, int) or limit <= 0:
        raise InvalidInputError(f"an EcoTaxa part size is a positive number of bytes, not {limit}")
    rows = selection.rows.to_pylist()
    files = [r["image_id"] + extension(r["media_type"]) for r in rows]
    columns = table_columns(selection, rows, files)
    head = _line(c.name for c in columns) + _line(c.kind for c in columns)
    lines = [_line(c.cells[i] for c in columns) for i in range(len(rows))]
    parts = _plan(rows, files, lines, len(head.encode()), limit)
    odb = selection.snapshot.repository.odb
    for number, (start, end) in enumerate(parts, start=1):
        name = f"ecotaxa_part{number:03d}"
        table = (head + "".join(lines[start:end])).encode()
        images = [
            (files[i], odb.read_blob(r["pack"], r["offset"], r["size"], r["blob_id"]))
            for i, r in zip(range(start, end), rows[start:end])
        ]
        data = _zip(f"{name}.tsv", table, images)
        if len(data) > limit:  # the plan counts every byte: this cannot happen
            raise AssertionError(f"{name}.zip is {len(data)} bytes, over {limit}")
        writer.write(f"{name}.zip", data)
        for i in range(start, end):
            writer.image(
                rows[i]["image_id"], rows[i]["blob_id"], file=f"{name}.zip", member=files[i]
            )


# -- the table -----------------------------------------------------------------------
def table_columns(selection: Selection, rows: list[dict], files: list[str]) -> list[_Column]:
    """The TSV's columns, in EcoTaxa's order: ``img_``, ``object_``,
    ``process_``, ``acq_``, ``sample_``. Optional columns empty in every row
    are left out."""
    taken: set[str] = set()

    def column(name: str, kind: str, cells: Iterable[str], unique: bool = False) -> _Column:
        if unique:
            name = _unique(name, taken)
        taken.add(name)
        return _Column(name, kind, list(cells))

    times = [_utc(r["timestamp"]) for r in rows]
    columns = [
        column("img_file_name", TEXT, files),
        column("img_rank", NUMBER, ("0" for _ in rows)),
        column("object_id", TEXT, (r["image_id"] for r in rows)),
        column("object_lat", NUMBER, (_number(r["lat"]) for r in rows)),
        column("object_lon", NUMBER, (_number(r["lon"]) for r in rows)),
        column("object_date", TEXT, (f"{t:%Y%m%d}" if t else "" for t in times)),
        column("object_time", TEXT, (f"{t:%H%M%S}" if t else "" for t in times)),
        column("object_depth_min", NUMBER, (_number(r["depth"]) for r in rows)),
        column("object_depth_max", NUMBER, (_number(r["depth"]) for r in rows)),
    ]
    reserved = {"object_annotation_" + s for s in ("category", "status", "person_name")}
    reserved |= {"object_annotation_date", "object_annotation_time"}
    taken |= reserved
    schema = selection.rows.schema
    for name in schema.names:
        if name not in MANIFEST_COLUMNS and _scalar(schema.field(name).type):
            kind = NUMBER if _numeric(schema.field(name).type) else TEXT
            cells = [_cell(r[name], kind) for r in rows]
            if any(cells):
                columns.append(column(f"object_{_safe(name)}", kind, cells, unique=True))
    names, found = features(selection, [r["image_id"] for r in rows])
    for name in names:
        cells = [_number(found.get(r["image_id"], {}).get(name)) for r in rows]
        columns.append(column(f"object_{_safe(name)}", NUMBER, cells, unique=True))
    taken -= reserved
    columns += _annotation(selection, rows, column)
    commit = selection.citation.pinned.commit
    labels = selection.labels
    process = {
        "process_id": f"improv_{commit[:12]}",
        "process_software": f"improv_vcs {__version__}",
        "process_commit": commit,
        "process_citation": selection.citation.identifier,
        "process_labels": f"{labels.kind} run {labels.run}" if labels else "",
    }
    for name, value in process.items():
        if value:
            columns.append(column(name, TEXT, (value for _ in rows)))
    instruments = selection.snapshot.registry().instruments
    columns += [
        column("acq_id", TEXT, (_text(r["sample_id"] or r["instrument"]) for r in rows)),
        column(
            "acq_instrument",
            TEXT,
            (_instrument(r["instrument"], instruments.get(r["instrument"])) for r in rows),
        ),
        column("acq_sn", TEXT, (_text(r["instrument"]) for r in rows)),
        column("sample_id", TEXT, (_text(r["sample_id"]) for r in rows)),
    ]
    for name, kind, cells in _sample_columns(selection, rows):
        columns.append(column(f"sample_{_safe(name)}", kind, cells, unique=True))
    return columns


def _annotation(selection: Selection, rows: list[dict], column: Any) -> list[_Column]:
    """The label, its status, who gave it (a person's annotations) and when
    its record was made; none without labels."""
    labels = selection.labels
    if labels is None or LABEL not in selection.rows.column_names:
        return []
    records = _label_records(selection, [r["image_id"] for r in rows])
    human = labels.verification == "human"
    moments = [_utc(records.get(r["image_id"], {}).get("recorded_at")) for r in rows]
    columns = [
        column("object_annotation_date", TEXT, (f"{t:%Y%m%d}" if t else "" for t in moments)),
        column("object_annotation_time", TEXT, (f"{t:%H%M%S}" if t else "" for t in moments)),
        column("object_annotation_category", TEXT, (_text(r[LABEL]) for r in rows)),
    ]
    if human:
        people = [_text(records.get(r["image_id"], {}).get("annotator")) for r in rows]
        columns.append(column("object_annotation_person_name", TEXT, people))
    columns.append(
        column("object_annotation_status", TEXT, (STATUS[labels.verification] for _ in rows))
    )
    return [c for c in columns if c.name == "object_annotation_category" or any(c.cells)]


def _label_records(selection: Selection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The cited label record of each image (by the selection's record ids)."""
    assert selection.labels is not None
    table = selection.snapshot.provenance_records(selection.labels.kind)
    if table.num_rows == 0 or not selection.record_ids:
        return {}
    table = table.filter(
        pc.is_in(table.column("record_id"), value_set=pa.array(selection.record_ids, pa.string()))
    )
    table = table.filter(pc.is_in(table.column("image_id"), value_set=pa.array(ids, pa.string())))
    return _latest(table)


def features(selection: Selection, ids: Sequence[str]) -> tuple[list[str], dict[str, dict]]:
    """The numeric columns of the images' ``ifcb_features`` records (those
    with a value for some image, in record order) and each image's latest
    record (the run recorded last for it)."""
    table = selection.snapshot.provenance_records(FEATURES)
    if table.num_rows == 0 or not ids:
        return [], {}
    table = table.filter(pc.is_in(table.column("image_id"), value_set=pa.array(ids, pa.string())))
    numeric = [f.name for f in table.schema if f.name not in RECORD_COLUMNS and _numeric(f.type)]
    found = _latest(table.select(["image_id", "recorded_at", "run_id", "record_id", *numeric]))
    names = [n for n in numeric if any(_number(r.get(n)) for r in found.values())]
    return names, found


def _latest(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Per image, the record recorded last (ties: the greatest run, then record id)."""
    table = table.sort_by([(k, "ascending") for k in ("recorded_at", "run_id", "record_id")])
    return {r["image_id"]: r for r in table.to_pylist()}


def _sample_columns(selection: Selection, rows: list[dict]) -> list[tuple[str, str, list[str]]]:
    """A column per key of the sample records' ``meta``: a number column
    when every value given is a number."""
    ids = sorted({r["sample_id"] for r in rows if r["sample_id"] is not None})
    if not ids:
        return []
    samples = selection.snapshot.samples()
    samples = samples.filter(
        pc.is_in(samples.column("sample_id"), value_set=pa.array(ids, pa.string()))
    )
    meta: dict[str, dict[str, Any]] = {}
    for row in samples.select(["sample_id", "meta"]).to_pylist():
        try:
            values = json.loads(row["meta"]) if row["meta"] else {}
        except ValueError:
            values = {}
        meta[row["sample_id"]] = values if isinstance(values, dict) else {}
    keys = list(dict.fromkeys(k for values in meta.values() for k in values))
    found = []
    for key in keys:
        values = [meta.get(r["sample_id"], {}).get(key) for r in rows]
        given = [v for v in values if v is not None]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in given)
        kind = NUMBER if numbers else TEXT
        cells = [_cell(v, kind) for v in values]
        if any(cells):
            found.append((key, kind, cells))
    return found


# -- cells ---------------------------------------------------------------------------
def _line(cells: Iterable[str]) -> str:
    return "\t".join(cells) + "\n"


def _number(value: Any) -> str:
    """A plain decimal (no exponent, no trailing zeros); empty for none or not finite."""
    if value is None or isinstance(value, str):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        return ""
    return format(Decimal(repr(value)).normalize(), "f")


def _text(value: Any) -> str:
    """A cell: no tab or line break."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = _utc(value).isoformat().replace("+00:00", "Z")  # type: ignore[union-attr]
    elif isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return _BREAKS.sub(" ", str(value)).strip()


def _cell(value: Any, kind: str) -> str:
    return _number(value) if kind == NUMBER else _text(value)


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(timezone.utc) if isinstance(moment, datetime) else None


def _scalar(kind: pa.DataType) -> bool:
    return not (pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_null(kind))


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _safe(name: str) -> str:
    """A column-name part EcoTaxa takes: lower case letters, digits and ``_``."""
    return _UNSAFE.sub("_", name.lower()).strip("_") or "value"


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


def _instrument(name: str | None, registered: Any) -> str:
    """EcoTaxa's ``acq_instrument``: the registered instrument type, else
    ``IFCB`` for an instrument named IFCB…, else the name."""
    kind = getattr(registered, "type", None)
    if kind:
        return _text(kind)
    if name and name.upper().startswith("IFCB"):
        return "IFCB"
    return _text(name)


# -- parts ---------------------------------------------------------------------------
def _plan(
    rows: list[dict], files: list[str], lines: list[str], head: int, limit: int
) -> list[tuple[int, int]]:
    """Consecutive runs of rows ``(start, end)``, each as many as fit in
    ``limit`` bytes: the size of a zip of stored members, counted exactly
    (the table uncompressed, an upper bound of what it takes deflated).
    Refused before anything is written when one image alone does not fit."""
    # zip64 fields: a member past 2 GiB, or past 4 GiB in the zip, takes up to 32 more bytes
    extra = 32 if limit > 0x7FFFFFFF else 0

    def entry(name: str, size: int) -> int:
        return _LOCAL + _CENTRAL + 2 * len(name.encode()) + size + extra

    table_name = "ecotaxa_part000.tsv" + "00"  # room for part numbers past 999
    fixed = entry(table_name, head) + _END + _END64
    costs = [entry(files[i], rows[i]["size"]) + len(lines[i].encode()) for i in range(len(rows))]
    for i, each in enumerate(costs):
        if fixed + each > limit:
            raise InvalidInputError(
                f"image {rows[i]['image_id']} ({rows[i]['size']} bytes) and its table do not "
                f"fit in an EcoTaxa part of {limit} bytes; give a larger part size"
            )
    parts: list[tuple[int, int]] = []
    start, total = 0, fixed
    for i, each in enumerate(costs):
        if total + each > limit:
            parts.append((start, i))
            start, total = i, fixed
        total += each
    if start < len(rows):
        parts.append((start, len(rows)))
    return parts


def _zip(table_name: str, table: bytes, images: list[tuple[str, bytes]]) -> bytes:
    """A part's bytes: the table first (deflated, or stored when that is
    not smaller), then the images (stored), with fixed dates and modes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        method = (
            zipfile.ZIP_DEFLATED
            if len(zlib.compress(table, 6)) < len(table)
            else zipfile.ZIP_STORED
        )
        archive.writestr(_member(table_name, method), table)
        for name, data in images:
            archive.writestr(_member(name, zipfile.ZIP_STORED), data)
    return out.getvalue()


def _member(name: str, method: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.compress_type = method
    info.create_system = 3  # Unix, whatever the platform, for the same bytes everywhere
    info.external_attr = 0o644 << 16
    return info
