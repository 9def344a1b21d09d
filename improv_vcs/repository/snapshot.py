"""A read session: the repository as it was at one commit.

:meth:`Repository.snapshot <improv_vcs.Repository.snapshot>` opens one; it
never changes, so it may be kept, shared between threads and asked many
questions. Every read lives here: images, queries and counts, provenance,
datasets, samples and the registry, original files and stacks, exports and
citations. Filters are given as a :class:`~improv_vcs.Query`, or as its
fields (``instruments=``, ``start=``, ``where=[Where("operator", "=", "ada")]``…).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import InvalidInputError, NotFoundError
from ..core.ids import ObjectId
from ..core.model import Commit, Dataset, Registry, Span
from ..snapshot import tasks
from ..snapshot.reader import SnapshotReader

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ..cite.citation import Citation
    from ..provenance.view import Record
    from ..query.engine import QueryResult
    from ..query.export import ExportReport, FilesReport
    from ..query.filters import Query
    from ..query.stack import Selector
    from ..query.timeline import Timeline
    from ..write.transaction import Progress
    from .repository import Repository


class Snapshot:
    """Every read of one commit (or of an empty repository)."""

    def __init__(
        self,
        repository: Repository,
        rev: str | None,
        commit_id: ObjectId | None,
        reader: SnapshotReader,
    ):
        self.repository = repository
        self.rev = rev
        """The revision as given (a branch, a tag, an id; None: the default branch)."""
        self.commit_id = commit_id
        """The commit read (None: a repository with no commit yet)."""
        self.reader = reader
        """The snapshot's index and manifests, as stored."""

    def __repr__(self) -> str:
        return f"Snapshot({self.repository.url!r}, {self.commit_id!r})"

    @property
    def commit(self) -> Commit | None:
        return self.reader.commit

    # -- images ------------------------------------------------------------
    def images(self) -> pa.Table:
        """Every image row (manifest columns)."""
        return self.reader.images()

    def read_image(self, image_id: str) -> bytes:
        """The bytes of one image, verified against its hash."""
        return self.reader.read_image(image_id)

    def record(self, image_id: str, extra: bool = False) -> dict:
        """One image's manifest row (with ``extra``, its instrument's own columns too)."""
        return self.reader.record(image_id, extra)

    def instruments(self) -> list[str]:
        """Instruments with at least one batch."""
        return sorted(set(self.reader.batches.column("instrument").to_pylist()))

    # -- queries -------------------------------------------------------------
    def select(
        self,
        query: Query,
        count: bool = False,
        record_ids: bool = False,
        manifests: Sequence[str] | None = None,
    ) -> QueryResult:
        """Run ``query`` and say how it was answered (with ``record_ids``, also
        which provenance records it used); ``manifests`` limits it to those
        batches (one partition of :meth:`partitions`)."""
        from ..query import engine

        return engine.run(self.reader, query, self._spans(query), count, record_ids, manifests)

    def partitions(self, query: Query | None = None, **filters: Any) -> pa.Table:
        """The batches (index rows: ``manifest``, ``instrument``, ``rows``, …)
        a query reads, pruned as it prunes: what a cluster splits it into."""
        from ..query import engine

        query = _query(query, filters)
        return engine.scanned(self.reader, query, self._spans(query))

    def _spans(self, query: Query) -> tuple[Span, ...] | None:
        return self.dataset(query.dataset).spans if query.dataset is not None else None

    def query(self, query: Query | None = None, **filters: Any) -> pa.Table:
        """Image rows matching ``query`` (or the fields of :class:`Query`), as
        Arrow, sorted by time then image id."""
        return self.select(_query(query, filters)).table

    def count(self, query: Query | None = None, **filters: Any) -> int:
        """How many images match."""
        return int(self.select(_query(query, filters), count=True).table.column(0)[0].as_py())

    def timeline(
        self,
        start: datetime,
        end: datetime,
        instruments: Sequence[str] = (),
        bucket: str | None = None,
    ) -> Timeline:
        """Images in ``[start, end)`` per instrument and time bucket (``sample``,
        ``hour``, ``day``, ``week``; chosen from the range when None), with the
        volume analysed and concentration where sample records name one;
        batches inside one bucket are counted from the index, unread."""
        from ..query.timeline import timeline

        return timeline(self.reader, start, end, tuple(instruments), bucket)

    def duckdb(self) -> Any:
        """A DuckDB connection with a read-only ``images`` view (no file
        access), for your own SQL."""
        from ..core.sql import connect

        connection = connect()
        connection.register("images", self.images())
        return connection

    def export(
        self,
        dest: str | os.PathLike[str],
        metadata_format: str = "parquet",
        metadata_only: bool = False,
        progress: Progress | None = None,
        query: Query | None = None,
        **filters: Any,
    ) -> ExportReport:
        """Write the matching images (``<image_id><ext>``) and a metadata table
        into the directory ``dest``; files already there with the right hash
        are skipped, so an interrupted export resumes."""
        chosen = _query(query, filters).model_copy(update={"columns": None})
        return self.export_rows(
            self.select(chosen).table, dest, metadata_format, metadata_only, progress
        )

    def export_rows(
        self,
        rows: pa.Table,
        dest: str | os.PathLike[str],
        metadata_format: str = "parquet",
        metadata_only: bool = False,
        progress: Progress | None = None,
    ) -> ExportReport:
        """:meth:`export` for rows already selected (all manifest columns)."""
        from ..query.export import export_rows

        return export_rows(
            self.reader.odb, rows, Path(dest), metadata_format, metadata_only, progress
        )

    # -- organizing metadata ---------------------------------------------------
    def datasets(self) -> dict[str, Dataset]:
        """Dataset definitions, by name."""
        return dict(self.reader.datasets.datasets)

    def dataset(self, name: str) -> Dataset:
        found = self.reader.datasets.datasets.get(name)
        if found is None:
            where = self.commit_id[:12] if self.commit_id else "an empty repository"
            raise NotFoundError(f"no dataset named {name!r} at {where}")
        return found

    def registry(self) -> Registry:
        """Instruments, taxonomies and the sample segments in force."""
        return self.reader.registry

    def samples(self, history: bool = False) -> pa.Table:
        """The latest version of every sample (every version, oldest first,
        with ``history``)."""
        from ..snapshot.registry import latest

        versions = self.reader.sample_versions()
        return versions if history else latest(versions)

    def tasks(
        self, instrument: str | None = None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The ingest tasks recorded in this commit's history, newest first:
        task, commit, time, author, images and instruments."""
        if self.commit_id is None:
            return []
        found = []
        for row in tasks.history(self.reader.odb, self.commit_id, self.commit).to_pylist():
            if since is not None and row["time_min"] < since:
                continue
            if instrument is None or instrument in row["instruments"]:
                found.append(
                    {
                        "task": row["task"],
                        "commit": row["commit"],
                        "time": row["time_min"].isoformat(),
                        "author": row["author"],
                        "images": row["rows"],
                        "instruments": row["instruments"],
                    }
                )
        return found

    def task_commit(self, task: str) -> ObjectId | None:
        """The commit that recorded ingest task ``task`` in this history, if any."""
        if self.commit_id is None:
            return None
        return tasks.find(self.reader.odb, self.commit_id, self.commit, task)

    # -- provenance ----------------------------------------------------------
    def provenance(self, image_id: str, kind: str | None = None) -> list[Record]:
        """Every provenance record of one image (all runs), oldest first."""
        from ..provenance import view

        return view.history(self.reader, image_id, kind)

    def provenance_records(self, kind: str, run: str | None = None) -> pa.Table:
        """Every record of ``kind`` (of one run, when given), as Arrow.
        Classification records with a positional ``score_vector`` get
        ``class_scores`` decoded through the taxonomy in force."""
        import pyarrow.compute as pc

        from ..provenance import catalog, view
        from ..snapshot.registry import with_class_scores

        catalog.get_kind(kind)
        found = view.segments(self.reader, kind, run)
        table = view.read(self.reader, found.column("id").to_pylist())
        if run is not None:
            table = table.filter(pc.equal(table.column("run_id"), run))
        return with_class_scores(table, self.reader.registry) if kind == "classification" else table

    def read_mask(self, image_id: str, run: str | None = None) -> bytes:
        """The segmentation mask of an image (the latest run, or ``run``), verified."""
        from ..provenance import view

        row = view.mask_location(self.reader, image_id, run)
        return self.reader.odb.read_blob(row["pack"], row["offset"], row["size"], row["blob_id"])

    # -- original files and stacks -------------------------------------------
    def source_files(self, query: Query | None = None, **filters: Any) -> pa.Table:
        """Original files (raw bins, whole stacks, metadata documents) of the
        samples the filters select: instrument, time, sample and dataset
        filters apply to the samples themselves (so samples without images
        count); any image filter keeps the samples of the matching images."""
        import pyarrow.compute as pc

        from ..snapshot import sources

        chosen = _query(query, filters)
        files = self.reader.source_files(list(chosen.samples) or None)
        files = sources.select(files, chosen, self._spans(chosen))
        if any(getattr(chosen, f) for f in sources.IMAGE_FILTERS):
            rows = self.select(
                chosen.model_copy(update={"columns": ("sample_id",), "limit": None})
            ).table
            files = files.filter(
                pc.is_in(files.column("sample_id"), value_set=rows.column("sample_id").unique())
            )
        return files

    def read_source(self, sample_id: str, name: str) -> bytes:
        """The bytes of one original file (by file name or recorded path), verified."""
        import pyarrow.compute as pc

        files = self.reader.source_files([sample_id])
        named = pc.or_(pc.equal(files.column("name"), name), pc.equal(files.column("path"), name))
        found = files.filter(named).to_pylist()
        if not found:
            raise NotFoundError(f"no original file {name!r} of sample {sample_id!r}")
        row = found[0]
        return self.reader.odb.read_blob(row["pack"], row["offset"], row["size"], row["blob_id"])

    def triggers(self, sample_id: str) -> pa.Table:
        """Every trigger of an IFCB bin, with or without an image, read from
        its kept ``.hdr`` and ``.adc``: ``roi_number``, the ADC columns and
        each trigger's ``timestamp``."""
        from ..ingest.adapters.ifcb import trigger_table

        names = [f"{sample_id}.hdr", f"{sample_id}.adc"]
        kept = set(self.reader.source_files([sample_id]).column("name").to_pylist())
        if not kept.issuperset(names):
            raise NotFoundError(
                f"sample {sample_id!r} has no original .hdr and .adc files (not an IFCB bin, "
                "or committed with --no-raw)"
            )
        return trigger_table(sample_id, *(self.read_source(sample_id, n) for n in names))

    def export_sources(
        self,
        dest: str | os.PathLike[str],
        progress: Progress | None = None,
        query: Query | None = None,
        **filters: Any,
    ) -> FilesReport:
        """Write the original files :meth:`source_files` selects under
        ``dest``, at their recorded relative paths, byte for byte."""
        from ..query.export import export_files

        files = self.source_files(query, **filters)
        if files.num_rows == 0:
            raise NotFoundError("no original files match (were they ingested with --no-raw?)")
        return export_files(self.reader.odb, files, Path(dest), progress)

    def read_stack(
        self,
        sample: str | None = None,
        query: Query | None = None,
        p: Selector = None,
        t: Selector = None,
        c: Selector = None,
        z: Selector = None,
    ) -> np.ndarray:
        """The N-D array of one stack's planes, shaped ``(P, T, C, Z, Y, X[, S])``
        before selection; ``p, t, c, z`` index it like numpy (an int drops the
        axis, a slice or list keeps it). Give the ``sample`` or a ``query``
        matching the planes of exactly one sample. Only selected planes are read.
        Series differing in shape read one at a time (``p=1`` gives that series'
        ``(T, C, Z, Y, X[, S])``); a read mixing them is refused."""
        from ..query import stack
        from ..query.export import iter_blobs
        from ..query.filters import build_query

        if (sample is None) == (query is None):
            raise InvalidInputError("give either a sample or a query")
        if query is None:
            query = build_query(samples=(sample,))
        rows = self.select(query.model_copy(update={"columns": None})).table
        if rows.num_rows == 0:
            raise NotFoundError(
                f"no planes of sample {sample!r}" if sample else "no images match the query"
            )
        samples = rows.column("sample_id").unique().to_pylist()
        if len(samples) > 1:
            raise InvalidInputError(
                f"the query matches {len(samples)} samples; read one stack at a time"
            )
        picked, chosen = stack.select(rows, {"p": p, "t": t, "c": c, "z": z})
        planes = (
            (image, data)
            for image, _, data in iter_blobs(self.reader.odb, picked, picked.column("image_id"))
        )
        return stack.assemble(picked, chosen, planes)

    # -- citations ---------------------------------------------------------
    def cite(
        self,
        tag: str | None = None,
        title: str | None = None,
        authors: Sequence[str] = (),
        license: str | None = None,
        description: str | None = None,
        doi: str | None = None,
        query: Query | None = None,
        **filters: Any,
    ) -> Citation:
        """A citation of the selection the filters describe; with ``tag`` (a
        release tag naming this commit), its release metadata fills what is
        not given. See :mod:`improv_vcs.cite`."""
        from ..cite.citing import make

        metadata = {
            "title": title,
            "authors": tuple(authors),
            "license": license,
            "description": description,
            "doi": doi,
        }
        return make(self, _query(query, filters), tag, metadata)


def _query(query: Query | None, filters: dict[str, Any]) -> Query:
    from ..query.filters import build_query

    if query is not None and filters:
        raise InvalidInputError("give a Query or its fields, not both")
    return query if query is not None else build_query(**filters)
