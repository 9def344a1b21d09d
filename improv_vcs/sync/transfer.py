"""Copy what one repository has and another lacks, verifying every byte.

Order keeps the destination consistent at every instant, so a transfer
killed at any point can simply be run again:

1. the objects the missing commits need (packs: data, then index;
   manifests, segments, dataset definitions), in parallel, each verified
   against its id before it is written;
2. the commits, parents before children;
3. (by the caller) refs, by compare-and-swap, last.

A destination that has a commit therefore has everything it needs, and the
walk for missing commits stops there.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from itertools import groupby
from typing import TYPE_CHECKING

from ..core.errors import IntegrityError, InvalidInputError, NotFoundError
from ..core.ids import ObjectId, hash_bytes
from ..core.model import Commit, Tag
from ..storage import BundledStore, Bytes, graph
from ..storage.closure import commit_objects
from ..storage.objects import object_key
from ..storage.packs import PackIndex, index_key, pack_key
from .bundling import BundleSender

if TYPE_CHECKING:
    from ..repository.repository import Repository

Progress = Callable[[int], None]
BUNDLE_THRESHOLD = 32
"""From this many values on, a transfer sends bundles (:mod:`.bundling`)."""
_LIST_THRESHOLD = 256  # above this many candidates, one listing beats many existence checks


@dataclass
class TransferReport:
    """What a transfer moved."""

    commits: int = 0
    objects: int = 0
    packs: int = 0
    bytes: int = 0
    skipped: int = 0
    bundles: int = 0
    """Whole bundles copied (their commits are not counted in ``commits``)."""

    def add(self, other: TransferReport) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def to_json(self) -> dict[str, int]:
        return asdict(self)


class Transfer:
    """Sends commits (and tags) from ``source`` to ``dest``."""

    def __init__(
        self,
        source: Repository,
        dest: Repository,
        blobs: bool = True,
        progress: Progress | None = None,
        workers: int | None = None,
        hardlinks: bool = True,
    ):
        self.source, self.dest = source, dest
        self.blobs = blobs
        self.hardlinks = hardlinks
        """Whether packs may be shared by hard links when both sites are on one disk."""
        self.progress = progress
        remote = "://" in dest.url or "://" in source.url
        self.workers = workers or (16 if remote else max(2, os.cpu_count() or 2))
        self.report = TransferReport()
        self.relied: set[str] = set()
        """Keys at ``dest`` the sent history relies on (see
        :class:`improv_vcs.storage.fence.Fence`)."""
        self._lock = threading.Lock()

    def missing(self, tips: Iterable[str]) -> list[tuple[ObjectId, Commit]]:
        """Commits reachable from ``tips`` that ``dest`` lacks, parents first.
        A commit ``dest`` holds counts only if its objects and parents are
        there too (a site damaged by hand or by an old gc is repaired)."""
        return graph.missing_commits(self.source.odb, tips, self._complete_at_dest)

    def _keys(self, oid: str, commit: Commit) -> list[str]:
        """The store keys ``dest`` needs for ``commit`` (not its parents)."""
        objects, packs = commit_objects(commit, self.blobs, self.source.odb)
        return [object_key(oid), *(object_key(o) for o in objects), *(index_key(p) for p in packs)]

    def _complete_at_dest(self, oid: str) -> bool:
        if not self.dest.store.exists_as_listed(object_key(oid)):
            return False
        commit = self.source.odb.get_commit(oid)
        keys = self._keys(oid, commit) + [object_key(p) for p in commit.parents]
        complete = not self._absent(keys)
        if complete:
            self.relied.update(keys)
        return complete

    def send(self, tips: Iterable[str]) -> TransferReport:
        """Copy every commit reachable from ``tips`` that ``dest`` lacks.

        What ``dest`` already holds is freshened rather than copied, and
        every key the sent history relies on is collected in
        :attr:`relied`, for the fence check before a ref moves."""
        missing = self.missing(tips)
        needed = max((commit.format for _, commit in missing), default=1)
        if self.dest.config.format < needed:
            raise InvalidInputError(
                f"{self.dest.url} is a format-{self.dest.config.format} repository and these "
                f"commits are format {needed}: run `improv upgrade` there first (its readers "
                "need a newer improv_vcs)"
            )
        loose: dict[str, None] = {}
        packs: dict[str, None] = {}
        for _, commit in missing:
            objects, blobs = commit_objects(commit, self.blobs, self.source.odb)
            loose.update(dict.fromkeys(objects))
            packs.update(dict.fromkeys(blobs))
        absent_packs = self._absent([index_key(p) for p in packs])
        absent_loose = self._absent([object_key(o) for o in loose])
        work = [(self._copy_pack, p) for p in packs if index_key(p) in absent_packs]
        work += [(self._copy_loose, o) for o in loose if object_key(o) in absent_loose]
        self.report.skipped += len(packs) + len(loose) - len(work)
        present = [index_key(p) for p in packs if index_key(p) not in absent_packs]
        present += [pack_key(p) for p in packs if index_key(p) not in absent_packs]
        present += [object_key(o) for o in loose if object_key(o) not in absent_loose]
        boundary = {p for _, commit in missing for p in commit.parents} - {
            oid for oid, _ in missing
        }
        present += [object_key(b) for b in boundary]  # a young commit keeps its history from gc
        self.relied.update(present)
        self.relied.update(k for oid, commit in missing for k in self._keys(oid, commit))
        self.relied.update(pack_key(p) for p in packs)
        if self._bundled(len(work) + len(missing)):
            with self.dest.store.batch():  # durable before any ref moves
                self._run([(self._freshen, k) for k in present])
                keys = [
                    k
                    for copy, item in work
                    for k in (
                        (pack_key(item), index_key(item))
                        if copy == self._copy_pack
                        else (object_key(item),)
                    )
                ]
                sent = BundleSender(
                    self.source.store, self.dest.store, self.workers, self.hardlinks, self.progress
                )
                sent.send(keys, [object_key(oid) for oid, _ in missing])
                self.report.objects += sent.sent.objects
                self.report.packs += sent.sent.packs
                self.report.bytes += sent.sent.bytes
            self.report.commits += len(missing)
            return self.report
        with self.dest.store.batch():  # durable before any commit is written
            self._run([(self._freshen, k) for k in present] + work)
        with self.dest.store.batch():  # durable before any ref moves
            for _, level in groupby(missing, key=lambda item: item[1].height):
                self._run([(self._copy_loose, oid) for oid, _ in level])
        self.report.commits += len(missing)
        return self.report

    def _bundled(self, values: int) -> bool:
        """Whether to send ``values`` as bundles: many of them, to a format-2
        destination that reads bundles itself."""
        return (
            values >= BUNDLE_THRESHOLD
            and self.dest.config.format >= 2
            and isinstance(self.dest.store, BundledStore)
        )

    def copy_bundles(self) -> TransferReport:
        """Copy every bundle of ``source`` whole (verified) before :meth:`send`:
        a clone's history travels as a few large reads, and the walk for
        missing commits stops at the bundled ones. Only to a format-2
        destination that takes every byte (not a metadata-only clone)."""
        if not (
            self.blobs
            and isinstance(self.source.store, BundledStore)
            and self._bundled(BUNDLE_THRESHOLD)
        ):
            return self.report
        sender = BundleSender(
            self.source.store, self.dest.store, self.workers, self.hardlinks, self.progress
        )
        before = len(self.dest.store.bundles())
        with self.dest.store.batch():
            sent = sender.copy_bundles()
        self.report.bundles += len(self.dest.store.bundles()) - before
        self.report.objects += sent.objects
        self.report.packs += sent.packs
        self.report.bytes += sent.bytes
        return self.report

    def _freshen(self, key: str) -> None:
        if not self.dest.store.freshen(key):
            raise NotFoundError(
                f"{key} vanished from {self.dest.url} during the transfer (a gc?); run it again"
            )

    def send_packs(self, packs: list[str]) -> TransferReport:
        """Copy the given packs that ``dest`` lacks."""
        absent = self._absent([index_key(p) for p in packs])
        with self.dest.store.batch():
            self._run([(self._copy_pack, p) for p in packs if index_key(p) in absent])
        self.report.skipped += len(packs) - len(absent)
        return self.report

    def send_tag(self, pointer: str) -> None:
        """Copy an annotated tag object (its target commit must be sent already)."""
        obj = self.source.odb.get_object(pointer)
        if isinstance(obj, Tag) and not self.dest.odb.has(pointer):
            self._copy_loose(pointer)

    # -- copying ---------------------------------------------------------------
    def _run(self, work: list[tuple[Callable[[str], None], str]]) -> None:
        if len(work) <= 1 or self.workers == 1:
            for copy, item in work:
                copy(item)
            return
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="improv-sync") as pool:
            for future in [pool.submit(copy, item) for copy, item in work]:
                future.result()

    def _absent(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` the destination lacks (or, rarely, has just
        bundled: sent again, harmlessly)."""
        store = self.dest.store
        if len(keys) > _LIST_THRESHOLD:
            present = set(store.list("objects/")) | set(store.list("packs/"))
            return {k for k in keys if k not in present}
        if len(keys) <= 1 or self.workers == 1:
            return {k for k in keys if not store.exists_as_listed(k)}
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="improv-sync") as pool:
            flags = list(pool.map(store.exists_as_listed, keys))
        return {k for k, there in zip(keys, flags) if not there}

    def _read_loose(self, oid: str) -> bytes:
        """An object's bytes from the source, verified against its id."""
        try:
            data = self.source.store.get(object_key(oid))
        except NotFoundError:
            raise NotFoundError(f"object {oid} is missing at {self.source.url}") from None
        if hash_bytes(data) != oid:
            raise IntegrityError(
                f"object {oid} from {self.source.url} is corrupt: its bytes hash differently"
            )
        return data

    def _read_pack(self, pack_id: str) -> tuple[bytes, Bytes]:
        """A pack's index and data from the source, every blob verified."""
        try:
            index = self.source.store.get(index_key(pack_id))
        except NotFoundError:
            partial = self.source.remotes.promisor
            hint = (
                f" (a metadata-only clone: run `improv fetch --blobs` from {partial!r} first)"
                if partial
                else ""
            )
            raise NotFoundError(f"pack {pack_id} is missing at {self.source.url}{hint}") from None
        if hash_bytes(index) != pack_id:
            raise IntegrityError(
                f"pack {pack_id} from {self.source.url} is corrupt: its index hashes differently"
            )
        data = self.source.store.get_view(pack_key(pack_id))
        try:
            PackIndex.parse(index).verify(data)
        except IntegrityError as exc:
            raise IntegrityError(
                f"pack {pack_id} from {self.source.url} is corrupt: {exc}"
            ) from None
        return index, data

    def _copy_loose(self, oid: str) -> None:
        data = self._read_loose(oid)
        self._written(self.dest.store.put_if_absent(object_key(oid), data), len(data), pack=False)

    def _copy_pack(self, pack_id: str) -> None:
        index, data = self._read_pack(pack_id)
        key = pack_key(pack_id)
        linked = self.hardlinks and self.dest.store.adopt(
            self.source.store, key
        )  # same disk: share the verified file
        sent = len(data) if linked or self.dest.store.put_if_absent(key, data) else 0
        if self.dest.store.put_if_absent(index_key(pack_id), index):  # the index publishes the pack
            sent += len(index)
        self._written(sent > 0, sent, pack=True)

    def replace(self, what: str, oid: str) -> None:
        """Overwrite a corrupt or missing object (``what`` = ``object``) or
        pack (``pack``: data, then index) at ``dest`` with the source's
        verified copy."""
        if what == "pack":
            index, data = self._read_pack(oid)
            self.dest.store.replace(pack_key(oid), data)
            self.dest.store.replace(index_key(oid), index)
            self._count(True, len(data) + len(index), pack=True)
        else:
            data = self._read_loose(oid)
            self.dest.store.replace(object_key(oid), data)
            self._count(True, len(data), pack=False)

    def _written(self, wrote: bool, size: int, pack: bool) -> None:
        with self._lock:
            self._count(wrote, size, pack)
        if self.progress:
            self.progress(1)

    def _count(self, wrote: bool, size: int, pack: bool) -> None:
        if wrote:
            if pack:
                self.report.packs += 1
            else:
                self.report.objects += 1
            self.report.bytes += size
        else:
            self.report.skipped += 1
