"""Bin ids and ``.hdr`` files: who took a bin, when, and the header facts
kept as ``bin_*`` columns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from ....core.errors import InvalidInputError

_NEW_ID = re.compile(r"D(\d{8}T\d{6})_(IFCB\d+)\Z")
_OLD_ID = re.compile(r"(IFCB\d+)_(\d{4}_\d{3}_\d{6})\Z")

_HEADER_COLUMNS: dict[str, tuple[tuple[str, ...], pa.DataType]] = {
    "bin_run_time": (("runTime",), pa.float64()),
    "bin_inhibit_time": (("inhibitTime",), pa.float64()),
    "bin_temperature": (("temperature", "Temp"), pa.float64()),
    "bin_humidity": (("humidity", "Humidity"), pa.float64()),
    "bin_trigger_count": (("triggerCount",), pa.int64()),
    "bin_syringe_sample_volume": (("SyringeSampleVolume",), pa.float64()),
}


@dataclass(frozen=True)
class BinId:
    """A parsed bin id: the instrument and the time the bin's run started."""

    bin_id: str
    instrument: str
    time: datetime
    legacy: bool


def parse_bin_id(name: str) -> BinId:
    if match := _NEW_ID.match(name):
        when = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S")
        return BinId(name, match.group(2), when.replace(tzinfo=timezone.utc), legacy=False)
    if match := _OLD_ID.match(name):
        when = datetime.strptime(match.group(2), "%Y_%j_%H%M%S")
        return BinId(name, match.group(1), when.replace(tzinfo=timezone.utc), legacy=True)
    raise InvalidInputError(
        f"{name!r} is not an IFCB bin id (DYYYYMMDDTHHMMSS_IFCBnnn or IFCBn_YYYY_DDD_HHMMSS)"
    )


def parse_header(text: str) -> dict[str, str]:
    """Header fields by name. Current headers are ``key: value`` lines; legacy
    (2005) headers are quoted lines, one naming fields and the next giving
    their values."""
    lines = text.splitlines()
    fields: dict[str, str] = {}
    if lines and lines[0].startswith('"'):
        for names, values in zip(lines, lines[1:]):
            keys = names.strip().strip('"').split()
            cells = [c.strip().strip('"').strip() for c in values.split(",")]
            if len(keys) > 1 and len(keys) == len(cells):
                fields.update(zip(keys, cells))
        return fields
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip(), value.strip())
    return fields


def header_columns(header: Mapping[str, str]) -> dict[str, pa.Scalar]:
    """The ``bin_*`` values of a header (null when absent or unreadable)."""
    values: dict[str, pa.Scalar] = {}
    for column, (keys, kind) in _HEADER_COLUMNS.items():
        text = next((header[k] for k in keys if k in header), None)
        try:
            value = (
                None if text is None else (int(float(text)) if kind == pa.int64() else float(text))
            )
        except ValueError:
            value = None
        values[column] = pa.scalar(value, kind)
    return values
