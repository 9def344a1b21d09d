"""ifcb-analysis class files, version 1 (``<bin>_class_v1.mat``).

``roinum`` (ROI numbers), ``TBscores`` (ROIs × classes), ``class2useTB``
(the classes, then the label of ROIs under every threshold, usually
``unclassified``), ``TBclass`` (each ROI's winner), ``TBclass_above_threshold``
(its class after thresholds) and ``classifierName`` (the classifier file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ...core.errors import InvalidInputError
from . import matlab
from .scores import classification
from .submission import ReadOptions, Submission, roi_image_ids

REQUIRED = ("roinum", "TBscores", "class2useTB")


def read(path: Path, options: ReadOptions) -> Submission:
    data = matlab.load(path)
    missing = [name for name in REQUIRED if name not in data]
    if missing:
        raise InvalidInputError(f"{path.name}: not a v1 class file (no {missing[0]})")
    rois = np.asarray(data["roinum"]).ravel()
    scores = np.asarray(data["TBscores"], dtype=np.float64)
    if scores.ndim != 2 or (rois.size and scores.shape[0] != rois.size):
        raise InvalidInputError(f"{path.name}: TBscores must hold one row per ROI of roinum")
    classes = matlab.strings(data, "class2useTB", path)
    if len(classes) not in (scores.shape[1], scores.shape[1] + 1) and rois.size:
        raise InvalidInputError(
            f"{path.name}: {scores.shape[1]} scores per ROI but {len(classes)} names in class2useTB"
        )
    model = _optional(data, "classifierName", path)
    winners = _optional(data, "TBclass", path)
    labels = _optional(data, "TBclass_above_threshold", path)
    return classification(
        path,
        roi_image_ids(path, rois),
        scores,
        classes[: scores.shape[1]],
        options,
        model=model[0] if model else None,
        winners=None if winners is None else pa.array(winners, pa.string()),
        labels=None if labels is None else pa.array(labels, pa.string()),
    )


def _optional(data: dict, name: str, path: Path) -> list[str] | None:
    return matlab.strings(data, name, path) if name in data else None
