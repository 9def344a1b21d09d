"""One change, one commit: the writes a script most often makes, each a
transaction of its own. Each returns the new commit's id, or None when the
change was already there."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.authors import default_author
from ..core.ids import ObjectId
from ..core.model import Registry

if TYPE_CHECKING:
    from ..repository.repository import Repository


def add_provenance(
    repo: Repository,
    kind: str,
    records: Any,
    source: str | None = None,
    run_id: str | None = None,
    masks: Any = None,
    message: str | None = None,
    branch: str | None = None,
    author: str | None = None,
) -> ObjectId | None:
    """Commit provenance records of ``kind`` (see :meth:`Transaction.add_provenance`)."""
    author = author or default_author()
    source = source or author
    text = message or f"Provenance: {kind} from {source}" + (f" (run {run_id})" if run_id else "")
    with repo.transaction(branch, text, author) as tx:
        tx.add_provenance(kind, records, source, run_id, masks)
    return tx.commit_id


def add_dataset_span(
    repo: Repository,
    name: str,
    instrument: str,
    start: datetime,
    end: datetime,
    description: str | None = None,
    branch: str | None = None,
    author: str | None = None,
) -> ObjectId | None:
    """Commit a new span for dataset ``name``."""
    with repo.transaction(branch, f"Dataset {name}: add {instrument} span", author) as tx:
        tx.add_dataset_span(name, instrument, start, end, description)
    return tx.commit_id


def remove_dataset_span(
    repo: Repository,
    name: str,
    instrument: str,
    start: datetime,
    end: datetime,
    branch: str | None = None,
    author: str | None = None,
) -> ObjectId | None:
    """Commit the removal of one span of dataset ``name``."""
    with repo.transaction(branch, f"Dataset {name}: remove {instrument} span", author) as tx:
        tx.remove_dataset_span(name, instrument, start, end)
    return tx.commit_id


def edit_registry(
    repo: Repository,
    edit: Callable[[Registry], Registry],
    message: str,
    branch: str | None = None,
    author: str | None = None,
) -> ObjectId | None:
    """Commit one registry edit (a function ``Registry -> Registry`` from
    :mod:`improv_vcs.snapshot.registry`)."""
    with repo.transaction(branch, message, author) as tx:
        tx.edit_registry(edit)
    return tx.commit_id
