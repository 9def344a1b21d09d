"""Write path: append batches in a transaction and commit them atomically.

Blob bytes are hashed and packed as they stream in; manifests, the snapshot
index and the commit are written at commit time; the branch moves last, by
compare-and-swap. When another writer moved the branch first, the commit is
re-parented on the new tip (appends of different images never conflict) and
retried with backoff, so no commit is ever lost.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from . import datasets, index, manifest
from .errors import ConflictError, InvalidInputError, NotFoundError
from .hashing import Chunk, hash_blobs, hash_files
from .ids import ObjectId, instrument_name, ref_name
from .model import Batch, Commit, Datasets
from .objects import PackWriter
from .packs import DEFAULT_PACK_SIZE
from .snapshot import Snapshot

if TYPE_CHECKING:
    from .repository import Repository

MAX_ATTEMPTS = 100
Progress = Callable[[int], None]


@dataclass
class _PendingBatch:
    instrument: str
    metadata: pa.Table  # normalized, only the rows that are new
    blob_ids: list[str]
    sizes: list[int]
    pack_numbers: list[int]
    offsets: list[int]


class Transaction:
    """Appends one or more batches (any instruments) and commits them as one commit.

    Use as a context manager: the commit happens when the block exits without
    an exception; on an exception nothing becomes visible. A failed append
    aborts the whole transaction.
    """

    def __init__(
        self,
        repo: Repository,
        branch: str,
        message: str,
        author: str,
        pack_size: int = DEFAULT_PACK_SIZE,
        progress: Progress | None = None,
    ):
        self._repo = repo
        self.branch = ref_name(branch)
        self.message = message
        self.author = author
        self._pack_size = pack_size
        self._progress = progress
        self._base = repo.refs.branch(branch)
        self._snapshot: Snapshot | None = None
        if self._base is None and repo.refs.branches():
            raise NotFoundError(
                f"no branch named {branch!r}; create it first with `improv branch {branch} REF`"
            )
        self._pending: list[_PendingBatch] = []
        self._pending_blobs: dict[str, str] = {}  # image id → blob id, all pending batches
        self._writer: PackWriter | None = None
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="improv-publish")
        self._pack_futures: list[Future[ObjectId]] = []
        self._packs: list[ObjectId] = []
        self._dataset_edits: list[Callable[[Datasets], Datasets]] = []
        self._closed = False
        self.commit_id: ObjectId | None = None
        self.batches: tuple[Batch, ...] = ()

    # -- appending -------------------------------------------------------
    def append_bytes(
        self, instrument: str, metadata: pa.Table | Sequence[dict[str, Any]], blobs: Sequence[bytes]
    ) -> int:
        """Append images given as bytes, aligned with the rows of ``metadata``.

        Returns the number of new images (already-committed identical images
        are skipped).
        """
        table = _as_table(metadata)
        if len(blobs) != table.num_rows:
            raise InvalidInputError(f"{len(blobs)} blobs for {table.num_rows} metadata rows")
        return self._append(instrument, table, hash_blobs(blobs))

    def append_files(self, instrument: str, metadata: pa.Table, paths: Sequence[str]) -> int:
        """Append images read from ``paths``, aligned with the rows of ``metadata``."""
        if len(paths) != metadata.num_rows:
            raise InvalidInputError(f"{len(paths)} files for {metadata.num_rows} metadata rows")
        return self._append(instrument, metadata, None, paths)

    def _append(
        self,
        instrument: str,
        metadata: pa.Table,
        blobs: Iterator[Chunk] | None,
        paths: Sequence[str] = (),
    ) -> int:
        if self._closed:
            raise InvalidInputError("this transaction is already committed or aborted")
        try:
            return self._append_checked(instrument, metadata, blobs, paths)
        except BaseException:
            self.abort()
            raise

    def _append_checked(
        self,
        instrument: str,
        metadata: pa.Table,
        blobs: Iterator[Chunk] | None,
        paths: Sequence[str],
    ) -> int:
        instrument_name(instrument)
        metadata = manifest.normalize_metadata(metadata)
        manifest.check_extra_columns(metadata, self._known_extra_types())
        ids = metadata.column("image_id").combine_chunks()
        known = self._known_blob_ids(ids)
        stream = blobs if blobs is not None else hash_files(paths)
        id_list = ids.to_pylist()
        keep: list[int] = []
        blob_ids: list[str] = []
        sizes: list[int] = []
        pack_numbers: list[int] = []
        offsets: list[int] = []
        row = 0
        for digests, datas in stream:
            for digest, data in zip(digests, datas):
                blob_id = digest.hex()
                prior = known.get(id_list[row]) if known else None
                if prior is None:
                    if self._writer is None:
                        self._writer = self._repo.odb.pack_writer()
                    keep.append(row)
                    blob_ids.append(blob_id)
                    sizes.append(len(data))
                    pack_numbers.append(len(self._pack_futures))
                    offsets.append(self._writer.add(digest, data))
                    if len(self._writer) >= self._pack_size:
                        self._flush_pack()
                elif prior != blob_id:
                    raise ConflictError(
                        f"image {id_list[row]!r} is already committed with different bytes"
                    )
                row += 1
            if self._progress:
                self._progress(len(digests))
        if keep:
            rows = metadata if len(keep) == metadata.num_rows else metadata.take(keep)
            self._pending_blobs.update(zip(rows.column("image_id").to_pylist(), blob_ids))
            self._pending.append(
                _PendingBatch(instrument, rows, blob_ids, sizes, pack_numbers, offsets)
            )
        return len(keep)

    def _base_snapshot(self) -> Snapshot:
        """The snapshot this transaction appends to (kept while the base holds)."""
        if self._snapshot is None or self._snapshot.commit_id != self._base:
            self._snapshot = self._repo._snapshot_at(self._base)
        return self._snapshot

    def _known_extra_types(self) -> dict[str, str]:
        """Extra column types of the base snapshot and of pending batches."""
        known = self._base_snapshot().extra_column_types()
        for pending in self._pending:
            for field in pending.metadata.schema:
                if field.name not in manifest.USER_COLUMNS and known.get(field.name, "null") == "null":
                    known[field.name] = str(field.type)
        return known

    def _known_blob_ids(self, ids: pa.Array) -> dict[str, str]:
        """image id → blob id for the given ids already in the base snapshot
        or earlier in this transaction."""
        found = self._base_snapshot().find(ids, ["image_id", "blob_id"])
        known = dict(zip(found.column("image_id").to_pylist(), found.column("blob_id").to_pylist()))
        if self._pending_blobs:
            for image in ids.to_pylist():
                blob = self._pending_blobs.get(image)
                if blob is not None:
                    known[image] = blob
        return known

    def abort(self) -> None:
        """Give up: nothing of this transaction becomes visible."""
        self._closed = True
        self._pending.clear()
        self._pending_blobs.clear()
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
        self._publisher.shutdown(wait=True)  # published packs stay unreferenced

    def _flush_pack(self) -> None:
        """Publish the current pack in the background (flush, fsync, link)
        while the next one fills; :meth:`commit` waits for all of them."""
        if self._writer is not None:
            self._pack_futures.append(self._publisher.submit(self._writer.finish))
            self._writer = None

    # -- dataset definitions ----------------------------------------------
    def add_dataset_span(
        self, name: str, instrument: str, start: datetime, end: datetime, description: str | None = None
    ) -> None:
        """Add a span to dataset ``name`` (created if new) in this commit."""
        span = datasets.make_span(instrument, start, end)
        ref_name(name)
        self._dataset_edits.append(
            functools.partial(datasets.add_span, name=name, span=span, description=description)
        )

    def remove_dataset_span(self, name: str, instrument: str, start: datetime, end: datetime) -> None:
        """Remove a span from dataset ``name`` in this commit."""
        span = datasets.make_span(instrument, start, end)
        edit = functools.partial(datasets.remove_span, name=name, span=span)
        edit(self._edited_datasets(self._base))  # fail now, not at commit, if absent
        self._dataset_edits.append(edit)

    def _edited_datasets(self, base: ObjectId | None) -> Datasets:
        """The definitions at ``base`` with this transaction's edits applied."""
        doc = self._repo._datasets_at(base)
        for edit in self._dataset_edits:
            doc = edit(doc)
        return doc

    # -- committing --------------------------------------------------------
    def commit(self) -> ObjectId | None:
        """Write manifests and the commit, then move the branch.

        Returns the new commit id, or None when there was nothing new.
        """
        if self._closed:
            raise InvalidInputError("this transaction is already committed or aborted")
        self._closed = True
        if not self._pending and not self._dataset_edits:
            self._publisher.shutdown()
            return None
        self._flush_pack()
        self._packs = [future.result() for future in self._pack_futures]
        self._publisher.shutdown()
        tables = [self._manifest_table(p) for p in self._pending]
        for attempt in range(MAX_ATTEMPTS):
            batches = [self._write_manifest(t) for t in tables]
            commit_id = self._write_commit(batches)
            if commit_id is None:
                return None
            try:
                self._repo.refs.set_branch(self.branch, self._base, commit_id)
            except ConflictError:
                tip = self._repo.refs.branch(self.branch)
                if tip is None:
                    raise ConflictError(f"branch {self.branch!r} was deleted during the commit") from None
                tables = self._rebase(tables, tip)
                self._base = tip
                if not tables and not self._dataset_edits:
                    return None
                time.sleep(random.random() * min(0.5, 0.005 * 2**attempt))
                continue
            self.commit_id, self.batches = commit_id, tuple(batches)
            return commit_id
        raise ConflictError(
            f"branch {self.branch!r} kept moving; gave up after {MAX_ATTEMPTS} attempts (nothing was committed)"
        )

    def _manifest_table(self, pending: _PendingBatch) -> pa.Table:
        return manifest.build_manifest(
            pending.metadata,
            pending.instrument,
            pa.array(pending.blob_ids, pa.string()),
            pa.array(pending.sizes, pa.int64()),
            pa.array([self._packs[n] for n in pending.pack_numbers], pa.string()),
            pa.array(pending.offsets, pa.int64()),
        )

    def _write_manifest(self, table: pa.Table) -> Batch:
        manifest_id = self._repo.odb.put_bytes(manifest.encode(table))
        return manifest.summarize(table, manifest_id)

    def _write_commit(self, batches: list[Batch]) -> ObjectId | None:
        """Write the commit on the current base; None when it would change nothing."""
        odb = self._repo.odb
        parent = odb.get_commit(self._base) if self._base else None
        datasets_id = parent.datasets if parent else None
        if self._dataset_edits:
            after = self._edited_datasets(self._base)
            if after != self._repo._datasets_at(self._base):
                datasets_id = odb.put_object(after)
        if not batches and datasets_id == (parent.datasets if parent else None):
            return None
        commit = Commit(
            parents=(self._base,) if self._base else (),
            height=parent.height + 1 if parent else 1,
            author=self.author,
            message=self.message,
            time=datetime.now(timezone.utc),
            batches=tuple(batches),
            index=index.append(odb, parent.index if parent else (), batches),
            datasets=datasets_id,
        )
        return odb.put_object(commit)

    def _rebase(self, tables: list[pa.Table], tip: ObjectId) -> list[pa.Table]:
        """Our manifests re-checked against what other writers committed between
        our base and ``tip``: identical images are dropped, different bytes
        under the same id are a conflict."""
        old = set(self._base_snapshot().batches.column("manifest").to_pylist())
        new = self._repo._snapshot_at(tip)
        concurrent = [m for m in new.batches.column("manifest").to_pylist() if m not in old]
        known = new.extra_column_types()
        rebased = []
        for table in tables:
            try:
                manifest.check_extra_columns(table.drop_columns(list(manifest.STORED_COLUMNS)), known)
            except InvalidInputError as exc:
                raise ConflictError(f"a concurrent commit clashes: {exc}") from None
            ids = table.column("image_id").combine_chunks()
            theirs = new.find(ids, ["image_id", "blob_id"], among=concurrent)
            if theirs.num_rows:
                ours = dict(zip(ids.to_pylist(), table.column("blob_id").to_pylist()))
                for image, blob in zip(theirs.column("image_id").to_pylist(), theirs.column("blob_id").to_pylist()):
                    if ours[image] != blob:
                        raise ConflictError(
                            f"image {image!r} was committed concurrently with different bytes"
                        )
                table = table.filter(pc.invert(pc.is_in(table.column("image_id"), value_set=theirs.column("image_id"))))
            if table.num_rows:
                rebased.append(table)
        return rebased

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.commit()


def _as_table(metadata: pa.Table | Iterable[dict[str, Any]]) -> pa.Table:
    if isinstance(metadata, pa.Table):
        return metadata
    try:
        rows = list(metadata)
        if not rows:
            return pa.table({})
        return pa.Table.from_struct_array(pa.array(rows))  # keys of every row, not just the first
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise InvalidInputError(f"metadata rows are not a table: {exc}") from None
