"""``parquet-images``: Parquet shards ``data/<split>-NNNNN-of-NNNNN.parquet``
holding each image's bytes, its label and metadata, with the features in the
schema metadata the way Hugging Face ``datasets`` writes them (``image`` an
``Image``, ``label`` a ``ClassLabel`` with the class names), so
``load_dataset("parquet", data_dir=…)`` reads it as it is."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from ..query.export import extension
from .imagefolder import SPLITS, check_ratios, split_of
from .selection import LABEL
from .writer import ExportWriter

SHARD_ROWS = 10_000
METADATA = ("image_id", "instrument", "timestamp", "sample_id", "lat", "lon", "depth", "blob_id")


def write(
    writer: ExportWriter, seed: int, ratios: tuple[float, float, float], shard_rows: int
) -> None:
    check_ratios(ratios)
    selection = writer.selection
    rows = selection.rows
    labelled = LABEL in rows.column_names
    odb = selection.snapshot.repository.odb
    by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for row in rows.to_pylist():
        by_split[split_of(row["image_id"], seed, ratios) if labelled else "train"].append(row)
    index = selection.class_index
    for split, members in by_split.items():
        shards = max(1, -(-len(members) // shard_rows)) if members else 0
        for k in range(shards):
            part = members[k * shard_rows : (k + 1) * shard_rows]
            name = f"data/{split}-{k:05d}-of-{shards:05d}.parquet"
            images = [odb.read_blob(r["pack"], r["offset"], r["size"], r["blob_id"]) for r in part]
            columns: dict[str, pa.Array] = {
                "image": pa.array(
                    [
                        {"bytes": data, "path": r["image_id"] + extension(r["media_type"])}
                        for data, r in zip(images, part, strict=True)
                    ],
                    pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
                )
            }
            if labelled:
                columns["label"] = pa.array([index[r[LABEL]] for r in part], pa.int64())
            for column in METADATA:
                columns[column] = pa.array(
                    [r[column] for r in part], rows.schema.field(column).type
                )
            table = pa.table(columns).replace_schema_metadata(
                {
                    "huggingface": json.dumps(
                        {"info": {"features": _features(selection.classes, labelled, rows.schema)}}
                    )
                }
            )
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd", row_group_size=1_000)
            writer.write(name, sink.getvalue().to_pybytes())
            for row_number, r in enumerate(part):
                writer.image(r["image_id"], r["blob_id"], file=name, row=row_number)


def _features(classes: tuple[str, ...], labelled: bool, schema: pa.Schema) -> dict:
    features: dict[str, dict] = {"image": {"_type": "Image"}}
    if labelled:
        features["label"] = {"names": list(classes), "_type": "ClassLabel"}
    for column in METADATA:
        kind = schema.field(column).type
        dtype = (
            "string"
            if pa.types.is_string(kind)
            else "float64"
            if pa.types.is_floating(kind)
            else "timestamp[us, tz=UTC]"
            if pa.types.is_timestamp(kind)
            else str(kind)
        )
        features[column] = {"dtype": dtype, "_type": "Value"}
    return features
