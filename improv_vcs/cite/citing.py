"""Make, verify and materialize citations against a repository.

Verification re-runs the pinned selection at the pinned commit, compares
the row count and the digest, then reads every cited image and checks its
bytes against its hash: success proves the data is byte for byte what was
cited.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from ..core.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError
from ..query.export import ExportReport, export_rows, iter_blobs
from ..query.filters import Query
from .citation import Citation, Pinned, find_identifier

if TYPE_CHECKING:
    from ..repository.repository import Repository
    from ..repository.snapshot import Snapshot

_METADATA = ("title", "authors", "license", "description", "doi")


def result_digest(rows: pa.Table, record_ids: Sequence[str]) -> str:
    """SHA-256 over ``image_id TAB blob_id LF`` sorted by image id, then
    ``record TAB id LF`` for the sorted provenance record ids."""
    digest = hashlib.sha256()
    if rows.num_rows:
        ordered = rows.select(["image_id", "blob_id"]).sort_by("image_id")
        lines = pc.binary_join_element_wise(
            ordered.column("image_id"), ordered.column("blob_id"), "\t"
        )
        digest.update(("\n".join(lines.to_pylist()) + "\n").encode())
    for record in sorted(record_ids):
        digest.update(f"record\t{record}\n".encode())
    return digest.hexdigest()


def make(snapshot: Snapshot, query: Query, tag: str | None, metadata: dict[str, Any]) -> Citation:
    """Cite the selection ``query`` makes in ``snapshot``; with ``tag`` (a
    release tag naming the snapshot's commit), its release metadata fills
    what ``metadata`` does not give."""
    repo = snapshot.repository
    if snapshot.commit_id is None:
        raise NotFoundError("there is nothing to cite: the repository has no commit")
    release: dict[str, Any] = {}
    if tag is not None:
        if snapshot.rev not in (None, tag):
            raise InvalidInputError("give either a revision or --tag, not both")
        if repo.resolve(tag) != snapshot.commit_id:
            raise InvalidInputError(
                f"tag {tag!r} does not name the cited commit {snapshot.commit_id[:12]}"
            )
        found = repo.tag_object(tag)
        if found is not None:
            release = {k: getattr(found, k) for k in _METADATA if getattr(found, k)}
    query = query.model_copy(update={"columns": None})
    result = snapshot.select(query, record_ids=True)
    spans = snapshot.dataset(query.dataset).spans if query.dataset else ()
    pinned = Pinned(
        repository=repo.id,
        commit=snapshot.commit_id,
        query=query.model_dump(mode="json", exclude_defaults=True),
        count=result.table.num_rows,
        digest=result_digest(result.table, result.record_ids),
    )
    metadata = {**release, **{k: v for k, v in metadata.items() if v}}
    try:
        return Citation(
            pinned=pinned,
            urls=tuple(dict.fromkeys([repo.url, *(r.url for r in repo.remotes.all().values())])),
            ref=snapshot.rev if tag is None else tag,
            dataset_spans=spans,
            version=tag,
            created=repo.clock(),
            **metadata,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidInputError(f"{'.'.join(map(str, error['loc']))}: {error['msg']}") from None


def load(text_or_path: str) -> Pinned:
    """The pinned selection of an identifier, or of a citation file in any format."""
    if "improv:1:" not in text_or_path:
        try:
            candidate = Path(text_or_path)
            if candidate.is_file():
                return find_identifier(candidate.read_text(encoding="utf-8", errors="replace"))
        except (OSError, ValueError):
            pass  # not a usable path: read it as text
    return find_identifier(text_or_path)


@dataclass(frozen=True)
class Verification:
    """A successful verification: what was re-derived and re-read."""

    commit: str
    count: int
    digest: str
    images_checked: int
    bytes_checked: int

    def to_json(self) -> dict[str, Any]:
        return {"verified": True, **self.__dict__}


def _rows(repo: Repository, pinned: Pinned) -> tuple[Query, Any]:
    if pinned.repository != repo.id:
        raise ConflictError(
            f"this is repository {repo.id}; the citation is of repository {pinned.repository}"
        )
    hint = _pull_hint(repo)
    if not repo.odb.has(pinned.commit):
        raise NotFoundError(f"commit {pinned.commit[:12]} is not at this site; {hint}")
    try:
        query = Query.model_validate(pinned.query)
    except ValidationError:
        raise InvalidInputError(
            "the citation's query is not valid (a damaged or foreign citation)"
        ) from None
    try:
        return query, repo.snapshot(pinned.commit).select(query, record_ids=True)
    except NotFoundError as exc:
        raise NotFoundError(f"objects of the cited snapshot are missing ({exc}); {hint}") from None


def _pull_hint(repo: Repository) -> str:
    remotes = repo.remotes.all()
    if not remotes:
        return "fetch it from a site that holds it (improv pull URL)"
    return "pull it from " + ", ".join(f"{name} ({r.url})" for name, r in remotes.items())


def verify(
    repo: Repository, pinned: Pinned, progress: Callable[[int], None] | None = None
) -> Verification:
    """Re-run the pinned selection, compare count and digest, and re-read
    every cited image; raise on any difference."""
    _, result = _rows(repo, pinned)
    rows = result.table
    digest = result_digest(rows, result.record_ids)
    if rows.num_rows != pinned.count or digest != pinned.digest:
        raise IntegrityError(
            f"the cited selection now gives {rows.num_rows} image(s) (cited: {pinned.count}) and "
            f"digest "
            f"{digest[:12]} (cited: {pinned.digest[:12]}); the repository may be damaged: run "
            f"`improv fsck`"
        )
    checked = nbytes = 0
    try:
        for _, _, data in iter_blobs(repo.odb, rows, rows.column("image_id")):
            checked += 1
            nbytes += len(data)
            if progress:
                progress(1)
    except IntegrityError as exc:
        raise IntegrityError(
            f"a cited image's stored bytes are corrupt ({exc}); run `improv fsck`"
        ) from None
    return Verification(pinned.commit, rows.num_rows, digest, checked, nbytes)


def export(
    repo: Repository,
    pinned: Pinned,
    dest: str | os.PathLike[str],
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write exactly the cited images, their metadata, the provenance records
    the selection used (``provenance/<kind>.parquet``) and their masks
    (``masks/``), after checking the selection still matches its digest."""
    query, result = _rows(repo, pinned)
    rows = result.table
    if result_digest(rows, result.record_ids) != pinned.digest:
        raise IntegrityError("the cited selection no longer matches its digest; run `improv fsck`")
    report = export_rows(repo.odb, rows, Path(dest), progress=progress)
    _export_provenance(repo, pinned.commit, query, set(result.record_ids), Path(dest))
    return report


def _export_provenance(
    repo: Repository, commit: str, query: Query, used: set[str], dest: Path
) -> None:
    import pyarrow.parquet as pq

    from ..core.files import write_atomic
    from ..provenance.catalog import get_kind
    from ..query.export import file_names

    for kind in query.provenance_kinds():
        records = repo.snapshot(commit).provenance_records(kind)
        records = records.filter(
            pc.is_in(records.column("record_id"), value_set=pa.array(sorted(used), pa.string()))
        )
        (dest / "provenance").mkdir(parents=True, exist_ok=True)
        sink = pa.BufferOutputStream()
        pq.write_table(records, sink, compression="zstd")
        write_atomic(dest / "provenance" / f"{kind}.parquet", sink.getvalue().to_pybytes())
        if get_kind(kind).blob and records.num_rows:
            (dest / "masks").mkdir(exist_ok=True)
            stems = pc.binary_join_element_wise(
                records.column("image_id"),
                pc.utf8_slice_codeunits(records.column("record_id"), 0, 12),
                ".",
            )
            names = file_names(records.set_column(0, "image_id", stems))
            for name, _, data in iter_blobs(repo.odb, records, names):
                write_atomic(dest / "masks" / name, data)
