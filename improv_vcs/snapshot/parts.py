"""Consolidated manifests ("parts"): a long history scanned in a few reads.

A site that commits every bin has one small manifest per batch, and a
full-table scan would open thousands of them. In a format-2 repository each
index segment of at least :data:`MIN_ENTRIES` batches also lists *parts*:
Parquet objects holding the rows of consecutive batches of the segment,
exactly as their manifests hold them, concatenated in order (at most
:data:`MAX_ROWS` rows each). A reader that needs every batch a part covers
reads the part instead of its manifests; the manifests stay the record
(batches, citations and old commits name them).

Parts are built when the segment is (by the writer that merges segments,
see :mod:`improv_vcs.snapshot.index`), from the parts of the segments merged and the
manifests of the rest: existing parts are reused where the size bound
keeps them apart, so the work per commit stays bounded on average.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from ..core.model import IndexSegment, Part
from ..core.parquet import from_parquet, to_parquet
from ..storage.objects import ObjectDatabase
from .index import Consolidate

KIND = "manifest-part"
MIN_ENTRIES = 16
"""Segments of fewer batches have no parts (their manifests are read)."""
MAX_ROWS = 2**19
"""A part holds at most this many rows (unless one batch alone is larger)."""


def decode(data: bytes, columns: list[str] | None = None) -> pa.Table:
    return from_parquet(data, KIND, columns)


def read(odb: ObjectDatabase, part_id: str, columns: list[str] | None = None) -> pa.Table:
    """A part's rows (only ``columns`` it has, when given), verified and cached."""
    key = f"part:{part_id}:{','.join(columns) if columns is not None else '*'}"
    return odb.cached(key, lambda: decode(odb.get_bytes(part_id), columns))


def consolidate(
    odb: ObjectDatabase, merged: Sequence[IndexSegment], segment: pa.Table
) -> tuple[Part, ...]:
    """The parts of a new segment whose rows (batches) are ``segment``: the
    concatenation of the ``merged`` segments' batches and then new ones."""
    if segment.num_rows < MIN_ENTRIES:
        return ()
    manifests = segment.column("manifest").to_pylist()
    rows = segment.column("rows").to_pylist()
    pieces: list[Part | int] = []  # an existing part, or the position of a batch without one
    position = 0
    for old in merged:
        covered = sum(p.entries for p in old.parts)
        pieces += old.parts
        pieces += range(position + covered, position + old.entries)
        position += old.entries
    pieces += range(position, len(manifests))
    groups: list[list[Part | int]] = [[]]
    total = 0
    for piece in reversed(pieces):  # group from the newest, each up to MAX_ROWS rows
        size = piece.rows if isinstance(piece, Part) else rows[piece]
        if groups[-1] and total + size > MAX_ROWS:
            groups.append([])
            total = 0
        groups[-1].insert(0, piece)
        total += size
    return tuple(_build(odb, group, manifests, rows) for group in reversed(groups))


def _build(
    odb: ObjectDatabase, group: list[Part | int], manifests: list[str], rows: list[int]
) -> Part:
    """One part for ``group`` (an existing part alone is kept as it is)."""
    if len(group) == 1 and isinstance(group[0], Part):
        return group[0]
    from . import manifest

    tables = [
        read(odb, p.id) if isinstance(p, Part) else manifest.decode(odb.get_bytes(manifests[p]))
        for p in group
    ]
    table = pa.concat_tables(tables, promote_options="permissive")
    entries = sum(p.entries if isinstance(p, Part) else 1 for p in group)
    oid = odb.put_bytes(to_parquet(table, KIND))
    return Part(id=oid, entries=entries, rows=table.num_rows)


def covering(
    segments: Sequence[IndexSegment], manifests: Sequence[str]
) -> dict[str, tuple[Part, list[str]]]:
    """Each part of a snapshot by the first manifest it covers, with the
    manifests it covers in order (``manifests``: the snapshot's batches' manifests)."""
    found: dict[str, tuple[Part, list[str]]] = {}
    offset = 0
    for segment in segments:
        position = offset
        for part in segment.parts:
            covered = list(manifests[position : position + part.entries])
            found.setdefault(covered[0], (part, covered))
            position += part.entries
        offset += segment.entries
    return found


def consolidator(odb: ObjectDatabase, repository_format: int) -> Consolidate | None:
    """What builds parts for a repository of ``repository_format`` (only 2 and later)."""
    if repository_format < 2:
        return None
    return lambda merged, segment: consolidate(odb, merged, segment)


def commit_format(index: Sequence[IndexSegment]) -> int:
    """The format a commit with this snapshot index needs: 2 when it lists parts."""
    return 2 if any(s.parts for s in index) else 1
