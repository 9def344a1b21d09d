"""Garbage collection: remove objects no ref can reach, once they are old.

A transaction writes packs and objects first and moves its branch last, so
its objects are unreachable while it runs. The grace period (default 24 h)
protects them: only objects unreachable from every branch, tag and
remote-tracking ref *and* written before ``now - grace`` are removed, along
with unfinished writes (temporary files) that old. A pack loses its index
first, which unpublishes it, then its data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .model import Tag
from .objects import object_key
from .packs import index_key, pack_key
from .sync.transfer import commit_objects

if TYPE_CHECKING:
    from .repository import Repository

DEFAULT_GRACE = 24 * 3600.0


@dataclass
class GcReport:
    reachable_objects: int = 0
    reachable_packs: int = 0
    removed: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    kept_young: int = 0
    temporaries: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "removed_count": len(self.removed)}


def reachable(repo: Repository) -> tuple[set[str], set[str]]:
    """Loose object ids and pack ids reachable from every ref."""
    odb = repo.odb
    loose: set[str] = set()
    tips = list(repo.refs.branches().values())
    for name in repo.remotes.all():
        tips += list(repo.remotes.tracking(name).values())
    for pointer in repo.refs.tags().values():
        obj = odb.get_object(pointer)
        if isinstance(obj, Tag):
            loose.add(pointer)
            tips.append(obj.target)
        else:
            tips.append(pointer)
    packs: set[str] = set()
    stack = list(tips)
    while stack:
        oid = stack.pop()
        if oid in loose:
            continue
        loose.add(oid)
        commit = odb.get_commit(oid)
        objects, blobs = commit_objects(commit, odb=repo.odb)
        loose.update(objects)
        packs.update(blobs)
        stack.extend(p for p in commit.parents if p not in loose)
    return loose, packs


def gc(repo: Repository, grace: float = DEFAULT_GRACE, dry_run: bool = False) -> GcReport:
    """Remove unreachable objects and packs older than ``grace`` seconds."""
    cutoff = time.time() - grace
    loose, packs = reachable(repo)
    store = repo.store
    report = GcReport(len(loose), len(packs), dry_run=dry_run)
    keep = {object_key(o) for o in loose} | {index_key(p) for p in packs} | {pack_key(p) for p in packs}
    candidates = [k for k in store.list("objects/") if k not in keep]
    pack_keys = [k for k in store.list("packs/") if k not in keep]
    # indexes before data: a pack without its index is unpublished, never half-visible
    candidates += sorted(pack_keys, key=lambda k: not k.endswith(".idx"))
    for key in candidates:
        if store.modified(key) >= cutoff:
            report.kept_young += 1
            continue
        report.removed_bytes += store.size(key)
        report.removed.append(key)
        if not dry_run:
            store.delete(key)
    report.temporaries = store.sweep_temporaries(cutoff, dry_run)
    return report


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``24h``, ``7d`` or plain seconds."""
    from .errors import InvalidInputError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    scale = units.get(value[-1:], None)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise InvalidInputError(f"--grace: cannot read {text!r} as a duration (e.g. 24h, 30m, 0)") from None
    if seconds < 0 or seconds != seconds:
        raise InvalidInputError("--grace cannot be negative")
    return seconds
