"""Merge commits: the union of two snapshots that diverged.

Appends of different images never conflict. The merge commit appends, on
top of ``ours``, every batch, provenance segment and sources table only
``theirs`` has; images (records, original files) both sides appended
identically are kept once; the same image id (or file) with different bytes
on the two sides is a conflict, and nothing is written. Dataset definitions merge per dataset
against the merge base: a side
that did not change a dataset takes the other side's; when both changed it,
their spans are united.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import ConflictError
from ..core.ids import ObjectId
from ..core.model import Batch, Dataset, Datasets, ProvenanceSegment, Registry, SourceFiles
from ..provenance import catalog, records, view
from ..snapshot import manifest, sources
from ..snapshot.reader import SnapshotReader
from ..storage import graph
from ..write.commit import Header, write_commit
from ..write.stage import Written

if TYPE_CHECKING:
    from ..repository.repository import Repository

_LISTED = 20


def merge(repo: Repository, ours: str, theirs: str, author: str, message: str) -> ObjectId:
    """Write the merge commit of ``theirs`` into ``ours`` and return its id
    (the branch is not moved)."""
    mine, other = repo.snapshot(ours).reader, repo.snapshot(theirs).reader
    batches = _their_batches(repo, mine, other)
    segments = _their_segments(repo, mine, other)
    files = _their_sources(repo, mine, other)
    base = graph.merge_base(repo.odb, ours, theirs)
    datasets = _merged_datasets(repo, ObjectId(ours), ObjectId(theirs), base)
    registry = _merged_registry(repo, ObjectId(ours), ObjectId(theirs), base)
    written = Written(tuple(batches), tuple(segments), tuple(files), datasets, registry)
    header = Header(author, message, None, repo.config.format, repo.clock)
    parents = [(ObjectId(ours), mine.commit), (ObjectId(theirs), other.commit)]
    return write_commit(repo.odb, parents, written, header)


def _their_batches(repo: Repository, mine: SnapshotReader, other: SnapshotReader) -> list[Batch]:
    """Batches only ``other`` has, without the images ``mine`` already holds."""
    have = set(mine.batches.column("manifest").to_pylist())
    theirs = other.batches.filter(
        pc.invert(
            pc.is_in(other.batches.column("manifest"), value_set=pa.array(list(have), pa.string()))
        )
    )
    kept: list[tuple[str, pa.Table | None]] = []  # manifest id, its rows without shared images
    conflicts: list[str] = []
    for manifest_id in theirs.column("manifest").to_pylist():
        table = other.manifest(manifest_id)
        ids = table.column("image_id").combine_chunks()
        shared = mine.find(ids, ["image_id", "blob_id"])
        if not shared.num_rows:
            kept.append((manifest_id, None))
            continue
        theirs_blobs = dict(zip(ids.to_pylist(), table.column("blob_id").to_pylist()))
        for image, blob in zip(
            shared.column("image_id").to_pylist(), shared.column("blob_id").to_pylist()
        ):
            if theirs_blobs[image] != blob:
                conflicts.append(image)
        table = table.filter(
            pc.invert(pc.is_in(table.column("image_id"), value_set=shared.column("image_id")))
        )
        if table.num_rows:
            kept.append((manifest_id, table))
    if conflicts:
        raise ConflictError(
            f"{len(conflicts)} image id(s) hold different bytes on the two sides; nothing was "
            f"merged: {_listed(conflicts)}"
        )
    out = []
    for manifest_id, table in kept:  # written only once the merge is known to succeed
        if table is None:
            out.append(_batch(other, manifest_id))
        else:
            out.append(manifest.summarize(table, repo.odb.put_bytes(manifest.encode(table))))
    return out


def _batch(snapshot: SnapshotReader, manifest_id: str) -> Batch:
    row = snapshot.batches.filter(
        pc.equal(snapshot.batches.column("manifest"), manifest_id)
    ).to_pylist()[0]
    return Batch.model_validate(row)


def _their_segments(
    repo: Repository, mine: SnapshotReader, other: SnapshotReader
) -> list[ProvenanceSegment]:
    """Provenance segments only ``other`` has, without records ``mine`` holds."""
    have = set(mine.provenance_segments.column("id").to_pylist())
    out = []
    for row in other.provenance_segments.to_pylist():
        if row["id"] in have:
            continue
        segment = ProvenanceSegment.model_validate(row)
        table = view.read(other, [segment.id])
        range_ = (segment.image_id_min, segment.image_id_max)
        ours = view.segments(mine, segment.kind, id_range=range_)
        known = view.read(
            mine, ours.column("id").to_pylist(), ["image_id", "record_id"], range_
        ).column("record_id")
        kept = table.filter(
            pc.invert(pc.is_in(table.column("record_id"), value_set=known.combine_chunks()))
        )
        if kept.num_rows == table.num_rows:
            out.append(segment)
        elif kept.num_rows:
            segment_id = repo.odb.put_bytes(records.encode(kept))
            out.append(records.summarize(catalog.get_kind(segment.kind), kept, segment_id))
    return out


def _their_sources(
    repo: Repository, mine: SnapshotReader, other: SnapshotReader
) -> list[SourceFiles]:
    """Sources tables only ``other`` has, without the files ``mine`` holds."""
    have = set(mine.source_tables.column("table").to_pylist())
    out, conflicts = [], []
    for row in other.source_tables.to_pylist():
        if row["table"] in have:
            continue
        entry = SourceFiles.model_validate(row)
        table = sources.decode(repo.odb.get_bytes(entry.table))
        ours = mine.source_files(table.column("sample_id").unique().to_pylist())
        held = dict(zip(sources.keys(ours), ours.column("blob_id").to_pylist()))
        keys = sources.keys(table)
        conflicts += [
            k for k, b in zip(keys, table.column("blob_id").to_pylist()) if held.get(k, b) != b
        ]
        kept = table.filter(
            pc.invert(
                pc.is_in(pa.array(keys, pa.string()), value_set=pa.array(list(held), pa.string()))
            )
        )
        if kept.num_rows == table.num_rows:
            out.append(entry)
        elif kept.num_rows:
            out.append(sources.summarize(kept, repo.odb.put_bytes(sources.encode(kept))))
    if conflicts:
        raise ConflictError(
            f"{len(conflicts)} original file(s) hold different bytes on the two sides; nothing "
            f"was merged: {_listed(conflicts)}"
        )
    return out


def _listed(names: list[str]) -> str:
    return ", ".join(sorted(names)[:_LISTED]) + (" …" if len(names) > _LISTED else "")


def _merged_registry(
    repo: Repository, ours: ObjectId, theirs: ObjectId, base: ObjectId | None
) -> str | None:
    """Instruments merge per instrument against the merge base (changed on
    both sides differently: a conflict); taxonomies and sample records unite
    (the other side's sample versions come after ours)."""
    mine, other = repo.snapshot(ours).registry(), repo.snapshot(theirs).registry()
    if mine == other:
        return repo.odb.get_commit(ours).registry
    common = repo.snapshot(base).registry() if base else Registry()
    instruments = {}
    for name in sorted({*mine.instruments, *other.instruments}):
        a, b, was = (
            mine.instruments.get(name),
            other.instruments.get(name),
            common.instruments.get(name),
        )
        if a != b and a != was and b != was:
            raise ConflictError(
                f"instrument {name!r} was changed on both sides; update it on one side, then pull"
            )
        chosen = b if a == was else a
        if chosen is not None:
            instruments[name] = chosen
    taxonomies = dict(mine.taxonomies)
    for key, taxonomy in other.taxonomies.items():
        if taxonomies.setdefault(key, taxonomy) != taxonomy:
            raise ConflictError(f"taxonomy {key} has different classes on the two sides")
    samples = (*mine.samples, *(s for s in other.samples if s not in mine.samples))
    merged = Registry(
        instruments=instruments,
        taxonomies=taxonomies,
        samples=samples,
        strict_instruments=mine.strict_instruments or other.strict_instruments,
    )
    return repo.odb.put_object(merged)


def _merged_datasets(
    repo: Repository, ours: ObjectId, theirs: ObjectId, base: ObjectId | None
) -> str | None:
    mine, other = repo.snapshot(ours).reader.datasets, repo.snapshot(theirs).reader.datasets
    if mine == other:
        return repo.odb.get_commit(ours).datasets
    common = repo.snapshot(base).reader.datasets if base else Datasets()
    merged: dict[str, Dataset] = {}
    for name in sorted({*mine.datasets, *other.datasets}):
        a, b, was = mine.datasets.get(name), other.datasets.get(name), common.datasets.get(name)
        if a == was:
            chosen = b
        elif b == was or a == b:
            chosen = a
        else:
            spans = sorted(
                {*(a.spans if a else ()), *(b.spans if b else ())},
                key=lambda s: (s.instrument, s.start, s.end),
            )
            chosen = Dataset(description=(a or b).description, spans=tuple(spans))  # type: ignore[union-attr]
        if chosen is not None:
            merged[name] = chosen
    return repo.odb.put_object(Datasets(datasets=merged))
