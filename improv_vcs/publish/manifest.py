"""``MANIFEST.json``: what an exported artefact holds and why it is exactly
the cited selection.

It names the citation identifier, the SHA-256 of every other file, which
file holds each image, and the ids of the label records the citation's
digest covers. An image file's SHA-256 is its blob id, so the digest can be
recomputed from the files alone: :func:`verify` needs no repository, and
with one it also re-runs the citation there.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..cite.citation import decode_identifier
from ..cite.citing import result_digest
from ..core.errors import IntegrityError, InvalidInputError

NAME = "MANIFEST.json"
FORMAT = 1


def manifest(
    identifier: str,
    files: dict[str, str],
    images: dict[str, dict[str, object]],
    records: tuple[str, ...],
    export_format: str,
) -> bytes:
    """The manifest's bytes: ``files`` path → SHA-256, ``images`` image id →
    its blob id and where its bytes are (``file``, and ``member`` of a zip or
    ``row`` of a Parquet file), ``records`` the label record ids."""
    body = {
        "format": FORMAT,
        "citation": identifier,
        "export": export_format,
        "files": dict(sorted(files.items())),
        "images": dict(sorted(images.items())),
        "records": sorted(records),
    }
    return (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Verified:
    """An artefact that is exactly its cited selection."""

    citation: str
    export: str
    images: int
    records: int
    files: int
    against_repository: bool


class _Artefact:
    """The files of an exported folder or zip, by relative POSIX path."""

    def __init__(self, path: Path):
        self.path = path
        self._zip = zipfile.ZipFile(path) if path.is_file() else None
        if self._zip is None and not path.is_dir():
            raise InvalidInputError(f"{path}: no such folder or zip")

    def names(self) -> list[str]:
        if self._zip is not None:
            return sorted(n for n in self._zip.namelist() if not n.endswith("/"))
        return sorted(
            p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()
        )

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        return (self.path / PurePosixPath(name)).read_bytes()

    def sha256(self, name: str) -> str:
        if self._zip is not None:
            digest = hashlib.sha256()
            with self._zip.open(name) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            return digest.hexdigest()
        return sha256_file(self.path / PurePosixPath(name))

    def manifest_name(self) -> str:
        found = [n for n in self.names() if n.rsplit("/", 1)[-1] == NAME]
        if len(found) != 1:
            raise IntegrityError(f"{self.path}: expected one {NAME}, found {len(found)}")
        return found[0]


def verify(path: str | Path, repository: Any | None = None) -> Verified:
    """Check an exported folder or zip: every file hashes as its manifest
    says, no file is missing or extra, and the images and records it lists
    give the citation's count and digest. With ``repository``, the citation
    is verified there too (the selection re-run, its bytes re-read).
    :class:`IntegrityError` names the first difference."""
    try:
        return _verify(_Artefact(Path(path)), repository)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise IntegrityError(f"{path}: a zip in it is damaged ({exc})") from None


def _verify(artefact: _Artefact, repository: Any | None) -> Verified:
    where = artefact.manifest_name()
    root = where[: -len(NAME)]
    try:
        body = json.loads(artefact.read(where))
        identifier, files = body["citation"], body["files"]
        images, records = body["images"], body["records"]
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"{where} is not an improv manifest") from None
    present = {n[len(root) :] for n in artefact.names() if n.startswith(root)} - {NAME}
    for name in sorted(set(files) ^ present):
        state = "missing" if name in files else "not in the manifest"
        raise IntegrityError(f"{name}: {state}")
    for name, expected in files.items():
        if artefact.sha256(root + name) != expected:
            raise IntegrityError(f"{name}: its bytes changed since the export")
    _check_images(artefact, root, images)
    pinned = decode_identifier(identifier)
    table = pa.table(
        {
            "image_id": pa.array(list(images), pa.string()),
            "blob_id": pa.array([e["blob_id"] for e in images.values()], pa.string()),
        }
    )
    if len(images) != pinned.count or result_digest(table, records) != pinned.digest:
        raise IntegrityError(
            f"the exported images and records are not the cited selection ({len(images)} "
            f"image(s), cited {pinned.count})"
        )
    if repository is not None:
        from ..cite.citing import verify as verify_citation

        verify_citation(repository, pinned)
    return Verified(
        identifier,
        body.get("export", ""),
        len(images),
        len(records),
        len(files),
        repository is not None,
    )


def _check_images(artefact: _Artefact, root: str, images: dict[str, dict[str, Any]]) -> None:
    """Each listed image's bytes hash to its blob id, wherever they are."""
    tables: dict[str, pa.Table] = {}
    archives: dict[str, zipfile.ZipFile] = {}
    for image, entry in images.items():
        name = entry.get("file")
        if name is None:
            continue  # an export of metadata only: the ids are checked by the digest
        if "row" in entry:
            if name not in tables:
                tables[name] = pq.read_table(pa.BufferReader(artefact.read(root + name)))
            data = tables[name].column("image")[int(entry["row"])]["bytes"].as_py()
        elif "member" in entry:
            if name not in archives:
                archives[name] = zipfile.ZipFile(io.BytesIO(artefact.read(root + name)))
            data = archives[name].read(str(entry["member"]))
        else:
            data = artefact.read(root + name)
        if hashlib.sha256(data or b"").hexdigest() != entry["blob_id"]:
            raise IntegrityError(f"{name}: not the bytes of image {image}")
