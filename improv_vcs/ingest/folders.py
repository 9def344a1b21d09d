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
from .tables import format_bytes, limit, line_of_row, over_limit, read_table

TABLE_NAMES = ("metadata.csv", "metadata.parquet")
_IFCB_NEW = r"^(?P<bin>D(?P<when>\d{8}T\d{6})_IFCB\d+)_(?P<roi>\d+)$"
_IFCB_OLD = r"^(?P<bin>IFCB\d+_(?P<when>\d{4}_\d{3}_\d{6}))_(?P<roi>\d+)$"
_IFCB_INSTRUMENT = r"^(?:D\d{8}T\d{6}_(?P<new>IFCB\d+)|(?P<old>IFCB\d+)_\d{4}_\d{3}_\d{6})_\d+$"
_BLOB_ID = re.compile(r"[0-9a-f]{64}")


class IngestWarning(UserWarning):
    """Something under SOURCE was skipped (see :func:`scan_directory`)."""


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
                raise InvalidInputError(
                    f"{path}: "
                    + over_limit(
                        "IMPROV_MAX_IMAGE_BYTES", f"an image of {format_bytes(size)}", size
                    )
                )
            names.append(name)
        images = [n for n in names if n not in TABLE_NAMES]
        table_names = [n for n in names if n in TABLE_NAMES]
        if len(table_names) > 1:
            raise InvalidInputError(
                f"{directory} has both metadata.csv and metadata.parquet; keep one"
            )
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
        raise InvalidInputError(
            f"metadata tables under {source} disagree on column types: {exc}"
        ) from None
    return table, paths


def _warn(message: str) -> None:
    warnings.warn(message, IngestWarning, stacklevel=4)


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


def _regular_size(
    path: Path, inside: Path, source: object, warn: Callable[[str], None], table: bool
) -> int | None:
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
        raise InvalidInputError(
            f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
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
            f"{path} does not describe {len(unlisted)} file(s) in its folder, e.g. "
            f"{sorted(unlisted)[0]!r}"
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
                table = table.set_column(
                    index, name, pc.if_else(blank, pa.scalar(None, pa.string()), column)
                )
    if "timestamp" not in table.column_names:
        table = _with_ifcb_fields(table, lambda _: f"({path} has no timestamp column)")
    guessed = _media_types(pa.array(names, pa.string()))
    if "media_type" not in table.column_names:
        table = table.append_column("media_type", guessed)
    elif (
        pa.types.is_string(table.column("media_type").type)
        and table.column("media_type").null_count
    ):
        index = table.column_names.index("media_type")
        table = table.set_column(
            index, "media_type", pc.coalesce(table.column("media_type").combine_chunks(), guessed)
        )
    return table, files


def _where(path: Path, row: int) -> str:
    """``path, row N`` (a data row, 1-based), with its line for a CSV file."""
    line = f" (line {line_of_row(path, row)})" if path.suffix == ".csv" else ""
    return f"{path}, row {row}{line}"


def _text_cells(path: Path, table: pa.Table, name: str) -> list[str | None]:
    """The cells of column ``name`` as text without surrounding blanks, empty cells as None."""
    column = table.column(name)
    if not (
        pa.types.is_string(column.type)
        or pa.types.is_large_string(column.type)
        or pa.types.is_null(column.type)
    ):
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
            raise InvalidInputError(
                f"{path}: column 'size' must hold whole numbers (bytes)"
            ) from None
        for row, (given, file, name) in enumerate(zip(sizes, files, names), start=1):
            actual = os.stat(file).st_size
            if given is not None and given != actual:
                raise InvalidInputError(
                    f"{_where(path, row)}: size {given} but {name!r} has {actual} bytes"
                )
    if "blob_id" in table.column_names:
        given_ids = _text_cells(path, table, "blob_id")
        for row, blob_id in enumerate(given_ids, start=1):
            if blob_id is not None and not _BLOB_ID.fullmatch(blob_id):
                raise InvalidInputError(
                    f"{_where(path, row)}: blob_id {blob_id!r} is not a SHA-256 (64 hex digits)"
                )
        _check_blob_ids(path, given_ids, names, files)
    if "file" in table.column_names and table.column("file").to_pylist() == names:
        table = table.drop_columns(["file"])
    return table.drop_columns(
        [c for c in ("blob_id", "size", "pack", "offset") if c in table.column_names]
    )


def _check_blob_ids(
    path: Path, given: list[str | None], names: list[str], files: list[str]
) -> None:
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
                    f"{_where(path, row + 1)}: blob_id {given[row][:12]}… does not match the "
                    f"bytes of "
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
                f"{_where(path, row)}: instrument {value!r} disagrees with --instrument "
                f"{instrument!r}"
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
        cells = (
            metadata.column("instrument").to_pylist()
            if "instrument" in metadata.column_names
            else [None] * n
        )
        named = pc.extract_regex(metadata.column("image_id").combine_chunks(), _IFCB_INSTRUMENT)
        matched = (
            named.is_valid().to_pylist()
        )  # a group that took no part is "", an unmatched row null
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
                f"{paths[row]}: no instrument for image "
                f"{metadata.column('image_id')[row].as_py()!r}; "
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
        (
            name,
            metadata.take(pa.array(groups[name], pa.int64())),
            [paths[row] for row in groups[name]],
        )
        for name in sorted(groups)
    ]


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
            f"cannot tell the time of image {ids[row].as_py()!r} {where(row)}: give a timestamp "
            f"column in "
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
