"""The one protocol every concern of a transaction follows.

A :class:`Stage` stages one concern's changes on a base snapshot while the
transaction is open. At commit time the loop (:mod:`.transaction`) asks
every stage to :meth:`~Stage.write` its objects and builds the commit from
what they return; when another writer moved the branch first it asks every
stage to :meth:`~Stage.rebase` onto the new tip, and stops when none has
anything left. The loop knows nothing else of the stages (design record 012).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..core.ids import ObjectId
from ..core.model import Batch, ProvenanceSegment, SourceFiles
from ..snapshot.reader import SnapshotReader
from ..storage.objects import ObjectDatabase


@dataclass(frozen=True)
class Written:
    """What stages put into a commit. ``datasets`` and ``registry`` are new
    documents; None keeps the parent's."""

    batches: tuple[Batch, ...] = ()
    segments: tuple[ProvenanceSegment, ...] = ()
    sources: tuple[SourceFiles, ...] = ()
    datasets: ObjectId | None = None
    registry: ObjectId | None = None

    def __add__(self, other: Written) -> Written:
        return Written(
            self.batches + other.batches,
            self.segments + other.segments,
            self.sources + other.sources,
            self.datasets or other.datasets,
            self.registry or other.registry,
        )

    @property
    def empty(self) -> bool:
        """Whether a commit of this would change nothing."""
        return not (self.batches or self.segments or self.sources or self.datasets or self.registry)


class Stage(ABC):
    """One concern's changes, staged on ``base`` (the snapshot the commit
    will be written on)."""

    def __init__(self, base: SnapshotReader):
        self.base = base

    @property
    @abstractmethod
    def empty(self) -> bool:
        """Whether nothing of this concern is left to commit."""

    @abstractmethod
    def write(self, odb: ObjectDatabase) -> Written:
        """Store this concern's objects; what a commit on :attr:`base` names of them."""

    @abstractmethod
    def rebase(self, onto: SnapshotReader) -> bool:
        """Move onto ``onto``, a snapshot another writer made from :attr:`base`:
        drop or adjust what it already committed (a clash is a
        :class:`~improv_vcs.core.errors.ConflictError`). Returns whether
        anything is left (``not empty``)."""
