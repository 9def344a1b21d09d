"""Which commits of a history record an ingest task, without walking it.

In a format-3 repository every commit carries a *tasks index*
(:data:`~improv_vcs.snapshot.index.TASKS`): one row per commit of its proper
ancestors that records a task (task, commit id, height, author, time,
images, instruments). A commit cannot list itself — its id is the hash of
its bytes — so the index lags by one: a commit adds its parents' own tasks
(and, for a merge, the other side's rows it lacks). Reading a history's
tasks is the commit's own task plus its index, O(log H) segment reads.

Commits written before format 3 have no index; their history is walked,
and the first format-3 commit on top of one indexes that whole history once.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ..core.ids import ObjectId
from ..core.model import Commit, IndexSegment
from ..storage import graph
from ..storage.objects import ObjectDatabase
from . import index


def history(odb: ObjectDatabase, oid: str, commit: Commit) -> pa.Table:
    """Every commit that records a task in the history of ``oid`` (itself
    included), as rows of the tasks index, highest first."""
    if commit.tasks_index is None:
        rows = [_row(o, c) for o, c in graph.history(odb, oid) if c.task is not None]
        return pa.Table.from_pylist(rows, schema=index.TASKS_SCHEMA)
    listed = index.load(odb, commit.tasks_index, index.TASKS)
    table = pa.concat_tables([_own(oid, commit), listed])
    order = pc.sort_indices(table, [("height", "descending"), ("commit", "ascending")])
    return table.take(order)


def find(odb: ObjectDatabase, oid: str, commit: Commit, task: str) -> ObjectId | None:
    """The highest commit of ``oid``'s history that records ``task``, if any."""
    if commit.task == task:
        return ObjectId(oid)
    found = history(odb, oid, commit).filter(pc.equal(pc.field("task"), task))
    return ObjectId(found.column("commit")[0].as_py()) if found.num_rows else None


def index_after(
    odb: ObjectDatabase, parents: list[tuple[ObjectId, Commit]]
) -> tuple[IndexSegment, ...]:
    """The tasks index of a new commit on ``parents`` (first parent first)."""
    if not parents:
        return ()
    first_id, first = parents[0]
    if first.tasks_index is None:
        base, new = (), history(odb, first_id, first)
    else:
        base, new = first.tasks_index, _own(first_id, first)
    for other_id, other in parents[1:]:
        known = history(odb, first_id, first).column("commit")
        theirs = history(odb, other_id, other)
        theirs = theirs.filter(pc.invert(pc.is_in(theirs.column("commit"), value_set=known)))
        new = pa.concat_tables([new, theirs])
    order = pc.sort_indices(new, [("height", "ascending"), ("commit", "ascending")])
    return index.append(odb, base, new.take(order), index.TASKS)


def _own(oid: str, commit: Commit) -> pa.Table:
    """The row of ``commit`` itself when it records a task (else none)."""
    rows = [_row(oid, commit)] if commit.task is not None else []
    return pa.Table.from_pylist(rows, schema=index.TASKS_SCHEMA)


def _row(oid: str, commit: Commit) -> dict:
    return {
        "task": commit.task,
        "commit": oid,
        "height": commit.height,
        "author": commit.author,
        "time_min": commit.time,
        "time_max": commit.time,
        "rows": sum(b.rows for b in commit.batches),
        "instruments": sorted({b.instrument for b in commit.batches}),
    }
