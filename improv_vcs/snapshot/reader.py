"""A read-only view of the repository as of one commit."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import IntegrityError, NotFoundError
from ..core.ids import ObjectId, image_id
from ..core.model import Commit, Datasets, Part, Registry
from ..storage.objects import ObjectDatabase
from . import index, manifest, parts, registry, sources


class SnapshotReader:
    """Every batch reachable from ``commit_id``, found through its snapshot index."""

    def __init__(self, odb: ObjectDatabase, commit_id: ObjectId | None, commit: Commit | None):
        self.odb = odb
        self.commit_id = commit_id
        self.commit = commit

    @cached_property
    def batches(self) -> pa.Table:
        """One row per batch with its statistics (the index schema)."""
        return index.load(self.odb, self.commit.index if self.commit else ())

    @cached_property
    def provenance_segments(self) -> pa.Table:
        """One row per provenance segment with its statistics."""
        segments = self.commit.provenance_index if self.commit else ()
        return index.load(self.odb, segments, index.PROVENANCE)

    @cached_property
    def source_tables(self) -> pa.Table:
        """One row per sources table (original files) with its statistics."""
        segments = self.commit.sources_index if self.commit else ()
        return index.load(self.odb, segments, index.SOURCES)

    def source_files(self, sample_ids: list[str] | None = None) -> pa.Table:
        """Every original file of the snapshot (of ``sample_ids`` when given),
        by sample and path."""
        tables = self.source_tables
        if sample_ids is not None:
            if not sample_ids:
                return sources.SCHEMA.empty_table()
            low, high = min(sample_ids), max(sample_ids)
            tables = tables.filter(
                pc.and_(
                    pc.greater_equal(tables.column("sample_id_max"), low),
                    pc.less_equal(tables.column("sample_id_min"), high),
                )
            )
        ids = tables.column("table").to_pylist()
        if not ids:
            return sources.SCHEMA.empty_table()
        loaded = _loader().map(
            lambda t: self.odb.cached(
                f"sources:{t}", lambda: sources.decode(self.odb.get_bytes(t))
            ),
            ids,
        )
        files = pa.concat_tables(list(loaded))
        if sample_ids is not None:
            files = files.filter(
                pc.is_in(files.column("sample_id"), value_set=pa.array(sample_ids, pa.string()))
            )
        return files.sort_by([(k, "ascending") for k in sources.KEY])

    @cached_property
    def datasets(self) -> Datasets:
        """Dataset definitions at this commit."""
        if self.commit is None or self.commit.datasets is None:
            return Datasets()
        found = self.odb.get_object(self.commit.datasets)
        if not isinstance(found, Datasets):
            raise IntegrityError(
                f"commit {self.commit_id} points at a {found.kind} as its datasets"
            )
        return found

    @cached_property
    def registry(self) -> Registry:
        """Instruments, taxonomies and sample segments in force at this commit."""
        if self.commit is None or self.commit.registry is None:
            return Registry()
        found = self.odb.get_object(self.commit.registry)
        if not isinstance(found, Registry):
            raise IntegrityError(
                f"commit {self.commit_id} points at a {found.kind} as its registry"
            )
        return found

    def sample_versions(self) -> pa.Table:
        """Every version of every sample record, oldest first."""
        tables = [
            self.odb.cached(
                f"samples:{s}", lambda s=s: registry.decode_samples(self.odb.get_bytes(s))
            )
            for s in self.registry.samples
        ]
        return pa.concat_tables(tables) if tables else registry.SAMPLE_SCHEMA.empty_table()

    def manifest(self, manifest_id: str, columns: list[str] | None = None) -> pa.Table:
        """A batch's manifest rows (only ``columns`` it has, when given)."""
        key = f"manifest:{manifest_id}:{','.join(columns) if columns is not None else '*'}"
        return self.odb.cached(
            key, lambda: manifest.decode(self.odb.get_bytes(manifest_id), columns)
        )

    def extra_column_types(self) -> dict[str, str]:
        """Every extra column of the snapshot with its (first non-null) Arrow type."""
        b = self.batches
        names = pc.list_flatten(b.column("extra_columns")).to_pylist()
        kinds = pc.list_flatten(b.column("extra_types")).to_pylist()
        found: dict[str, str] = {}
        for name, kind in zip(names, kinds):
            if found.get(name, "null") == "null":
                found[name] = kind
        return found

    def manifests_with_samples(self, samples: Sequence[str]) -> set[str]:
        """Manifest ids of the batches that have a row of one of ``samples``
        or a row with no sample id (which a sample's time window may claim).
        What each batch holds is read once per index segment and cached (a
        segment never changes), so a new commit reads only its new batches."""
        wanted = set(samples)
        found: set[str] = set()
        manifests = self.batches.column("manifest").to_pylist()
        counts = self.batches.column("rows").to_pylist()
        position = 0
        for segment in self.commit.index if self.commit else ():
            end = position + segment.entries
            held = self.odb.cached(
                f"sample-ids:{segment.id}",
                lambda a=position, b=end: self._sample_ids(manifests[a:b], counts[a:b]),
            )
            found.update(m for m, ids in held.items() if ids & wanted or "" in ids)
            position = end
        return found

    def _sample_ids(self, manifests: list[str], counts: list[int]) -> dict[str, frozenset[str]]:
        """Each manifest's distinct sample ids (``""`` for rows without one)."""
        ids = self.rows(manifests, ["sample_id"]).column("sample_id")
        owner = np.repeat(np.arange(len(manifests)), counts)
        pairs = (
            pa.table({"m": owner, "s": pc.fill_null(ids, "")})
            .group_by(["m", "s"], use_threads=False)
            .aggregate([])
        )
        held: dict[str, set[str]] = {m: set() for m in manifests}
        for m, s in zip(pairs.column("m").to_pylist(), pairs.column("s").to_pylist()):
            held[manifests[m]].add(s)
        return {m: frozenset(s) for m, s in held.items()}

    def batches_covering_ids(self, low: str, high: str) -> list[str]:
        """Manifest ids of batches whose image id range meets ``[low, high]``."""
        b = self.batches
        mask = pc.and_(
            pc.greater_equal(b.column("image_id_max"), low),
            pc.less_equal(b.column("image_id_min"), high),
        )
        return b.filter(mask).column("manifest").to_pylist()

    def find(
        self,
        ids: pa.Array,
        columns: list[str],
        among: list[str] | None = None,
        every_column: bool = False,
    ) -> pa.Table:
        """Manifest rows (``columns``, which must include ``image_id``) for the
        given image ids, looking only in batches whose id range can hold them
        (and, with ``among``, only in those manifests; with ``every_column``,
        all of their columns). Ids absent from the snapshot are absent from
        the result."""
        empty = pa.table({c: pa.array([], pa.string()) for c in columns})
        if len(ids) == 0 or self.commit is None:
            return empty
        bounds = pc.min_max(ids)
        candidates = self.batches_covering_ids(bounds["min"].as_py(), bounds["max"].as_py())
        if among is not None:
            wanted = set(among)
            candidates = [m for m in candidates if m in wanted]
        if not candidates:
            return empty
        rows = self.rows(candidates, None if every_column else columns)
        return rows.filter(pc.is_in(rows.column("image_id"), value_set=ids))

    def record(self, image: str, extra: bool = False) -> dict:
        """The manifest row of one image (with its batch's own columns when
        ``extra``). Repeated lookups are answered from per-manifest id maps."""
        image_id(image)
        columns = None if extra else list(manifest.CORE_ORDER)
        for low, high, manifest_id in self._id_ranges:
            if low <= image <= high:
                found = self._rows_by_id(manifest_id, columns).get(image)
                if found is not None:
                    return found
        where = f"commit {self.commit_id[:12]}" if self.commit_id else "an empty repository"
        raise NotFoundError(f"no image {image!r} in {where}")

    @cached_property
    def _id_ranges(self) -> list[tuple[str, str, str]]:
        b = self.batches
        return list(
            zip(
                b.column("image_id_min").to_pylist(),
                b.column("image_id_max").to_pylist(),
                b.column("manifest").to_pylist(),
            )
        )

    def _rows_by_id(self, manifest_id: str, columns: list[str] | None) -> _RowsById:
        key = f"rows-by-id:{manifest_id}:{'*' if columns is None else 'core'}"
        return self.odb.cached(key, lambda: _RowsById(self.manifest(manifest_id, columns)))

    def read_image(self, image: str) -> bytes:
        row = self.record(image)
        return self.odb.read_blob(row["pack"], row["offset"], row["size"], row["blob_id"])

    def rows(self, manifest_ids: list[str], columns: list[str] | None = None) -> pa.Table:
        """The rows of the given manifests as one table (extra columns unified),
        reading only ``columns`` when given; several manifests load in parallel."""
        if not manifest_ids:
            empty = empty_manifest()
            return (
                empty
                if columns is None
                else empty.select([c for c in columns if c in empty.schema.names])
            )
        reads = self._reads(manifest_ids)
        if len(reads) == 1:
            tables = [reads[0](columns)]
        else:
            tables = list(_loader().map(lambda read: read(columns), reads))
        return pa.concat_tables(tables, promote_options="permissive")

    def _reads(self, manifest_ids: list[str]) -> list:  # type: ignore[type-arg]
        """What to read for ``manifest_ids``, in order: a part wherever the ids
        run through every batch it covers, else each manifest."""
        covering = self._parts
        reads = []
        i = 0
        while i < len(manifest_ids):
            found = covering.get(manifest_ids[i])
            if found is not None and manifest_ids[i : i + len(found[1])] == found[1]:
                reads.append(functools.partial(parts.read, self.odb, found[0].id))
                i += len(found[1])
            else:
                reads.append(functools.partial(self.manifest, manifest_ids[i]))
                i += 1
        return reads

    @cached_property
    def _parts(self) -> dict[str, tuple[Part, list[str]]]:
        if self.commit is None:
            return {}
        return parts.covering(self.commit.index, self.batches.column("manifest").to_pylist())

    def images(self) -> pa.Table:
        """Every image row of the snapshot (all manifests, extra columns unified)."""
        return self.rows(self.batches.column("manifest").to_pylist())


class _RowsById:
    """A manifest's rows with a map from image id to row position."""

    def __init__(self, table: pa.Table):
        self.table = table
        self.position = {image: n for n, image in enumerate(table.column("image_id").to_pylist())}
        self.nbytes = table.nbytes + 100 * len(self.position)  # what the object cache weighs

    def get(self, image: str) -> dict | None:
        n = self.position.get(image)
        return None if n is None else self.table.slice(n, 1).to_pylist()[0]


@functools.cache
def _loader() -> ThreadPoolExecutor:
    """Threads that load (fetch, verify, decode) manifests, shared by all snapshots."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="improv-manifest")


def empty_manifest() -> pa.Table:
    """A manifest table with the core columns and no rows."""
    schema = pa.schema(
        [
            (n, manifest.USER_COLUMNS.get(n) or manifest.STORED_COLUMNS[n])
            for n in manifest.CORE_ORDER
        ]
    )
    return schema.empty_table()
