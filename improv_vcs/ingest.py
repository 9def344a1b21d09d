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
  ``IFCB5_2012_028_081515_00001``; the bin becomes the ``sample_id``.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .errors import InvalidInputError
from .manifest import cast_known_columns

TABLE_NAMES = ("metadata.csv", "metadata.parquet")
_IFCB_NEW = r"^(?P<bin>D(?P<when>\d{8}T\d{6})_IFCB\d+)_(?P<roi>\d+)$"
_IFCB_OLD = r"^(?P<bin>IFCB\d+_(?P<when>\d{4}_\d{3}_\d{6}))_(?P<roi>\d+)$"
_KEY_COLUMNS = ("image_id", "filename", "timestamp", "sample_id", "media_type")


def scan_directory(source: str | os.PathLike[str]) -> tuple[pa.Table, list[str]]:
    """The metadata table (not yet validated) and file paths of every image under ``source``."""
    root = Path(source)
    if not root.is_dir():
        raise InvalidInputError(f"{source} is not a directory")
    tables: list[pa.Table] = []
    paths: list[str] = []
    named: list[str] = []  # files of folders without a table, parsed together

    def add(table: pa.Table, files: list[str], where: str) -> None:
        try:
            tables.append(cast_known_columns(table))
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
        names = sorted(n for n in filenames if not n.startswith(".") and _within(inside, Path(directory) / n))
        for name in names:
            _require_utf8(Path(directory) / name)
        images = [n for n in names if n not in TABLE_NAMES]
        table_names = [n for n in names if n in TABLE_NAMES]
        if len(table_names) > 1:
            raise InvalidInputError(f"{directory} has both metadata.csv and metadata.parquet; keep one")
        if table_names:
            flush_named()
            add(*_described_folder(Path(directory), table_names[0], images), directory)
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


def _within(root: Path, path: Path) -> bool:
    """Whether ``path`` (after following links) lies inside ``root``; a link
    leading outside SOURCE is skipped, never followed."""
    if not path.is_symlink():
        return True
    try:
        if not path.exists():
            return True  # a broken or looping link: reading it reports the error
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):
        return True


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


def _described_folder(directory: Path, table_name: str, images: list[str]) -> tuple[pa.Table, list[str]]:
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
    if "timestamp" not in table.column_names:
        table = _with_ifcb_fields(table, lambda _: f"({path} has no timestamp column)")
    if "media_type" not in table.column_names:
        table = table.append_column("media_type", _media_types(pa.array(names, pa.string())))
    return table, _join(directory, names)


def read_table(path: Path) -> pa.Table:
    """A metadata table from CSV or Parquet, key columns read as text."""
    try:
        if path.suffix == ".csv":
            import pyarrow.csv as csv

            header = path.open(encoding="utf-8-sig", errors="replace").readline().strip().split(",")
            types = {c: pa.string() for c in (h.strip('"') for h in header) if c in _KEY_COLUMNS}
            return csv.read_csv(path, convert_options=csv.ConvertOptions(column_types=types))
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        if len(set(names)) != len(names):
            duplicate = next(n for n in names if names.count(n) > 1)
            raise InvalidInputError(f"{path}: duplicate column {duplicate!r}")
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInputError(f"cannot read {path}: {first}") from None


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
