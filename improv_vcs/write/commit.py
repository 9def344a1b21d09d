"""The commit object: what the stages wrote, on its parents, with its indexes extended."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core.ids import ObjectId
from ..core.model import Commit
from ..core.times import Clock
from ..snapshot import index, parts, tasks
from ..storage.objects import ObjectDatabase
from .stage import Written


@dataclass(frozen=True)
class Header:
    """A commit but its content: who makes it, why, under which ingest task,
    the clock that dates it and the repository's format (which decides
    whether the snapshot index lists parts and the commit a tasks index)."""

    author: str
    message: str
    task: str | None
    repository_format: int
    clock: Clock


def write_commit(
    odb: ObjectDatabase,
    parents: Sequence[tuple[ObjectId, Commit]],
    written: Written,
    header: Header,
) -> ObjectId:
    """Write the commit of ``written`` on ``parents`` (none for a root; the
    first parent's indexes are extended) and return its id."""
    first = parents[0][1] if parents else None
    consolidation = parts.consolidator(odb, header.repository_format)
    snapshot_index = index.append(
        odb, first.index if first else (), written.batches, consolidate=consolidation
    )
    tasks_index = tasks.index_after(odb, list(parents)) if header.repository_format >= 3 else None
    commit = Commit(
        format=3 if tasks_index is not None else parts.commit_format(snapshot_index),
        parents=tuple(oid for oid, _ in parents),
        height=max((c.height for _, c in parents), default=0) + 1,
        author=header.author,
        message=header.message,
        time=header.clock(),
        batches=written.batches,
        index=snapshot_index,
        provenance=written.segments,
        provenance_index=index.append(
            odb, first.provenance_index if first else (), written.segments, index.PROVENANCE
        ),
        sources=written.sources,
        sources_index=index.append(
            odb, first.sources_index if first else (), written.sources, index.SOURCES
        ),
        datasets=written.datasets or (first.datasets if first else None),
        registry=written.registry or (first.registry if first else None),
        task=header.task,
        tasks_index=tasks_index,
    )
    return odb.put_object(commit)
