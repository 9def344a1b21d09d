"""Check a repository: everything reachable from a ref is present and
hashes to its id, and (with ``full``) every structure parses and every blob
re-hashes.

Objects are re-hashed whenever they are read, so every check reads them.
Every commit and the snapshot structures of the commits refs point at are
parsed, and every image's location (in a manifest, or in the part that
consolidates it) must be exactly its blob's entry in its pack; packs are
checked for presence and size. A long history is thus checked at the cost
of reading it, not of parsing each of its small objects. ``full`` also
parses every index segment and manifest, compares each part with the
manifests it consolidates, and re-hashes every blob of every pack. A
metadata-only clone lacks packs by design: those are counted as remote, not
reported.

Each ref must point at the right kind of object: a branch or a
remote-tracking ref at a commit, a tag at a tag object or a commit, and a
tag object at a commit; each commit's parents must exist and be commits.
Commits and the objects they hold are tracked apart, so an object met in
one role is still checked when it appears in another.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import ImprovError, IntegrityError
from ..core.ids import hash_bytes
from ..core.model import Commit, Datasets, IndexSegment, Registry, Tag
from ..provenance import records
from ..snapshot import index, manifest, parts, registry, sources
from ..storage import BundledStore
from ..storage.bundled_store import PREFIX as BUNDLES
from ..storage.bundled_store import BundleIndex, data_digest
from ..storage.bundled_store import data_key as bundle_data_key
from ..storage.closure import commit_objects
from ..storage.packs import PackIndex, index_key, pack_key
from ..storage.refs import HEADS, TAGS
from .fsck_report import FsckReport, Problem

if TYPE_CHECKING:
    from ..repository.repository import Repository


def fsck(
    repo: Repository, full: bool = False, progress: Callable[[int], None] | None = None
) -> FsckReport:
    """Check everything reachable from every branch, tag and remote-tracking ref."""
    checker = _Checker(repo, full, progress)
    checker.run()
    return checker.report


LOCATION_BATCH = 2**18
"""Manifest rows whose locations are checked in one join."""


class _Checker:
    def __init__(self, repo: Repository, full: bool, progress: Callable[[int], None] | None):
        self.repo, self.full, self.progress = repo, full, progress
        self.report = FsckReport()
        self.seen: set[str] = set()  # sub-objects (manifests, segments, ...)
        self.commits_seen: set[str] = set()
        self.packs: dict[str, PackIndex | None] = {}
        self.partial = repo.remotes.promisor is not None
        self._locations: list[pa.Table] = []
        self._owners: list[tuple[str, str, str]] = []
        """(owner, what, key column) of each queued table, by position."""
        self._queued = 0
        self.tip_segments: set[str] = set()
        """Index segments of the commits refs point at: parsed by every fsck."""
        self.covered: set[str] = set()
        """Manifests a part of those segments stands for (plain fsck)."""

    def problem(self, oid: str, what: str, detail: str) -> None:
        self.report.problems.append(Problem(oid, what, detail))

    def _attempt(self, oid: str, what: str, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except ImprovError as exc:
            self.problem(oid, what, str(exc))
            return None

    def run(self) -> None:
        self._check_bundles()
        # (commit id, the child naming it as a parent; None for a ref's target)
        tips = self._ref_targets()
        if not self.full:
            self._consolidated(tips)
        stack: list[tuple[str, str | None]] = [(tip, None) for tip in tips]
        odb = self.repo.odb
        while stack:
            oid, child = stack.pop()
            if oid in self.commits_seen:
                continue
            self.commits_seen.add(oid)
            if child is not None and not odb.is_json_object(oid):
                self.problem(
                    oid, "commit", f"parent of {child[:12]} is a data object, not a commit"
                )
                continue
            found = self._attempt(oid, "commit", lambda o=oid: odb.get_object(o))
            if found is None:
                continue
            if not isinstance(found, Commit):
                named = f"parent of {child[:12]}" if child else oid[:12]
                self.problem(oid, "commit", f"{named} is a {found.kind}, not a commit")
                continue
            self.report.commits += 1
            stack.extend((parent, oid) for parent in self._check_commit(oid, found))
            if self.progress:
                self.progress(1)
        self._flush_locations()
        if self.full:
            self._hash_packs()

    def _check_bundles(self) -> None:
        """Each bundle's index hashes to its id, is well formed, and matches
        its data's length (the values inside are checked where they are read)."""
        store = self.repo.store
        if not isinstance(store, BundledStore):
            return
        for key in store.inner.list(BUNDLES):
            if not key.endswith(".idx"):
                continue
            bundle_id = key[len(BUNDLES) : -len(".idx")]
            try:
                data = store.inner.get(key)
                if hash_bytes(data) != bundle_id:
                    raise IntegrityError("its index hashes differently")
                index = BundleIndex(data)
                index.check()
                if store.inner.size(bundle_data_key(bundle_id)) != index.data_length:
                    raise IntegrityError(f"its data is not {index.data_length} bytes long")
                if (
                    self.full
                    and data_digest(store.inner, bundle_id, index.data_length) != index.data_digest
                ):
                    raise IntegrityError("its data hashes differently from what its index says")
            except ImprovError as exc:
                self.problem(bundle_id, "bundle", str(exc))
            else:
                self.report.bundles += 1

    def _ref_targets(self) -> list[str]:
        """The commits the refs point at (tags peeled), after checking that
        each ref points at an object of the right kind."""
        refs = [
            (HEADS + name, target, "branch") for name, target in self.repo.refs.branches().items()
        ]
        for remote in self.repo.remotes.all():
            refs += [
                (f"refs/remotes/{remote}/{b}", t, "branch")
                for b, t in self.repo.remotes.tracking(remote).items()
            ]
        refs += [(TAGS + name, pointer, "tag") for name, pointer in self.repo.refs.tags().items()]
        self.report.refs = len(refs)
        targets = []
        for ref, target, kind in refs:
            commit = self._check_ref(ref, target, kind)
            if commit is not None:
                targets.append(commit)
        return targets

    def _check_ref(self, ref: str, target: str, kind: str) -> str | None:
        """The commit ``ref`` leads to (None if it leads to none); a ref of
        the wrong kind is a problem naming the ref. A commit that cannot be
        read is returned: the history walk reports it as a damaged commit."""
        odb = self.repo.odb
        wanted = "a commit" if kind == "branch" else "a tag or a commit"
        if not odb.has(target):
            self.problem(
                target,
                "ref",
                f"{ref} points at a missing {'commit' if kind == 'branch' else 'object'}",
            )
            return None
        if not odb.is_json_object(target):
            self.problem(
                target,
                "ref",
                f"{ref} points at a data object (manifest, segment or table), not {wanted}",
            )
            return None
        if kind == "branch":
            found = self._peek(target)
            if found is not None and not isinstance(found, Commit):
                self.problem(target, "ref", f"{ref} points at a {found.kind}, not a commit")
                return None
            return target
        found = self._attempt(target, "tag", lambda: odb.get_object(target))
        if found is None:
            return None
        if isinstance(found, Commit):
            return target
        if not isinstance(found, Tag):
            self.problem(target, "ref", f"{ref} points at a {found.kind}, not {wanted}")
            return None
        inner = found.target
        if not odb.has(inner):
            self.problem(target, "tag", f"the tag object of {ref} targets a missing commit {inner}")
            return None
        if not odb.is_json_object(inner):
            self.problem(
                target,
                "tag",
                f"the tag object of {ref} targets a data object {inner[:12]}, not a commit",
            )
            return None
        peeled = self._peek(inner)
        if peeled is not None and not isinstance(peeled, Commit):
            self.problem(
                target,
                "tag",
                f"the tag object of {ref} targets a {peeled.kind} {inner[:12]}, not a commit",
            )
            return None
        return inner

    def _peek(self, oid: str) -> Any:
        """The parsed object ``oid`` (None if it cannot be read: the caller
        leaves reporting that to the check that owns the object)."""
        try:
            return self.repo.odb.get_object(oid)
        except ImprovError:
            return None

    def _first_visit(self, oid: str) -> bool:
        """True the first time an object is met (and count it)."""
        if oid in self.seen:
            return False
        self.seen.add(oid)
        self.report.objects += 1
        return True

    def _check_commit(self, oid: str, commit: Commit) -> list[str]:
        """Check one commit's sub-objects; returns its parents that exist
        (the walk checks that they are commits)."""
        odb = self.repo.odb
        parents = []
        for parent in commit.parents:
            if not odb.has(parent):
                self.problem(parent, "commit", f"parent of {oid[:12]} is missing")
            else:
                parents.append(parent)
        segments = [(s, index.BATCHES) for s in commit.index] + [
            (s, index.PROVENANCE) for s in commit.provenance_index
        ]
        segments += [(s, index.SOURCES) for s in commit.sources_index]
        segments += [(s, index.TASKS) for s in commit.tasks_index or ()]
        for segment, layout in segments:
            if not self._first_visit(segment.id):
                continue
            if self.full or segment.id in self.tip_segments:
                table = self._attempt(
                    segment.id,
                    "index segment",
                    lambda s=segment, lay=layout: index.read_segment(odb, s, lay),
                )
                if table is not None and segment.parts:
                    self._check_parts(segment, table)
            else:
                self._attempt(segment.id, "index segment", lambda s=segment: odb.get_bytes(s.id))
                for part in segment.parts:
                    if self._first_visit(part.id):
                        self._attempt(part.id, "part", lambda p=part: odb.get_bytes(p.id))
        if commit.registry and self._first_visit(commit.registry):
            found = self._attempt(
                commit.registry, "registry", lambda: odb.get_object(commit.registry)
            )
            if found is not None and not isinstance(found, Registry):
                self.problem(commit.registry, "registry", f"is a {found.kind}")
            elif found is not None:
                for segment in found.samples:
                    if self._first_visit(segment):
                        self._attempt(
                            segment,
                            "samples segment",
                            lambda s=segment: registry.decode_samples(odb.get_bytes(s)),
                        )
        if commit.datasets and self._first_visit(commit.datasets):
            found = self._attempt(
                commit.datasets, "datasets", lambda: odb.get_object(commit.datasets)
            )
            if found is not None and not isinstance(found, Datasets):
                self.problem(commit.datasets, "datasets", f"is a {found.kind}")
        for batch in commit.batches:
            if not self._first_visit(batch.manifest):
                continue
            if batch.manifest in self.covered:
                self._attempt(batch.manifest, "manifest", lambda b=batch: odb.get_bytes(b.manifest))
                continue
            table = self._attempt(
                batch.manifest,
                "manifest",
                lambda b=batch: manifest.decode(odb.get_bytes(b.manifest)),
            )
            if table is not None:
                if table.num_rows != batch.rows:
                    self.problem(
                        batch.manifest,
                        "manifest",
                        f"holds {table.num_rows} rows, its batch says {batch.rows}",
                    )
                self._check_locations(batch.manifest, "manifest", table)
        for segment in commit.provenance:
            if not self._first_visit(segment.id):
                continue
            table = self._attempt(
                segment.id,
                "provenance segment",
                lambda s=segment: records.decode(odb.get_bytes(s.id)),
            )
            if table is not None and "pack" in table.column_names:
                self._check_locations(segment.id, "provenance segment", table)
        for files in commit.sources:
            if not self._first_visit(files.table):
                continue
            table = self._attempt(
                files.table, "sources table", lambda f=files: sources.decode(odb.get_bytes(f.table))
            )
            if table is not None:
                if table.num_rows != files.rows:
                    self.problem(
                        files.table,
                        "sources table",
                        f"holds {table.num_rows} rows, its commit says {files.rows}",
                    )
                self._check_locations(files.table, "sources table", table, key="path")
        self._check_unvisited(oid, commit)
        return parents

    def _check_unvisited(self, oid: str, commit: Commit) -> None:
        """Every object the commit references (:func:`commit_objects`, the list
        transfers and gc use) that no check above read must at least exist."""
        loose, _ = commit_objects(commit)
        for other in loose:
            if self._first_visit(other) and not self.repo.odb.has(other):
                self.problem(other, "object", f"referenced by commit {oid[:12]} is missing")

    def _consolidated(self, tips: list[str]) -> None:
        """Read the index segments of the commits refs point at (all of them
        are parsed), and note the manifests their parts stand for: a plain
        fsck checks those manifests' hashes only, and their rows through the
        part (``--full`` parses every manifest and compares)."""
        odb = self.repo.odb
        for tip in tips:
            try:
                commit = odb.get_commit(tip)
                for segment in commit.index:
                    self.tip_segments.add(segment.id)
                    if segment.parts:
                        table = index.read_segment(odb, segment, index.BATCHES)
                        for _, covered in parts.covering(
                            [segment], table.column("manifest").to_pylist()
                        ).values():
                            self.covered.update(covered)
                self.tip_segments.update(
                    s.id
                    for s in (
                        *commit.provenance_index,
                        *commit.sources_index,
                        *(commit.tasks_index or ()),
                    )
                )
            except ImprovError:
                continue  # the walk reports it

    def _check_parts(self, segment: IndexSegment, batches: pa.Table) -> None:
        """Each part of a segment parses, holds its rows and points at its
        packs' entries; with --full, it holds the very rows (images, blobs and
        locations, in order) of the manifests it covers."""
        odb = self.repo.odb
        columns = ["image_id", "blob_id", "pack", "offset", "size"]
        position = 0
        for part in segment.parts:
            covered = batches.column("manifest").to_pylist()[position : position + part.entries]
            position += part.entries
            if not self._first_visit(part.id):
                continue
            table = self._attempt(
                part.id, "part", lambda p=part: parts.decode(odb.get_bytes(p.id), columns)
            )
            if table is None:
                continue
            if table.num_rows != part.rows or len(covered) != part.entries:
                self.problem(
                    part.id,
                    "part",
                    f"holds {table.num_rows} rows of {len(covered)} batches, its segment says "
                    f"{part.rows} of {part.entries}",
                )
                continue
            self._check_locations(part.id, "part", table)
            if self.full:
                expected = pa.concat_tables([self._located_rows(m, columns) for m in covered])
                if not table.equals(expected):
                    self.problem(
                        part.id, "part", "its rows differ from the manifests it consolidates"
                    )

    def _located_rows(self, manifest_id: str, columns: list[str]) -> pa.Table:
        """A manifest's location columns, decoded once however many parts
        (of successive segments) cover it."""
        odb = self.repo.odb
        return odb.cached(
            f"fsck-rows:{manifest_id}", lambda: manifest.decode(odb.get_bytes(manifest_id), columns)
        )

    def _pack(self, pack_id: str) -> PackIndex | None:
        if pack_id not in self.packs:
            self.packs[pack_id] = self._load_pack(pack_id)
        return self.packs[pack_id]

    def _load_pack(self, pack_id: str) -> PackIndex | None:
        store = self.repo.store
        if not store.exists(index_key(pack_id)):
            if self.partial:
                self.report.packs_remote += 1
            else:
                self.problem(pack_id, "pack", "is missing")
            return None
        self.report.packs += 1
        parsed = self._attempt(pack_id, "pack", lambda: self.repo.odb.pack_index(pack_id))
        if parsed is None:
            return None
        size = self._attempt(pack_id, "pack", lambda: store.size(pack_key(pack_id)))
        if size is not None and size != parsed.pack_length:
            self.problem(pack_id, "pack", f"is {size} bytes, its index says {parsed.pack_length}")
            return None
        return parsed

    def _check_locations(
        self, owner: str, what: str, table: pa.Table, key: str = "image_id"
    ) -> None:
        """Queue a check that every row's (blob, offset, size) is its pack's
        entry for the blob (a bad row is named by its ``key`` column); the
        queue is checked in one join (:meth:`_flush_locations`)."""
        for pack_id in table.column("pack").unique().to_pylist():
            self._pack(pack_id)
        n = table.num_rows
        self._owners.append((owner, what, key))
        self._locations.append(
            pa.table(
                {
                    "owner": pa.repeat(len(self._owners) - 1, n).cast(pa.int32()),
                    "name": table.column(key),
                    "blob_id": table.column("blob_id"),
                    "pack": table.column("pack"),
                    "offset": table.column("offset"),
                    "size": table.column("size"),
                }
            )
        )
        self._queued += n
        if self._queued >= LOCATION_BATCH:
            self._flush_locations()

    def _flush_locations(self) -> None:
        """Check the queued rows against their packs' entries, reporting the
        first bad row of each owner."""
        if not self._locations:
            return
        rows = pa.concat_tables(self._locations)
        owners, self._owners, self._locations, self._queued = self._owners, [], [], 0
        wanted = set(pc.unique(rows.column("pack")).to_pylist())
        present = [
            (p, parsed) for p, parsed in self.packs.items() if parsed is not None and p in wanted
        ]
        rows = rows.filter(
            pc.is_in(rows.column("pack"), value_set=pa.array([p for p, _ in present], pa.string()))
        )
        if not rows.num_rows:
            return
        entries = pa.table(
            {
                "pack": pa.array([p for p, parsed in present for _ in parsed.digests], pa.string()),
                "blob_id": pa.array(
                    [d.hex() for _, parsed in present for d in parsed.digests], pa.string()
                ),
                "entry_offset": pa.array(
                    [o for _, parsed in present for o in parsed.offsets], pa.int64()
                ),
                "entry_size": pa.array(
                    [n for _, parsed in present for n in parsed.lengths], pa.int64()
                ),
            }
        )
        joined = rows.join(entries, ["pack", "blob_id"], join_type="left outer")
        bad = pc.fill_null(
            pc.or_kleene(
                pc.not_equal(joined.column("offset"), joined.column("entry_offset")),
                pc.not_equal(joined.column("size"), joined.column("entry_size")),
            ),
            True,
        )
        reported: set[int] = set()
        for row in joined.filter(bad).select(["owner", "name", "pack"]).to_pylist():
            if row["owner"] not in reported:
                reported.add(row["owner"])
                owner, what, key = owners[row["owner"]]
                self.problem(
                    owner,
                    what,
                    f"{key} {row['name']!r} points outside its pack {row['pack'][:12]}'s entries",
                )

    def _hash_packs(self) -> None:
        present = [(p, parsed) for p, parsed in self.packs.items() if parsed is not None]

        def verify(item: tuple[str, PackIndex]) -> int:
            pack_id, parsed = item
            try:
                parsed.verify(self.repo.store.get_view(pack_key(pack_id)))
            except ImprovError as exc:
                self.problem(pack_id, "pack", str(exc))
                return 0
            return parsed.pack_length

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="improv-fsck") as pool:
            self.report.bytes_hashed = sum(pool.map(verify, present))
