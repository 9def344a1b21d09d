"""Writing local output files atomically."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StorageError


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a hidden temporary file and a rename,
    so a reader never sees a partial file."""
    tmp = target.with_name(f".{target.name}.improv-tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
