"""What every page starts from: the snapshot its URL pins, the ref it was
reached through, and the facts of a snapshot several pages show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow.compute as pc
from fastapi import Request

from ...core.errors import InvalidInputError, NotFoundError
from ...core.ids import is_object_id, ref_name
from ...core.model import Commit
from ...repository.repository import Repository
from ...repository.snapshot import Snapshot


@dataclass(frozen=True)
class Pinned:
    """A page's snapshot: the commit in its URL, and the ref the reader came
    through (shown, never used to read)."""

    repo: Repository
    commit_id: str
    commit: Commit
    ref: str | None

    @property
    def snapshot(self) -> Snapshot:
        return self.repo.snapshot(self.commit_id)

    def url(self, path: str = "") -> str:
        """This snapshot's URL for ``path`` (relative to the snapshot)."""
        return f"/c/{self.commit_id}/{path}"

    @property
    def context(self) -> dict[str, Any]:
        return {"pin": self, "base": self.url()}


def pinned(request: Request, commit: str) -> Pinned:
    """The snapshot a ``/c/{commit}/…`` URL names (a full commit id)."""
    if not is_object_id(commit):
        raise InvalidInputError("a page's URL names a full commit id (64 hex digits)")
    repo = request.app.state.site.repo
    found = repo.odb.get_commit(commit)
    ref = request.query_params.get("ref")
    if ref is not None:
        try:
            ref = ref_name(ref)
        except InvalidInputError:
            ref = None
    return Pinned(repo, commit, found, ref)


def time_span(snapshot: Snapshot) -> tuple[datetime, datetime] | None:
    """The earliest and latest image time of a snapshot (from its index)."""
    batches = snapshot.reader.batches
    if batches.num_rows == 0:
        return None
    return (
        pc.min(batches.column("time_min")).as_py(),
        pc.max(batches.column("time_max")).as_py(),
    )


def classification_runs(snapshot: Snapshot, kind: str = "classification") -> list[str]:
    """Run ids of ``kind``, latest recorded first."""
    segments = snapshot.reader.provenance_segments
    segments = segments.filter(pc.equal(segments.column("kind"), kind))
    latest: dict[str, datetime] = {}
    for runs, when in zip(
        segments.column("runs").to_pylist(), segments.column("time_max").to_pylist()
    ):
        for run in runs:
            latest[run] = max(when, latest.get(run, when))
    return sorted(latest, key=lambda r: (latest[r], r), reverse=True)


def chosen_run(snapshot: Snapshot, asked: str | None) -> str | None:
    """The run a page shows: the one asked for, or the latest (None: no runs)."""
    runs = classification_runs(snapshot)
    if asked and asked != "latest":
        if asked not in runs:
            raise NotFoundError(f"no classification run {asked!r} in this snapshot")
        return asked
    return runs[0] if runs else None
