"""Embeddings as Parquet: a key column (``image_id`` or ``pid``), one list
column of numbers per image (``fixed_size_list<float16>``, float32, …; any
name), and optionally ``model`` and ``model_version`` (else ``--model``)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ...core.errors import InvalidInputError
from ..tables import read_table
from .submission import ReadOptions, Submission

KEYS = ("image_id", "pid")


def read(path: Path, options: ReadOptions) -> Submission:
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise InvalidInputError(f"{path.name}: embeddings must be a Parquet file")
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    table = read_table(path)
    key = next((k for k in KEYS if k in table.column_names), None)
    if key is None:
        raise InvalidInputError(f"{path.name}: embeddings need an image_id or pid column")
    lists = [f.name for f in table.schema if _is_list(f.type)]
    if len(lists) != 1:
        found = f"{len(lists)} ({', '.join(lists)})" if lists else "none"
        raise InvalidInputError(f"{path.name}: embeddings need one list column, found {found}")
    names = {key: "image_id", lists[0]: "vector"}
    table = table.rename_columns([names.get(n, n) for n in table.column_names])
    for column, given in (("model", options.model), ("model_version", options.model_version)):
        if given is None:
            continue
        if column in table.column_names:
            raise InvalidInputError(
                f"{path.name} has a {column} column; do not give --{column.replace('_', '-')}"
            )
        table = table.append_column(column, pa.array([given] * table.num_rows, pa.string()))
    if "model" not in table.column_names:
        raise InvalidInputError(f"{path.name} names no model; give --model NAME")
    return Submission(table)


def _is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )
