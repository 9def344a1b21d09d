"""A snapshot selection as Dask collections: its manifest rows as a Dask
DataFrame partitioned by batch, its images as a Dask Bag. Every partition
is read by the worker that computes it, straight from the repository (local,
S3 or HTTP); the client only plans."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..core.errors import InvalidInputError
from ..core.media import Decode
from ..query.filters import Query
from ..repository.snapshot import Snapshot
from .partitions import Part, parts


def to_dask(snapshot: Snapshot, query: Query | None = None, **filters: Any) -> Any:
    """The rows ``query`` selects on ``snapshot`` as a Dask DataFrame, one
    partition per batch it reads (pruned as the query prunes); columns keep
    their Arrow types (``pd.ArrowDtype``)."""
    import dask.dataframe as dd
    import pandas as pd

    chosen = _chosen(query, filters)
    pieces = parts(snapshot, chosen)
    schema = _schema(snapshot, chosen, pieces)
    meta = schema.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
    if not pieces:
        return dd.from_pandas(meta, npartitions=1)
    return dd.from_map(_frame, pieces, schema=schema, meta=meta, enforce_metadata=False)


def images_to_dask(
    snapshot: Snapshot,
    query: Query | None = None,
    decode: str | Decode = "bytes",
    rows_per_part: int | None = None,
    **filters: Any,
) -> Any:
    """The images ``query`` selects as a Dask Bag of ``(image id, image)``
    (bytes, a NumPy array for ``decode="array"``, or what ``decode``
    returns), one partition per batch or per ``rows_per_part`` rows; each
    worker reads its partition's images from the packs itself."""
    import dask.bag as db
    from dask import delayed

    pieces = parts(snapshot, _chosen(query, filters), rows_per_part)
    if not pieces:
        return db.from_sequence([], npartitions=1)
    read = delayed(_images, pure=True)
    return db.from_delayed([read(p, decode) for p in pieces])


def _chosen(query: Query | None, filters: dict[str, Any]) -> Query:
    if query is not None and filters:
        raise InvalidInputError("give a Query or filters, not both")
    chosen = query if query is not None else Query(**filters)
    if chosen.limit is not None:
        raise InvalidInputError("a limit cannot be split over partitions; take .head(n) instead")
    return chosen


def _schema(snapshot: Snapshot, query: Query, pieces: list[Part]) -> pa.Schema:
    """Every column any partition yields, typed as the snapshot holds it."""
    if not pieces:
        return snapshot.select(query, manifests=[]).table.schema
    schema = pieces[0].rows().schema
    if query.columns is None:
        batches = snapshot.partitions(query)
        for names, manifest in zip(
            batches.column("extra_columns").to_pylist(),
            batches.column("manifest").to_pylist(),
            strict=True,
        ):
            missing = [n for n in names if n not in schema.names]
            if missing:
                held = snapshot.reader.manifest(manifest, missing).schema
                schema = pa.unify_schemas([schema, held])
    return schema


def _frame(part: Part, schema: pa.Schema) -> Any:
    import pandas as pd

    table = part.rows()
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.table(columns, schema=schema).to_pandas(types_mapper=pd.ArrowDtype)


def _images(part: Part, decode: str | Decode) -> list:
    return part.images(decode)
