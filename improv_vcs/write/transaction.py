"""The transaction: stage changes, then commit them atomically.

While it is open a transaction stages each concern in its own
:class:`~.stage.Stage`: images (:mod:`.images`) and original files
(:mod:`.sources`), their bytes packed as they stream in (:mod:`.packing`);
provenance records (:mod:`.records`) or segments other processes wrote
(:mod:`.segments`); dataset, registry and sample edits (:mod:`.edits`).
Committing writes every stage, writes the commit (:mod:`.commit`), checks
gc's fence and moves the branch by compare-and-swap. When another writer
moved it first, every stage is rebased onto the new tip through the one
protocol (appends of different images never conflict) and the commit is
retried with backoff, so no commit is ever lost.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..core.errors import ConflictError, InvalidInputError, NotFoundError
from ..core.hashing import hash_blobs, hash_files
from ..core.ids import ObjectId, label, ref_name
from ..core.model import Batch, ProvenanceSegment, Registry, SourceFiles
from ..maintenance import repack as maintenance
from ..snapshot import tasks
from ..snapshot.reader import SnapshotReader
from ..snapshot.sources import SourceFile
from ..storage.closure import commit_keys
from ..storage.fence import Fence
from ..storage.packs import DEFAULT_PACK_SIZE
from .commit import Header, write_commit
from .edits import MetadataEdits
from .images import Deployments, Images
from .packing import Packer
from .records import ProvenanceRecords
from .segments import WrittenSegments
from .sources import OriginalFiles
from .stage import Stage, Written
from .tables import as_table

if TYPE_CHECKING:
    from ..repository.repository import Repository

MAX_ATTEMPTS = 100
Progress = Callable[[int], None]


class Transaction:
    """Appends one or more batches (any instruments) and commits them as one commit.

    Use as a context manager: the commit happens when the block exits without
    an exception; on an exception nothing becomes visible. A failed append
    aborts the whole transaction. ``fence`` is gc's fence when the caller
    opened it earlier (objects this commit names were written before the
    transaction began).
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
        fence: Fence | None = None,
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
        self._fence = fence or Fence(repo.store)  # before anything is written
        base = repo.refs.branch(branch)
        if base is None and repo.refs.branches():
            raise NotFoundError(
                f"no branch named {branch!r}; create it first with `improv branch {branch} REF`"
            )
        self._base = self._reader(base)
        self._packer = Packer(repo.odb, pack_size, progress)
        self._edits = MetadataEdits(self._base, repo.clock)
        deployments = Deployments(
            self._edits.registry_after, repo.clock, self.warnings, allow_outside_deployment, strict
        )
        self._images = Images(self._base, self._packer, deployments)
        self._records = ProvenanceRecords(self._base, self._packer, repo.clock)
        self._sources = OriginalFiles(self._base, self._packer)
        self._segments = WrittenSegments(self._base)
        self._stages: tuple[Stage, ...] = (
            self._images,
            self._records,
            self._segments,
            self._sources,
            self._edits,
        )
        self._closed = False
        self.commit_id: ObjectId | None = None
        self.task_done: ObjectId | None = None
        """When the task was already committed on the branch: that commit (this one is a no-op)."""
        self.batches: tuple[Batch, ...] = ()
        self.segments: tuple[ProvenanceSegment, ...] = ()
        self.sources: tuple[SourceFiles, ...] = ()

    # -- staging ---------------------------------------------------------------
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
        return self._guarded(self._images.append, instrument, table, hash_blobs(blobs))

    def append_files(self, instrument: str, metadata: pa.Table, paths: Sequence[str]) -> int:
        """Append images read from ``paths``, aligned with the rows of ``metadata``."""
        if len(paths) != metadata.num_rows:
            raise InvalidInputError(f"{len(paths)} files for {metadata.num_rows} metadata rows")
        return self._guarded(self._images.append, instrument, metadata, hash_files(paths))

    def add_source_files(self, instrument: str, files: Sequence[SourceFile]) -> int:
        """Keep original files (raw bins, whole stacks, metadata documents)
        byte for byte, keyed by ``(sample_id, path)``; returns how many are new.
        Files already committed with the same bytes are skipped."""
        return self._guarded(self._sources.add, instrument, files)

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
            self._records.add, kind, records, source, run_id, masks, self._images.require
        )

    def add_segments(
        self, segments: Sequence[ProvenanceSegment], since: SnapshotReader | None = None
    ) -> int:
        """Name provenance segments another process already wrote (a cluster
        worker: :mod:`improv_vcs.cluster`) in this commit. They were
        deduplicated against ``since``; records the branch gained after it
        (or gains concurrently) are dropped. Returns the records left."""
        return self._guarded(self._segments.add, segments, since)

    def add_dataset_span(
        self,
        name: str,
        instrument: str,
        start: datetime,
        end: datetime,
        description: str | None = None,
    ) -> None:
        """Add a span to dataset ``name`` (created if new) in this commit."""
        self._edits.add_span(name, instrument, start, end, description)

    def remove_dataset_span(
        self, name: str, instrument: str, start: datetime, end: datetime
    ) -> None:
        """Remove a span from dataset ``name`` in this commit."""
        self._edits.remove_span(name, instrument, start, end)

    def edit_registry(self, edit: Callable[[Registry], Registry]) -> None:
        """Apply ``edit`` (see :mod:`improv_vcs.snapshot.registry`) to the registry in
        this commit; it is checked now, against the base and earlier edits."""
        self._edits.edit_registry(edit)

    def add_samples(self, rows: Iterable[Mapping[str, Any]] | pa.Table) -> int:
        """Record sample versions (``sample_id``, ``instrument``, ``start``,
        ``end``, optional ``quality``, ``alt_ids``, ``meta``); the latest
        version of a sample is the one queries see. Rows equal to a sample's
        current record are skipped; returns how many are new versions."""
        return self._edits.add_samples(rows)

    def _guarded(self, stage: Callable[..., int], *args: Any) -> int:
        """Stage something; any failure aborts the whole transaction."""
        if self._closed:
            raise InvalidInputError("this transaction is already committed or aborted")
        try:
            return stage(*args)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Give up: nothing of this transaction becomes visible."""
        self._closed = True
        self._packer.discard()

    # -- committing ------------------------------------------------------------
    def commit(self) -> ObjectId | None:
        """Write every stage and the commit, then move the branch.

        Returns the new commit id, or None when there was nothing new (or the
        task was already committed: :attr:`task_done`).
        """
        if self._closed:
            raise InvalidInputError("this transaction is already committed or aborted")
        self._closed = True
        try:
            if self._task_done() or all(stage.empty for stage in self._stages):
                return None
            return self._commit()
        finally:
            self._packer.close()

    def _commit(self) -> ObjectId | None:
        """Write and publish, rebasing after every lost race."""
        odb, repo = self._repo.odb, self._repo
        header = Header(self.author, self.message, self.task, repo.config.format, repo.clock)
        for attempt in range(MAX_ATTEMPTS):
            written = sum((stage.write(odb) for stage in self._stages), Written())
            if written.empty:
                return None
            base = self._base
            parents = [(base.commit_id, base.commit)] if base.commit_id else []
            commit_id = write_commit(odb, parents, written, header)
            self._fence.check(commit_keys(odb, commit_id, odb.get_commit(commit_id)))
            try:
                repo.refs.set_branch(self.branch, self._base.commit_id, commit_id)
            except ConflictError:
                if not self._rebase():
                    return None
                time.sleep(random.random() * min(0.5, 0.005 * 2**attempt))
                continue
            self.commit_id, self.batches = commit_id, written.batches
            self.segments, self.sources = written.segments, written.sources
            maintenance.auto(repo, odb.get_commit(commit_id).height)
            return commit_id
        raise ConflictError(
            f"branch {self.branch!r} kept moving; gave up after {MAX_ATTEMPTS} attempts (nothing "
            f"was committed)"
        )

    def _rebase(self) -> bool:
        """After a lost race, every stage onto the branch's new tip; whether
        anything is left to commit (nothing when the task landed meanwhile)."""
        tip = self._repo.refs.branch(self.branch)
        if tip is None:
            raise ConflictError(f"branch {self.branch!r} was deleted during the commit") from None
        onto = self._reader(tip)
        self._base = onto
        if self._task_done():
            return False
        left = [stage.rebase(onto) for stage in self._stages]  # every stage, not the first few
        return any(left)

    def _task_done(self) -> bool:
        """Whether this transaction's task is already committed in the base's
        history (through its tasks index, :mod:`improv_vcs.snapshot.tasks`);
        then this transaction is a no-op naming that commit
        (:attr:`task_done`)."""
        base = self._base
        if self.task is None or base.commit_id is None:
            return False
        self.task_done = tasks.find(self._repo.odb, base.commit_id, base.commit, self.task)
        return self.task_done is not None

    def _reader(self, commit_id: ObjectId | None) -> SnapshotReader:
        """The stored view at a commit (None: the empty one)."""
        if commit_id is None:
            return SnapshotReader(self._repo.odb, None, None)
        return self._repo.snapshot(commit_id).reader

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.commit()
