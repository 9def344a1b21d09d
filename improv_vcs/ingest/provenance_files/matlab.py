"""MATLAB ``.mat`` files (level 5, as ifcb-analysis writes them), through
``scipy.io`` (the ``formats`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import InvalidInputError


def variables(path: Path) -> set[str]:
    """The names of the variables ``path`` holds, without loading them."""
    io = _scipy_io()
    return {name for name, _, _ in _reading(path, lambda: io.whosmat(str(path)))}


def load(path: Path) -> dict[str, Any]:
    """Every variable of ``path``, arrays kept two-dimensional as MATLAB has them."""
    io = _scipy_io()
    return _reading(path, lambda: io.loadmat(str(path), squeeze_me=False))


def strings(data: dict[str, Any], name: str, path: Path) -> list[str]:
    """The text of variable ``name``: a char array or a cell array of char arrays."""
    found = _text(data[name])
    if found is None:
        raise InvalidInputError(f"{path.name}: {name} must hold text")
    return found


def _text(value: Any) -> list[str] | None:
    array = np.asarray(value)
    if array.dtype.kind == "U":
        return [str(item) for item in array.ravel()]
    if array.size == 0:
        return []
    if array.dtype != object:
        return None
    items = [_text(item) for item in array.ravel()]
    return None if any(i is None for i in items) else ["".join(i) for i in items]


def _scipy_io() -> Any:
    try:
        from scipy import io
    except ImportError:
        raise InvalidInputError(
            "reading .mat files needs scipy: pip install 'improv_vcs[formats]'"
        ) from None
    return io


def _reading(path: Path, read: Any) -> Any:
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    try:
        return read()
    except Exception as exc:  # scipy raises many kinds on malformed files: all mean unreadable
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InvalidInputError(f"cannot read {path.name} as a MATLAB file: {first}") from None
