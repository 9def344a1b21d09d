"""``dwca``: a Darwin Core Archive in the shape OBIS asks of counted
plankton: an event core (one event per sample), an occurrence extension (one
occurrence per class per sample, with its count) and an
extendedMeasurementOrFact extension (the count, the concentration per litre,
the volume analysed), described by ``meta.xml`` and ``eml.xml`` (:mod:`.eml`).

Class names become scientific names through a CSV (``class``,
``scientificName`` and optionally ``scientificNameID``); a class whose row
has an empty ``scientificName`` (detritus, bubbles …) is left out of the
occurrences on purpose, a class with no row is refused. The archive holds no
image files: every selected image is listed in ``MANIFEST.json`` by its blob
id, so the citation's digest still pins exactly the selected images.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError
from .eml import Coverage, eml_xml, number, xml_bytes
from .selection import LABEL, Selection
from .writer import ExportWriter

if TYPE_CHECKING:
    from .export import ExportOptions

DWC = "http://rs.tdwg.org/dwc/terms/"
OBIS = "http://rs.iobis.org/obis/terms/"
TEXT = "http://rs.tdwg.org/dwc/text/"
ROW_TYPES = {
    "event.txt": DWC + "Event",
    "occurrence.txt": DWC + "Occurrence",
    "extendedmeasurementorfact.txt": OBIS + "ExtendedMeasurementOrFact",
}
OBIS_TERMS = ("measurementTypeID", "measurementValueID", "measurementUnitID")
"""eMoF terms OBIS added (the others are Darwin Core's)."""

EVENT_TERMS = (
    "eventID",
    "eventDate",
    "decimalLatitude",
    "decimalLongitude",
    "geodeticDatum",
    "minimumDepthInMeters",
    "maximumDepthInMeters",
    "sampleSizeValue",
    "sampleSizeUnit",
    "samplingProtocol",
    "datasetName",
    "datasetID",
)
OCCURRENCE_TERMS = (
    "eventID",
    "occurrenceID",
    "basisOfRecord",
    "occurrenceStatus",
    "scientificName",
    "scientificNameID",
    "verbatimIdentification",
    "organismQuantity",
    "organismQuantityType",
    "identificationVerificationStatus",
    "identificationReferences",
    "associatedMedia",
)
EMOF_TERMS = (
    "eventID",
    "occurrenceID",
    "measurementID",
    "measurementType",
    "measurementTypeID",
    "measurementValue",
    "measurementUnit",
    "measurementUnitID",
    "measurementMethod",
)
ALWAYS = {"eventID", "eventDate", "occurrenceID", "associatedMedia", "measurementValue"}
"""Columns written even when every cell is empty."""

# NERC vocabulary server concepts (P01 measurement types, P06 units) that
# OBIS recommends for counts and abundances of a "biological entity specified elsewhere".
NVS = "http://vocab.nerc.ac.uk/collection/"
COUNT_TYPE = NVS + "P01/current/OCOUNT01/"
ABUNDANCE_TYPE = NVS + "P01/current/SDBIOL01/"
DIMENSIONLESS = NVS + "P06/current/UUUU/"
PER_LITRE = NVS + "P06/current/UCPL/"
WORMS_LSID = "urn:lsid:marinespecies.org:taxname:"

BASIS = {"machine": "MachineObservation", "human": "HumanObservation"}
VERIFICATION = {"machine": "PredictedByMachine", "human": "ValidatedByHuman"}
PROTOCOLS = {"IFCB": "Imaging FlowCytobot"}
"""``samplingProtocol`` by instrument type (or the start of its name)."""
_BREAKS = re.compile(r"[\t\r\n]+")


@dataclass(frozen=True)
class Name:
    """What a class is published as."""

    scientific: str
    identifier: str | None = None


def write(writer: ExportWriter, options: ExportOptions) -> None:
    selection = writer.selection
    rows = selection.rows
    if selection.labels is None or LABEL not in rows.column_names:
        raise InvalidInputError(
            "a Darwin Core export needs labels (give a label kind and run) to count"
        )
    present = sorted(set(rows.column(LABEL).to_pylist()))
    names = read_names(options.names, present)
    for image, blob in zip(
        rows.column("image_id").to_pylist(), rows.column("blob_id").to_pylist(), strict=True
    ):
        writer.image(image, blob)

    events = _events(selection)
    occurrences, measurements = _occurrences(selection, events, names)
    for event in events.values():
        if event.ml is not None:
            measurements.append(
                {
                    "eventID": event.id,
                    "measurementID": f"{event.id}:volume",
                    "measurementType": "Volume analysed",
                    "measurementValue": number(event.ml),
                    "measurementUnit": "ml",
                    "measurementMethod": "the volume of water imaged, from the sample record",
                }
            )
    measurements.sort(key=lambda m: (m["eventID"], m.get("occurrenceID", ""), m["measurementID"]))

    tables = {
        "event.txt": _table(EVENT_TERMS, [e.record(selection) for e in events.values()]),
        "occurrence.txt": _table(OCCURRENCE_TERMS, occurrences),
        "extendedmeasurementorfact.txt": _table(EMOF_TERMS, measurements),
    }
    for name, (_, body) in tables.items():
        writer.write(name, body)
    writer.write("meta.xml", meta_xml({n: c for n, (c, _) in tables.items()}))
    writer.write("eml.xml", eml_xml(selection, _coverage(events, names)))


# -- names ---------------------------------------------------------------------------
def read_names(path: Path | None, classes: Sequence[str]) -> dict[str, Name | None]:
    """Class → its scientific name (``None``: left out on purpose), for
    every class in ``classes``; refused, naming them, when some have no row."""
    if path is None:
        raise InvalidInputError(
            "a Darwin Core export needs a names CSV (class,scientificName[,scientificNameID]) "
            f"for the classes {', '.join(classes)}"
        )
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInputError(f"cannot read the names CSV {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"the names CSV {path} is not UTF-8") from None
    table = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in table.fieldnames or ()]
    if "class" not in columns or "scientificName" not in columns:
        raise InvalidInputError(
            f"the names CSV {path} needs the columns class and scientificName "
            f"(and optionally scientificNameID); it has {', '.join(columns) or 'none'}"
        )
    table.fieldnames = columns
    found: dict[str, Name | None] = {}
    for line, row in enumerate(table, start=2):
        label = (row.get("class") or "").strip()
        if not label:
            continue
        scientific = (row.get("scientificName") or "").strip()
        identifier = (row.get("scientificNameID") or "").strip() or None
        if identifier is not None and identifier.isdigit():
            identifier = WORMS_LSID + identifier  # a bare AphiaID
        name = Name(_clean(scientific), identifier and _clean(identifier)) if scientific else None
        if label in found and found[label] != name:
            raise InvalidInputError(f"{path}, line {line}: class {label!r} is mapped twice")
        found[label] = name
    missing = [c for c in classes if c not in found]
    if missing:
        raise InvalidInputError(
            f"{path} gives no scientificName for class(es) {', '.join(missing)}"
        )
    return {c: found[c] for c in classes}


# -- events --------------------------------------------------------------------------
@dataclass
class _Event:
    id: str
    instruments: tuple[str, ...]
    start: datetime
    end: datetime
    lat: float | None
    lon: float | None
    depth_min: float | None
    depth_max: float | None
    ml: float | None
    protocol: str

    def record(self, selection: Selection) -> dict[str, str]:
        located = self.lat is not None and self.lon is not None
        citation = selection.citation
        return {
            "eventID": self.id,
            "eventDate": _interval(self.start, self.end),
            "decimalLatitude": number(self.lat, 6),
            "decimalLongitude": number(self.lon, 6),
            "geodeticDatum": "WGS84" if located else "",
            "minimumDepthInMeters": number(self.depth_min),
            "maximumDepthInMeters": number(self.depth_max),
            "sampleSizeValue": number(self.ml),
            "sampleSizeUnit": "millilitre" if self.ml is not None else "",
            "samplingProtocol": self.protocol,
            "datasetName": citation.title,
            "datasetID": f"https://doi.org/{citation.doi}" if citation.doi else citation.identifier,
        }


def _event_ids(rows: pa.Table) -> pa.Array:
    """The sample id of each image; images without one are grouped by
    instrument and timestamp (``INSTRUMENT_YYYYmmddTHHMMSSZ``)."""
    samples = rows.column("sample_id").combine_chunks()
    if not samples.null_count:
        return samples
    fallback = [
        f"{i}_{t.astimezone(timezone.utc):%Y%m%dT%H%M%S}Z" if t is not None else image
        for image, i, t in zip(
            rows.column("image_id").to_pylist(),
            rows.column("instrument").to_pylist(),
            rows.column("timestamp").to_pylist(),
            strict=True,
        )
    ]
    return pc.coalesce(samples, pa.array(fallback, pa.string()))


def _events(selection: Selection) -> dict[str, _Event]:
    rows = selection.rows
    rows = rows.append_column("event", _event_ids(rows))
    grouped = rows.group_by("event").aggregate(
        [
            ("instrument", "distinct"),
            ("timestamp", "min"),
            ("timestamp", "max"),
            ("lat", "mean"),
            ("lon", "mean"),
            ("depth", "min"),
            ("depth", "max"),
        ]
    )
    records = _sample_records(selection, grouped.column("event"))
    instruments = selection.snapshot.registry().instruments
    events: dict[str, _Event] = {}
    for row in sorted(grouped.to_pylist(), key=lambda r: r["event"]):
        found = records.get(row["event"], {})
        names = tuple(sorted(i for i in row["instrument_distinct"] if i is not None))
        kinds = [getattr(instruments.get(n), "type", None) for n in names]
        events[row["event"]] = _Event(
            id=row["event"],
            instruments=names,
            start=found.get("start") or row["timestamp_min"],
            end=found.get("end") or row["timestamp_max"],
            lat=row["lat_mean"],
            lon=row["lon_mean"],
            depth_min=row["depth_min"],
            depth_max=row["depth_max"],
            ml=found.get("ml"),
            protocol="; ".join(
                dict.fromkeys(_protocol(n, k) for n, k in zip(names, kinds, strict=True))
            ),
        )
    return events


def _sample_records(selection: Selection, ids: pa.Array) -> dict[str, dict[str, Any]]:
    """Start, end and volume analysed (``ml_analyzed`` or ``volume_ml`` in
    the metadata, in millilitres) of the samples with these ids."""
    samples = selection.snapshot.samples()
    samples = samples.filter(pc.is_in(samples.column("sample_id"), value_set=ids))
    found = {}
    for row in samples.select(["sample_id", "start", "end", "meta"]).to_pylist():
        found[row["sample_id"]] = {"start": row["start"], "end": row["end"], "ml": _ml(row["meta"])}
    return found


def _ml(meta: str | None) -> float | None:
    try:
        values = json.loads(meta) if meta else {}
    except ValueError:
        return None
    if not isinstance(values, dict):
        return None
    for key in ("ml_analyzed", "volume_ml"):
        try:
            ml = float(values[key])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(ml) and ml > 0:
            return ml
    return None


def _protocol(name: str, kind: str | None) -> str:
    for prefix, protocol in PROTOCOLS.items():
        if (kind or "").upper() == prefix or name.upper().startswith(prefix):
            return protocol
    return name


# -- occurrences and measurements ----------------------------------------------------
def _occurrences(
    selection: Selection, events: dict[str, _Event], names: dict[str, Name | None]
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """One occurrence per class per event (``EVENT:CLASS``, so correcting a
    scientific name keeps the id), with its count and concentration."""
    rows = selection.rows
    labels = selection.labels
    assert labels is not None
    table = pa.table({"event": _event_ids(rows), LABEL: rows.column(LABEL)})
    aggregates: list[tuple[str, str]] = [(LABEL, "count")]
    if "model" in rows.column_names:
        version = pc.fill_null(rows.column("model_version"), "")
        who = pc.utf8_trim_whitespace(
            pc.binary_join_element_wise(rows.column("model"), version, " ")
        )
        table = table.append_column("who", who)
        aggregates.append(("who", "distinct"))
    grouped = table.group_by(["event", LABEL]).aggregate(aggregates)
    occurrences, measurements = [], []
    identifier = selection.citation.identifier
    for row in sorted(grouped.to_pylist(), key=lambda r: (r["event"], r[LABEL])):
        name = names[row[LABEL]]
        if name is None:
            continue
        event_id, count = row["event"], row[f"{LABEL}_count"]
        occurrence = f"{event_id}:{quote(row[LABEL], safe='')}"
        models = sorted(m for m in row.get("who_distinct") or () if m)
        references = [f"classifier {m}" for m in models] or (
            [f"{labels.kind} run {labels.run}"] if labels.run != "latest" else []
        )
        occurrences.append(
            {
                "eventID": event_id,
                "occurrenceID": occurrence,
                "basisOfRecord": BASIS[labels.verification],
                "occurrenceStatus": "present",
                "scientificName": name.scientific,
                "scientificNameID": name.identifier or "",
                "verbatimIdentification": row[LABEL],
                "organismQuantity": str(count),
                "organismQuantityType": "individuals",
                "identificationVerificationStatus": VERIFICATION[labels.verification],
                "identificationReferences": " | ".join([*references, identifier]),
                "associatedMedia": "",
            }
        )
        measurements.append(
            {
                "eventID": event_id,
                "occurrenceID": occurrence,
                "measurementID": f"{occurrence}:count",
                "measurementType": "Count (in assayed sample) of biological entity specified "
                "elsewhere",
                "measurementTypeID": COUNT_TYPE,
                "measurementValue": str(count),
                "measurementUnit": "individuals",
                "measurementUnitID": DIMENSIONLESS,
                "measurementMethod": "the sample's images labelled with this class",
            }
        )
        ml = events[event_id].ml
        if ml is not None:
            measurements.append(
                {
                    "eventID": event_id,
                    "occurrenceID": occurrence,
                    "measurementID": f"{occurrence}:concentration",
                    "measurementType": "Abundance of biological entity specified elsewhere per "
                    "unit volume of the water body",
                    "measurementTypeID": ABUNDANCE_TYPE,
                    "measurementValue": number(count * 1000 / ml, 6),
                    "measurementUnit": "individuals per litre",
                    "measurementUnitID": PER_LITRE,
                    "measurementMethod": "count / volume analysed (ml) × 1000",
                }
            )
    return occurrences, measurements


def _coverage(events: dict[str, _Event], names: dict[str, Name | None]) -> Coverage:
    located = [(e.lat, e.lon) for e in events.values() if e.lat is not None and e.lon is not None]
    return Coverage(
        samples=len(events),
        lats=tuple(lat for lat, _ in located),  # type: ignore[misc]
        lons=tuple(lon for _, lon in located),  # type: ignore[misc]
        start=min((e.start for e in events.values()), default=None),
        end=max((e.end for e in events.values()), default=None),
        taxa=tuple(sorted({n.scientific for n in names.values() if n is not None})),
    )


# -- text files ----------------------------------------------------------------------
def _table(terms: Sequence[str], records: Iterable[dict[str, str]]) -> tuple[list[str], bytes]:
    """Tab-separated UTF-8 with a header row; optional columns empty in
    every row are left out. Returns the columns and the bytes."""
    records = list(records)
    columns = [t for t in terms if t in ALWAYS or any(r.get(t) for r in records)]
    lines = ["\t".join(columns)]
    lines += ["\t".join(_clean(r.get(c) or "") for c in columns) for r in records]
    return columns, ("\n".join(lines) + "\n").encode()


def _clean(value: str) -> str:
    """A cell: no tab or line break (the archive encloses no field)."""
    return _BREAKS.sub(" ", value).strip()


def _interval(start: datetime, end: datetime) -> str:
    first, last = _instant(start), _instant(end)
    return first if first == last else f"{first}/{last}"


def _instant(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    fraction = f".{moment.microsecond // 1000:03d}" if moment.microsecond else ""
    return f"{moment:%Y-%m-%dT%H:%M:%S}{fraction}Z"


# -- meta.xml ------------------------------------------------------------------------
def _term(name: str) -> str:
    return (OBIS if name in OBIS_TERMS else DWC) + name


def meta_xml(files: dict[str, list[str]]) -> bytes:
    """The archive descriptor: ``event.txt`` the core (its id column 0),
    the others extensions joined to it by their ``eventID`` (column 0)."""
    ET.register_namespace("", TEXT)
    archive = ET.Element(f"{{{TEXT}}}archive", {"metadata": "eml.xml"})
    for name, columns in files.items():
        core = name == "event.txt"
        part = ET.SubElement(
            archive,
            f"{{{TEXT}}}{'core' if core else 'extension'}",
            {
                "encoding": "UTF-8",
                "fieldsTerminatedBy": "\\t",
                "linesTerminatedBy": "\\n",
                "fieldsEnclosedBy": "",
                "ignoreHeaderLines": "1",
                "rowType": ROW_TYPES[name],
            },
        )
        ET.SubElement(ET.SubElement(part, f"{{{TEXT}}}files"), f"{{{TEXT}}}location").text = name
        ET.SubElement(part, f"{{{TEXT}}}{'id' if core else 'coreid'}", {"index": "0"})
        for index, column in enumerate(columns):
            ET.SubElement(part, f"{{{TEXT}}}field", {"index": str(index), "term": _term(column)})
    return xml_bytes(archive)
