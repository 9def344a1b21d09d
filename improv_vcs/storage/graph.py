"""Walks over the commit graph: ancestry, merge bases, and the commits one
side lacks. Heights (1 + the largest parent height) bound every walk."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator

from ..core.ids import ObjectId
from ..core.model import Commit
from .objects import ObjectDatabase


def is_ancestor(odb: ObjectDatabase, ancestor: str, descendant: str) -> bool:
    """Whether ``ancestor`` is reachable from ``descendant`` (or equal to it)."""
    if ancestor == descendant:
        return True
    floor = odb.get_commit(ancestor).height
    seen = {descendant}
    queue = [descendant]
    while queue:
        oid = queue.pop()
        commit = odb.get_commit(oid)
        for parent in commit.parents:
            if parent == ancestor:
                return True
            if parent not in seen and odb.get_commit(parent).height > floor:
                seen.add(parent)
                queue.append(parent)
    return False


def merge_base(odb: ObjectDatabase, a: str, b: str) -> ObjectId | None:
    """The newest common ancestor of ``a`` and ``b`` (by height), or None."""
    ours = set(_by_height(odb, [a]))
    for oid in _by_height(odb, [b]):
        if oid in ours:
            return ObjectId(oid)
    return None


def find_above(
    odb: ObjectDatabase, tip: str, floor: int, wanted: Callable[[Commit], bool]
) -> ObjectId | None:
    """The highest commit reachable from ``tip``, above height ``floor``,
    for which ``wanted`` is true."""
    for oid in _by_height(odb, [tip], stop=lambda o: odb.get_commit(o).height <= floor + 1):
        commit = odb.get_commit(oid)
        if commit.height > floor and wanted(commit):
            return ObjectId(oid)
    return None


def history(odb: ObjectDatabase, tip: str) -> Iterator[tuple[ObjectId, Commit]]:
    """Every commit reachable from ``tip`` (itself included), highest first."""
    for oid in _by_height(odb, [tip]):
        yield ObjectId(oid), odb.get_commit(oid)


def _by_height(
    odb: ObjectDatabase, starts: list[str], stop: Callable[[str], bool] | None = None
) -> Iterable[str]:
    """Commits reachable from ``starts``, highest first; commits for which
    ``stop`` is true are yielded but not walked past."""
    seen = set(starts)
    queue = [(-odb.get_commit(s).height, s) for s in starts]
    heapq.heapify(queue)
    while queue:
        _, oid = heapq.heappop(queue)
        yield oid
        if stop is not None and stop(oid):
            continue
        for parent in odb.get_commit(oid).parents:
            if parent not in seen:
                seen.add(parent)
                heapq.heappush(queue, (-odb.get_commit(parent).height, parent))


def missing_commits(
    odb: ObjectDatabase, tips: Iterable[str], present: Callable[[str], bool]
) -> list[tuple[ObjectId, Commit]]:
    """Commits reachable from ``tips`` that the other side lacks, parents
    before children (ascending height). The walk stops at commits ``present``
    says the other side has: a side that has a commit has all its ancestors."""
    known: dict[str, bool] = {}

    def has(oid: str) -> bool:
        if oid not in known:
            known[oid] = present(oid)
        return known[oid]

    found = []
    for oid in _by_height(odb, sorted(set(tips)), stop=has):
        if not has(oid):
            found.append((ObjectId(oid), odb.get_commit(oid)))
    found.sort(key=lambda item: (item[1].height, item[0]))
    return found
