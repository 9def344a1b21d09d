"""Metadata tables as ingest reads them (CSV or Parquet), and the limits on
what ingest reads: a table is checked before it is parsed (columns, UTF-8,
row length) and after (field sizes), so hostile input is refused in one line."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError

KEY_COLUMNS = (
    "image_id",
    "filename",
    "timestamp",
    "sample_id",
    "media_type",
    "instrument",
    "blob_id",
    "pack",
)
"""Columns always read as text (never inferred as numbers or times)."""

LIMITS = {
    "IMPROV_MAX_IMAGE_BYTES": (256 * 2**20, "one image file"),
    "IMPROV_MAX_METADATA_COLUMNS": (1000, "columns in one metadata table"),
    "IMPROV_MAX_FIELD_BYTES": (2**20, "one metadata field"),
}
"""What ingest reads at most: environment variable → (default, what it bounds).
Values are whole numbers, optionally with a K, M, G or T suffix (powers of 1024)."""

_ROW_FIELDS = 16
"""A metadata.csv row may be at most this many times IMPROV_MAX_FIELD_BYTES long."""


def limit(variable: str) -> int:
    """The limit ``variable`` of :data:`LIMITS`: from the environment, else its default."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return LIMITS[variable][0]
    found = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i?B)?", text, re.IGNORECASE)
    value = int(found[1]) * 1024 ** " KMGT".index(found[2].upper() or " ") if found else 0
    if value < 1:
        raise InvalidInputError(
            f"{variable}={text!r} is not a positive whole number (e.g. 1000 or 512M)"
        )
    return value


def over_limit(variable: str, amount: str, needed: int) -> str:
    """The end of a refusal: which limit was passed, and how to raise it."""
    value = limit(variable)
    shown = format_bytes(value) if "BYTES" in variable else f"{value:,}"
    suggestion = needed if needed < 2**20 or "BYTES" not in variable else f"{-(-needed // 2**20)}M"
    return (
        f"{amount}, over the limit of {shown} for {LIMITS[variable][1]}; "
        f"raise it with the environment variable {variable} (e.g. {variable}={suggestion})"
    )


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"


def read_table(path: Path) -> pa.Table:
    """A metadata table from CSV or Parquet, key columns read as text.

    Refused before it is parsed: a table of more columns than
    IMPROV_MAX_METADATA_COLUMNS, text that is not UTF-8, a CSV row longer
    than 16 × IMPROV_MAX_FIELD_BYTES; after: a field longer than
    IMPROV_MAX_FIELD_BYTES, binary (non-text) columns."""
    try:
        if path.suffix == ".csv":
            import pyarrow.csv as csv

            longest = _check_csv(path)
            table = csv.read_csv(
                path,
                read_options=csv.ReadOptions(block_size=max(2**20, 2 * longest)),
                convert_options=csv.ConvertOptions(
                    column_types=dict.fromkeys(KEY_COLUMNS, pa.string())
                ),
            )
        else:
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
            if len(names) > limit("IMPROV_MAX_METADATA_COLUMNS"):
                raise InvalidInputError(
                    f"{path}: "
                    + over_limit(
                        "IMPROV_MAX_METADATA_COLUMNS", f"{len(names):,} columns", len(names)
                    )
                )
            if len(set(names)) != len(names):
                duplicate = next(n for n in names if names.count(n) > 1)
                raise InvalidInputError(f"{path}: duplicate column {duplicate!r}")
            table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise InvalidInputError(f"cannot read {path}: {first}") from None
    _check_fields(path, table)
    return table


_QUOTED = re.compile(rb'"[^"]*"')


def _fields_before(line: bytes) -> int:
    """How many fields of a CSV ``line`` end before its end (commas outside quotes)."""
    return _QUOTED.sub(b"", line).count(b",")


def _check_csv(path: Path) -> int:
    """Check a metadata.csv before it is parsed, a block at a time (bounded
    memory): the header's column count, UTF-8 text, each row's length. Returns
    the longest row's length."""
    max_row = _ROW_FIELDS * limit("IMPROV_MAX_FIELD_BYTES")
    longest, line, header, header_line, carry = (
        0,
        1,
        None,
        0,
        b"",
    )  # line: number of the first line in ``data``
    with path.open("rb") as f:
        while True:
            block = f.read(2**20)
            buffer = carry + block
            cut = (
                buffer.rfind(b"\n") + 1 if block else len(buffer)
            )  # complete lines only, until the end
            data, carry = buffer[:cut], buffer[cut:]
            lines = data.split(b"\n")
            if header is None:
                header_line, header = next(
                    ((line + n, row) for n, row in enumerate(lines) if row.strip()), (0, None)
                )
                _check_header(
                    path, header if header is not None else carry, complete=header is not None
                )
            if len(carry) > max_row:  # measure the whole row, a block at a time
                size = len(carry)
                while (block := f.read(2**20)) and b"\n" not in block:
                    size += len(block)
                size += block.find(b"\n") if block else 0
                _row_too_long(path, line + len(lines) - 1, size, max_row)
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                where = line + data.count(b"\n", 0, exc.start)
                start = data.rfind(b"\n", 0, exc.start) + 1
                _not_utf8(
                    path,
                    where,
                    data[start : exc.start],
                    data[exc.start],
                    None if where == header_line else header,
                )
            widest = max(map(len, lines))
            if widest > max_row:
                n = next(n for n, row in enumerate(lines) if len(row) == widest)
                _row_too_long(path, line + n, widest, max_row)
            longest = max(longest, widest)
            line += len(lines) - 1
            if not block:
                return longest


def _check_header(path: Path, header: bytes, complete: bool) -> None:
    columns = _fields_before(header) + 1
    if columns > limit("IMPROV_MAX_METADATA_COLUMNS"):
        many = f"{columns:,} columns" if complete else f"at least {columns:,} columns"
        raise InvalidInputError(
            f"{path}: " + over_limit("IMPROV_MAX_METADATA_COLUMNS", many, columns)
        )


def _row_too_long(path: Path, line: int, size: int, max_row: int) -> None:
    field = format_bytes(limit("IMPROV_MAX_FIELD_BYTES"))
    raise InvalidInputError(
        f"{path}, line {line}: a row of {format_bytes(size)}, over the limit of "
        f"{format_bytes(max_row)} for one row ({_ROW_FIELDS} × the {field} limit for one metadata "
        f"field); raise it "
        f"with the environment variable IMPROV_MAX_FIELD_BYTES (e.g. "
        f"IMPROV_MAX_FIELD_BYTES={-(-size // (_ROW_FIELDS * 2**20))}M)"
    )


def _not_utf8(path: Path, line: int, before: bytes, byte: int, header: bytes | None) -> None:
    """Refuse a byte that is not UTF-8, naming its line and column (``header``
    is None when the byte is in the header itself)."""
    index = _fields_before(before)
    names = _header_names(header) if header is not None else []
    column = f"column {names[index]!r}" if index < len(names) else f"column {index + 1}"
    what = "metadata text" if header is not None else "the header"
    raise InvalidInputError(
        f"{path}, line {line}, {column}: byte 0x{byte:02x} is not UTF-8; {what} must be UTF-8 "
        f"(save the file as UTF-8)"
    )


def _header_names(header: bytes) -> list[str]:
    import csv

    try:
        return next(csv.reader([header.decode("utf-8-sig").rstrip("\r")]), [])
    except (UnicodeDecodeError, csv.Error):
        return []


def _check_fields(path: Path, table: pa.Table) -> None:
    """Refuse binary columns, and text fields or column names longer than
    IMPROV_MAX_FIELD_BYTES (named by row and column)."""
    max_field = limit("IMPROV_MAX_FIELD_BYTES")
    for name, column in zip(table.column_names, table.columns):
        if len(name.encode()) > max_field:
            size = len(name.encode())
            raise InvalidInputError(
                f"{path}: "
                + over_limit(
                    "IMPROV_MAX_FIELD_BYTES", f"a column name of {format_bytes(size)}", size
                )
            )
        kind = column.type
        if (
            pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
            or pa.types.is_fixed_size_binary(kind)
        ):
            raise InvalidInputError(
                f"{path}: column {name!r} holds bytes, not text; metadata text must be UTF-8"
            )
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)) or not len(column):
            continue
        lengths = pc.binary_length(column)
        longest = pc.max(lengths).as_py()
        if longest is not None and longest > max_field:
            row = pc.index(pc.greater(lengths, max_field), True).as_py() + 1
            where = f"line {line_of_row(path, row)}" if path.suffix == ".csv" else f"row {row}"
            raise InvalidInputError(
                f"{path}, {where}, column {name!r}: "
                + over_limit(
                    "IMPROV_MAX_FIELD_BYTES", f"a field of {format_bytes(longest)}", longest
                )
            )


def line_of_row(path: Path, row: int) -> int:
    """The line of a CSV file holding data row ``row`` (1-based; empty lines
    are skipped as the parser does). Rows were already checked to be bounded."""
    with path.open("rb") as f:
        seen = -1  # the header is row 0
        for number, text in enumerate(f, 1):
            seen += bool(text.rstrip(b"\r\n"))
            if seen == row:
                return number
    return row + 1
