"""Writing an export: files land whole (a temporary name, then a rename),
a file already there with the same bytes is kept (so an interrupted export
resumes where it stopped), and the manifest is written last."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path, PurePosixPath

from ..core.errors import InvalidInputError
from .manifest import NAME, manifest, sha256_file
from .selection import Selection


class ExportWriter:
    """Files of one export under ``root``, each with its SHA-256, and where
    each image's bytes are (a file, a zip member, a Parquet row)."""

    def __init__(self, root: Path, selection: Selection, export_format: str):
        self.root = root
        self.selection = selection
        self.format = export_format
        self.files: dict[str, str] = {}
        self.images: dict[str, dict[str, object]] = {}
        self.written = self.kept = 0
        root.mkdir(parents=True, exist_ok=True)
        self._previous = _listed(root / NAME)
        (root / NAME).unlink(missing_ok=True)  # an export in progress has no manifest

    def write(self, name: str, data: bytes) -> str:
        """Write ``data`` to ``name`` (a relative POSIX path) unless it is
        there already with these bytes; returns its SHA-256."""
        path = self._path(name)
        digest = hashlib.sha256(data).hexdigest()
        if path.is_file() and path.stat().st_size == len(data) and sha256_file(path) == digest:
            self.kept += 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
            tmp.write_bytes(data)  # not synced: a resumed export re-hashes what it finds
            os.replace(tmp, path)
            self.written += 1
        self.files[name] = digest
        return digest

    def add(self, name: str) -> str:
        """Count in a file written another way (e.g. a zip built in place)."""
        digest = sha256_file(self._path(name))
        self.files[name] = digest
        return digest

    def image(self, image_id: str, blob_id: str, **where: object) -> None:
        """Where the bytes of ``image_id`` are: ``file=`` (and ``member=`` in
        a zip, or ``row=`` in a Parquet file); none for an export without images."""
        self.images[image_id] = {"blob_id": blob_id, **where}

    def finish(self) -> Path:
        """Drop what an earlier export here wrote and this one did not (e.g.
        parts of another size), then write the manifest; the export is
        complete once it exists. A file nobody exported here is refused;
        what an interrupted write left under a temporary name is removed."""
        for partial in self.root.rglob(".tmp-*"):
            partial.unlink()
        present = {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}
        stale = sorted(present - set(self.files) - {NAME})
        foreign = [name for name in stale if name not in self._previous]
        if foreign:
            raise InvalidInputError(
                f"{self.root} holds {foreign[0]!r}, which this export did not write; export "
                "into an empty folder"
            )
        for name in stale:
            self._path(name).unlink()
        rows = self.selection.rows
        missing = set(rows.column("image_id").to_pylist()) - set(self.images)
        if missing:
            raise InvalidInputError(f"the export left out image {sorted(missing)[0]!r}")
        body = manifest(
            self.selection.citation.identifier,
            self.files,
            self.images,
            self.selection.record_ids,
            self.format,
        )
        self.write(NAME, body)
        del self.files[NAME]
        return self.root

    def _path(self, name: str) -> Path:
        parts = PurePosixPath(name).parts
        if not parts or any(p in ("", ".", "..") for p in parts) or name.startswith("/"):
            raise InvalidInputError(f"not a file name inside an export: {name!r}")
        return self.root.joinpath(*parts)


def _listed(manifest_path: Path) -> set[str]:
    """The files an earlier, finished export here listed (none if there is none)."""
    try:
        return set(json.loads(manifest_path.read_bytes())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()
