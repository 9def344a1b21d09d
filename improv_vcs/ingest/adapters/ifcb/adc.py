"""``.adc`` files: one CSV row per trigger, with canonical column names, and
the time of each trigger."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv

from ....core.errors import InvalidInputError
from .header import BinId, parse_bin_id, parse_header

SCHEMA_1 = (
    "trigger_number",
    "processing_end_time",
    "fluorescence_low",
    "fluorescence_high",
    "scattering_low",
    "scattering_high",
    "comparator_pulse",
    "trigger_open_time",
    "frame_grab_time",
    "roi_x",
    "roi_y",
    "roi_width",
    "roi_height",
    "start_byte",
    "valve_status",
)
SCHEMA_2 = (
    "trigger_number",
    "adc_time",
    "pmt_a",
    "pmt_b",
    "pmt_c",
    "pmt_d",
    "peak_a",
    "peak_b",
    "peak_c",
    "peak_d",
    "time_of_flight",
    "grab_time_start",
    "grab_time_end",
    "roi_x",
    "roi_y",
    "roi_width",
    "roi_height",
    "start_byte",
    "comparator_out",
    "start_point",
    "signal_length",
    "status",
    "run_time",
    "inhibit_time",
)
INTEGER_COLUMNS = ("trigger_number", "roi_x", "roi_y", "roi_width", "roi_height", "start_byte")
_ALIASES = {name.replace("_", ""): name for name in SCHEMA_1 + SCHEMA_2} | {
    "trigger": "trigger_number"
}
TIMESTAMP = pa.timestamp("us", tz="UTC")
TIME_COLUMNS = ("adc_time", "processing_end_time")
"""The column giving each trigger's seconds since the run started: ``adc_time``
in current bins, ``processing_end_time`` (its place in schema 1) in legacy ones."""
_DAY = 86_400.0
LONGEST_RUN = _DAY
"""Trigger times beyond this many seconds after the bin's start are not
believed (an IFCB run lasts minutes)."""


def adc_column_names(header: Mapping[str, str], legacy: bool) -> list[str]:
    """Canonical names of the ADC columns: from ``ADCFileFormat`` when the
    header has it, else the schema of the bin id's generation."""
    listed = header.get("ADCFileFormat")
    if not listed:
        return list(SCHEMA_1 if legacy else SCHEMA_2)
    names = []
    for raw in listed.split(","):
        key = re.sub(r"[^a-z0-9]", "", raw.lower())
        name = _ALIASES.get(key) or "adc_" + (
            re.sub(r"[^0-9a-zA-Z]+", "_", raw).strip("_").lower() or str(len(names))
        )
        if name in names:
            raise InvalidInputError(f"ADCFileFormat names the column {raw.strip()!r} twice")
        names.append(name)
    return names


def parse_adc(data: bytes, names: list[str], where: str) -> pa.Table:
    """The ADC rows with canonical columns (integers for geometry, floats
    otherwise) and ``roi_number`` (the 1-based row)."""
    if not data.strip():
        table = pa.table(
            {n: pa.array([], pa.int64() if n in INTEGER_COLUMNS else pa.float64()) for n in names}
        )
    else:
        try:
            raw = csv.read_csv(
                io.BytesIO(data),
                read_options=csv.ReadOptions(autogenerate_column_names=True),
                convert_options=csv.ConvertOptions(strings_can_be_null=True),
            )
        except pa.ArrowInvalid as exc:
            raise InvalidInputError(
                f"{where}: not a readable ADC file: {str(exc).splitlines()[0]}"
            ) from None
        if raw.num_columns < len(names) or any(
            raw.column(i).null_count < raw.num_rows for i in range(len(names), raw.num_columns)
        ):
            raise InvalidInputError(
                f"{where}: rows have {raw.num_columns} values, the header names {len(names)} "
                f"columns"
            )
        columns = {}
        for i, name in enumerate(names):
            target = pa.int64() if name in INTEGER_COLUMNS else pa.float64()
            try:
                columns[name] = raw.column(i).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InvalidInputError(
                    f"{where}: column {i + 1} ({name}) is not numeric"
                ) from None
        table = pa.table(columns)
    for required in ("roi_width", "roi_height", "start_byte"):
        if required not in table.column_names:
            raise InvalidInputError(f"{where}: the ADC columns lack {required}")
    return table.add_column(0, "roi_number", pa.array(range(1, table.num_rows + 1), pa.int64()))


def trigger_seconds(adc: pa.Table, legacy: bool) -> pa.ChunkedArray | None:
    """Seconds from the start of the run to each trigger (see
    :data:`TIME_COLUMNS`), null where not finite or outside ``[0,
    LONGEST_RUN]``; None when the ADC has no time column. In legacy bins a
    negative time is a run past midnight and gains a day, the correction
    reference readers make to the other clock columns of these bins."""
    name = next((n for n in TIME_COLUMNS if n in adc.column_names), None)
    if name is None:
        return None
    seconds = adc.column(name)
    if legacy:
        seconds = pc.if_else(pc.less(seconds, 0), pc.add(seconds, _DAY), seconds)
    believable = pc.and_(
        pc.is_finite(seconds),
        pc.and_(pc.greater_equal(seconds, 0), pc.less_equal(seconds, LONGEST_RUN)),
    )
    return pc.if_else(believable, seconds, pa.scalar(None, pa.float64()))


def with_times(adc: pa.Table, bin_id: BinId) -> pa.Table:
    """``adc`` with ``timestamp``: the bin's start plus each trigger's seconds
    (the bin's start for every row when the ADC has no time column)."""
    seconds = trigger_seconds(adc, bin_id.legacy)
    if seconds is None:
        times = pa.array([bin_id.time] * adc.num_rows, TIMESTAMP)
    else:
        micros = pc.round(pc.multiply(seconds, 1_000_000)).cast(pa.int64())
        times = pc.add(pa.scalar(bin_id.time, TIMESTAMP), micros.cast(pa.duration("us")))
    return adc.append_column("timestamp", times)


def trigger_table(bin_id: str, header: bytes, adc: bytes) -> pa.Table:
    """Every trigger of a bin, with or without an image, from its ``.hdr``
    and ``.adc`` bytes: ``roi_number``, the ADC columns and ``timestamp``."""
    parsed = parse_bin_id(bin_id)
    fields = parse_header(header.decode("latin-1"))
    table = parse_adc(adc, adc_column_names(fields, parsed.legacy), f"{bin_id}.adc")
    return with_times(table, parsed)
