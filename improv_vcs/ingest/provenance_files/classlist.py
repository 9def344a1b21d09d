"""Human annotations as ifcb-analysis saves them (``<bin>.mat``).

``classlist`` has one row per ROI and the columns ``list_titles`` names
(``roi number``, ``manual``, ``auto``); ``manual`` is a 1-based index into
``class2use_manual``, or into the ``class2use`` of ``--class-list``, which
wins when given; NaN means not annotated, and such ROIs are skipped. Each
annotated ROI becomes an ``annotation`` record of its class name whose
annotator is the reader's (``--source``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ...core.errors import InvalidInputError
from . import matlab
from .submission import ReadOptions, Submission, roi_image_ids

TITLES = ("roi number", "manual", "auto")
"""The columns of ``classlist`` when the file has no ``list_titles``."""


def read(path: Path, options: ReadOptions) -> Submission:
    data = matlab.load(path)
    if "classlist" not in data:
        raise InvalidInputError(f"{path.name}: not a manual annotation file (no classlist)")
    titles = matlab.strings(data, "list_titles", path) if "list_titles" in data else TITLES
    titles = [t.strip().lower() for t in titles]
    table = np.asarray(data["classlist"], dtype=np.float64)
    if table.size == 0:
        return Submission(pa.table({"image_id": pa.array([], pa.string())}))
    if (
        table.ndim != 2
        or table.shape[1] != len(titles)
        or not {"roi number", "manual"} <= {*titles}
    ):
        raise InvalidInputError(
            f"{path.name}: classlist must have the columns {', '.join(titles)} "
            "(with 'roi number' and 'manual')"
        )
    rois, manual = table[:, titles.index("roi number")], table[:, titles.index("manual")]
    done = ~np.isnan(manual)
    rois, manual = rois[done], manual[done]
    classes = _classes(data, path, options.class_list)
    wrong = (manual != np.round(manual)) | (manual < 1) | (manual > len(classes))
    if wrong.any():
        at = int(np.argmax(wrong))
        raise InvalidInputError(
            f"{path.name}: ROI {rois[at]:g} is labelled class {manual[at]:g}, not one of the "
            f"{len(classes)} classes (1 to {len(classes)})"
        )
    labels = pa.array(classes, pa.string()).take(pa.array(manual.astype(np.int64) - 1))
    columns = {"image_id": roi_image_ids(path, rois), "label": labels}
    if options.annotator is not None:
        columns["annotator"] = pa.array([options.annotator] * len(labels), pa.string())
    return Submission(pa.table(columns))


def _classes(data: dict, path: Path, class_list: Path | None) -> list[str]:
    """The class names the ``manual`` indexes point into."""
    if class_list is not None:
        return read_class_list(class_list)
    if "class2use_manual" not in data:
        raise InvalidInputError(
            f"{path.name} has no class2use_manual; give its class list with --class-list "
            "class2use.mat"
        )
    return [name.strip() for name in matlab.strings(data, "class2use_manual", path)]


def read_class_list(path: Path) -> list[str]:
    """Class names from a ``.mat`` file's ``class2use`` (or ``class2use_manual``),
    or from a text file, one name per line."""
    if path.suffix.lower() != ".mat":
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"--class-list {path}: cannot read it ({exc})") from None
        return [line.strip() for line in lines if line.strip()]
    data = matlab.load(path)
    name = next((n for n in ("class2use", "class2use_manual") if n in data), None)
    if name is None:
        raise InvalidInputError(f"--class-list {path.name}: no class2use in it")
    return [entry.strip() for entry in matlab.strings(data, name, path)]
