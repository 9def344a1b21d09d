"""Write path: append batches in a transaction and commit them atomically.

Blob bytes are hashed and packed as they stream in; manifests, the snapshot
index and the commit are written at commit time; the branch moves last, by
compare-and-swap. When another writer moved the branch first, the commit is
re-parented on the new tip (appends of different images never conflict) and
retried with backoff, so no commit is ever lost.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import ConflictError, InvalidInputError, NotFoundError
from ..core.hashing import Chunk, hash_blobs, hash_files
from ..core.ids import ObjectId, instrument_name, label, ref_name
from ..core.media import media_type
from ..core.model import Batch, Commit, Datasets, ProvenanceSegment, Registry, SourceFiles
from ..maintenance import repack as maintenance
from ..provenance import catalog, kinds, records, view
from ..snapshot import datasets, index, manifest, parts, registry, sources
from ..snapshot.reader import SnapshotReader
from ..snapshot.sources import SourceFile
from ..storage import graph
from ..storage.closure import commit_keys
from ..storage.fence import Fence
from ..storage.objects import PackWriter
from ..storage.packs import DEFAULT_PACK_SIZE

if TYPE_CHECKING:
    from ..repository.repository import Repository

MAX_ATTEMPTS = 100
Progress = Callable[[int], None]


@dataclass
class _PendingBatch:
    """New images (or original files) of one instrument and where their bytes went."""

    instrument: str
    metadata: pa.Table  # normalized manifest metadata (or source descriptions), new rows only
    blob_ids: list[str]
    sizes: list[int]
    pack_numbers: list[int]
    offsets: list[int]


@dataclass
class _PendingRecords:
    kind: kinds.Kind
    table: pa.Table  # segment columns; for blob kinds ``pack`` holds pack numbers


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
        task: str | None = None,
        allow_outside_deployment: bool = False,
        strict: bool = False,
    ):
        self._repo = repo
        self.branch = ref_name(branch)
        self.message = message
        self.author = author
        self.task = label(task, "task id") if task is not None else None
        self.allow_outside_deployment = allow_outside_deployment
        self.strict = strict
        self.warnings: list[str] = []
        """Things worth telling the user that did not stop the commit (once each)."""
        self._pack_size = pack_size
        self._progress = progress
        self._fence = Fence(repo.store)  # before anything is written
        self._base = repo.refs.branch(branch)
        self._snapshot: SnapshotReader | None = None
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
        self._registry_edits: list[Callable[[Registry], Registry]] = []
        self._pending_samples: list[pa.Table] = []
        self._records: list[_PendingRecords] = []
        self._pending_sources: list[_PendingBatch] = []
        self._placed: dict[bytes, tuple[int, int]] = {}  # digest → (pack number, offset)
        self._closed = False
        self.commit_id: ObjectId | None = None
        self.task_done: ObjectId | None = None
        """When the task was already committed on the branch: that commit (this one is a no-op)."""
        self.batches: tuple[Batch, ...] = ()
        self.segments: tuple[ProvenanceSegment, ...] = ()
        self.sources: tuple[SourceFiles, ...] = ()

    # -- appending -------------------------------------------------------
    def append_bytes(
        self, instrument: str, metadata: pa.Table | Sequence[dict[str, Any]], blobs: Iterable[bytes]
    ) -> int:
        """Append images given as bytes, aligned with the rows of ``metadata``;
        ``blobs`` may be a generator (bytes produced as they are packed).

        Returns the number of new images (already-committed identical images
        are skipped).
        """
        table = _as_table(metadata)
        if isinstance(blobs, Sequence) and len(blobs) != table.num_rows:
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
        return self._guarded(self._append_checked, instrument, metadata, blobs, paths)

    def _guarded(self, work: Callable[..., int], *args: Any) -> int:
        """Run one append; any failure aborts the whole transaction."""
        if self._closed:
            raise InvalidInputError("this transaction is already committed or aborted")
        try:
            return work(*args)
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
        self._check_instrument(instrument, metadata)
        ids = metadata.column("image_id").combine_chunks()
        known = self._known_blob_ids(ids)
        stream = blobs if blobs is not None else hash_files(paths)
        pending = self._pack_new(instrument, metadata, ids.to_pylist(), known, stream, "image {!r}")
        if pending is None:
            return 0
        self._pending_blobs.update(
            zip(pending.metadata.column("image_id").to_pylist(), pending.blob_ids)
        )
        self._pending.append(pending)
        return pending.metadata.num_rows

    def _check_instrument(self, instrument: str, metadata: pa.Table) -> None:
        """Images of a registered instrument must fall inside its deployment
        windows and not in the future (unless allowed); an unregistered one
        is refused in a strict repository or transaction, else noted once."""
        doc = self._edited_registry(self._base)
        found = doc.instruments.get(instrument)
        if found is None:
            if doc.strict_instruments or self.strict:
                raise InvalidInputError(
                    f"instrument {instrument!r} is not registered (strict); add it with `improv "
                    f"instrument add`"
                )
            note = (
                f"instrument {instrument!r} is not registered (`improv instrument add` records "
                f"its deployments)"
            )
            if note not in self.warnings:
                self.warnings.append(note)
            return
        if self.allow_outside_deployment:
            return
        ids = metadata.column("image_id").combine_chunks()
        times = metadata.column("timestamp").combine_chunks()
        future = pc.greater(times, pa.scalar(self._repo.clock(), times.type))
        if pc.any(future).as_py():
            row = pc.index(future, True).as_py()
            raise InvalidInputError(
                f"image {ids[row].as_py()!r} is dated {times[row].as_py().isoformat()}, in the "
                f"future "
                "(pass --allow-outside-deployment if that is right)"
            )
        outside = registry.outside_deployment(found, ids, times)
        if outside is not None:
            raise InvalidInputError(
                f"image {outside[0]!r} ({outside[1].isoformat()}) is outside every deployment of "
                f"{instrument}; "
                "update the instrument or pass --allow-outside-deployment"
            )

    def _pack_new(
        self,
        instrument: str,
        rows: pa.Table,
        keys: list[str],
        known: Mapping[str, str],
        stream: Iterable[Chunk],
        what: str,
    ) -> _PendingBatch | None:
        """Pack the blobs of ``stream`` (aligned with ``rows`` and ``keys``)
        whose key is not in ``known`` (key → blob id); the same key with other
        bytes is a conflict. Returns the new rows with their locations."""
        keep: list[int] = []
        blob_ids: list[str] = []
        sizes: list[int] = []
        pack_numbers: list[int] = []
        offsets: list[int] = []
        row = 0
        for digests, datas in stream:
            if row + len(digests) > len(keys):
                raise InvalidInputError(f"more blobs than the {len(keys)} rows they belong to")
            for digest, data in zip(digests, datas):
                blob_id = digest.hex()
                prior = known.get(keys[row]) if known else None
                if prior is None:
                    keep.append(row)
                    blob_ids.append(blob_id)
                    sizes.append(len(data))
                    number, offset = self._pack_blob(digest, data)
                    pack_numbers.append(number)
                    offsets.append(offset)
                elif prior != blob_id:
                    raise ConflictError(
                        f"{what.format(keys[row])} is already committed with different bytes"
                    )
                row += 1
            if self._progress:
                self._progress(len(digests))
        if row != len(keys):
            raise InvalidInputError(f"{row} blobs for {len(keys)} rows")
        if not keep:
            return None
        kept = rows if len(keep) == rows.num_rows else rows.take(keep)
        return _PendingBatch(instrument, kept, blob_ids, sizes, pack_numbers, offsets)

    def _pack_blob(self, digest: bytes, data: bytes) -> tuple[int, int]:
        """Add a blob to the open pack: (pack number, offset). Bytes already
        packed by this transaction are not packed again."""
        placed = self._placed.get(digest)
        if placed is not None:
            return placed
        if self._writer is None:
            self._writer = self._repo.odb.pack_writer()
        placed = len(self._pack_futures), self._writer.add(digest, data)
        self._placed[digest] = placed
        if len(self._writer) >= self._pack_size:
            self._flush_pack()
        return placed

    # -- original files ------------------------------------------------------
    def add_source_files(self, instrument: str, files: Sequence[SourceFile]) -> int:
        """Keep original files (raw bins, whole stacks, metadata documents)
        byte for byte, keyed by ``(sample_id, path)``; returns how many are new.
        Files already committed with the same bytes are skipped."""
        return self._guarded(self._add_sources_checked, instrument, files)

    def _add_sources_checked(self, instrument: str, files: Sequence[SourceFile]) -> int:
        instrument_name(instrument)
        if not files:
            return 0
        ordered = [f for f in files if f.data is None] + [f for f in files if f.data is not None]
        table = sources.describe(ordered, instrument)
        sources.require_unique(table)
        keys = sources.keys(table)
        known = _committed_sources(self._base_snapshot(), table)
        for pending in self._pending_sources:
            known.update(zip(sources.keys(pending.metadata), pending.blob_ids))
        stream = itertools.chain(
            hash_files([os.fspath(f.location) for f in ordered if f.data is None]),
            hash_blobs([f.data for f in ordered if f.data is not None]),
        )
        pending = self._pack_new(instrument, table, keys, known, stream, "source file {!r}")
        if pending is None:
            return 0
        self._pending_sources.append(pending)
        return pending.metadata.num_rows

    # -- provenance --------------------------------------------------------
    def add_provenance(
        self,
        kind: str,
        records: pa.Table | Sequence[dict[str, Any]],
        source: str,
        run_id: str | None = None,
        masks: Mapping[str, bytes] | None = None,
    ) -> int:
        """Attach records of ``kind`` (a table keyed by ``image_id``) to images
        of the snapshot or of this transaction; returns how many are new.

        Identical records (same kind, source, run and content) already
        committed or already added are skipped. Without ``run_id`` the run is
        named after the records' content, so re-submitting them adds nothing.
        Kinds that carry blobs (``segmentation``) need ``masks``: image id →
        mask bytes.
        """
        return self._guarded(self._add_provenance_checked, kind, records, source, run_id, masks)

    def _add_provenance_checked(
        self,
        kind_name: str,
        rows: pa.Table | Sequence[dict[str, Any]],
        source: str,
        run_id: str | None,
        masks: Mapping[str, bytes] | None,
    ) -> int:
        kind = catalog.get_kind(kind_name)
        source = label(source, "source")
        if run_id is not None:
            run_id = label(run_id, "run id")
        table = _as_table(rows)
        if table.num_rows == 0:
            raise InvalidInputError("no records to add")
        known = view.known_types(self._base_snapshot(), kind.name)
        for pending in self._records:
            if pending.kind is kind:
                for field in pending.table.schema:
                    known.setdefault(field.name, str(field.type))
        table = kinds.normalize(kind, table, known)
        self._require_images(table.column("image_id").combine_chunks())
        blobs: list[bytes] = []
        if kind.blob:
            table, blobs = _with_masks(kind, table, masks)
        elif masks:
            raise InvalidInputError(f"{kind.name} records carry no masks")
        content = records.content_rows(table)
        run = run_id or records.default_run_id(kind.name, source, content)
        ids = records.record_ids(records.envelope_prefix(kind.name, source, run), content)
        keep = self._new_records(kind.name, source, run, table.column("image_id"), ids)
        if not len(keep):
            return 0
        table, ids = table.take(keep), ids.take(keep)
        if kind.blob:
            digests = [bytes.fromhex(b) for b in table.column("blob_id").to_pylist()]
            placed = [self._pack_blob(d, blobs[i]) for d, i in zip(digests, keep.to_pylist())]
            table = table.append_column("pack", pa.array([p[0] for p in placed], pa.int64()))
            table = table.append_column("offset", pa.array([p[1] for p in placed], pa.int64()))
        recorded_at = self._repo.clock()
        segment = records.segment_table(kind, table, source, run, recorded_at, ids)
        self._records.append(_PendingRecords(kind, segment))
        return len(keep)

    def _require_images(self, ids: pa.Array) -> None:
        """Every id must name an image of the base snapshot or of this transaction."""
        unique = pc.unique(ids)
        if self._pending_blobs:
            pending = pa.array(list(self._pending_blobs), pa.string())
            unique = pc.filter(unique, pc.invert(pc.is_in(unique, value_set=pending)))
        found = self._base_snapshot().find(unique, ["image_id"]).column("image_id")
        if len(found) == len(unique):
            return  # ids are unique in a snapshot: every one was found
        missing = pc.filter(unique, pc.invert(pc.is_in(unique, value_set=found.combine_chunks())))
        where = f"commit {self._base[:12]}" if self._base else "this (empty) repository"
        raise InvalidInputError(
            f"{len(missing)} record(s) refer to images not in {where}, e.g. {missing[0].as_py()!r}"
        )

    def _new_records(
        self, kind: str, source: str, run: str, image_ids: pa.ChunkedArray, ids: pa.Array
    ) -> pa.Array:
        """Rows whose record id is neither committed, pending, nor repeated."""
        bounds = pc.min_max(image_ids)
        seen = [
            view.record_ids_for(
                self._base_snapshot(),
                kind,
                source,
                run,
                (bounds["min"].as_py(), bounds["max"].as_py()),
            )
        ]
        seen += [
            p.table.column("record_id").combine_chunks()
            for p in self._records
            if p.kind.name == kind
        ]
        known = pa.concat_arrays([a.cast(pa.string()) for a in seen])
        if pc.count_distinct(ids).as_py() == len(ids):
            first = pa.array(range(len(ids)), pa.int64())
        else:
            rows = pa.table({"id": ids, "row": pa.array(range(len(ids)), pa.int64())})
            first = (
                rows.group_by("id", use_threads=False).aggregate([("row", "min")]).column("row_min")
            )
            first = pc.take(first, pc.sort_indices(first)).combine_chunks()
        if len(known) == 0:
            return first
        return pc.filter(first, pc.invert(pc.is_in(pc.take(ids, first), value_set=known)))

    def _reader(self, commit_id: ObjectId | None) -> SnapshotReader:
        """The stored view at a commit (None: the empty one)."""
        if commit_id is None:
            return SnapshotReader(self._repo.odb, None, None)
        return self._repo.snapshot(commit_id).reader

    def _base_snapshot(self) -> SnapshotReader:
        """The snapshot this transaction appends to (kept while the base holds)."""
        if self._snapshot is None or self._snapshot.commit_id != self._base:
            self._snapshot = self._reader(self._base)
        return self._snapshot

    def _known_extra_types(self) -> dict[str, str]:
        """Extra column types of the base snapshot and of pending batches."""
        known = self._base_snapshot().extra_column_types()
        for pending in self._pending:
            for field in pending.metadata.schema:
                if (
                    field.name not in manifest.USER_COLUMNS
                    and known.get(field.name, "null") == "null"
                ):
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
        self._pending_sources.clear()
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
        self,
        name: str,
        instrument: str,
        start: datetime,
        end: datetime,
        description: str | None = None,
    ) -> None:
        """Add a span to dataset ``name`` (created if new) in this commit."""
        span = datasets.make_span(instrument, start, end)
        ref_name(name)
        self._dataset_edits.append(
            functools.partial(datasets.add_span, name=name, span=span, description=description)
        )

    def remove_dataset_span(
        self, name: str, instrument: str, start: datetime, end: datetime
    ) -> None:
        """Remove a span from dataset ``name`` in this commit."""
        span = datasets.make_span(instrument, start, end)
        edit = functools.partial(datasets.remove_span, name=name, span=span)
        edit(self._edited_datasets(self._base))  # fail now, not at commit, if absent
        self._dataset_edits.append(edit)

    def _edited_datasets(self, base: ObjectId | None) -> Datasets:
        """The definitions at ``base`` with this transaction's edits applied."""
        doc = self._reader(base).datasets
        for edit in self._dataset_edits:
            doc = edit(doc)
        return doc

    # -- organizing metadata -------------------------------------------------
    def edit_registry(self, edit: Callable[[Registry], Registry]) -> None:
        """Apply ``edit`` (see :mod:`improv_vcs.snapshot.registry`) to the registry in
        this commit; it is checked now, against the base and earlier edits."""
        edit(self._edited_registry(self._base))
        self._registry_edits.append(edit)

    def add_samples(self, rows: Iterable[Mapping[str, Any]] | pa.Table) -> int:
        """Record sample versions (``sample_id``, ``instrument``, ``start``,
        ``end``, optional ``quality``, ``alt_ids``, ``meta``); the latest
        version of a sample is the one queries see. Rows equal to a sample's
        current record are skipped; returns how many are new versions."""
        listed = rows.to_pylist() if isinstance(rows, pa.Table) else list(rows)
        table = registry.sample_rows(listed, self._repo.clock())
        known = self._base_snapshot().sample_versions()
        table = registry.changed(pa.concat_tables([known, *self._pending_samples]), table)
        if table.num_rows:
            self._pending_samples.append(table)
        return table.num_rows

    def _edited_registry(self, base: ObjectId | None) -> Registry:
        doc = self._reader(base).registry
        for edit in self._registry_edits:
            doc = edit(doc)
        return doc

    def _registry_after(self, parent: Commit | None) -> str | None:
        """The registry id the new commit names: the parent's, or a new one."""
        before = parent.registry if parent else None
        if not self._registry_edits and not self._pending_samples:
            return before
        doc = self._edited_registry(self._base)
        if self._pending_samples:
            odb = self._repo.odb
            segment = odb.put_bytes(
                registry.encode_samples(pa.concat_tables(self._pending_samples))
            )
            segments = (*doc.samples, segment)
            if len(segments) > registry.MAX_SAMPLE_SEGMENTS:
                merged = pa.concat_tables(
                    [registry.decode_samples(odb.get_bytes(s)) for s in segments]
                )
                segments = (odb.put_bytes(registry.encode_samples(merged)),)
            doc = doc.model_copy(update={"samples": segments})
        if doc == self._reader(self._base).registry:
            return before
        return self._repo.odb.put_object(doc)

    # -- committing --------------------------------------------------------
    def commit(self) -> ObjectId | None:
        """Write manifests and the commit, then move the branch.

        Returns the new commit id, or None when there was nothing new.
        """
        if self._closed:
            raise InvalidInputError("this transaction is already committed or aborted")
        self._closed = True
        if not (
            self._pending
            or self._dataset_edits
            or self._records
            or self._pending_sources
            or self._registry_edits
            or self._pending_samples
        ) or self._task_done_since(None):
            self._publisher.shutdown()
            return None
        self._flush_pack()
        self._packs = [future.result() for future in self._pack_futures]
        self._publisher.shutdown()
        tables = [self._manifest_table(p) for p in self._pending]
        groups = self._record_groups()
        files = self._source_tables()
        for attempt in range(MAX_ATTEMPTS):
            batches = [self._write_manifest(t) for t in tables]
            segments = [s for kind, table in groups for s in self._write_records(kind, table)]
            kept = [self._write_sources(t) for t in files]
            commit_id = self._write_commit(batches, segments, kept)
            if commit_id is None:
                return None
            self._fence.check(
                commit_keys(self._repo.odb, commit_id, self._repo.odb.get_commit(commit_id))
            )
            try:
                self._repo.refs.set_branch(self.branch, self._base, commit_id)
            except ConflictError:
                tip = self._repo.refs.branch(self.branch)
                if tip is None:
                    raise ConflictError(
                        f"branch {self.branch!r} was deleted during the commit"
                    ) from None
                if self._task_done_since(tip):
                    return None
                tables = self._rebase(tables, tip)
                groups = self._rebase_records(groups, tip)
                files = self._rebase_sources(files, tip)
                self._base = tip
                if not (
                    tables
                    or groups
                    or files
                    or self._dataset_edits
                    or self._registry_edits
                    or self._pending_samples
                ):
                    return None
                time.sleep(random.random() * min(0.5, 0.005 * 2**attempt))
                continue
            self.commit_id, self.batches, self.segments = commit_id, tuple(batches), tuple(segments)
            self.sources = tuple(kept)
            maintenance.auto(self._repo, self._repo.odb.get_commit(commit_id).height)
            return commit_id
        raise ConflictError(
            f"branch {self.branch!r} kept moving; gave up after {MAX_ATTEMPTS} attempts (nothing "
            f"was committed)"
        )

    def _task_done_since(self, tip: ObjectId | None) -> bool:
        """Whether this transaction's task is already committed: on the base
        (``tip`` None), or by a writer that moved the branch from our base to
        ``tip``. Then the transaction is a no-op naming that commit."""
        if self.task is None:
            return False
        if tip is None:
            self.task_done = (
                self._repo.snapshot(self._base).task_commit(self.task) if self._base else None
            )
        else:
            floor = self._repo.odb.get_commit(self._base).height if self._base else 0
            self.task_done = graph.find_above(
                self._repo.odb, tip, floor, lambda c: c.task == self.task
            )
        return self.task_done is not None

    def _record_groups(self) -> list[tuple[kinds.Kind, pa.Table]]:
        """Pending records by kind, pack numbers replaced by pack ids, sorted
        by image id (then time and record id)."""
        by_kind: dict[str, list[_PendingRecords]] = {}
        for pending in self._records:
            by_kind.setdefault(pending.kind.name, []).append(pending)
        groups = []
        for name in sorted(by_kind):
            tables = []
            for pending in by_kind[name]:
                table = pending.table
                if "pack" in table.column_names:
                    packs = pa.array(self._packs, pa.string()).take(table.column("pack"))
                    table = table.set_column(table.schema.get_field_index("pack"), "pack", packs)
                tables.append(table)
            table = pa.concat_tables(tables, promote_options="permissive")
            order = [
                ("image_id", "ascending"),
                ("recorded_at", "ascending"),
                ("record_id", "ascending"),
            ]
            groups.append((by_kind[name][0].kind, table.sort_by(order)))
        return groups

    def _write_records(self, kind: kinds.Kind, table: pa.Table) -> list[ProvenanceSegment]:
        """Segments of at most ``records.SEGMENT_ROWS`` records each, by image-id range."""
        out = []
        for start in range(0, table.num_rows, records.SEGMENT_ROWS):
            piece = table.slice(start, records.SEGMENT_ROWS)
            segment_id = self._repo.odb.put_bytes(records.encode(piece))
            out.append(records.summarize(kind, piece, segment_id))
        return out

    def _rebase_records(
        self, groups: list[tuple[kinds.Kind, pa.Table]], tip: ObjectId
    ) -> list[tuple[kinds.Kind, pa.Table]]:
        """Our records minus those another writer committed between our base and ``tip``."""
        old = set(self._base_snapshot().provenance_segments.column("id").to_pylist())
        new = self._reader(tip)
        rebased = []
        for kind, table in groups:
            theirs = view.segments(new, kind.name)
            concurrent = [s for s in theirs.column("id").to_pylist() if s not in old]
            if concurrent:
                known = view.read(new, concurrent, ["image_id", "record_id"]).column("record_id")
                table = table.filter(
                    pc.invert(pc.is_in(table.column("record_id"), value_set=known.combine_chunks()))
                )
            if table.num_rows:
                rebased.append((kind, table))
        return rebased

    def _source_tables(self) -> list[pa.Table]:
        """Pending original files, one table per instrument, with pack ids."""
        by_instrument: dict[str, list[pa.Table]] = {}
        for p in self._pending_sources:
            located = p.metadata.append_column("blob_id", pa.array(p.blob_ids, pa.string()))
            located = located.append_column("size", pa.array(p.sizes, pa.int64()))
            located = located.append_column(
                "pack", pa.array([self._packs[n] for n in p.pack_numbers], pa.string())
            )
            located = located.append_column("offset", pa.array(p.offsets, pa.int64()))
            by_instrument.setdefault(p.instrument, []).append(located)
        return [pa.concat_tables(by_instrument[name]) for name in sorted(by_instrument)]

    def _write_sources(self, table: pa.Table) -> SourceFiles:
        return sources.summarize(table, self._repo.odb.put_bytes(sources.encode(table)))

    def _rebase_sources(self, tables: list[pa.Table], tip: ObjectId) -> list[pa.Table]:
        """Our original files minus those another writer committed with the
        same bytes; other bytes under the same key are a conflict."""
        new = self._reader(tip)
        rebased = []
        for table in tables:
            theirs = _committed_sources(new, table)
            ours = sources.keys(table)
            for key, blob in zip(ours, table.column("blob_id").to_pylist()):
                if theirs.get(key, blob) != blob:
                    raise ConflictError(
                        f"source file {key!r} was committed concurrently with different bytes"
                    )
            table = table.filter(
                pc.invert(
                    pc.is_in(
                        pa.array(ours, pa.string()), value_set=pa.array(list(theirs), pa.string())
                    )
                )
            )
            if table.num_rows:
                rebased.append(table)
        return rebased

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

    def _write_commit(
        self, batches: list[Batch], segments: list[ProvenanceSegment], files: list[SourceFiles]
    ) -> ObjectId | None:
        """Write the commit on the current base; None when it would change nothing."""
        odb = self._repo.odb
        parent = odb.get_commit(self._base) if self._base else None
        datasets_id = parent.datasets if parent else None
        if self._dataset_edits:
            after = self._edited_datasets(self._base)
            if after != self._reader(self._base).datasets:
                datasets_id = odb.put_object(after)
        registry_id = self._registry_after(parent)
        unchanged = datasets_id == (parent.datasets if parent else None) and registry_id == (
            parent.registry if parent else None
        )
        if not batches and not segments and not files and unchanged:
            return None
        consolidation = parts.consolidator(odb, self._repo.config.format)
        snapshot_index = index.append(
            odb, parent.index if parent else (), batches, consolidate=consolidation
        )
        commit = Commit(
            format=parts.commit_format(snapshot_index),
            parents=(self._base,) if self._base else (),
            height=parent.height + 1 if parent else 1,
            author=self.author,
            message=self.message,
            time=self._repo.clock(),
            batches=tuple(batches),
            index=snapshot_index,
            provenance=tuple(segments),
            provenance_index=index.append(
                odb, parent.provenance_index if parent else (), segments, index.PROVENANCE
            ),
            sources=tuple(files),
            sources_index=index.append(
                odb, parent.sources_index if parent else (), files, index.SOURCES
            ),
            datasets=datasets_id,
            registry=registry_id,
            task=self.task,
        )
        return odb.put_object(commit)

    def _rebase(self, tables: list[pa.Table], tip: ObjectId) -> list[pa.Table]:
        """Our manifests re-checked against what other writers committed between
        our base and ``tip``: identical images are dropped, different bytes
        under the same id are a conflict."""
        old = set(self._base_snapshot().batches.column("manifest").to_pylist())
        new = self._reader(tip)
        concurrent = [m for m in new.batches.column("manifest").to_pylist() if m not in old]
        known = new.extra_column_types()
        rebased = []
        for table in tables:
            try:
                manifest.check_extra_columns(
                    table.drop_columns(list(manifest.STORED_COLUMNS)), known
                )
            except InvalidInputError as exc:
                raise ConflictError(f"a concurrent commit clashes: {exc}") from None
            ids = table.column("image_id").combine_chunks()
            theirs = new.find(ids, ["image_id", "blob_id"], among=concurrent)
            if theirs.num_rows:
                ours = dict(zip(ids.to_pylist(), table.column("blob_id").to_pylist()))
                for image, blob in zip(
                    theirs.column("image_id").to_pylist(), theirs.column("blob_id").to_pylist()
                ):
                    if ours[image] != blob:
                        raise ConflictError(
                            f"image {image!r} was committed concurrently with different bytes"
                        )
                table = table.filter(
                    pc.invert(
                        pc.is_in(table.column("image_id"), value_set=theirs.column("image_id"))
                    )
                )
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


def _committed_sources(snapshot: SnapshotReader, table: pa.Table) -> dict[str, str]:
    """Key → blob id of the files of ``table``'s samples already in ``snapshot``."""
    samples = table.column("sample_id").unique().to_pylist()
    found = snapshot.source_files(samples)
    return dict(zip(sources.keys(found), found.column("blob_id").to_pylist()))


def _with_masks(
    kind: kinds.Kind, table: pa.Table, masks: Mapping[str, bytes] | None
) -> tuple[pa.Table, list[bytes]]:
    """``table`` with the blob columns of each record's mask, and the masks."""
    if not masks:
        raise InvalidInputError(f"{kind.name} records need masks (one per record)")
    ids = table.column("image_id").to_pylist()
    missing = [i for i in ids if i not in masks]
    if missing:
        raise InvalidInputError(f"no mask given for image {missing[0]!r}")
    blobs = [masks[i] for i in ids]
    digests = [d.hex() for chunk, _ in hash_blobs(blobs) for d in chunk]
    table = table.append_column("blob_id", pa.array(digests, pa.string()))
    table = table.append_column("size", pa.array([len(b) for b in blobs], pa.int64()))
    table = table.append_column("media_type", pa.array([media_type(b) for b in blobs], pa.string()))
    if kind.from_blobs is not None:
        table = kind.from_blobs(table, blobs)
    return table, blobs


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
