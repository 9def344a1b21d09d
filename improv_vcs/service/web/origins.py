"""Which commit added what an image page shows: the image's batch and the
segment of each of its provenance records, found by walking the history
back from the page's commit until all are placed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc

from ...provenance import view
from .common import Pinned

MAX_WALK = 20_000
"""Commits walked at most; anything older is reported as not found."""


@dataclass(frozen=True)
class Origin:
    commit_id: str
    message: str
    author: str | None
    time: Any


def origins(pin: Pinned, image: str, records: list[Any]) -> dict[str, Origin | None]:
    """``"image"`` and each record id → the commit that added it (None when
    beyond :data:`MAX_WALK` commits)."""
    reader = pin.snapshot.reader
    wanted_batches = set(reader.batches_covering_ids(image, image))
    segments = view.segments(reader, id_range=(image, image))
    segment_of: dict[str, str] = {}
    for record in records:
        for row in segments.filter(pc.equal(segments.column("kind"), record.kind)).to_pylist():
            if record.run_id in row["runs"]:
                segment_of[record.record_id] = row["id"]
    wanted_segments = set(segment_of.values())
    found: dict[str, Origin] = {}
    for oid, commit in pin.repo.log(pin.commit_id, limit=MAX_WALK):
        origin = Origin(oid, commit.message, commit.author, commit.time)
        for batch in commit.batches:
            if batch.manifest in wanted_batches:
                found[batch.manifest] = origin
        for segment in commit.provenance:
            if segment.id in wanted_segments:
                found[segment.id] = origin
    out: dict[str, Origin | None] = {
        "image": next((found[m] for m in wanted_batches if m in found), None)
    }
    for record_id, segment in segment_of.items():
        out[record_id] = found.get(segment)
    return out
