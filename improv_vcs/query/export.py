"""Write a query's images and metadata to a local directory.

Images are named ``<image_id><extension>``; every file is written atomically
(temporary name, then rename) and verified against its hash, and a file
already present with the right hash is skipped, so an interrupted export
resumes where it stopped. Blobs are read per pack in offset order, adjacent
ones in one ranged read.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import IntegrityError, InvalidInputError
from ..core.files import write_atomic
from ..core.ids import relative_path
from ..storage.objects import ObjectDatabase
from ..storage.packs import pack_key

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/tiff": ".tif"}
_MAX_GAP = 64 * 2**10
_MAX_READ = 16 * 2**20
METADATA_FORMATS = ("parquet", "csv")
BLOB_COLUMNS = ["image_id", "blob_id", "pack", "offset", "size", "media_type"]


@dataclass(frozen=True)
class ExportReport:
    images: int
    written: int
    skipped: int
    bytes_written: int
    metadata: Path


def extension(media_type: str | None) -> str:
    if media_type in _EXTENSIONS:
        return _EXTENSIONS[media_type]
    return (mimetypes.guess_extension(media_type) if media_type else None) or ".bin"


def file_names(rows: pa.Table) -> pa.Array:
    """``<image_id><extension>`` for every row."""
    media = rows.column("media_type").to_pylist()
    ids = rows.column("image_id").to_pylist()
    return pa.array([i + extension(m) for i, m in zip(ids, media)], pa.string())


def export_rows(
    odb: ObjectDatabase,
    rows: pa.Table,
    dest: Path,
    metadata_format: str = "parquet",
    metadata_only: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write the images of ``rows`` (manifest rows) and their metadata into ``dest``."""
    if metadata_format not in METADATA_FORMATS:
        raise InvalidInputError(f"metadata format must be one of {', '.join(METADATA_FORMATS)}")
    if dest.exists() and not dest.is_dir():
        raise InvalidInputError(f"{dest} exists and is not a directory")
    missing = [c for c in BLOB_COLUMNS if c not in rows.column_names]
    if missing:
        raise InvalidInputError(f"export needs the columns {', '.join(missing)}")
    dest.mkdir(parents=True, exist_ok=True)
    names = file_names(rows)
    written = skipped = nbytes = 0
    if not metadata_only:
        written, skipped, nbytes = _write_blobs(odb, rows, names, dest, progress)
    table = rows.append_column("file", names)
    metadata = dest / f"metadata.{metadata_format}"
    _write_metadata(table, metadata)
    return ExportReport(rows.num_rows, written, skipped, nbytes, metadata)


@dataclass(frozen=True)
class FilesReport:
    files: int
    written: int
    skipped: int
    bytes_written: int


def export_files(
    odb: ObjectDatabase, files: pa.Table, dest: Path, progress: Callable[[int], None] | None = None
) -> FilesReport:
    """Write original files (rows of a sources table) under ``dest`` at their
    recorded relative paths, byte for byte."""
    if dest.exists() and not dest.is_dir():
        raise InvalidInputError(f"{dest} exists and is not a directory")
    first: dict[str, int] = {}  # path → first row holding it
    blobs = files.column("blob_id").to_pylist()
    for row, path in enumerate(files.column("path").to_pylist()):
        relative_path(path)
        if blobs[first.setdefault(path, row)] != blobs[row]:
            raise InvalidInputError(
                f"two selected samples hold different files at {path!r}; export them one sample "
                f"at a time"
            )
    chosen = files.take(list(first.values()))
    dest.mkdir(parents=True, exist_ok=True)
    for parent in {(dest / p).parent for p in chosen.column("path").to_pylist()}:
        parent.mkdir(parents=True, exist_ok=True)
    written, skipped, nbytes = _write_blobs(odb, chosen, chosen.column("path"), dest, progress)
    return FilesReport(chosen.num_rows, written, skipped, nbytes)


def _write_blobs(
    odb: ObjectDatabase,
    rows: pa.Table,
    names: pa.Array | pa.ChunkedArray,
    dest: Path,
    progress: Callable[[int], None] | None,
) -> tuple[int, int, int]:
    """Write each row's blob to ``dest / name`` unless a file with its hash is
    there already: (written, skipped, bytes written)."""
    written = skipped = nbytes = 0
    for name, blob_id, data in iter_blobs(odb, rows, names):
        target = dest / name
        if target.is_file() and _sha256_file(target) == blob_id:
            skipped += 1
        else:
            write_atomic(target, data)
            written += 1
            nbytes += len(data)
        if progress:
            progress(1)
    return written, skipped, nbytes


def iter_blobs(
    odb: ObjectDatabase, rows: pa.Table, names: pa.Array | pa.ChunkedArray
) -> Iterator[tuple[str, str, bytes]]:
    """``(name, blob id, verified bytes)`` for every row, in pack and offset order."""
    order = pc.sort_indices(rows, sort_keys=[("pack", "ascending"), ("offset", "ascending")])
    picked = rows.select(["blob_id", "pack", "offset", "size"]).take(order)
    records = zip(
        names.take(order).to_pylist(),
        picked.column("blob_id").to_pylist(),
        picked.column("pack").to_pylist(),
        picked.column("offset").to_pylist(),
        picked.column("size").to_pylist(),
    )
    run: list[tuple[str, str, str, int, int]] = []
    for record in records:
        if run and not _extends(run, record):
            yield from _read_run(odb, run)
            run = []
        run.append(record)
    if run:
        yield from _read_run(odb, run)


def _extends(
    run: list[tuple[str, str, str, int, int]], record: tuple[str, str, str, int, int]
) -> bool:
    first, last = run[0], run[-1]
    end = last[3] + last[4]
    return (
        record[2] == last[2]
        and record[3] - end <= _MAX_GAP
        and record[3] + record[4] - first[3] <= _MAX_READ
    )


def _read_run(
    odb: ObjectDatabase, run: list[tuple[str, str, str, int, int]]
) -> Iterator[tuple[str, str, bytes]]:
    pack, start = run[0][2], run[0][3]
    end = max(r[3] + r[4] for r in run)
    if len(run) == 1 or not odb.store.exists(pack_key(pack)):  # one blob, or fetched on demand
        for name, blob_id, _, offset, size in run:
            yield name, blob_id, odb.read_blob(pack, offset, size, blob_id)
        return
    block = memoryview(odb.store.get_range(pack_key(pack), start, end - start))
    for name, blob_id, _, offset, size in run:
        data = bytes(block[offset - start : offset - start + size])
        if hashlib.sha256(data).hexdigest() != blob_id:
            raise IntegrityError(f"blob {blob_id} in pack {pack} is corrupt")
        yield name, blob_id, data


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_metadata(table: pa.Table, path: Path) -> None:
    sink = pa.BufferOutputStream()
    if path.suffix == ".csv":
        import pyarrow.csv as csv

        csv.write_csv(table, sink)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, sink, compression="zstd")
    write_atomic(path, sink.getvalue().to_pybytes())
