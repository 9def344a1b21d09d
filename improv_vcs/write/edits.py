"""Dataset edits, registry edits and new sample versions. Edits are
functions of the documents they change, so on a concurrent commit they
apply again on the new tip when written; sample versions are kept as staged."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa

from ..core.ids import ObjectId, ref_name
from ..core.model import Datasets, Registry
from ..core.times import Clock
from ..snapshot import datasets, registry
from ..snapshot.reader import SnapshotReader
from ..storage.objects import ObjectDatabase
from .stage import Stage, Written


class MetadataEdits(Stage):
    """The edits and sample versions staged so far, in order."""

    def __init__(self, base: SnapshotReader, clock: Clock):
        super().__init__(base)
        self._clock = clock
        self._datasets: list[Callable[[Datasets], Datasets]] = []
        self._registry: list[Callable[[Registry], Registry]] = []
        self._samples: list[pa.Table] = []

    @property
    def empty(self) -> bool:
        return not (self._datasets or self._registry or self._samples)

    def add_span(
        self, name: str, instrument: str, start: datetime, end: datetime, description: str | None
    ) -> None:
        """Add a span to dataset ``name`` (created if new)."""
        span = datasets.make_span(instrument, start, end)
        ref_name(name)
        self._datasets.append(
            functools.partial(datasets.add_span, name=name, span=span, description=description)
        )

    def remove_span(self, name: str, instrument: str, start: datetime, end: datetime) -> None:
        """Remove a span from dataset ``name``; checked now, not at commit."""
        span = datasets.make_span(instrument, start, end)
        edit = functools.partial(datasets.remove_span, name=name, span=span)
        edit(self.datasets_after())
        self._datasets.append(edit)

    def edit_registry(self, edit: Callable[[Registry], Registry]) -> None:
        """Stage ``edit``, checked now against the base and earlier edits."""
        edit(self.registry_after())
        self._registry.append(edit)

    def add_samples(self, rows: Iterable[Mapping[str, Any]] | pa.Table) -> int:
        """Stage the sample versions of ``rows`` that differ from the current
        ones (of the base and earlier rows); returns how many."""
        listed = rows.to_pylist() if isinstance(rows, pa.Table) else list(rows)
        table = registry.sample_rows(listed, self._clock())
        known = self.base.sample_versions()
        table = registry.changed(pa.concat_tables([known, *self._samples]), table)
        if table.num_rows:
            self._samples.append(table)
        return table.num_rows

    def datasets_after(self) -> Datasets:
        """The definitions at the base with the dataset edits applied."""
        doc = self.base.datasets
        for edit in self._datasets:
            doc = edit(doc)
        return doc

    def registry_after(self) -> Registry:
        """The registry at the base with the registry edits applied."""
        doc = self.base.registry
        for edit in self._registry:
            doc = edit(doc)
        return doc

    def write(self, odb: ObjectDatabase) -> Written:
        return Written(datasets=self._new_datasets(odb), registry=self._new_registry(odb))

    def rebase(self, onto: SnapshotReader) -> bool:
        """Nothing to drop: the edits apply again to ``onto`` when written,
        and the sample versions are added on top of its own as staged."""
        self.base = onto
        return not self.empty

    def _new_datasets(self, odb: ObjectDatabase) -> ObjectId | None:
        """A new datasets document when the edits change the base's, else None."""
        if not self._datasets:
            return None
        after = self.datasets_after()
        if after == self.base.datasets:
            return None
        return self._unless_parents(odb.put_object(after), "datasets")

    def _new_registry(self, odb: ObjectDatabase) -> ObjectId | None:
        """A new registry when the edits or sample versions change the base's, else None."""
        if not self._registry and not self._samples:
            return None
        doc = self.registry_after()
        if self._samples:
            segment = odb.put_bytes(registry.encode_samples(pa.concat_tables(self._samples)))
            segments = (*doc.samples, segment)
            if len(segments) > registry.MAX_SAMPLE_SEGMENTS:
                merged = pa.concat_tables(
                    [registry.decode_samples(odb.get_bytes(s)) for s in segments]
                )
                segments = (odb.put_bytes(registry.encode_samples(merged)),)
            doc = doc.model_copy(update={"samples": segments})
        if doc == self.base.registry:
            return None
        return self._unless_parents(odb.put_object(doc), "registry")

    def _unless_parents(self, new: ObjectId, field: str) -> ObjectId | None:
        """``new``, or None when the base's commit already names it as ``field``."""
        parent = self.base.commit
        return None if parent is not None and getattr(parent, field) == new else new
