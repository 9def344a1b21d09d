"""What a training set or a publication is made of: the images a query
selects at one commit, each with the label a provenance run gives it, and
the citation that pins exactly these images and label records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..cite.citation import Citation
from ..core.errors import InvalidInputError
from ..query.filters import Query, Run
from ..repository.snapshot import Snapshot
from ..snapshot.registry import taxonomy_key

LABEL = "label"
DEFAULT_COLUMNS = {"classification": "winner", "annotation": "label"}


@dataclass(frozen=True)
class Labels:
    """Where labels come from: a provenance kind, its run (``latest``: per
    image, the run recorded last) and the column holding the class name."""

    kind: str = "classification"
    run: str = "latest"
    column: str | None = None

    @property
    def field(self) -> str:
        column = self.column or DEFAULT_COLUMNS.get(self.kind)
        if column is None:
            raise InvalidInputError(f"say which column of {self.kind} records is the label")
        return column

    @property
    def verification(self) -> str:
        """``machine`` for a classifier's output, ``human`` for an annotation."""
        return "human" if self.kind == "annotation" else "machine"


@dataclass(frozen=True)
class Selection:
    """Rows of the selected images (manifest columns, ``label`` and the
    label record's ``model`` when there are labels), the label record ids,
    the classes in index order, and the citation of the whole."""

    snapshot: Snapshot
    query: Query
    labels: Labels | None
    rows: pa.Table
    record_ids: tuple[str, ...]
    classes: tuple[str, ...]
    citation: Citation

    @property
    def class_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}


def select(
    snapshot: Snapshot,
    query: Query | None = None,
    labels: Labels | None = None,
    **citation: Any,
) -> Selection:
    """The images ``query`` selects at ``snapshot`` with their labels; only
    labelled images are kept when ``labels`` is given. ``citation`` takes
    :meth:`Snapshot.cite`'s metadata (title, authors, license, tag …)."""
    query = query or Query()
    if labels is not None:
        query = query.model_copy(
            update={
                "kinds": tuple(sorted({*query.kinds, labels.kind})),
                "runs": (*query.runs, Run(labels.run, kind=labels.kind)),
                "provenance_columns": (
                    *query.provenance_columns,
                    f"{labels.kind}.{labels.field}",
                    *(
                        (f"{labels.kind}.model", f"{labels.kind}.model_version")
                        if labels.kind == "classification"
                        else ()
                    ),
                ),
                "columns": None,
                "limit": query.limit,
            }
        )
    result = snapshot.select(query, record_ids=True)
    rows = result.table.sort_by([("image_id", "ascending")])
    classes: tuple[str, ...] = ()
    if labels is not None:
        rows = _renamed(rows, labels)
        classes = _classes(snapshot, rows)
    made = snapshot.cite(query=query, **citation)
    if made.pinned.count != rows.num_rows:  # the same query, twice: it cannot differ
        raise InvalidInputError("the selection changed while it was cited")
    return Selection(snapshot, query, labels, rows, tuple(sorted(result.record_ids)), classes, made)


def _renamed(rows: pa.Table, labels: Labels) -> pa.Table:
    """``KIND.COLUMN`` → ``label`` (and a classification's model and version
    → ``model``, ``model_version``)."""
    names = {
        f"{labels.kind}.{labels.field}": LABEL,
        f"{labels.kind}.model": "model",
        f"{labels.kind}.model_version": "model_version",
    }
    rows = rows.rename_columns([names.get(n, n) for n in rows.column_names])
    missing = pc.sum(pc.is_null(rows.column(LABEL))).as_py() or 0
    if missing:
        raise InvalidInputError(f"{missing} selected image(s) have no {labels.field} to label them")
    return rows


def _classes(snapshot: Snapshot, rows: pa.Table) -> tuple[str, ...]:
    """The class names in index order: the taxonomy of the labels' model
    version when they all come from one that has a taxonomy, else sorted."""
    found = sorted(set(rows.column(LABEL).to_pylist()))
    if "model" in rows.column_names and "model_version" in rows.column_names:
        versions = rows.select(["model", "model_version"]).group_by(["model", "model_version"])
        pairs = versions.aggregate([]).to_pylist()
        taxonomies = snapshot.registry().taxonomies
        if len(pairs) == 1 and pairs[0]["model_version"] is not None:
            taxonomy = taxonomies.get(taxonomy_key(pairs[0]["model"], pairs[0]["model_version"]))
            if taxonomy is not None and set(found) <= set(taxonomy.classes):
                return tuple(taxonomy.classes)
    return tuple(found)
