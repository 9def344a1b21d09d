"""Turn a directory of image files (plus optional metadata tables) into a
batch: one metadata table and the aligned list of file paths.

Rules:
- every regular, non-hidden file under SOURCE is an image, except the
  metadata tables ``metadata.csv`` / ``metadata.parquet``;
- a metadata table describes the images in its own folder, matched by a
  ``filename`` column (names relative to the folder) or an ``image_id``
  column (the file name without extension); every file must have a row and
  every row a file;
- without a table (or without a ``timestamp`` column), ids and timestamps come
  from IFCB-style names: ``D20240101T120000_IFCB107_00001`` or the legacy
  ``IFCB5_2012_028_081515_00001``; the bin becomes the ``sample_id``; such
  times are UTC (the IFCB convention);
- a time without a UTC offset in a table is read in the zone given
  (``improv commit --timezone``), UTC by default;
- the instrument of a row is ``--instrument`` when given (a filled
  ``instrument`` cell that disagrees is refused, naming its row), else its
  ``instrument`` cell, else the instrument an IFCB-style name carries
  (``IFCB107``); rows are split into one batch per instrument
  (:func:`split_by_instrument`);
- the columns the store computes may be present (a folder written by
  ``improv export``): ``blob_id`` and ``size`` are checked against the
  file's bytes, ``pack`` and ``offset`` (locations in another repository)
  are ignored, ``media_type`` is kept as given, and a ``file`` column that
  names each row's own file is dropped.

What is read (see docs/operations.md, "What ingest reads"):
- only regular files: FIFOs, sockets and devices are skipped with a warning,
  and so are links to files outside SOURCE (links to directories are not
  followed); a metadata table that is not a regular file is refused;
- within limits, each set by an environment variable (:data:`LIMITS`): the
  size of one image file, the columns of one metadata table and the bytes of
  one metadata field; metadata text must be UTF-8.
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
import warnings
from collections.abc import Callable

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError
from ..core.ids import instrument_name
from ..snapshot.manifest import cast_known_columns

TABLE_NAMES = ("metadata.csv", "metadata.parquet")
_IFCB_NEW = r"^(?P<bin>D(?P<when>\d{8}T\d{6})_IFCB\d+)_(?P<roi>\d+)$"
_IFCB_OLD = r"^(?P<bin>IFCB\d+_(?P<when>\d{4}_\d{3}_\d{6}))_(?P<roi>\d+)$"
_KEY_COLUMNS = ("image_id", "filename", "timestamp", "sample_id", "media_type", "instrument", "blob_id", "pack")
_IFCB_INSTRUMENT = r"^(?:D\d{8}T\d{6}_(?P<new>IFCB\d+)|(?P<old>IFCB\d+)_\d{4}_\d{3}_\d{6})_\d+$"
_BLOB_ID = re.compile(r"[0-9a-f]{64}")

LIMITS = {
    "IMPROV_MAX_IMAGE_BYTES": (256 * 2**20, "one image file"),
    "IMPROV_MAX_METADATA_COLUMNS": (1000, "columns in one metadata table"),
    "IMPROV_MAX_FIELD_BYTES": (2**20, "one metadata field"),
}
"""What ingest reads at most: environment variable → (default, what it bounds).
Values are whole numbers, optionally with a K, M, G or T suffix (powers of 1024)."""

_ROW_FIELDS = 16
"""A metadata.csv row may be at most this many times IMPROV_MAX_FIELD_BYTES long."""


class IngestWarning(UserWarning):
    """Something under SOURCE was skipped (see :func:`scan_directory`)."""


def limit(variable: str) -> int:
    """The limit ``variable`` of :data:`LIMITS`: from the environment, else its default."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return LIMITS[variable][0]
    found = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i?B)?", text, re.IGNORECASE)
    value = int(found[1]) * 1024 ** " KMGT".index(found[2].upper() or " ") if found else 0
    if value < 1:
        raise InvalidInputError(f"{variable}={text!r} is not a positive whole number (e.g. 1000 or 512M)")
    return value


def _over(variable: str, amount: str, needed: int) -> str:
    """The end of a refusal: which limit was passed, and how to raise it."""
    value = limit(variable)
    shown = _bytes(value) if "BYTES" in variable else f"{value:,}"
    suggestion = needed if needed < 2**20 or "BYTES" not in variable else f"{-(-needed // 2**20)}M"
    return (
        f"{amount}, over the limit of {shown} for {LIMITS[variable][1]}; "
        f"raise it with the environment variable {variable} (e.g. {variable}={suggestion})"
    )


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"


def scan_directory(
    source: str | os.PathLike[str],
    warn: Callable[[str], None] | None = None,
    instrument: str | None = None,
    zone: str = "UTC",
) -> tuple[pa.Table, list[str]]:
    """The metadata table (not yet validated) and file paths of every image under ``source``.

    What is skipped (FIFOs, sockets, devices, links to outside ``source``) is
    reported to ``warn``, by default as an :class:`IngestWarning`. Each
    table's ``instrument`` cells must equal ``instrument`` when it is given
    (the column is kept, for :func:`split_by_instrument`); its ``blob_id`` and
    ``size`` cells are checked against the files and dropped, with ``pack``
    and ``offset``. Times without a UTC offset are read in ``zone`` (see
    :func:`parse_timezone`)."""
    root = Path(source)
    if not root.is_dir():
        raise InvalidInputError(f"{source} is not a directory")
    warn = warn or _warn
    max_image = limit("IMPROV_MAX_IMAGE_BYTES")
    tables: list[pa.Table] = []
    paths: list[str] = []
    named: list[str] = []  # files of folders without a table, parsed together

    def add(table: pa.Table, files: list[str], where: str) -> None:
        try:
            tables.append(cast_known_columns(table, zone))
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc}") from None
        paths.extend(files)

    def flush_named() -> None:
        if named:
            add(_named_files(named), list(named), str(root))
            named.clear()

    inside = root.resolve()
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = []
        for name in sorted(n for n in filenames if not n.startswith(".")):
            path = Path(directory) / name
            _require_utf8(path)
            size = _regular_size(path, inside, source, warn, table=name in TABLE_NAMES)
            if size is None:
                continue
            if size > max_image and name not in TABLE_NAMES:
                raise InvalidInputError(f"{path}: " + _over("IMPROV_MAX_IMAGE_BYTES", f"an image of {_bytes(size)}", size))
            names.append(name)
        images = [n for n in names if n not in TABLE_NAMES]
        table_names = [n for n in names if n in TABLE_NAMES]
        if len(table_names) > 1:
            raise InvalidInputError(f"{directory} has both metadata.csv and metadata.parquet; keep one")
        if table_names:
            flush_named()
            add(*_described_folder(Path(directory), table_names[0], images, instrument), directory)
        else:
            named.extend(_join(Path(directory), images))
    flush_named()
    if not paths:
        raise InvalidInputError(f"no image files under {source}")
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInputError(f"metadata tables under {source} disagree on column types: {exc}") from None
    return table, paths


def _warn(message: str) -> None:
    warnings.warn(message, IngestWarning, stacklevel=4)


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


def _regular_size(path: Path, inside: Path, source: object, warn: Callable[[str], None], table: bool) -> int | None:
    """The size of ``path`` when ingest reads it: a regular file, or a link to
    one inside SOURCE (``inside``, resolved). Anything else is skipped with a
    warning, never opened (a FIFO would block); a metadata table must be a
    regular file."""
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            info = os.stat(path)  # first: a broken or looping link is an error, wherever it points
            if not path.resolve().is_relative_to(inside):
                warn(f"skipped {path}: a link to outside {source}")
                return None
    except (OSError, RuntimeError) as exc:  # a broken or looping link
        raise InvalidInputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISREG(info.st_mode):
        return info.st_size
    kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
    if table:
        raise InvalidInputError(f"{path} is {kind}, not a regular file")
    warn(f"skipped {path}: {kind}, not a regular file")
    return None


def _require_utf8(path: Path) -> None:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise InvalidInputError(f"file name {shown!r} is not UTF-8; rename it") from None


def _named_files(paths: list[str]) -> pa.Table:
    """Ids, times, samples and media types of files in folders without a table."""
    names = pa.array([os.path.basename(p) for p in paths], pa.string())
    table = pa.table({"image_id": _stems(names)})
    table = _with_ifcb_fields(
        table, lambda row: f"in {os.path.dirname(paths[row])} (no metadata table there)"
    )
    return table.append_column("media_type", _media_types(names))


def _join(directory: Path, names: list[str]) -> list[str]:
    base = str(directory)
    return [f"{base}{os.sep}{n}" for n in names]


def _stems(names: pa.Array) -> pa.Array:
    """File names without their extension."""
    return pc.replace_substring_regex(names, r"\.[^.]*$", "")


def _described_folder(
    directory: Path, table_name: str, images: list[str], instrument: str | None = None
) -> tuple[pa.Table, list[str]]:
    path = directory / table_name
    table = read_table(path)
    if "filename" in table.column_names:
        names = table.column("filename").to_pylist()
        if any(n is None for n in names):
            raise InvalidInputError(f"{path}: the filename column has empty cells")
        if "image_id" not in table.column_names:
            table = table.append_column("image_id", _stems(pa.array(names, pa.string())))
        table = table.drop_columns(["filename"])
    elif "image_id" in table.column_names:
        by_stem: dict[str, str] = {}
        for name in images:
            stem = os.path.splitext(name)[0]
            if stem in by_stem:
                raise InvalidInputError(
                    f"{directory}: {by_stem[stem]!r} and {name!r} share the id {stem!r}; "
                    "add a filename column to metadata"
                )
            by_stem[stem] = name
        ids = table.column("image_id").to_pylist()
        missing = [i for i in ids if i not in by_stem]
        if missing:
            raise InvalidInputError(f"{path}: no file for image id {missing[0]!r}")
        names = [by_stem[i] for i in ids]
    else:
        raise InvalidInputError(f"{path} needs an image_id or a filename column")

    present = set(images)
    absent = [n for n in names if n not in present]
    if absent:
        raise InvalidInputError(f"{path}: listed file {absent[0]!r} does not exist")
    unlisted = present.difference(names)
    if unlisted:
        raise InvalidInputError(
            f"{path} does not describe {len(unlisted)} file(s) in its folder, e.g. {sorted(unlisted)[0]!r}"
        )
    files = _join(directory, names)
    table = _computed_columns(path, table, names, files)
    if "instrument" in table.column_names:
        table = _instrument_column(path, table, instrument)
    for name in ("sample_id", "media_type"):  # an empty cell is no value (a CSV cannot say null)
        if name in table.column_names and pa.types.is_string(table.column(name).type):
            column = table.column(name).combine_chunks()
            blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), False)
            if pc.any(blank).as_py():
                index = table.column_names.index(name)
                table = table.set_column(index, name, pc.if_else(blank, pa.scalar(None, pa.string()), column))
    if "timestamp" not in table.column_names:
        table = _with_ifcb_fields(table, lambda _: f"({path} has no timestamp column)")
    guessed = _media_types(pa.array(names, pa.string()))
    if "media_type" not in table.column_names:
        table = table.append_column("media_type", guessed)
    elif pa.types.is_string(table.column("media_type").type) and table.column("media_type").null_count:
        index = table.column_names.index("media_type")
        table = table.set_column(index, "media_type", pc.coalesce(table.column("media_type").combine_chunks(), guessed))
    return table, files


def _where(path: Path, row: int) -> str:
    """``path, row N`` (a data row, 1-based), with its line for a CSV file."""
    line = f" (line {_line_of_row(path, row)})" if path.suffix == ".csv" else ""
    return f"{path}, row {row}{line}"


def _text_cells(path: Path, table: pa.Table, name: str) -> list[str | None]:
    """The cells of column ``name`` as text without surrounding blanks, empty cells as None."""
    column = table.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_null(column.type)):
        raise InvalidInputError(f"{path}: column {name!r} must hold text, not {column.type}")
    return [None if v is None or not v.strip() else v.strip() for v in column.to_pylist()]


def _computed_columns(path: Path, table: pa.Table, names: list[str], files: list[str]) -> pa.Table:
    """Check, then drop, the columns the store computes (as ``improv export``
    writes them): ``blob_id`` (SHA-256 of the bytes) and ``size`` must match
    the file of their row; ``pack`` and ``offset`` locate the image in
    another repository and are ignored; a ``file`` column naming each row's
    own file is dropped (other ``file`` columns are ordinary metadata)."""
    if "size" in table.column_names:
        try:
            sizes = table.column("size").cast(pa.int64()).to_pylist()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise InvalidInputError(f"{path}: column 'size' must hold whole numbers (bytes)") from None
        for row, (given, file, name) in enumerate(zip(sizes, files, names), start=1):
            actual = os.stat(file).st_size
            if given is not None and given != actual:
                raise InvalidInputError(f"{_where(path, row)}: size {given} but {name!r} has {actual} bytes")
    if "blob_id" in table.column_names:
        given_ids = _text_cells(path, table, "blob_id")
        for row, blob_id in enumerate(given_ids, start=1):
            if blob_id is not None and not _BLOB_ID.fullmatch(blob_id):
                raise InvalidInputError(f"{_where(path, row)}: blob_id {blob_id!r} is not a SHA-256 (64 hex digits)")
        _check_blob_ids(path, given_ids, names, files)
    if "file" in table.column_names and table.column("file").to_pylist() == names:
        table = table.drop_columns(["file"])
    return table.drop_columns([c for c in ("blob_id", "size", "pack", "offset") if c in table.column_names])


def _check_blob_ids(path: Path, given: list[str | None], names: list[str], files: list[str]) -> None:
    """Hash the files whose row gives a blob id (streamed, in parallel) and
    refuse the first that differs."""
    from ..core.hashing import hash_files

    rows = [row for row, blob_id in enumerate(given) if blob_id is not None]
    done = 0
    for digests, _ in hash_files([files[row] for row in rows]):
        for digest in digests:
            row = rows[done]
            done += 1
            if digest.hex() != given[row]:
                raise InvalidInputError(
                    f"{_where(path, row + 1)}: blob_id {given[row][:12]}… does not match the bytes of "
                    f"{names[row]!r} (SHA-256 {digest.hex()[:12]}…)"
                )


def _instrument_column(path: Path, table: pa.Table, instrument: str | None) -> pa.Table:
    """The table with its ``instrument`` column as valid names (empty cells
    null); a cell other than ``instrument`` (``--instrument``), when given,
    is refused with its row."""
    cells = _text_cells(path, table, "instrument")
    for row, value in enumerate(cells, start=1):
        if value is None:
            continue
        if instrument is not None and value != instrument:
            raise InvalidInputError(
                f"{_where(path, row)}: instrument {value!r} disagrees with --instrument {instrument!r}"
            )
        try:
            instrument_name(value)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{_where(path, row)}: {exc}") from None
    index = table.column_names.index("instrument")
    return table.set_column(index, "instrument", pa.array(cells, pa.string()))


def split_by_instrument(
    metadata: pa.Table, paths: list[str], instrument: str | None
) -> list[tuple[str, pa.Table, list[str]]]:
    """``(instrument, rows without the instrument column, their paths)`` per
    instrument, sorted by name. A row's instrument is ``instrument`` when
    given (``--instrument``; :func:`scan_directory` already refused cells that
    disagree), else its ``instrument`` cell, else the one its IFCB-style image
    id names; a row with none is refused."""
    n = metadata.num_rows
    if instrument is not None:
        instrument_name(instrument)
        rows = [instrument] * n
    else:
        cells = metadata.column("instrument").to_pylist() if "instrument" in metadata.column_names else [None] * n
        named = pc.extract_regex(metadata.column("image_id").combine_chunks(), _IFCB_INSTRUMENT)
        matched = named.is_valid().to_pylist()  # a group that took no part is "", an unmatched row null
        new, old = named.field("new").to_pylist(), named.field("old").to_pylist()
        rows = [cell or (m and (a or b)) or None for cell, m, a, b in zip(cells, matched, new, old)]
        if all(r is None for r in rows):
            raise InvalidInputError(
                "--format files needs --instrument (or an instrument column in the metadata table, "
                "or IFCB-style file names such as D20240501T001500_IFCB107_00001.png)"
            )
        if None in rows:
            row = rows.index(None)
            raise InvalidInputError(
                f"{paths[row]}: no instrument for image {metadata.column('image_id')[row].as_py()!r}; "
                "give --instrument, fill its instrument cell, or use an IFCB-style name"
            )
    if "instrument" in metadata.column_names:
        metadata = metadata.drop_columns(["instrument"])
    groups: dict[str, list[int]] = {}
    for row, name in enumerate(rows):
        groups.setdefault(name, []).append(row)
    if len(groups) == 1:
        return [(rows[0], metadata, list(paths))]
    return [
        (name, metadata.take(pa.array(groups[name], pa.int64())), [paths[row] for row in groups[name]])
        for name in sorted(groups)
    ]


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
                convert_options=csv.ConvertOptions(column_types=dict.fromkeys(_KEY_COLUMNS, pa.string())),
            )
        else:
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
            if len(names) > limit("IMPROV_MAX_METADATA_COLUMNS"):
                raise InvalidInputError(f"{path}: " + _over("IMPROV_MAX_METADATA_COLUMNS", f"{len(names):,} columns", len(names)))
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
    longest, line, header, header_line, carry = 0, 1, None, 0, b""  # line: number of the first line in ``data``
    with path.open("rb") as f:
        while True:
            block = f.read(2**20)
            buffer = carry + block
            cut = buffer.rfind(b"\n") + 1 if block else len(buffer)  # complete lines only, until the end
            data, carry = buffer[:cut], buffer[cut:]
            lines = data.split(b"\n")
            if header is None:
                header_line, header = next(((line + n, row) for n, row in enumerate(lines) if row.strip()), (0, None))
                _check_header(path, header if header is not None else carry, complete=header is not None)
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
                _not_utf8(path, where, data[start : exc.start], data[exc.start], None if where == header_line else header)
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
        raise InvalidInputError(f"{path}: " + _over("IMPROV_MAX_METADATA_COLUMNS", many, columns))


def _row_too_long(path: Path, line: int, size: int, max_row: int) -> None:
    field = _bytes(limit("IMPROV_MAX_FIELD_BYTES"))
    raise InvalidInputError(
        f"{path}, line {line}: a row of {_bytes(size)}, over the limit of "
        f"{_bytes(max_row)} for one row ({_ROW_FIELDS} × the {field} limit for one metadata field); raise it "
        f"with the environment variable IMPROV_MAX_FIELD_BYTES (e.g. IMPROV_MAX_FIELD_BYTES={-(-size // (_ROW_FIELDS * 2**20))}M)"
    )


def _not_utf8(path: Path, line: int, before: bytes, byte: int, header: bytes | None) -> None:
    """Refuse a byte that is not UTF-8, naming its line and column (``header``
    is None when the byte is in the header itself)."""
    index = _fields_before(before)
    names = _header_names(header) if header is not None else []
    column = f"column {names[index]!r}" if index < len(names) else f"column {index + 1}"
    what = "metadata text" if header is not None else "the header"
    raise InvalidInputError(
        f"{path}, line {line}, {column}: byte 0x{byte:02x} is not UTF-8; {what} must be UTF-8 (save the file as UTF-8)"
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
            raise InvalidInputError(f"{path}: " + _over("IMPROV_MAX_FIELD_BYTES", f"a column name of {_bytes(size)}", size))
        kind = column.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
            raise InvalidInputError(f"{path}: column {name!r} holds bytes, not text; metadata text must be UTF-8")
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)) or not len(column):
            continue
        lengths = pc.binary_length(column)
        longest = pc.max(lengths).as_py()
        if longest is not None and longest > max_field:
            row = pc.index(pc.greater(lengths, max_field), True).as_py() + 1
            where = f"line {_line_of_row(path, row)}" if path.suffix == ".csv" else f"row {row}"
            raise InvalidInputError(
                f"{path}, {where}, column {name!r}: " + _over("IMPROV_MAX_FIELD_BYTES", f"a field of {_bytes(longest)}", longest)
            )


def _line_of_row(path: Path, row: int) -> int:
    """The line of a CSV file holding data row ``row`` (1-based; empty lines
    are skipped as the parser does). Rows were already checked to be bounded."""
    with path.open("rb") as f:
        seen = -1  # the header is row 0
        for number, text in enumerate(f, 1):
            seen += bool(text.rstrip(b"\r\n"))
            if seen == row:
                return number
    return row + 1


def _with_ifcb_fields(table: pa.Table, where: Callable[[int], str]) -> pa.Table:
    """Add ``timestamp`` (and ``sample_id`` when absent) parsed from IFCB-style ids."""
    ids = table.column("image_id").combine_chunks()
    times, bins = [], []
    for pattern, fmt in ((_IFCB_NEW, "%Y%m%dT%H%M%S"), (_IFCB_OLD, "%Y_%j_%H%M%S")):
        parts = pc.extract_regex(ids, pattern)
        when = pc.strptime(parts.field("when"), format=fmt, unit="us", error_is_null=True)
        times.append(pc.if_else(parts.is_valid(), when, pa.scalar(None, when.type)))
        bins.append(pc.if_else(parts.is_valid(), parts.field("bin"), pa.scalar(None, pa.string())))
    timestamp = pc.coalesce(*times)
    if timestamp.null_count:
        row = pc.index(pc.is_null(timestamp), True).as_py()
        raise InvalidInputError(
            f"cannot tell the time of image {ids[row].as_py()!r} {where(row)}: give a timestamp column in "
            "metadata.csv/metadata.parquet, or use IFCB-style names like "
            "D20240101T120000_IFCB107_00001.png"
        )
    table = table.append_column("timestamp", pc.assume_timezone(timestamp, "UTC"))
    if "sample_id" not in table.column_names:
        table = table.append_column("sample_id", pc.coalesce(*bins))
    return table


def _media_types(names: pa.Array) -> pa.Array:
    """The media type of each file name, from its extension."""
    extensions = pc.utf8_lower(pc.extract_regex(names, r"(?P<ext>\.[^.]*)$").field("ext"))
    extensions = pc.fill_null(extensions, "")
    known = extensions.unique()
    types = pa.array(
        [mimetypes.guess_type("x" + e)[0] or "application/octet-stream" for e in known.to_pylist()],
        pa.string(),
    )
    return pc.take(types, pc.index_in(extensions, value_set=known))
