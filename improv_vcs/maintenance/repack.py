"""Maintenance: keep a long history a few files.

A site that commits every bin writes a few small values per commit. One
maintenance run moves every loose object and pack into a new bundle
(:mod:`improv_vcs.storage.bundled_store`), verifying each value first, and merges
the smallest bundles into it while any of them is at least half the size of
those merged so far (a geometric sequence, as in git's geometric repacking):
bundles stay O(log history) in number and each byte is rewritten O(log
history) times. Then the loose copies and the merged bundles are removed.

Every step is safe to stop: a new bundle is published (its index written)
only after its data, and nothing is removed before the bundle is durable,
so a killed run leaves at worst a value both loose and bundled (the next
run tidies it). Readers and writers keep working throughout: a key read
from a bundle that a concurrent run removed is looked up again.

Commits run it every :data:`AUTO_EVERY` commits (``IMPROV_AUTO_MAINTENANCE=0``
turns that off), which keeps the work per commit bounded on average.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import ImprovError, IntegrityError, InvalidInputError, NotFoundError
from ..core.ids import hash_bytes
from ..storage import BundledStore
from ..storage.bundled_store import PACK_DATA, BundleWriter, data_key, entry_of, index_key, key_of
from ..storage.packs import PackIndex

if TYPE_CHECKING:
    from ..repository.repository import Repository

AUTO_EVERY = 64
"""Commits between automatic runs (by commit height)."""
GROWTH = 2
"""A bundle is merged while smaller than GROWTH × what is merged so far."""
MAX_MERGED = 2**30
"""Bundles larger than this are never rewritten."""


@dataclass
class MaintenanceReport:
    """What one run did (or, with ``dry_run``, would do)."""

    bundled: int = 0
    """Loose keys moved into the new bundle."""
    merged_bundles: int = 0
    bundle: str | None = None
    """Id of the bundle written."""
    bytes_written: int = 0
    bundles: int = 0
    """Bundles in the repository afterwards."""
    skipped: list[str] = field(default_factory=list)
    """Loose keys left in place because they failed verification."""
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _verified(key: str, data: bytes, pack_index: bytes | None = None) -> bool:
    """Whether a loose value is what its key names (pack data: against its index)."""
    role, digest = entry_of(key)  # type: ignore[misc]
    if role != PACK_DATA:
        return hash_bytes(data) == digest.hex()
    try:
        PackIndex.parse(pack_index or b"").verify(data)
    except IntegrityError:
        return False
    return True


def _loose(store: BundledStore) -> list[str]:
    """Loose keys bundles can hold: objects, and a pack's halves once the pack
    is published (both halves loose, or the half already in a bundle too: a
    copy a stopped run did not get to delete). A pack being written has no
    index yet."""
    keys = [k for k in [*store.inner.list("objects/"), *store.inner.list("packs/")] if entry_of(k)]
    present = set(keys)

    def published(key: str) -> bool:
        stem = key.rsplit(".", 1)[0]
        if not key.startswith("packs/") or {f"{stem}.idx", f"{stem}.pack"} <= present:
            return True
        return store.locate(key, look_again=False) is not None

    return [k for k in keys if published(k)]


def _to_merge(sizes: dict[str, int], loose_bytes: int, also: set[str]) -> list[str]:
    """Bundles to merge with ``loose_bytes`` of loose values: the smallest,
    while each is below GROWTH × the total so far, plus ``also``."""
    total, chosen = loose_bytes, []
    for bundle_id in sorted(sizes, key=lambda b: (sizes[b], b)):
        if sizes[bundle_id] > MAX_MERGED or (total and sizes[bundle_id] >= GROWTH * total):
            break
        chosen.append(bundle_id)
        total += sizes[bundle_id]
    return chosen + sorted(also - set(chosen))


def maintain(
    repo: Repository, dry_run: bool = False, progress: Callable[[int], None] | None = None
) -> MaintenanceReport:
    """Bundle the loose values of ``repo`` and merge its small bundles."""
    store = repo.store
    if not isinstance(store, BundledStore):
        raise InvalidInputError(
            f"{repo.url}: run maintenance on the machine that holds the repository"
        )
    if repo.config.format < 2:
        raise InvalidInputError(
            f"{repo.url} is format {repo.config.format}: run `improv upgrade` first "
            "(improv_vcs versions before bundles will no longer read it)"
        )
    report = MaintenanceReport(dry_run=dry_run)
    loose = _loose(store)
    bundles = store.bundles(refresh=True)
    sizes = {b: index.data_length for b, index in bundles.items()}
    shadowed = {b for b, index in bundles.items() if any(index.locate(*entry_of(k)) for k in loose)}  # type: ignore[misc]
    merging = _to_merge(sizes, sum(_size(store, k) for k in loose), shadowed) if bundles else []
    if not loose and len(merging) < 2:
        report.bundles = len(bundles)
        return report
    report.bundled, report.merged_bundles = len(loose), len(merging)
    report.bundles = len(bundles) - len(merging) + 1
    if dry_run:
        return report
    writer = BundleWriter(store.inner)
    kept: list[str] = []
    try:
        with store.batch():
            for key in sorted(
                loose, key=lambda k: (k.endswith(".pack"), k)
            ):  # pack indexes before their data
                if _add_loose(store, writer, key):
                    kept.append(key)
                else:
                    report.skipped.append(key)
                if progress:
                    progress(1)
            for bundle_id in merging:
                _add_bundle(store, writer, bundle_id)
            report.bytes_written = len(writer)
            report.bundle = writer.finish()
    except BaseException:
        writer.discard()
        raise
    for key in kept:
        store.inner.delete(key)
    for bundle_id in merging:
        if bundle_id != report.bundle:  # a rewrite of the very same bytes is the same bundle
            store.inner.delete(index_key(bundle_id))
            store.inner.delete(data_key(bundle_id))
    store.bundles(refresh=True)
    report.bundled = len(kept)
    return report


def _size(store: BundledStore, key: str) -> int:
    try:
        return store.inner.size(key)
    except NotFoundError:
        return 0


def _add_loose(store: BundledStore, writer: BundleWriter, key: str) -> bool:
    """Add one loose value, verified; False (left loose) when it fails or vanished."""
    try:
        data = store.inner.get(key)
        index = store.get(key[:-4] + "idx") if key.endswith(".pack") else None
    except NotFoundError:
        return False
    if not _verified(key, data, index):
        return False
    writer.add(key, data)
    return True


def _add_bundle(store: BundledStore, writer: BundleWriter, bundle_id: str) -> None:
    """Copy a bundle's values (those not added already, e.g. a verified loose
    copy that repaired a damaged bundled one)."""
    index = store.bundles()[bundle_id]
    data = store.inner.get_view(data_key(bundle_id))
    for role, digest, offset, length in sorted(index.entries(), key=lambda e: e[2]):
        key = key_of(role, digest)
        if key not in writer:
            writer.add(key, data[offset : offset + length])


def auto(repo: Repository, height: int) -> None:
    """Run after a commit at ``height`` every :data:`AUTO_EVERY` commits
    (format-2 repositories; ``IMPROV_AUTO_MAINTENANCE=0`` turns it off). A
    failure is a warning: the commit itself is done."""
    if (
        height % AUTO_EVERY
        or repo.config.format < 2
        or os.environ.get("IMPROV_AUTO_MAINTENANCE", "1") == "0"
    ):
        return
    if not isinstance(repo.store, BundledStore):
        return
    try:
        maintain(repo)
    except (ImprovError, OSError) as exc:
        warnings.warn(f"automatic maintenance did not run: {exc}", stacklevel=2)


__all__ = ["AUTO_EVERY", "MaintenanceReport", "auto", "maintain"]
