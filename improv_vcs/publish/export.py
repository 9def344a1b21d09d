"""``improv export --as FORMAT``: a selection written as a training set or a
publication, with its ``MANIFEST.json`` (design record 016).

Folder formats (``imagefolder``, ``parquet-images``, ``ecotaxa``) are
written in place and resume where an interrupted run stopped. Archive
formats (``dwca``, ``datapackage``) are assembled in ``DEST.partial/`` (which
resumes the same way) and become the zip ``DEST`` in one rename.
"""

from __future__ import annotations

import importlib
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import InvalidInputError
from . import imagefolder, parquet_images
from .selection import Selection
from .writer import ExportWriter


@dataclass(frozen=True)
class ExportOptions:
    """What the formats take beyond the selection."""

    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """train/val/test shares (``imagefolder``, ``parquet-images``)."""
    seed: int = 0
    """Seeds the split (an image's split depends on the seed and its id only)."""
    shard_rows: int = parquet_images.SHARD_ROWS
    part_bytes: int = 500 * 2**20
    """Largest EcoTaxa zip (images and table)."""
    names: Path | None = None
    """Darwin Core: a CSV mapping each class to ``scientificName`` (and ``scientificNameID``)."""
    content: str = "images"
    """Data package: ``images``, ``raw`` (original files) or ``metadata``."""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Exported:
    path: Path
    format: str
    images: int
    files: int
    written: int
    kept: int
    citation: str


Writer = Callable[[ExportWriter, ExportOptions], None]
ARCHIVES = ("dwca", "datapackage")


def _writer(fmt: str) -> Writer:
    if fmt == "imagefolder":
        return lambda w, o: imagefolder.write(w, o.seed, o.ratios)
    if fmt == "parquet-images":
        return lambda w, o: parquet_images.write(w, o.seed, o.ratios, o.shard_rows)
    return importlib.import_module(f".{fmt}", __package__).write  # ecotaxa, dwca, datapackage


FORMATS = ("imagefolder", "parquet-images", "ecotaxa", "dwca", "datapackage")


def export(
    selection: Selection,
    dest: str | os.PathLike[str],
    fmt: str,
    options: ExportOptions | None = None,
) -> Exported:
    """Write ``selection`` to ``dest`` as ``fmt``."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    options = options or ExportOptions()
    dest = Path(dest)
    archive = fmt in ARCHIVES
    if archive and dest.is_dir():
        raise InvalidInputError(f"{dest} is a folder; a {fmt} export is a zip file")
    root = dest.with_name(dest.name + ".partial") if archive else dest
    writer = ExportWriter(root, selection, fmt)
    try:
        _writer(fmt)(writer, options)
    except Exception:
        if archive and not any(p.is_file() for p in root.rglob("*")):
            shutil.rmtree(root)  # refused before anything was written: leave nothing behind
        raise
    writer.finish()
    if archive:
        _zip(root, dest)
        shutil.rmtree(root)
    return Exported(
        dest,
        fmt,
        len(writer.images),
        len(writer.files) + 1,
        writer.written,
        writer.kept,
        selection.citation.identifier,
    )


def _zip(folder: Path, dest: Path) -> None:
    """``folder``'s files as the zip ``dest``, replaced in one rename."""
    tmp = dest.with_name(f".tmp-{uuid.uuid4().hex}.zip")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                name = path.relative_to(folder).as_posix()
                stored = path.suffix.lower() in (
                    ".png",
                    ".jpg",
                    ".jpeg",
                    ".tif",
                    ".zip",
                    ".parquet",
                )
                out.write(path, name, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
