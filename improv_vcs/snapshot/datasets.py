"""Editing dataset definitions: pure functions from one :class:`Datasets`
document to the next. Spans are kept sorted and unique, so equal definitions
have equal bytes."""

from __future__ import annotations

from datetime import datetime, timezone

from ..core.errors import InvalidInputError, NotFoundError
from ..core.ids import ref_name
from ..core.model import Dataset, Datasets, Span


def make_span(instrument: str, start: datetime, end: datetime) -> Span:
    """A validated span; :class:`InvalidInputError` when it is empty or reversed."""
    from pydantic import ValidationError

    start, end = (  # a time without an offset is UTC, as everywhere
        t.replace(tzinfo=timezone.utc) if isinstance(t, datetime) and t.tzinfo is None else t
        for t in (start, end)
    )
    try:
        return Span(instrument=instrument, start=start, end=end)
    except ValidationError as exc:
        raise InvalidInputError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


def _sorted(spans: list[Span]) -> tuple[Span, ...]:
    return tuple(sorted(set(spans), key=lambda s: (s.instrument, s.start, s.end)))


def add_span(doc: Datasets, name: str, span: Span, description: str | None = None) -> Datasets:
    """``doc`` with ``span`` added to dataset ``name`` (created if new)."""
    ref_name(name)
    current = doc.datasets.get(name, Dataset())
    updated = Dataset(
        description=current.description if description is None else description,
        spans=_sorted([*current.spans, span]),
    )
    return Datasets(datasets={**doc.datasets, name: updated})


def remove_span(doc: Datasets, name: str, span: Span) -> Datasets:
    """``doc`` without ``span`` in dataset ``name``; a dataset left with no
    spans is removed."""
    current = doc.datasets.get(name)
    if current is None:
        raise NotFoundError(f"no dataset named {name!r}")
    if span not in current.spans:
        raise NotFoundError(
            f"dataset {name!r} has no span {span.instrument} "
            f"{span.start.isoformat()} .. {span.end.isoformat()}"
        )
    remaining = tuple(s for s in current.spans if s != span)
    datasets = dict(doc.datasets)
    if remaining:
        datasets[name] = Dataset(description=current.description, spans=remaining)
    else:
        del datasets[name]
    return Datasets(datasets=datasets)
