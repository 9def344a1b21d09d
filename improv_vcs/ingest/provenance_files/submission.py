"""What a provenance file holds once read: records, masks and class lists,
and what the reader was told (options)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...core.errors import InvalidInputError

_BIN_PREFIX = re.compile(r"^(D\d{8}T\d{6}_IFCB\d+|IFCB\d+_\d{4}_\d{3}_\d{6})(?:_|\.|$)")

Taxonomies = dict[tuple[str, str], tuple[str, ...]]
"""``(model, model_version)`` → the ordered class list of its score vectors."""


@dataclass(frozen=True)
class ReadOptions:
    """What the command line adds to what a file says."""

    model: str | None = None
    model_version: str | None = None
    class_list: Path | None = None
    annotator: str | None = None


@dataclass(frozen=True)
class Submission:
    """Records keyed by ``image_id``, the masks of a mask archive, and the
    class lists their score vectors need."""

    table: pa.Table
    masks: dict[str, bytes] | None = None
    taxonomies: Taxonomies = field(default_factory=dict)


def bin_of(path: Path) -> str | None:
    """The IFCB bin a file is named after (``D20220522T003051_IFCB134_class.h5``), if any."""
    found = _BIN_PREFIX.match(path.name)
    return found.group(1) if found else None


def roi_image_ids(path: Path, rois: pa.Array | np.ndarray) -> pa.Array:
    """``<bin>_<roi:05d>`` for each ROI number (whole numbers, stored as
    integers or floats), the bin named by ``path``."""
    bin_id = bin_of(path)
    if bin_id is None:
        raise InvalidInputError(
            f"{path.name}: ROI numbers need the file to be named after its IFCB bin "
            "(D20220522T003051_IFCB134…)"
        )
    numbers = rois.to_numpy(zero_copy_only=False) if isinstance(rois, pa.Array) else rois
    numbers = np.asarray(numbers).ravel()
    if numbers.dtype.kind not in "iuf" or (
        numbers.dtype.kind == "f" and not np.all(np.mod(numbers, 1) == 0)
    ):
        raise InvalidInputError(f"{path.name}: ROI numbers must be whole numbers")
    if numbers.size and numbers.min() < 1:
        raise InvalidInputError(f"{path.name}: ROI numbers start at 1")
    text = pc.utf8_lpad(pa.array(numbers.astype(np.int64)).cast(pa.string()), 5, "0")
    return pc.binary_join_element_wise(bin_id, text, "_")


def with_constants(table: pa.Table, constants: Mapping[str, str], path: Path) -> pa.Table:
    """``table`` with a column per constant, refused if it has that column already."""
    for name, value in constants.items():
        if name in table.column_names:
            raise InvalidInputError(
                f"{path.name} already has a {name!r} column; do not give it on the command line"
            )
        table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
    return table
