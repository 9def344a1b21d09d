"""Garbage collection: remove objects no ref can reach, once they are old.

A writer writes packs and objects first and moves its ref last, so its
objects are unreachable while it runs; the grace period (default 24 h)
protects them. One run:

1. **plan**: everything reachable from every branch, tag and
   remote-tracking ref is kept; of the rest, what was written (or
   freshened) within the grace period is kept, and so is everything a young
   commit or tag reaches (a write in flight may build on old garbage);
2. **publish** the doomed keys under ``gc/state`` (see :mod:`improv_vcs.storage.fence`:
   writers refuse to rely on them from now on);
3. **look again**: refs read anew and every doomed key's age re-checked,
   sparing what a writer reached or freshened between 1 and 2;
4. **delete** in an order that keeps every state in between consistent:
   tag objects and commits first (children before parents), then the other
   objects, then pack indexes (which unpublishes a pack), then pack data. A
   gc killed at any point leaves only commits with all their parents and
   objects;
5. **clear** the doomed keys.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import ConflictError, ImprovError, NotFoundError
from ..core.ids import ObjectId
from ..core.model import Commit, Tag
from ..storage import BundledStore
from ..storage.bundled_store import PREFIX as BUNDLES
from ..storage.bundled_store import data_key as bundle_data_key
from ..storage.bundled_store import index_key as bundle_index_key
from ..storage.closure import commit_keys
from ..storage.fence import STATE_KEY, GcState, read_state
from ..storage.objects import object_key

if TYPE_CHECKING:
    from ..repository.repository import Repository

DEFAULT_GRACE = 24 * 3600.0
LEASE = 3600.0
"""A gc state younger than this belongs to a gc that may still be running."""

Step = Callable[[str, str | None], None]
"""Called at each step (``planned``, ``published``, ``delete`` with its key)."""


@dataclass
class GcReport:
    reachable_objects: int = 0
    reachable_packs: int = 0
    removed: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    kept_young: int = 0
    kept_in_bundles: int = 0
    """Unreachable keys kept because they share a bundle with reachable ones."""
    temporaries: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "removed_count": len(self.removed)}


class _Reach:
    """Keys reachable from a growing set of commits and tags."""

    def __init__(self, repo: Repository):
        self.odb = repo.odb
        self.visited: set[str] = set()
        self.keys: set[str] = set()

    def walk(self, tips: Iterable[str], strict: bool = True) -> None:
        """Add what ``tips`` reach; with ``strict`` off, a missing or
        unreadable object ends its path instead of failing the walk."""
        stack = list(tips)
        while stack:
            oid = stack.pop()
            if oid in self.visited:
                continue
            self.visited.add(oid)
            try:
                obj = self.odb.get_object(oid)
                if isinstance(obj, Tag):
                    self.keys.add(object_key(oid))
                    stack.append(obj.target)
                elif isinstance(obj, Commit):
                    self.keys |= commit_keys(self.odb, oid, obj)
                    stack.extend(obj.parents)
            except ImprovError:
                if strict:
                    raise


def _tips(repo: Repository) -> list[str]:
    tips = [*repo.refs.branches().values(), *repo.refs.tags().values()]
    for name in repo.remotes.all():
        tips += list(repo.remotes.tracking(name).values())
    return tips


def _roots(repo: Repository, keys: Iterable[str]) -> list[ObjectId]:
    """The commits and tag objects among loose-object ``keys``."""
    found = []
    for key in keys:
        if not key.startswith("objects/"):
            continue
        oid = ObjectId(key[8:10] + key[11:])
        try:
            if repo.odb.is_json_object(oid) and isinstance(repo.odb.get_object(oid), (Commit, Tag)):
                found.append(oid)
        except ImprovError:
            continue
    return found


def _ages(repo: Repository, keys: Iterable[str]) -> dict[str, float]:
    """Modification time of each key still present."""
    ages = {}
    for key in keys:
        try:
            ages[key] = repo.store.modified(key)
        except NotFoundError:
            continue
    return ages


def gc(
    repo: Repository,
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
    force: bool = False,
    clock: Callable[[], float] = time.time,
    on_step: Step | None = None,
) -> GcReport:
    """Remove unreachable objects and packs older than ``grace`` seconds.

    Refuses while another gc may be running (its state is younger than
    :data:`LEASE`) unless ``force``: a gc killed midway is taken over.
    """
    step = on_step or (lambda name, key: None)
    store = repo.store
    now = clock()
    cutoff = now - grace
    raw, previous = read_state(store)
    if (
        previous.collecting
        and not force
        and previous.started is not None
        and now - previous.started < LEASE
    ):
        raise ConflictError(
            f"another gc started {int(now - previous.started)} s ago and may still be running; "
            "wait for it, or pass --force if it was killed"
        )

    reach = _Reach(repo)
    reach.walk(_tips(repo))
    report = GcReport(dry_run=dry_run)
    candidates = [
        k for k in [*store.list("objects/"), *store.list("packs/")] if k not in reach.keys
    ]
    ages = _ages(repo, candidates)
    young = {k for k, t in ages.items() if t >= cutoff}
    reach.walk(_roots(repo, young), strict=False)
    doomed = {k for k in ages if k not in young and k not in reach.keys}
    step("planned", None)
    if dry_run:
        return _finish(repo, report, reach, young, doomed, cutoff, dry_run, step)
    owner = uuid.uuid4().hex
    publishing = GcState(previous.generation + 1, frozenset(doomed | previous.doomed), now, owner)
    store.compare_and_swap(STATE_KEY, raw, publishing.encode())
    try:
        step("published", None)
        reach.walk(_tips(repo))
        ages = _ages(repo, doomed - reach.keys)
        revived = {k for k, t in ages.items() if t >= cutoff}
        reach.walk(_roots(repo, revived), strict=False)
        doomed = {k for k in ages if k not in revived and k not in reach.keys}
        _finish(repo, report, reach, young | revived, doomed, cutoff, dry_run, step)
    except (Exception, KeyboardInterrupt):
        _release(repo, owner)  # stopped by an error or Ctrl-C: nothing more will be deleted
        raise
    _release(repo, owner)
    return report


def _finish(
    repo: Repository,
    report: GcReport,
    reach: _Reach,
    young: set[str],
    doomed: set[str],
    cutoff: float,
    dry_run: bool,
    step: Step,
) -> GcReport:
    """Count, then delete ``doomed`` in a safe order, and sweep old temporaries."""
    report.kept_young = len(young - reach.keys)
    report.reachable_objects = sum(k.startswith("objects/") for k in reach.keys)
    report.reachable_packs = sum(k.endswith(".idx") for k in reach.keys)
    loose, bundles = _physical(repo, doomed, cutoff)
    report.kept_in_bundles = len(doomed - loose - {k for keys in bundles.values() for k in keys})
    for keys in _deletion_order(repo, loose, bundles):
        for key in keys:
            report.removed.append(key)
            report.removed_bytes += _size(repo, key)
            if not dry_run:
                step("delete", key)
                repo.store.delete(key)
    report.temporaries = repo.store.sweep_temporaries(cutoff, dry_run)
    return report


def _physical(
    repo: Repository, doomed: set[str], cutoff: float
) -> tuple[set[str], dict[tuple[str, ...], set[str]]]:
    """What deleting ``doomed`` removes: the doomed keys with files of their
    own, and the bundles (index, then data) whose every key is doomed, with
    those keys; also bundle data left without an index (a write or a delete
    that was stopped) once older than ``cutoff``. A bundle holding anything
    else stays whole."""
    store = repo.store
    if not isinstance(store, BundledStore):
        return doomed, {}
    files = (
        set(store.inner.list("objects/"))
        | set(store.inner.list("packs/"))
        | set(store.inner.list(BUNDLES))
    )
    bundles: dict[tuple[str, ...], set[str]] = {}
    for bundle_id, index in store.bundles(refresh=True).items():
        keys = set(index.key_names())
        if keys <= doomed:
            bundles[(bundle_index_key(bundle_id), bundle_data_key(bundle_id))] = keys
    for key in files:
        if (
            key.endswith(".bundle")
            and bundle_index_key(key[len(BUNDLES) : -len(".bundle")]) not in files
        ):
            if _modified(repo, key) < cutoff:
                bundles[(key,)] = set()
    return doomed & files, bundles


def _deletion_order(
    repo: Repository, loose: set[str], bundles: dict[tuple[str, ...], set[str]]
) -> list[tuple[str, ...]]:
    """Tag objects, then commits from the highest (a bundle goes at the place
    of its highest commit), then other objects, then pack indexes, then pack
    data: no state in between has a commit without its parents or objects,
    or a pack index without its data."""
    rank: dict[tuple[str, ...], tuple[int, int]] = {}
    for oid in _roots(repo, loose):
        obj = repo.odb.get_object(oid)
        rank[(object_key(oid),)] = (0, 0) if isinstance(obj, Tag) else (1, -obj.height)  # type: ignore[union-attr]
    for group, keys in bundles.items():
        heights = [getattr(repo.odb.get_object(oid), "height", 0) for oid in _roots(repo, keys)]
        rank[group] = (1, -max(heights)) if heights else (2, 0)
    for key in loose:
        if (key,) not in rank:
            rank[(key,)] = (
                (2, 0) if key.startswith("objects/") else (3, 0) if key.endswith(".idx") else (4, 0)
            )
    return sorted(rank, key=lambda group: (rank[group], group))


def _modified(repo: Repository, key: str) -> float:
    try:
        return repo.store.modified(key)
    except NotFoundError:
        return float("inf")


def _size(repo: Repository, key: str) -> int:
    try:
        return repo.store.size(key)
    except NotFoundError:
        return 0


def _release(repo: Repository, owner: str) -> None:
    """Clear the doomed keys, unless another gc took over meanwhile."""
    raw, state = read_state(repo.store)
    if state.owner != owner:
        return
    try:
        repo.store.compare_and_swap(STATE_KEY, raw, GcState(state.generation + 1).encode())
    except ConflictError:
        pass  # taken over: the new owner clears it


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``24h``, ``7d`` or plain seconds."""
    from ..core.errors import InvalidInputError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    scale = units.get(value[-1:], None)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise InvalidInputError(
            f"--grace: cannot read {text!r} as a duration (e.g. 24h, 30m, 0)"
        ) from None
    if seconds < 0 or seconds != seconds:
        raise InvalidInputError("--grace cannot be negative")
    return seconds
