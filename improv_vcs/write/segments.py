"""Provenance segments written elsewhere (by cluster workers,
:mod:`improv_vcs.cluster`), committed as they are.

Each worker stages its records as content-addressed segments (normalized,
with record ids, deduplicated against the run's base snapshot), so no one
process holds every record; the commit only names them. On a concurrent
commit, a segment is rewritten without the records the other writer
committed (same record ids): a run retried or resumed beside another never
duplicates a record.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import NotFoundError
from ..core.model import ProvenanceSegment
from ..provenance import catalog, records, view
from ..snapshot.reader import SnapshotReader
from ..storage.objects import ObjectDatabase
from .stage import Stage, Written


class WrittenSegments(Stage):
    """The segments given so far, in order."""

    def __init__(self, base: SnapshotReader):
        super().__init__(base)
        self._segments: list[ProvenanceSegment] = []

    @property
    def empty(self) -> bool:
        return not self._segments

    def add(
        self, segments: Sequence[ProvenanceSegment], since: SnapshotReader | None = None
    ) -> int:
        """Take ``segments`` (each must be stored), deduplicated against
        ``since`` when given: records the base gained after it are dropped.
        Returns how many records are left."""
        odb = self.base.odb
        for segment in segments:
            catalog.get_kind(segment.kind)
            if not odb.has(segment.id):
                raise NotFoundError(f"provenance segment {segment.id} is not stored")
        taken = list(segments)
        if since is not None and since.commit_id != self.base.commit_id:
            taken = _without_gained(taken, since, self.base)
        self._segments += taken
        return sum(s.rows for s in taken)

    def write(self, odb: ObjectDatabase) -> Written:
        return Written(segments=tuple(self._segments))

    def rebase(self, onto: SnapshotReader) -> bool:
        self._segments = _without_gained(self._segments, self.base, onto)
        self.base = onto
        return not self.empty


def _without_gained(
    segments: list[ProvenanceSegment], before: SnapshotReader, after: SnapshotReader
) -> list[ProvenanceSegment]:
    """``segments`` without the records ``after`` holds and ``before`` did
    not (same record ids): what another writer committed meanwhile. Only
    new segments of the same kind and run whose image ranges overlap are
    read (a record id names its run)."""
    old = set(before.provenance_segments.column("id").to_pylist())
    kept: list[ProvenanceSegment] = []
    for segment in segments:
        span = (segment.image_id_min, segment.image_id_max)
        gained = sorted(
            {
                found
                for run in segment.runs
                for found in view.segments(after, segment.kind, run, span).column("id").to_pylist()
                if found not in old
            }
        )
        if not gained:
            kept.append(segment)
            continue
        theirs = view.read(after, gained, ["image_id", "record_id"], span).column("record_id")
        kept += _without(after.odb, segment, theirs)
    return kept


def _without(
    odb: ObjectDatabase, segment: ProvenanceSegment, record_ids: pa.ChunkedArray
) -> list[ProvenanceSegment]:
    """``segment``, or one rewritten without the records ``record_ids`` names
    (none when it had nothing else)."""
    if not len(record_ids):
        return [segment]
    table = records.decode(odb.get_bytes(segment.id))
    clash = pc.is_in(table.column("record_id"), value_set=record_ids.combine_chunks())
    if not pc.any(clash).as_py():
        return [segment]
    table = table.filter(pc.invert(clash))
    if not table.num_rows:
        return []
    kind = catalog.get_kind(segment.kind)
    return [records.summarize(kind, table, odb.put_bytes(records.encode(table)))]
