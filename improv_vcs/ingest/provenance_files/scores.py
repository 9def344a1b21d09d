"""Classification records from a classifier's score matrix (one row per
image, one column per class), whatever file it came in.

Each record gets the positional ``score_vector``, the ``winner`` (the file's,
else the highest score) and its ``score``; the file's thresholded class as
``label`` and the classes' ``thresholds`` when it has them. The class list
becomes the taxonomy of the model version, so the vectors decode to names.
Without a version (class files name none) it is ``classes-`` and the first
12 hex digits of the SHA-256 of the list: one list, one version.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...core import canonical
from ...core.errors import InvalidInputError
from .submission import ReadOptions, Submission


def classification(
    path: Path,
    image_ids: pa.Array,
    scores: np.ndarray,
    classes: list[str],
    options: ReadOptions,
    model: str | None = None,
    winners: pa.Array | None = None,
    labels: pa.Array | None = None,
    thresholds: np.ndarray | None = None,
) -> Submission:
    """The records of ``scores`` (images × classes) about ``image_ids``;
    ``model`` is the classifier the file names (``--model`` overrides it)."""
    if not len(image_ids):
        return Submission(pa.table({"image_id": pa.array([], pa.string())}))
    rows, count = scores.shape if scores.ndim == 2 else (0, 0)
    classes = [name.strip() for name in classes]
    if not classes:
        raise InvalidInputError(f"{path.name}: no class names")
    if rows != len(image_ids):
        raise InvalidInputError(f"{path.name}: {rows} rows of scores for {len(image_ids)} images")
    if count != len(classes):
        raise InvalidInputError(
            f"{path.name}: {count} scores per image but {len(classes)} class names"
        )
    for name, given in (("winners", winners), ("labels", labels)):
        if given is not None and len(given) != rows:
            raise InvalidInputError(f"{path.name}: {len(given)} {name} for {rows} images")
    model = options.model or (model or "").strip()
    if not model:
        raise InvalidInputError(f"{path.name} names no classifier; give --model NAME")
    version = options.model_version or default_version(classes)
    scores = np.ascontiguousarray(scores, dtype=np.float64)
    names = pa.array(classes, pa.string())
    best = scores.argmax(axis=1)
    if winners is None:
        winners = names.take(pa.array(best))
    else:  # the file's winner; its score where it is one of the classes
        winners = pc.utf8_trim_whitespace(winners)
        at = pc.index_in(winners, value_set=names).to_numpy(zero_copy_only=False)
        best = np.where(np.isnan(at), best, np.nan_to_num(at)).astype(np.int64)
    columns = {
        "image_id": image_ids,
        "model": pa.array([model] * rows, pa.string()),
        "model_version": pa.array([version] * rows, pa.string()),
        "winner": winners,
        "score": pa.array(np.take_along_axis(scores, best[:, None], axis=1).ravel()),
        "score_vector": pa.FixedSizeListArray.from_arrays(pa.array(scores.ravel()), count),
    }
    if labels is not None:
        columns["label"] = pc.utf8_trim_whitespace(labels)
    if thresholds is not None:
        if thresholds.shape != (count,):
            raise InvalidInputError(
                f"{path.name}: {thresholds.size} thresholds for {count} classes"
            )
        repeated = np.tile(np.asarray(thresholds, np.float64), rows)
        columns["thresholds"] = pa.FixedSizeListArray.from_arrays(pa.array(repeated), count)
    return Submission(pa.table(columns), taxonomies={(model, version): tuple(classes)})


def default_version(classes: list[str]) -> str:
    """The model version of a class list whose file names no version."""
    return "classes-" + hashlib.sha256(canonical.encode(classes)).hexdigest()[:12]
