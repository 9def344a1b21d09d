"""Class scores as a table: a key column (``pid`` or ``image_id``: the image
id, ``D20220522T003051_IFCB134_00002``) and one number column per class,
named after it, in score-vector order. IFCB class score CSVs (version 4) and
the per-class Parquet of inference services are laid out so; neither names
its classifier (``--model``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ...core.errors import InvalidInputError
from ..tables import read_table
from .scores import classification
from .submission import ReadOptions, Submission

KEYS = ("pid", "image_id")


def is_class_table(path: Path) -> bool:
    """Whether ``path``'s columns (by its schema) are a key and numbers only."""
    try:
        schema = _schema(path)
    except (pa.ArrowInvalid, OSError):
        return False  # the records reader says what is wrong
    key = _key(schema.names)
    others = [f for f in schema if f.name != key]
    return key is not None and bool(others) and all(_numeric(f.type) for f in others)


def read(path: Path, options: ReadOptions) -> Submission:
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    table = read_table(path)
    key = _key(table.column_names)
    if key is None:
        raise InvalidInputError(f"{path.name}: a class table needs a pid or image_id column")
    classes = [name for name in table.column_names if name != key]
    other = next((n for n in classes if not _numeric(table.schema.field(n).type)), None)
    if other is not None or not classes:
        raise InvalidInputError(
            f"{path.name}: a class table holds {key} and one number column per class"
            + (f"; column {other!r} does not hold numbers" if other else "")
        )
    scores = np.column_stack([table.column(name).cast(pa.float64()).to_numpy() for name in classes])
    ids = table.column(key).cast(pa.string()).combine_chunks()
    return classification(path, ids, scores, classes, options)


def _key(names: list[str]) -> str | None:
    return next((k for k in KEYS if k in names), None)


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _schema(path: Path) -> pa.Schema:
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as csv

        with csv.open_csv(path, read_options=csv.ReadOptions(block_size=1 << 16)) as reader:
            return reader.schema
    import pyarrow.parquet as pq

    return pq.read_schema(path)
