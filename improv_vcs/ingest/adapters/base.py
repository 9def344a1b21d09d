"""What an adapter is and how its plan is applied to a transaction."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from ...core.errors import InvalidInputError
from ...snapshot.sources import SourceFile

if TYPE_CHECKING:
    from ...write.transaction import Transaction


@dataclass(frozen=True)
class PlannedBatch:
    """Images of one instrument: their metadata rows, and their bytes either
    read from ``paths`` or produced by ``blobs()`` (aligned with the rows)."""

    instrument: str
    metadata: pa.Table
    paths: Sequence[str] | None = None
    blobs: Callable[[], Iterable[bytes]] | None = None

    def __post_init__(self) -> None:
        if (self.paths is None) == (self.blobs is None):
            raise InvalidInputError("a planned batch needs either paths or blobs")


@dataclass
class IngestPlan:
    """What one ingest adds: batches of images and original files per instrument."""

    batches: list[PlannedBatch] = field(default_factory=list)
    sources: dict[str, list[SourceFile]] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)
    """Sample records to register (see :meth:`Transaction.add_samples`)."""
    warnings: list[str] = field(default_factory=list)
    """What was skipped while planning (e.g. a FIFO among the files), for the user."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Samples left out, each with its reason (an IFCB bin without its .adc)."""
    without_images: dict[str, str] = field(default_factory=dict)
    """Samples kept (their record and original files) without images, each
    with its reason (an IFCB bin without its .roi)."""

    @property
    def images(self) -> int:
        return sum(b.metadata.num_rows for b in self.batches)

    @property
    def files(self) -> int:
        return sum(len(f) for f in self.sources.values())

    @property
    def instruments(self) -> list[str]:
        return sorted({b.instrument for b in self.batches} | set(self.sources))


class Adapter(ABC):
    """Reads one instrument format. Subclasses set ``name``, ``description``
    and ``options`` (accepted option names → help) and implement :meth:`plan`."""

    name: str
    description: str
    options: Mapping[str, str] = {}
    needs_instrument: bool = True
    """Whether ``--instrument`` is required (False when the files name it)."""

    @abstractmethod
    def plan(
        self,
        source: Path,
        instrument: str | None,
        options: Mapping[str, str],
        keep_raw: bool = True,
    ) -> IngestPlan:
        """What ingesting ``source`` adds. ``instrument`` overrides (or, when
        :attr:`needs_instrument`, gives) the instrument; ``keep_raw`` keeps the
        original files byte for byte. Raise :class:`InvalidInputError` for
        anything unreadable, before any byte is written."""

    def check_options(self, options: Mapping[str, str]) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            accepted = ", ".join(sorted(self.options)) or "none"
            raise InvalidInputError(
                f"format {self.name!r} has no option {unknown[0]!r} (accepted: {accepted})"
            )


def apply_plan(tx: Transaction, plan: IngestPlan) -> tuple[int, int]:
    """Stream ``plan`` into ``tx``: (new images, new original files)."""
    images = files = 0
    for batch in plan.batches:
        if batch.paths is not None:
            images += tx.append_files(batch.instrument, batch.metadata, batch.paths)
        else:
            assert batch.blobs is not None
            images += tx.append_bytes(batch.instrument, batch.metadata, batch.blobs())
    for instrument in sorted(plan.sources):
        files += tx.add_source_files(instrument, plan.sources[instrument])
    if plan.samples:
        tx.add_samples(plan.samples)
    return images, files


def parse_options(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"expected KEY=VALUE, got {pair!r}")
        options[key.strip()] = value.strip()
    return options
