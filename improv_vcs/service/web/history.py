"""The version history: the log, a commit and what it changed, the changes
between any two commits, branches and tags, datasets and their spans over
time, and verifying a citation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from ...core.model import Commit
from ...repository.snapshot import Snapshot
from .common import pinned
from .render import page
from .session import Viewer

router = APIRouter()
DATASET_WALK = 2_000
"""Commits searched for dataset changes on the datasets page."""


@dataclass
class Changes:
    """What a snapshot has that an older one has not."""

    batches: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[tuple[str, str]] = field(default_factory=list)
    registry: list[str] = field(default_factory=list)
    samples: int = 0

    @property
    def empty(self) -> bool:
        return not (self.batches or self.records or self.datasets or self.registry or self.samples)


def changes(old: Snapshot | None, new: Snapshot) -> Changes:
    """Batches, records, dataset spans, registry entries and sample versions
    in ``new`` and not in ``old``."""
    out = Changes()
    before = set() if old is None else set(old.reader.batches.column("manifest").to_pylist())
    for b in new.reader.batches.to_pylist():
        if b["manifest"] not in before:
            out.batches.append(b)
    seen = set() if old is None else set(old.reader.provenance_segments.column("id").to_pylist())
    for s in new.reader.provenance_segments.to_pylist():
        if s["id"] not in seen:
            out.records.append(s)
    was = {} if old is None else old.datasets()
    for name, dataset in new.datasets().items():
        spans = {(s.instrument, s.start, s.end) for s in dataset.spans}
        old_spans = (
            {(s.instrument, s.start, s.end) for s in was[name].spans} if name in was else set()
        )
        for instrument, start, end in sorted(spans - old_spans):
            out.datasets.append(
                (name, f"+ {instrument} {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M}")
            )
        for instrument, start, end in sorted(old_spans - spans):
            out.datasets.append(
                (name, f"− {instrument} {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M}")
            )
    for name in sorted(set(was) - set(new.datasets())):
        out.datasets.append((name, "removed"))
    old_registry = None if old is None else old.registry()
    registry = new.registry()
    for section in ("instruments", "taxonomies"):
        mine = getattr(registry, section)
        theirs = {} if old_registry is None else getattr(old_registry, section)
        for key in sorted(mine):
            if key not in theirs:
                out.registry.append(
                    f"{section[:-1] if section == 'instruments' else 'taxonomy'} {key} added"
                )
            elif mine[key] != theirs[key]:
                out.registry.append(f"{key} changed")
    old_samples = 0 if old is None else old.samples(history=True).num_rows
    out.samples = max(0, new.samples(history=True).num_rows - old_samples)
    return out


@router.get("/c/{commit}/log", include_in_schema=False)
def log_page(
    request: Request,
    commit: str,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**7)] = 0,
) -> Response:
    pin = pinned(request, commit)
    entries = list(pin.repo.log(pin.commit_id, limit=offset + limit + 1))
    more = len(entries) > offset + limit
    return page(
        request,
        "log.html",
        **pin.context,
        entries=[(oid, c, _totals(c)) for oid, c in entries[offset : offset + limit]],
        offset=offset,
        limit=limit,
        more=more,
        branches=pin.repo.branches(),
        tags=pin.repo.tags(),
        default=pin.repo.config.default_branch,
    )


def _totals(commit: Commit) -> dict[str, int]:
    return {
        "images": sum(b.rows for b in commit.batches),
        "records": sum(s.rows for s in commit.provenance),
        "files": sum(s.rows for s in commit.sources),
    }


@router.get("/c/{commit}/commit", include_in_schema=False)
def commit_page(request: Request, commit: str, _: Viewer) -> Response:
    pin = pinned(request, commit)
    parent = pin.commit.parents[0] if pin.commit.parents else None
    old = pin.repo.snapshot(parent) if parent else None
    return page(
        request,
        "commit.html",
        **pin.context,
        totals=_totals(pin.commit),
        changes=changes(old, pin.snapshot),
        against=parent,
    )


@router.get("/c/{commit}/diff", include_in_schema=False)
def diff_page(
    request: Request,
    commit: str,
    _: Viewer,
    against: Annotated[str, Query(min_length=1, max_length=300)],
) -> Response:
    pin = pinned(request, commit)
    other = pin.repo.resolve(against)
    return page(
        request,
        "diff.html",
        **pin.context,
        against=other,
        changes=changes(pin.repo.snapshot(other), pin.snapshot),
        backwards=changes(pin.snapshot, pin.repo.snapshot(other)),
    )


@router.get("/c/{commit}/datasets", include_in_schema=False)
def datasets_page(request: Request, commit: str, _: Viewer) -> Response:
    pin = pinned(request, commit)
    history: list[tuple[str, Commit]] = []
    entries = list(pin.repo.log(pin.commit_id, limit=DATASET_WALK))
    for (oid, c), (_older, parent) in zip(entries, entries[1:] + [(None, None)]):
        if parent is None or c.datasets != parent.datasets:
            if c.datasets is not None:
                history.append((oid, c))
    return page(
        request,
        "datasets.html",
        **pin.context,
        datasets=pin.snapshot.datasets(),
        history=history,
    )


@router.get("/citations", include_in_schema=False)
def citations_page(request: Request, _: Viewer) -> Response:
    return page(request, "verify.html", pin=None, base=None, result=None, text="", error=None)


@router.post("/citations", include_in_schema=False)
def verify_page(
    request: Request, _: Viewer, citation: Annotated[str, Form(max_length=20_000)]
) -> Response:
    from ...cite.citation import find_identifier
    from ...cite.citing import verify
    from ...core.errors import ImprovError

    try:
        result = verify(request.app.state.site.repo, find_identifier(citation))
        error = None
    except ImprovError as exc:
        result, error = None, str(exc)
    return page(
        request, "verify.html", pin=None, base=None, result=result, text=citation, error=error
    )
