"""Re-running a classifier (any function of the images) over a selection,
on a Dask cluster or in this process, its records kept as a run.

Each partition's images go through the user's function on a worker; the
worker stages the records it returns as content-addressed provenance
segments (normalized, with their record ids, deduplicated against the
branch as it was when the run began) and hands back only their summaries.
The client commits the summaries: one commit, or one per ``commit_every``
partitions. Images that already hold a record of the run are not read
again, so running the same call after an interruption computes and commits
only what is missing; a retried partition is staged again, and the client
takes one result per partition. Record ids are the same as a single-process
run's, since they depend only on kind, source, run and content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..core.authors import default_author
from ..core.errors import ImprovError, InvalidInputError
from ..core.ids import label
from ..core.media import Decode, decoder
from ..core.model import ProvenanceSegment
from ..provenance import catalog, view
from ..query.filters import Query
from ..repository.snapshot import Snapshot
from ..storage.fence import Fence
from ..storage.packs import DEFAULT_PACK_SIZE
from ..write.packing import Packer
from ..write.records import ProvenanceRecords
from ..write.tables import as_table
from ..write.transaction import Transaction
from .partitions import LOCATION, Part, parts

Records = Callable[[list[Any], list[str]], "pa.Table | Sequence[dict[str, Any]]"]
"""``fn(images, image_ids)`` → records about those images (each with its ``image_id``)."""
ROWS_PER_PART = 20_000
BATCH_SIZE = 256
"""Images given to the function at a time (what a worker holds decoded)."""


@dataclass(frozen=True)
class RunSpec:
    """What every partition of a run shares."""

    kind: str
    source: str
    run: str
    decode: str | Decode
    batch_size: int
    since: str
    """The branch's commit when the run began: records are deduplicated against it."""


@dataclass(frozen=True)
class Staged:
    """What a worker hands back for one partition."""

    manifests: tuple[str, ...]
    segments: tuple[ProvenanceSegment, ...] = ()
    images: int = 0
    """Images read and given to the function."""
    skipped: int = 0
    """Images that already held a record of the run."""


@dataclass
class RunReport:
    """What a run did."""

    run: str
    partitions: int
    commits: list[str] = field(default_factory=list)
    records: int = 0
    images: int = 0
    skipped: int = 0


def attach_run(
    snapshot: Snapshot,
    fn: Records,
    kind: str,
    source: str,
    run: str,
    query: Query | None = None,
    decode: str | Decode = "array",
    client: Any = None,
    branch: str | None = None,
    message: str | None = None,
    author: str | None = None,
    commit_every: int | None = None,
    rows_per_part: int | None = ROWS_PER_PART,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> RunReport:
    """Run ``fn`` over the images ``query`` selects on ``snapshot`` and
    commit its records as run ``run`` of ``kind`` on ``branch``.

    ``client`` is a ``dask.distributed.Client``; without one the partitions
    run here, one after another. ``fn`` gets at most ``batch_size`` images
    at a time (a partition's in turn). ``progress`` is called with the partitions
    done. When a partition fails, what finished is committed, the rest is
    cancelled and the error raised: the same call resumes the run.
    """
    catalog.get_kind(kind)
    label(source, "source")
    label(run, "run id")
    decoder(decode)
    if commit_every is not None and commit_every < 1:
        raise InvalidInputError("commit_every must be at least 1")
    if batch_size < 1:
        raise InvalidInputError("batch_size must be at least 1")
    repo = snapshot.repository
    branch = repo.config.default_branch if branch is None else branch
    fence = Fence(repo.store)  # before any worker writes
    since = repo.refs.branch(branch)
    if since is None:
        raise InvalidInputError(f"no branch named {branch!r}")
    spec = RunSpec(kind, source, run, decode, batch_size, since)
    pieces = parts(snapshot, query or Query(), rows_per_part)
    report = RunReport(run, len(pieces))
    message = message or f"{kind} run {run} by {source}"
    pending: list[Staged] = []

    def commit() -> None:
        if not pending:
            return
        tx = Transaction(repo, branch, message, author or default_author(), fence=fence)
        segments = [s for staged in pending for s in staged.segments]
        tx.add_segments(segments, since=repo.snapshot(since).reader)
        commit_id = tx.commit()
        if commit_id is not None:
            report.commits.append(commit_id)
            report.records += sum(s.rows for s in tx.segments)  # what a race left
        pending.clear()

    done = 0
    try:
        for staged in _staged(pieces, fn, spec, client):
            pending.append(staged)
            report.images += staged.images
            report.skipped += staged.skipped
            done += 1
            if progress is not None:
                progress(done)
            if commit_every is not None and len(pending) >= commit_every:
                commit()
    except BaseException as exc:
        commit()
        if isinstance(exc, Exception):
            error = type(exc) if isinstance(exc, ImprovError) else ImprovError
            raise error(
                f"run {run} stopped after {done} of {len(pieces)} partitions ({exc}); "
                f"{len(report.commits)} commit(s) kept what finished: run it again to resume"
            ) from exc
        raise
    commit()
    return report


def _staged(pieces: list[Part], fn: Records, spec: RunSpec, client: Any) -> Iterator[Staged]:
    """Each partition's result, as they finish."""
    if client is None:
        for part in pieces:
            yield stage(part, fn, spec)
        return
    from distributed import as_completed

    futures = client.map(stage, pieces, fn=fn, spec=spec, pure=False)
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.cancel(futures)


def stage(part: Part, fn: Records, spec: RunSpec) -> Staged:
    """On a worker: read the partition's images that lack a record of the
    run, apply ``fn``, and store its records as segments."""
    snapshot = part.snapshot
    rows = part.rows(["image_id", *LOCATION])
    if not rows.num_rows:
        return Staged(part.manifests)
    repo = snapshot.repository
    base = repo.snapshot(spec.since).reader
    ids = rows.column("image_id")
    bounds = pc.min_max(ids)
    done = view.run_records(
        base,
        spec.kind,
        spec.source,
        spec.run,
        (bounds["min"].as_py(), bounds["max"].as_py()),
        ["image_id"],
    ).column("image_id")
    if len(done):
        rows = rows.filter(pc.invert(pc.is_in(ids, value_set=done.combine_chunks())))
    skipped = len(ids) - rows.num_rows
    if not rows.num_rows:
        return Staged(part.manifests, skipped=skipped)
    produced = []
    for start in range(0, rows.num_rows, spec.batch_size):
        images = part.images(spec.decode, rows.slice(start, spec.batch_size))
        given = [image_id for image_id, _ in images]
        records = as_table(fn([image for _, image in images], given))
        if records.num_rows:
            _check_among(records, given)
            produced.append(records)
    if not produced:
        return Staged(part.manifests, images=rows.num_rows, skipped=skipped)
    records = pa.concat_tables(produced, promote_options="permissive")
    packer = Packer(repo.odb, DEFAULT_PACK_SIZE, None)
    try:
        staging = ProvenanceRecords(base, packer, repo.clock)
        staging.add(spec.kind, records, spec.source, spec.run, None, lambda ids: None)
        segments = staging.write(repo.odb).segments
    finally:
        packer.close()
    return Staged(part.manifests, segments, rows.num_rows, skipped)


def _check_among(records: pa.Table, image_ids: list[str]) -> None:
    """Records may name only the images the function was given."""
    if "image_id" not in records.column_names:
        return  # the kind's normalization refuses it with its own message
    ids = records.column("image_id")
    stray = pc.filter(ids, pc.invert(pc.is_in(ids, value_set=pa.array(image_ids, pa.string()))))
    if len(stray):
        raise InvalidInputError(
            f"the function returned a record for image {stray[0].as_py()!r}, which it was not given"
        )
