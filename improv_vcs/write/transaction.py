"""The transaction: stage changes, then commit them atomically.

While it is open a transaction stages images and original files (their
bytes packed as they stream in: :mod:`.packing`), provenance records
(:mod:`.records`) and metadata edits. At commit time each concern becomes a
:class:`~.stages.Stage`; the loop here writes them on the base, writes the
commit, checks gc's fence and moves the branch by compare-and-swap. When
another writer moved it first, every stage is rebased onto the new tip
through the one protocol (appends of different images never conflict) and
the commit is retried with backoff, so no commit is ever lost.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import ConflictError, InvalidInputError, NotFoundError
from ..core.hashing import Chunk, hash_blobs, hash_files
from ..core.ids import ObjectId, instrument_name, label, ref_name
from ..core.model import Batch, Commit, ProvenanceSegment, Registry, SourceFiles
from ..maintenance import repack as maintenance
from ..snapshot import datasets, index, manifest, parts, registry, sources
from ..snapshot.reader import SnapshotReader
from ..snapshot.sources import SourceFile
from ..storage import graph
from ..storage.closure import commit_keys
from ..storage.fence import Fence
from ..storage.packs import DEFAULT_PACK_SIZE
from .packing import Packer, PendingBatch
from .records import RecordBuffer
from .stages import (
    ImageBatches,
    MetadataEdits,
    OriginalFiles,
    ProvenanceRecords,
    Stage,
    committed_sources,
)
from .tables import as_table

if TYPE_CHECKING:
    from ..repository.repository import Repository

MAX_ATTEMPTS = 100
Progress = Callable[[int], None]


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
        self._fence = Fence(repo.store)  # before anything is written
        self._base = repo.refs.branch(branch)
        self._snapshot: SnapshotReader | None = None
        if self._base is None and repo.refs.branches():
            raise NotFoundError(
                f"no branch named {branch!r}; create it first with `improv branch {branch} REF`"
            )
        self._pending: list[PendingBatch] = []
        self._pending_blobs: dict[str, str] = {}  # image id → blob id, all pending batches
        self._packer = Packer(repo.odb, pack_size, progress)
        self._packs: list[ObjectId] = []
        self._edits = MetadataEdits()
        self._records = RecordBuffer()
        self._pending_sources: list[PendingBatch] = []
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
        table = as_table(metadata)
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
        pending = self._packer.pack_new(
            instrument, metadata, ids.to_pylist(), known, stream, "image {!r}"
        )
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
        doc = self._edits.registry_on(self._base_snapshot())
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
        known = committed_sources(self._base_snapshot(), table)
        for pending in self._pending_sources:
            known.update(zip(sources.keys(pending.metadata), pending.blob_ids))
        stream = itertools.chain(
            hash_files([os.fspath(f.location) for f in ordered if f.data is None]),
            hash_blobs([f.data for f in ordered if f.data is not None]),
        )
        pending = self._packer.pack_new(instrument, table, keys, known, stream, "source file {!r}")
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
        return self._guarded(
            lambda: self._records.add(
                self._base_snapshot(),
                kind,
                records,
                source,
                run_id,
                masks,
                self._require_images,
                self._packer.place,
                self._repo.clock(),
            )
        )

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
        self._packer.discard()

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
        self._edits.dataset_edits.append(
            functools.partial(datasets.add_span, name=name, span=span, description=description)
        )

    def remove_dataset_span(
        self, name: str, instrument: str, start: datetime, end: datetime
    ) -> None:
        """Remove a span from dataset ``name`` in this commit."""
        span = datasets.make_span(instrument, start, end)
        edit = functools.partial(datasets.remove_span, name=name, span=span)
        edit(self._edits.datasets_on(self._base_snapshot()))  # fail now, not at commit
        self._edits.dataset_edits.append(edit)

    # -- organizing metadata -------------------------------------------------
    def edit_registry(self, edit: Callable[[Registry], Registry]) -> None:
        """Apply ``edit`` (see :mod:`improv_vcs.snapshot.registry`) to the registry in
        this commit; it is checked now, against the base and earlier edits."""
        edit(self._edits.registry_on(self._base_snapshot()))
        self._edits.registry_edits.append(edit)

    def add_samples(self, rows: Iterable[Mapping[str, Any]] | pa.Table) -> int:
        """Record sample versions (``sample_id``, ``instrument``, ``start``,
        ``end``, optional ``quality``, ``alt_ids``, ``meta``); the latest
        version of a sample is the one queries see. Rows equal to a sample's
        current record are skipped; returns how many are new versions."""
        listed = rows.to_pylist() if isinstance(rows, pa.Table) else list(rows)
        table = registry.sample_rows(listed, self._repo.clock())
        known = self._base_snapshot().sample_versions()
        table = registry.changed(pa.concat_tables([known, *self._edits.samples]), table)
        if table.num_rows:
            self._edits.samples.append(table)
        return table.num_rows

    # -- committing --------------------------------------------------------
    def commit(self) -> ObjectId | None:
        """Write manifests and the commit, then move the branch.

        Returns the new commit id, or None when there was nothing new.
        """
        if self._closed:
            raise InvalidInputError("this transaction is already committed or aborted")
        self._closed = True
        if (
            not (self._pending or self._pending_sources)
            and self._records.empty
            and self._edits.empty
        ):
            self._packer.close()
            return None
        if self._task_done_since(None):
            self._packer.close()
            return None
        self._packs = self._packer.finish()
        images = ImageBatches([self._manifest_table(p) for p in self._pending])
        provenance = ProvenanceRecords(self._records.groups(self._packs))
        files = OriginalFiles(self._source_tables())
        stages: list[Stage] = [images, provenance, files, self._edits]
        odb = self._repo.odb
        for attempt in range(MAX_ATTEMPTS):
            batches, segments, kept = images.write(odb), provenance.write(odb), files.write(odb)
            commit_id = self._write_commit(batches, segments, kept)
            if commit_id is None:
                return None
            self._fence.check(commit_keys(odb, commit_id, odb.get_commit(commit_id)))
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
                base, moved = self._reader(self._base), self._reader(tip)
                for stage in stages:
                    stage.rebase(base, moved)
                self._base = tip
                if all(stage.empty for stage in stages):
                    return None
                time.sleep(random.random() * min(0.5, 0.005 * 2**attempt))
                continue
            self.commit_id, self.batches, self.segments = commit_id, tuple(batches), tuple(segments)
            self.sources = tuple(kept)
            maintenance.auto(self._repo, odb.get_commit(commit_id).height)
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

    def _manifest_table(self, pending: PendingBatch) -> pa.Table:
        return manifest.build_manifest(
            pending.metadata,
            pending.instrument,
            pa.array(pending.blob_ids, pa.string()),
            pa.array(pending.sizes, pa.int64()),
            pa.array([self._packs[n] for n in pending.pack_numbers], pa.string()),
            pa.array(pending.offsets, pa.int64()),
        )

    def _write_commit(
        self, batches: list[Batch], segments: list[ProvenanceSegment], files: list[SourceFiles]
    ) -> ObjectId | None:
        """Write the commit on the current base; None when it would change nothing."""
        odb = self._repo.odb
        parent = odb.get_commit(self._base) if self._base else None
        datasets_id, registry_id = self._edits.write(odb, self._reader(self._base), parent)
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

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.commit()
