"""IFCB Dashboard class scores, version 3 (``<bin>_class.h5``), through
``h5py`` (the ``formats`` extra).

``output_scores`` (ROIs × classes), ``class_labels`` and ``roi_numbers`` are
required; ``classifier_name``, ``class_name_auto`` (each ROI's winner),
``class_name`` (its class after thresholds) and ``thresholds`` are read when
present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ...core.errors import InvalidInputError
from .scores import classification
from .submission import ReadOptions, Submission, roi_image_ids

REQUIRED = ("output_scores", "class_labels", "roi_numbers")


def read(path: Path, options: ReadOptions) -> Submission:
    data = _datasets(path)
    missing = [name for name in REQUIRED if name not in data]
    if missing:
        raise InvalidInputError(f"{path.name}: not a v3 class file (no {missing[0]})")
    model = _texts(data, "classifier_name", path)
    thresholds = data.get("thresholds")
    return classification(
        path,
        roi_image_ids(path, np.asarray(data["roi_numbers"])),
        np.asarray(data["output_scores"]),
        _texts(data, "class_labels", path).to_pylist(),
        options,
        model=model[0].as_py() if model is not None and len(model) else None,
        winners=_texts(data, "class_name_auto", path),
        labels=_texts(data, "class_name", path),
        thresholds=None if thresholds is None else np.asarray(thresholds, np.float64).ravel(),
    )


def _texts(data: dict[str, Any], name: str, path: Path) -> pa.Array | None:
    """Dataset ``name`` as text (None when absent)."""
    if name not in data:
        return None
    values = np.asarray(data[name], dtype=object).ravel()
    try:
        return pa.array(values, pa.binary()).cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        try:
            return pa.array(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise InvalidInputError(f"{path.name}: {name} must hold text") from None


def _datasets(path: Path) -> dict[str, Any]:
    """Every top-level dataset of the HDF5 file ``path``, read whole."""
    try:
        import h5py
    except ImportError:
        raise InvalidInputError(
            "reading .h5 class files needs h5py: pip install 'improv_vcs[formats]'"
        ) from None
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            return {name: item[()] for name, item in f.items() if isinstance(item, h5py.Dataset)}
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path.name} as HDF5: {exc}") from None
