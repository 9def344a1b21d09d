"""``imagefolder``: one folder per class under ``train/``, ``val/`` and
``test/`` (torchvision's ``ImageFolder`` layout), with ``classes.txt`` (the
class of label index i on line i) and ``metadata.csv``. An image's split
comes from a seeded hash of its id, so it never moves between exports."""

from __future__ import annotations

import csv
import hashlib
import io
import re

from ..core.errors import InvalidInputError
from ..query.export import extension
from .selection import LABEL
from .writer import ExportWriter

SPLITS = ("train", "val", "test")
_UNSAFE = re.compile(r"[^A-Za-z0-9._ +-]")


def split_of(image_id: str, seed: int, ratios: tuple[float, float, float]) -> str:
    """``train``, ``val`` or ``test`` for ``image_id``: where the SHA-256 of
    ``seed:image_id`` falls among the cumulative ``ratios``."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    at = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, ratio in zip(SPLITS, ratios, strict=True):
        edge += ratio
        if at < edge:
            return name
    return SPLITS[-1]


def check_ratios(ratios: tuple[float, float, float]) -> None:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-9:
        raise InvalidInputError("split ratios are three non-negative numbers summing to 1")


def folder_names(classes: tuple[str, ...]) -> dict[str, str]:
    """A safe folder name per class (refused when two classes would share one)."""
    names = {c: _UNSAFE.sub("_", c).strip(" .") or "_" for c in classes}
    seen: dict[str, str] = {}
    for name, folder in names.items():
        if folder.lower() in seen:
            raise InvalidInputError(
                f"classes {seen[folder.lower()]!r} and {name!r} would share the folder {folder!r}"
            )
        seen[folder.lower()] = name
    return names


def write(writer: ExportWriter, seed: int, ratios: tuple[float, float, float]) -> None:
    check_ratios(ratios)
    selection = writer.selection
    rows = selection.rows
    if LABEL not in rows.column_names:
        raise InvalidInputError("an imagefolder export needs labels (give a label kind and run)")
    folders = folder_names(selection.classes)
    index = selection.class_index
    odb = selection.snapshot.repository.odb
    records = []
    for row in rows.to_pylist():
        split = split_of(row["image_id"], seed, ratios)
        name = f"{split}/{folders[row[LABEL]]}/{row['image_id']}{extension(row['media_type'])}"
        data = odb.read_blob(row["pack"], row["offset"], row["size"], row["blob_id"])
        writer.write(name, data)
        writer.image(row["image_id"], row["blob_id"], file=name)
        records.append(
            {**_scalars(row), "split": split, "label_index": index[row[LABEL]], "file": name}
        )
    writer.write("classes.txt", "".join(f"{c}\n" for c in selection.classes).encode())
    writer.write("metadata.csv", to_csv(records))


def _scalars(row: dict) -> dict:
    return {
        k: v
        for k, v in row.items()
        if k not in ("pack", "offset") and not isinstance(v, list | dict)
    }


def to_csv(records: list[dict]) -> bytes:
    """Rows as CSV, columns in first-seen order (empty cells for None)."""
    columns: list[str] = []
    for record in records:
        columns += [k for k in record if k not in columns]
    out = io.StringIO()
    table = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    table.writeheader()
    for record in records:
        table.writerow({k: ("" if v is None else v) for k, v in record.items()})
    return out.getvalue().encode()
