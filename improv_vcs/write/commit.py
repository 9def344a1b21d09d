"""The commit object: what the stages wrote, on a base, with its indexes extended."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.ids import ObjectId
from ..core.model import Commit
from ..core.times import Clock
from ..snapshot import index, parts
from ..snapshot.reader import SnapshotReader
from ..storage.objects import ObjectDatabase
from .stage import Written


@dataclass(frozen=True)
class Header:
    """A commit but its content: who makes it, why, under which ingest task,
    the clock that dates it and the repository's format (which decides
    whether the snapshot index lists parts)."""

    author: str
    message: str
    task: str | None
    repository_format: int
    clock: Clock


def write_commit(
    odb: ObjectDatabase, base: SnapshotReader, written: Written, header: Header
) -> ObjectId | None:
    """Write the commit of ``written`` on ``base``; None when it would change nothing."""
    if written.empty:
        return None
    parent = base.commit
    consolidation = parts.consolidator(odb, header.repository_format)
    snapshot_index = index.append(
        odb, parent.index if parent else (), written.batches, consolidate=consolidation
    )
    commit = Commit(
        format=parts.commit_format(snapshot_index),
        parents=(base.commit_id,) if base.commit_id else (),
        height=parent.height + 1 if parent else 1,
        author=header.author,
        message=header.message,
        time=header.clock(),
        batches=written.batches,
        index=snapshot_index,
        provenance=written.segments,
        provenance_index=index.append(
            odb, parent.provenance_index if parent else (), written.segments, index.PROVENANCE
        ),
        sources=written.sources,
        sources_index=index.append(
            odb, parent.sources_index if parent else (), written.sources, index.SOURCES
        ),
        datasets=written.datasets or (parent.datasets if parent else None),
        registry=written.registry or (parent.registry if parent else None),
        task=header.task,
    )
    return odb.put_object(commit)
