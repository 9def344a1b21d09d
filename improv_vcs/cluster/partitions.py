"""Partitions of a snapshot selection, and what a worker does with one.

A :class:`Part` names the batches (manifest ids) of one commit a worker
reads, the query, and how to open the repository (URL and storage options:
credentials travel with it, see docs/operations.md). Nothing here imports
Dask: the same functions run in the client's process for a run without a
cluster. Each process opens a repository once and keeps it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..core.errors import InvalidInputError
from ..core.media import Decode, decoder
from ..query.filters import Query
from ..repository.repository import Repository
from ..repository.snapshot import Snapshot
from ..storage.blob_reader import BlobReader, Location, locations, runs

LOCATION = Location._fields
"""The columns that say where an image's bytes are."""
RUN_READ = 64
"""Images read with one request (neighbours in a pack)."""


@dataclass(frozen=True)
class Part:
    """One partition: batches of a commit, read with a query."""

    url: str
    commit_id: str
    query: Query
    manifests: tuple[str, ...]
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def snapshot(self) -> Snapshot:
        return _repository(self.url, self.storage_options).snapshot(self.commit_id)

    def rows(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The matching rows of this partition's batches (``columns`` only, when given)."""
        query = (
            self.query
            if columns is None
            else self.query.model_copy(update={"columns": tuple(columns)})
        )
        return self.snapshot.select(query, manifests=self.manifests).table

    def images(self, decode: str | Decode = "bytes", rows: pa.Table | None = None) -> list:
        """``(image id, image)`` of each matching row (or of ``rows``, which
        have the location columns), read from the packs, neighbours in one
        request, each checked against its blob id."""
        if rows is None:
            rows = self.rows(["image_id", *LOCATION])
        decode_fn = decoder(decode)
        ids = rows.column("image_id").to_pylist()
        where = locations(rows)
        reader = BlobReader(self.snapshot.repository.odb)
        images: list[Any] = [None] * len(ids)
        for run in runs(where, RUN_READ):
            for i, data in zip(run, reader.read_run([where[i] for i in run]), strict=True):
                images[i] = data if decode_fn is None else decode_fn(data)
        return list(zip(ids, images, strict=True))


def parts(snapshot: Snapshot, query: Query, rows_per_part: int | None = None) -> list[Part]:
    """The partitions of ``query`` on ``snapshot``: one per batch it reads,
    or consecutive batches grouped up to ``rows_per_part`` rows."""
    if rows_per_part is not None and rows_per_part < 1:
        raise InvalidInputError("rows_per_part must be at least 1")
    repo = snapshot.repository
    if snapshot.commit_id is None:
        return []
    batches = snapshot.partitions(query)
    manifests = batches.column("manifest").to_pylist()
    sizes = batches.column("rows").to_pylist()
    groups: list[list[str]] = []
    held = 0
    for manifest, size in zip(manifests, sizes, strict=True):
        if not groups or rows_per_part is None or held + size > rows_per_part:
            groups.append([])
            held = 0
        groups[-1].append(manifest)
        held += size
    return [
        Part(repo.url, snapshot.commit_id, query, tuple(g), dict(repo.storage_options))
        for g in groups
    ]


_OPEN: dict[tuple[str, str], Repository] = {}
_OPEN_LOCK = threading.Lock()


def _repository(url: str, storage_options: dict[str, Any]) -> Repository:
    """The repository at ``url``, opened once per process."""
    key = (url, json.dumps(storage_options, sort_keys=True, default=str))
    with _OPEN_LOCK:
        repo = _OPEN.get(key)
        if repo is None:
            repo = _OPEN[key] = Repository.open(url, **storage_options)
        return repo
