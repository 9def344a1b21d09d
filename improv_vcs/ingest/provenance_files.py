"""Provenance records from files: CSV or Parquet tables keyed by image id,
and mask directories.

A table is keyed by ``image_id``; or by ``file_name`` (the image's file
name, extension dropped), as IFCB class files are; or by ``roi_number`` when
the file is named after an IFCB bin (``D20220522T003051_IFCB134_fea_v2.csv``),
as IFCB feature files are: the id is then ``<bin>_<roi_number:05d>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError
from ..core.hashing import read_file
from .tables import read_table

_BIN_PREFIX = re.compile(r"^(D\d{8}T\d{6}_IFCB\d+|IFCB\d+_\d{4}_\d{3}_\d{6})(?:_|\.|$)")


def read_records(path: Path, constants: Mapping[str, str] | None = None) -> pa.Table:
    """The records in a CSV/Parquet file, keyed by ``image_id``, with
    ``constants`` added as columns (refused if the file has them)."""
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise InvalidInputError(f"{path}: records must be a .csv or .parquet file")
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    table = _keyed(read_table(path), path)
    for name, value in (constants or {}).items():
        if name in table.column_names:
            raise InvalidInputError(f"--set {name}: {path.name} already has a {name!r} column")
        table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
    return table


def _keyed(table: pa.Table, path: Path) -> pa.Table:
    names = table.column_names
    if "image_id" in names:
        return table
    if "file_name" in names:
        stems = pc.replace_substring_regex(
            table.column("file_name").cast(pa.string()), r"\.[^./]*$", ""
        )
        return table.drop_columns(["file_name"]).add_column(0, "image_id", stems)
    found = _BIN_PREFIX.match(path.name)
    if "roi_number" in names and found:
        rois = table.column("roi_number")
        if not pa.types.is_integer(rois.type):
            raise InvalidInputError(f"{path.name}: roi_number must hold whole numbers")
        text = pc.utf8_lpad(rois.cast(pa.string()), 5, "0")
        ids = pc.binary_join_element_wise(found.group(1), text, "_")
        return table.drop_columns(["roi_number"]).add_column(0, "image_id", ids)
    raise InvalidInputError(
        f"{path.name}: records need an image_id column (or file_name, or roi_number in a file "
        "named after an IFCB bin)"
    )


def read_masks(directory: Path, image_ids: list[str]) -> dict[str, bytes]:
    """``image id → mask bytes`` from files named ``<image_id>.<ext>`` in ``directory``."""
    if not directory.is_dir():
        raise InvalidInputError(f"--masks {directory}: not a directory")
    by_stem: dict[str, Path] = {}
    for entry in directory.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            stem = entry.name.rsplit(".", 1)[0] if "." in entry.name else entry.name
            if stem in by_stem:
                raise InvalidInputError(f"--masks: two files for image {stem!r}")
            by_stem[stem] = entry
    missing = [i for i in image_ids if i not in by_stem]
    if missing:
        raise InvalidInputError(f"--masks: no mask file for image {missing[0]!r} in {directory}")
    return {i: read_file(str(by_stem[i])) for i in dict.fromkeys(image_ids)}
