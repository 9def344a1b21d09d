"""Rows given as a table or as dicts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from ..core.errors import InvalidInputError


def as_table(metadata: pa.Table | Iterable[dict[str, Any]]) -> pa.Table:
    if isinstance(metadata, pa.Table):
        return metadata
    try:
        rows = list(metadata)
        if not rows:
            return pa.table({})
        return pa.Table.from_struct_array(pa.array(rows))  # keys of every row, not just the first
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise InvalidInputError(f"metadata rows are not a table: {exc}") from None
