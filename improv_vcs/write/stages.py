"""What a commit holds, by concern, and the one rebase protocol.

A transaction stages its changes while it is open; at commit time each
concern becomes a :class:`Stage`: it writes its objects on the current base
and, when another writer moved the branch first, :meth:`Stage.rebase`
drops what that writer already committed (a clash is a ConflictError).
The commit loop (:mod:`.transaction`) knows only this protocol.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import ConflictError, InvalidInputError
from ..core.ids import ObjectId
from ..core.model import Batch, Commit, Datasets, ProvenanceSegment, Registry, SourceFiles
from ..provenance import kinds, records, view
from ..snapshot import manifest, registry, sources
from ..snapshot.reader import SnapshotReader
from ..storage.objects import ObjectDatabase


class Stage(ABC):
    """One concern's share of the commit being made."""

    @property
    @abstractmethod
    def empty(self) -> bool:
        """Whether nothing of this concern is left to commit."""

    @abstractmethod
    def rebase(self, base: SnapshotReader, tip: SnapshotReader) -> None:
        """Drop what the commits between ``base`` and ``tip`` (another
        writer's) already hold; a clash is a :class:`ConflictError`."""


def concurrent_ids(base: SnapshotReader, tip: SnapshotReader, table: str, column: str) -> list:
    """Entries of ``tip``'s index table ``table`` (column ``column``) that
    ``base`` does not have: what another writer added."""
    old = set(getattr(base, table).column(column).to_pylist())
    return [m for m in getattr(tip, table).column(column).to_pylist() if m not in old]


class ImageBatches(Stage):
    """New images: one manifest per instrument batch."""

    def __init__(self, tables: list[pa.Table]):
        self.tables = tables

    @property
    def empty(self) -> bool:
        return not self.tables

    def write(self, odb: ObjectDatabase) -> list[Batch]:
        out = []
        for table in self.tables:
            out.append(manifest.summarize(table, odb.put_bytes(manifest.encode(table))))
        return out

    def rebase(self, base: SnapshotReader, tip: SnapshotReader) -> None:
        """Identical images another writer committed are dropped; other bytes
        under the same id, or an extra column of another type, clash."""
        concurrent = concurrent_ids(base, tip, "batches", "manifest")
        known = tip.extra_column_types()
        rebased = []
        for table in self.tables:
            try:
                manifest.check_extra_columns(
                    table.drop_columns(list(manifest.STORED_COLUMNS)), known
                )
            except InvalidInputError as exc:
                raise ConflictError(f"a concurrent commit clashes: {exc}") from None
            ids = table.column("image_id").combine_chunks()
            theirs = tip.find(ids, ["image_id", "blob_id"], among=concurrent)
            if theirs.num_rows:
                ours = dict(zip(ids.to_pylist(), table.column("blob_id").to_pylist()))
                pairs = zip(
                    theirs.column("image_id").to_pylist(), theirs.column("blob_id").to_pylist()
                )
                for image, blob in pairs:
                    if ours[image] != blob:
                        raise ConflictError(
                            f"image {image!r} was committed concurrently with different bytes"
                        )
                kept = pc.invert(pc.is_in(ids, value_set=theirs.column("image_id")))
                table = table.filter(kept)
            if table.num_rows:
                rebased.append(table)
        self.tables = rebased


class ProvenanceRecords(Stage):
    """New provenance records, grouped by kind and sorted by image id."""

    def __init__(self, groups: list[tuple[kinds.Kind, pa.Table]]):
        self.groups = groups

    @property
    def empty(self) -> bool:
        return not self.groups

    def write(self, odb: ObjectDatabase) -> list[ProvenanceSegment]:
        """Segments of at most ``records.SEGMENT_ROWS`` records each, by image-id range."""
        out = []
        for kind, table in self.groups:
            for start in range(0, table.num_rows, records.SEGMENT_ROWS):
                piece = table.slice(start, records.SEGMENT_ROWS)
                out.append(records.summarize(kind, piece, odb.put_bytes(records.encode(piece))))
        return out

    def rebase(self, base: SnapshotReader, tip: SnapshotReader) -> None:
        """Records another writer committed (same record ids) are dropped."""
        old = set(base.provenance_segments.column("id").to_pylist())
        rebased = []
        for kind, table in self.groups:
            theirs = view.segments(tip, kind.name).column("id").to_pylist()
            concurrent = [s for s in theirs if s not in old]
            if concurrent:
                known = view.read(tip, concurrent, ["image_id", "record_id"]).column("record_id")
                drop = pc.is_in(table.column("record_id"), value_set=known.combine_chunks())
                table = table.filter(pc.invert(drop))
            if table.num_rows:
                rebased.append((kind, table))
        self.groups = rebased


class OriginalFiles(Stage):
    """New original files, one table per instrument."""

    def __init__(self, tables: list[pa.Table]):
        self.tables = tables

    @property
    def empty(self) -> bool:
        return not self.tables

    def write(self, odb: ObjectDatabase) -> list[SourceFiles]:
        return [sources.summarize(t, odb.put_bytes(sources.encode(t))) for t in self.tables]

    def rebase(self, base: SnapshotReader, tip: SnapshotReader) -> None:
        """Files another writer committed with the same bytes are dropped;
        other bytes under the same key clash."""
        rebased = []
        for table in self.tables:
            theirs = committed_sources(tip, table)
            ours = sources.keys(table)
            for key, blob in zip(ours, table.column("blob_id").to_pylist()):
                if theirs.get(key, blob) != blob:
                    raise ConflictError(
                        f"source file {key!r} was committed concurrently with different bytes"
                    )
            known = pa.array(list(theirs), pa.string())
            table = table.filter(pc.invert(pc.is_in(pa.array(ours, pa.string()), value_set=known)))
            if table.num_rows:
                rebased.append(table)
        self.tables = rebased


def committed_sources(snapshot: SnapshotReader, table: pa.Table) -> dict[str, str]:
    """Key → blob id of the files of ``table``'s samples already in ``snapshot``."""
    samples = table.column("sample_id").unique().to_pylist()
    found = snapshot.source_files(samples)
    return dict(zip(sources.keys(found), found.column("blob_id").to_pylist()))


class MetadataEdits(Stage):
    """Dataset edits, registry edits and new sample versions: functions of
    the documents they change, so they apply again on whatever base the
    commit is written (a rebase has nothing to drop)."""

    def __init__(self) -> None:
        self.dataset_edits: list[Callable[[Datasets], Datasets]] = []
        self.registry_edits: list[Callable[[Registry], Registry]] = []
        self.samples: list[pa.Table] = []

    @property
    def empty(self) -> bool:
        return not (self.dataset_edits or self.registry_edits or self.samples)

    def rebase(self, base: SnapshotReader, tip: SnapshotReader) -> None:
        """Nothing to drop: the edits are applied to the new base when written."""

    def datasets_on(self, base: SnapshotReader) -> Datasets:
        """The definitions at ``base`` with the dataset edits applied."""
        doc = base.datasets
        for edit in self.dataset_edits:
            doc = edit(doc)
        return doc

    def registry_on(self, base: SnapshotReader) -> Registry:
        """The registry at ``base`` with the registry edits applied."""
        doc = base.registry
        for edit in self.registry_edits:
            doc = edit(doc)
        return doc

    def write(
        self, odb: ObjectDatabase, base: SnapshotReader, parent: Commit | None
    ) -> tuple[ObjectId | None, ObjectId | None]:
        """The datasets and registry ids the new commit names: the parent's,
        or new objects when the edits change them."""
        datasets_id = parent.datasets if parent else None
        if self.dataset_edits:
            after = self.datasets_on(base)
            if after != base.datasets:
                datasets_id = odb.put_object(after)
        return datasets_id, self._registry_id(odb, base, parent)

    def _registry_id(
        self, odb: ObjectDatabase, base: SnapshotReader, parent: Commit | None
    ) -> ObjectId | None:
        before = parent.registry if parent else None
        if not self.registry_edits and not self.samples:
            return before
        doc = self.registry_on(base)
        if self.samples:
            segment = odb.put_bytes(registry.encode_samples(pa.concat_tables(self.samples)))
            segments = (*doc.samples, segment)
            if len(segments) > registry.MAX_SAMPLE_SEGMENTS:
                merged = pa.concat_tables(
                    [registry.decode_samples(odb.get_bytes(s)) for s in segments]
                )
                segments = (odb.put_bytes(registry.encode_samples(merged)),)
            doc = doc.model_copy(update={"samples": segments})
        if doc == base.registry:
            return before
        return odb.put_object(doc)
