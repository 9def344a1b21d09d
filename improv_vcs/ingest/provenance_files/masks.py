"""Masks of segmentation records: files named ``<image_id>.<ext>``, in a
directory or in a zip archive (as IFCB ``_blob.zip`` files hold one PNG per
ROI). A zip given as the records file is the records too: one per mask."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

import pyarrow as pa

from ...core.errors import InvalidInputError
from ...core.hashing import read_file
from ..tables import format_bytes, limit, over_limit
from .submission import ReadOptions, Submission


def read(path: Path, options: ReadOptions) -> Submission:
    masks = _zipped(path)
    ids = sorted(masks)
    return Submission(pa.table({"image_id": pa.array(ids, pa.string())}), masks)


def read_masks(path: Path, image_ids: list[str]) -> dict[str, bytes]:
    """``image id → mask bytes`` for ``image_ids``, from the directory or zip ``path``."""
    if path.is_dir():
        found = _named(path)
        masks = {i: read_file(str(found[i])) for i in dict.fromkeys(image_ids) if i in found}
    elif path.is_file() and path.suffix.lower() == ".zip":
        masks = _zipped(path)
    else:
        raise InvalidInputError(f"--masks {path}: not a directory or a .zip file")
    missing = [i for i in image_ids if i not in masks]
    if missing:
        raise InvalidInputError(f"--masks: no mask file for image {missing[0]!r} in {path}")
    return {i: masks[i] for i in dict.fromkeys(image_ids)}


def _named(directory: Path) -> dict[str, Path]:
    """The files of ``directory`` by image id."""
    by_stem: dict[str, Path] = {}
    for entry in directory.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            stem = _stem(entry.name)
            if stem in by_stem:
                raise InvalidInputError(f"--masks: two files for image {stem!r}")
            by_stem[stem] = entry
    return by_stem


def _zipped(path: Path) -> dict[str, bytes]:
    """Every mask in the zip ``path`` by image id (directories inside ignored)."""
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    largest = limit("IMPROV_MAX_IMAGE_BYTES")
    masks: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                name = PurePosixPath(member.filename).name
                if member.is_dir() or name.startswith(".") or "__MACOSX" in member.filename:
                    continue
                stem = _stem(name)
                if stem in masks:
                    raise InvalidInputError(f"{path.name}: two masks for image {stem!r}")
                if member.file_size > largest:
                    raise InvalidInputError(
                        f"{path.name}: {member.filename} is "
                        + over_limit(
                            "IMPROV_MAX_IMAGE_BYTES",
                            f"a mask of {format_bytes(member.file_size)}",
                            member.file_size,
                        )
                    )
                masks[stem] = archive.read(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, NotImplementedError) as exc:
        raise InvalidInputError(f"cannot read {path.name} as a zip file: {exc}") from None
    if not masks:
        raise InvalidInputError(f"{path.name}: no mask files in it")
    return masks


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name
