"""Move many small values as a few bundles.

A transfer of a long history needs tens of thousands of small values
(commits, manifests, segments, packs). Sending each as its own file costs a
request per value; here they travel as bundles (:mod:`improv_vcs.storage.bundled_store`):
values are read from the source in large ranged reads (neighbouring values
of a source bundle in one request, several requests in parallel), each is
verified against the key that names it, and they are written into new
bundles at the destination, published one by one, commits last. A source
bundle the destination needs whole, on the same disk, is shared by a hard
link after every value in it is verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..core.errors import IntegrityError, NotFoundError
from ..core.ids import hash_bytes
from ..storage import BundledStore, Store
from ..storage.bundled_store import (
    PACK_DATA,
    PACK_INDEX,
    BundleIndex,
    BundleWriter,
    data_key,
    entry_of,
    index_key,
    key_of,
)
from ..storage.packs import PackIndex

BUNDLE_BYTES = 256 * 2**20
"""A destination bundle is closed past this size."""
RUN_BYTES = 8 * 2**20
"""Neighbouring values of a source bundle are read together up to this size."""
GAP_BYTES = 2**20
"""Values this close in a source bundle are read in one request."""


@dataclass
class Sent:
    """What a bundled send wrote: values (by role) and bytes."""

    objects: int = 0
    packs: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class _Run:
    """One read: a loose key, or a range of a source bundle holding values."""

    key: str
    start: int
    length: int
    values: tuple[tuple[str, int, int], ...]
    """``(key, offset in the run, length)``; length -1: the whole read."""
    bundled: bool
    """Whether ``key`` is a source bundle's data (else a loose key)."""


class BundleSender:
    """Copies content-addressed keys from ``source`` into bundles at ``dest``."""

    def __init__(
        self,
        source: Store,
        dest: BundledStore,
        workers: int,
        hardlinks: bool,
        progress: Callable[[int], None] | None,
    ):
        self.source, self.dest = source, dest
        self.workers, self.hardlinks, self.progress = workers, hardlinks, progress
        self.sent = Sent()
        self._pack_indexes: dict[str, bytes] = {}
        self._loose: set[str] | None = None

    def send(self, keys: list[str], last: list[str]) -> Sent:
        """Copy ``keys`` and then ``last`` (all absent at ``dest``). Pack data
        goes first, then pack indexes (which publish packs) and the other
        values, then ``last`` (commits), so no bundle published before
        another holds what depends on the other's values."""
        wanted = dict.fromkeys([*keys, *last])
        adopted = self._adopt_whole_bundles(wanted)
        indexes = [k for k in wanted if k.endswith(".idx")]
        for run, data in self._runs(indexes):
            for key, offset, length in run.values:
                self._verify(key, data[offset : offset + length] if length >= 0 else data)
        writer = BundleWriter(self.dest.inner)
        try:
            for run_data in self._runs([k for k in wanted if k.endswith(".pack")]):
                writer = self._write(run_data, writer)
            for key in indexes:  # verified above
                value = self._pack_indexes[key[len("packs/") : -len(".idx")]]
                writer.add(key, value)
                self._count(key, len(value))
            final = set(last)
            for run_data in self._runs(
                [k for k in wanted if k.startswith("objects/") and k not in final]
            ):
                writer = self._write(run_data, writer)
            for run_data in self._runs([k for k in wanted if k in final]):
                writer = self._write(run_data, writer)
            if writer.count:
                writer.finish()
            else:
                writer.discard()
        except BaseException:
            writer.discard()
            raise
        for bundle_id, index in adopted:
            self.dest.inner.put_or_freshen(
                index_key(bundle_id), index
            )  # published once all else is
        self.dest.bundles(refresh=True)
        return self.sent

    # -- whole bundles ------------------------------------------------------------
    def copy_bundles(self) -> Sent:
        """Copy every source bundle ``dest`` lacks, whole and verified (a
        clone's first step: a history's bundles travel as large reads, and the
        walk for missing commits then stops at once)."""
        if not isinstance(self.source, BundledStore):
            return self.sent
        for bundle_id, index in self.source.bundles(refresh=True).items():
            if not self.dest.inner.exists(index_key(bundle_id)):
                self._copy_whole(bundle_id, index)
                self.dest.inner.put_or_freshen(index_key(bundle_id), self._index_bytes(bundle_id))
        self.dest.bundles(refresh=True)
        return self.sent

    def _adopt_whole_bundles(self, wanted: dict[str, None]) -> list[tuple[str, bytes]]:
        """Copy the data of source bundles every value of which is wanted
        (verified; shared by a hard link on the same disk); their indexes are
        returned to be written last. Their keys leave ``wanted``."""
        if not isinstance(self.source, BundledStore):
            return []
        adopted = []
        for bundle_id, index in self.source.bundles(refresh=True).items():
            keys = index.key_names()
            if all(k in wanted for k in keys):
                self._copy_whole(bundle_id, index)
                adopted.append((bundle_id, self._index_bytes(bundle_id)))
                for key in keys:
                    del wanted[key]
        return adopted

    def _index_bytes(self, bundle_id: str) -> bytes:
        """A source bundle's index, verified against the bundle id."""
        assert isinstance(self.source, BundledStore)
        data = self.source.inner.get(index_key(bundle_id))
        if hash_bytes(data) != bundle_id:
            raise IntegrityError(
                f"bundle {bundle_id} at {self.source.url} is corrupt: its index hashes differently"
            )
        return data

    def _copy_whole(self, bundle_id: str, index: BundleIndex) -> None:
        """Write a source bundle's data at ``dest`` (not its index), every
        value verified: by a hard link and a local read when both are on one
        disk, else in ranged reads streamed to the destination."""
        assert isinstance(self.source, BundledStore)
        key = data_key(bundle_id)
        entries = sorted(index.entries(), key=lambda e: e[2])
        if self.hardlinks and self.dest.inner.adopt(self.source.inner, key):
            try:
                data = self.dest.inner.get_view(key)
                if hashlib.sha256(data).digest() != index.data_digest:
                    raise IntegrityError(
                        f"bundle {bundle_id} at {self.source.url} is corrupt: its data hashes "
                        f"differently"
                    )
                for role, digest, offset, length in entries:
                    self._verify(key_of(role, digest), data[offset : offset + length])
                    self._count(key_of(role, digest), length)
            except IntegrityError:
                self.dest.inner.delete(key)
                raise
            return
        groups: list[list[tuple[int, int, str]]] = [[]]
        for role, digest, offset, length in entries:
            if groups[-1] and offset + length - groups[-1][0][0] > RUN_BYTES:
                groups.append([])
            groups[-1].append((offset, length, key_of(role, digest)))
        runs = [_bundle_run(bundle_id, group) for group in groups if group]
        with self.dest.inner.staging() as staging:
            written, whole = 0, hashlib.sha256()
            for run, data in self._read_all(runs):
                view = memoryview(data)
                for value_key, offset, length in run.values:
                    self._verify(value_key, view[offset : offset + length])
                    self._count(value_key, length)
                if run.start != written:
                    raise IntegrityError(
                        f"bundle {bundle_id} at {self.source.url} has a gap at byte {written}"
                    )
                staging.write(view)
                whole.update(view)
                written += len(view)
            if written != index.data_length or whole.digest() != index.data_digest:
                raise IntegrityError(
                    f"bundle {bundle_id} at {self.source.url} is corrupt: its data is not what "
                    f"its index says"
                )
            staging.publish(key)

    # -- reading in runs ----------------------------------------------------------
    def _runs(self, keys: list[str]) -> Iterator[tuple[_Run, bytes]]:
        """Each read for ``keys`` with its bytes."""
        return self._read_all(self._plan(keys))

    def _read_all(self, plan: list[_Run]) -> Iterator[tuple[_Run, bytes]]:
        """Each read with its bytes, in order, several at a time."""
        with ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="improv-bundle"
        ) as pool:
            for start in range(0, len(plan), self.workers):
                window = plan[start : start + self.workers]
                yield from zip(window, pool.map(self._read, window))

    def _plan(self, keys: list[str]) -> list[_Run]:
        located: dict[str, list[tuple[int, int, str]]] = {}
        runs: list[_Run] = []
        source = self.source if isinstance(self.source, BundledStore) else None
        if source is not None and self._loose is None:
            self._loose = {*source.inner.list("objects/"), *source.inner.list("packs/")}
        for key in keys:
            where = source.locate(key, look_again=False) if source is not None else None
            if where is None or key in (self._loose or ()):
                runs.append(_Run(key, 0, -1, ((key, 0, -1),), False))
            else:
                located.setdefault(where[0], []).append((where[1], where[2], key))
        for bundle_id, entries in located.items():
            entries.sort()
            group: list[tuple[int, int, str]] = []
            for entry in entries:
                if group and (
                    entry[0] - (group[-1][0] + group[-1][1]) > GAP_BYTES
                    or entry[0] + entry[1] - group[0][0] > RUN_BYTES
                ):
                    runs.append(_bundle_run(bundle_id, group))
                    group = []
                group.append(entry)
            if group:
                runs.append(_bundle_run(bundle_id, group))
        return runs

    def _read(self, run: _Run) -> bytes:
        try:
            if run.bundled:
                assert isinstance(self.source, BundledStore)
                return self.source.inner.get_range(run.key, run.start, run.length)
            return self.source.get(run.key)
        except NotFoundError:
            raise NotFoundError(f"{run.key} is missing at {self.source.url}") from None

    # -- writing -------------------------------------------------------------------
    def _write(self, item: tuple[_Run, bytes], writer: BundleWriter) -> BundleWriter:
        run, data = item
        view = memoryview(data)
        for key, offset, length in run.values:
            value = view if length < 0 else view[offset : offset + length]
            self._verify(key, value)
            writer.add(key, value)
            self._count(key, len(value))
        if len(writer) >= BUNDLE_BYTES:
            writer.finish()
            writer = BundleWriter(self.dest.inner)
        return writer

    def _verify(self, key: str, value: bytes | memoryview) -> None:
        role, digest = entry_of(key)  # type: ignore[misc]
        if role == PACK_DATA:
            try:
                PackIndex.parse(self._pack_index(digest.hex())).verify(value)
            except IntegrityError as exc:
                raise IntegrityError(
                    f"pack {digest.hex()} from {self.source.url} is corrupt: {exc}"
                ) from None
            return
        if hash_bytes(bytes(value)) != digest.hex():
            raise IntegrityError(
                f"{key} from {self.source.url} is corrupt: its bytes hash differently"
            )
        if role == PACK_INDEX:
            self._pack_indexes[digest.hex()] = bytes(value)

    def _pack_index(self, pack_id: str) -> bytes:
        found = self._pack_indexes.get(pack_id)
        if found is None:
            found = self.source.get(f"packs/{pack_id}.idx")
            if hash_bytes(found) != pack_id:
                raise IntegrityError(
                    f"pack {pack_id} from {self.source.url} is corrupt: its index hashes "
                    f"differently"
                )
            self._pack_indexes[pack_id] = found
        return found

    def _count(self, key: str, size: int) -> None:
        if key.endswith(".idx"):
            self.sent.packs += 1
        elif not key.endswith(".pack"):
            self.sent.objects += 1
        self.sent.bytes += size
        if self.progress:
            self.progress(1)


def _bundle_run(bundle_id: str, group: list[tuple[int, int, str]]) -> _Run:
    start = group[0][0]
    end = max(offset + length for offset, length, _ in group)
    return _Run(
        data_key(bundle_id),
        start,
        end - start,
        tuple((key, offset - start, length) for offset, length, key in group),
        True,
    )


__all__ = ["BundleSender", "Sent"]
