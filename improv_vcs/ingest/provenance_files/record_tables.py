"""Records as a CSV or Parquet table, one row per record, in the kind's columns.

A table is keyed by ``image_id``; or by ``file_name`` (the image's file
name, extension dropped), as IFCB class files are; or by ``roi_number`` when
the file is named after an IFCB bin (``D20220522T003051_IFCB134_fea_v2.csv``),
as IFCB feature files are: the id is then ``<bin>_<roi_number:05d>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ...core.errors import InvalidInputError
from ..tables import read_table
from .submission import ReadOptions, Submission, bin_of, roi_image_ids, with_constants


def read_records(path: Path, constants: Mapping[str, str] | None = None) -> pa.Table:
    """The records in a CSV/Parquet file, keyed by ``image_id``, with
    ``constants`` added as columns (refused if the file has them)."""
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise InvalidInputError(f"{path}: records must be a .csv or .parquet file")
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    return with_constants(_keyed(read_table(path), path), constants or {}, path)


def read(path: Path, options: ReadOptions) -> Submission:
    return Submission(read_records(path))


def _keyed(table: pa.Table, path: Path) -> pa.Table:
    names = table.column_names
    if "image_id" in names:
        return table
    if "file_name" in names:
        stems = pc.replace_substring_regex(
            table.column("file_name").cast(pa.string()), r"\.[^./]*$", ""
        )
        return table.drop_columns(["file_name"]).add_column(0, "image_id", stems)
    if "roi_number" in names and bin_of(path):
        rois = table.column("roi_number").combine_chunks()
        if not pa.types.is_integer(rois.type):
            raise InvalidInputError(f"{path.name}: roi_number must hold whole numbers")
        ids = roi_image_ids(path, rois)
        return table.drop_columns(["roi_number"]).add_column(0, "image_id", ids)
    raise InvalidInputError(
        f"{path.name}: records need an image_id column (or file_name, or roi_number in a file "
        "named after an IFCB bin)"
    )
