"""What a commit references: the one list that transfers, fsck and gc share.

A commit names its parents, the loose objects of its snapshot (manifests,
index segments and their parts, provenance segments, tables of original
files, tasks index segments, the datasets and registry objects, and the
sample segments a registry lists) and the packs holding the bytes those
objects locate.
"""

from __future__ import annotations

from ..core.errors import IntegrityError
from ..core.model import Commit, Registry
from .objects import ObjectDatabase, object_key
from .packs import index_key, pack_key


def commit_objects(
    commit: Commit, blobs: bool = True, odb: ObjectDatabase | None = None
) -> tuple[list[str], list[str]]:
    """The loose objects and packs a commit needs besides its parents (with
    ``odb``, also the sample segments its registry lists)."""
    loose = [b.manifest for b in commit.batches]
    loose += [s.id for s in commit.index]
    loose += [p.id for s in commit.index for p in s.parts]
    loose += [s.id for s in commit.provenance]
    loose += [s.id for s in commit.provenance_index]
    loose += [s.table for s in commit.sources]
    loose += [s.id for s in commit.sources_index]
    loose += [s.id for s in commit.tasks_index or ()]
    loose += [oid for oid in (commit.datasets, commit.registry) if oid]
    if commit.registry and odb is not None:
        loose += registry_objects(odb, commit.registry)
    packs: list[str] = []
    if blobs:
        packs = [p for b in commit.batches for p in b.packs]
        packs += [p for s in commit.provenance for p in s.packs]
        packs += [p for s in commit.sources for p in s.packs]
    return loose, packs


def registry_objects(odb: ObjectDatabase, registry_id: str) -> list[str]:
    """The sample segments a registry object lists."""
    found = odb.get_object(registry_id)
    if not isinstance(found, Registry):
        raise IntegrityError(f"object {registry_id} is a {found.kind}, not a registry")
    return list(found.samples)


def commit_keys(odb: ObjectDatabase, oid: str, commit: Commit) -> set[str]:
    """Every store key a commit needs besides its parents' own: the commit,
    its loose objects, and both halves of each of its packs."""
    loose, packs = commit_objects(commit, odb=odb)
    keys = {object_key(oid), *(object_key(o) for o in loose)}
    keys.update(k for p in packs for k in (index_key(p), pack_key(p)))
    return keys
