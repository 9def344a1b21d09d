"""``datapackage``: one zip ready to upload as a Zenodo (or any DataCite
repository's) deposition.

It holds the content (``images/<image_id><ext>``; or with ``content="raw"``
the original files ``raw/<sample_id>/<name>`` of the selected samples; or,
with ``content="metadata"``, neither), the selection's rows as
``metadata.parquet`` and ``metadata.csv``, ``datacite.json`` (the citation's
DataCite metadata, for the deposition form or its API), a ``README.md`` that
says what the package is, how to cite it and how to verify it, and
``MANIFEST.json``. Every selected image is in the manifest (with the file
holding it when there are images), so ``improv cite verify`` checks the
package against its citation from its files alone.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..core.errors import InvalidInputError
from ..query.export import extension
from .imagefolder import _scalars, to_csv
from .selection import LABEL, Selection
from .writer import ExportWriter

if TYPE_CHECKING:
    from .export import ExportOptions

CONTENTS = ("images", "raw", "metadata")
DROPPED = ("pack", "offset")
"""Row columns that say where bytes are in the repository, not what they are."""


def write(writer: ExportWriter, options: ExportOptions) -> None:
    selection = writer.selection
    content = options.content
    if content not in CONTENTS:
        raise InvalidInputError(f"a data package holds {', '.join(CONTENTS)}; not {content!r}")
    rows = selection.rows.to_pylist()
    raw = _raw_files(selection, rows) if content == "raw" else None  # refused before writing
    odb = selection.snapshot.repository.odb
    files: list[str | None] = []
    for row in rows:
        if content == "images":
            name = f"images/{row['image_id']}{extension(row['media_type'])}"
            writer.write(
                name, odb.read_blob(row["pack"], row["offset"], row["size"], row["blob_id"])
            )
            writer.image(row["image_id"], row["blob_id"], file=name)
            files.append(name)
        else:
            writer.image(row["image_id"], row["blob_id"])
            files.append(None)
    for entry in raw or ():
        name = f"raw/{entry['sample_id']}/{entry['name']}"
        writer.write(
            name, odb.read_blob(entry["pack"], entry["offset"], entry["size"], entry["blob_id"])
        )

    table = selection.rows.drop_columns([c for c in DROPPED if c in selection.rows.column_names])
    if content == "images":
        table = table.append_column("file", pa.array(files, pa.string()))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    writer.write("metadata.parquet", sink.getvalue().to_pybytes())
    records = []
    for row, name in zip(rows, files):
        record = {k: _csv_value(v) for k, v in _scalars(row).items()}
        if content == "images":
            record["file"] = name
        records.append(record)
    writer.write("metadata.csv", to_csv(records))
    datacite = selection.citation.to_datacite()
    writer.write(
        "datacite.json",
        (json.dumps(datacite, indent=2, ensure_ascii=False, default=str) + "\n").encode(),
    )
    package = writer.root.name.removesuffix(".partial")
    layout = _layout(content, raw, LABEL in table.column_names)
    writer.write("README.md", readme(selection, content, package, layout).encode())


def _raw_files(selection: Selection, rows: list[dict]) -> list[dict[str, Any]]:
    """The original files of the selected samples; refused when an image
    has no sample or a sample has no original file (the package would not
    hold the selection)."""
    for row in rows:
        if row["sample_id"] is None:
            raise InvalidInputError(
                f"image {row['image_id']} belongs to no sample, so a raw data package cannot "
                "hold it; export its images instead"
            )
    samples = sorted({r["sample_id"] for r in rows})
    files = selection.snapshot.source_files(samples=samples) if samples else None
    have = set(files.column("sample_id").to_pylist()) if files is not None else set()
    lacking = [s for s in samples if s not in have]
    if lacking:
        raise InvalidInputError(
            f"sample {lacking[0]} has no original files in the repository"
            + (f" (nor {len(lacking) - 1} other(s))" if len(lacking) > 1 else "")
            + "; export its images instead"
        )
    if files is None:
        return []
    files = files.filter(pc.is_in(files.column("sample_id"), value_set=pa.array(samples)))
    return files.sort_by([("sample_id", "ascending"), ("name", "ascending")]).to_pylist()


def _csv_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def _layout(
    content: str, raw: list[dict[str, Any]] | None, labelled: bool
) -> list[tuple[str, str]]:
    items = []
    if content == "images":
        items.append(("images/", "the selected images, one file each, named by image id"))
    if content == "raw":
        samples = len({f["sample_id"] for f in raw or ()})
        items.append(
            (
                "raw/<sample_id>/",
                f"the original instrument files of the {samples} selected sample(s), byte for "
                "byte as the instrument wrote them",
            )
        )
    items += [
        (
            "metadata.parquet",
            "one row per image: id, instrument, time, position, sample, blob id (its SHA-256)"
            + (", label" if labelled else "")
            + (", file" if content == "images" else ""),
        ),
        ("metadata.csv", "the same rows as CSV (nested columns left out)"),
        ("datacite.json", "DataCite metadata of the citation (for the deposition form or API)"),
        ("README.md", "this file"),
        ("MANIFEST.json", "the SHA-256 of every file and the blob id of every selected image"),
    ]
    return items


def readme(selection: Selection, content: str, package: str, layout: list[tuple[str, str]]) -> str:
    """The package's ``README.md``."""
    citation = selection.citation
    pinned = citation.pinned
    rows = selection.rows
    samples = len(set(rows.column("sample_id").drop_null().to_pylist()))
    cited = [
        line
        for line in citation.to_text().strip().splitlines()
        if line.strip() and not line.startswith("Identifier:")
    ]
    lines = [f"# {citation.title}", ""]
    if citation.description:
        lines += [citation.description, ""]
    facts = [
        ("Authors", "; ".join(citation.authors) or "not stated"),
        ("Version", citation.version or f"commit {pinned.commit[:12]}"),
        ("Licence", citation.license or "not stated"),
    ]
    if citation.doi:
        facts.append(("DOI", f"https://doi.org/{citation.doi}"))
    facts += [
        (
            "Contents",
            f"{rows.num_rows} image(s) from {samples} sample(s) ("
            + {"images": "images", "raw": "original files", "metadata": "metadata only"}[content]
            + ")",
        ),
        ("Repository", f"improv_vcs repository {pinned.repository}, commit {pinned.commit}"),
    ]
    labels = selection.labels
    if labels is not None and LABEL in rows.column_names:
        facts.append(
            (
                "Labels",
                f"{labels.kind} run {labels.run} ({labels.verification}), "
                f"{len(selection.classes)} class(es): {', '.join(selection.classes)}",
            )
        )
    lines += [f"- **{k}:** {v}" for k, v in facts]
    lines += [
        "",
        "## How to cite",
        "",
        *(f"> {line}" for line in cited),
        "",
        f"Identifier: `{citation.identifier}`",
        "",
        "The identifier pins exactly these images: the commit, the query and a digest of the "
        "image ids and their bytes (and of the label records).",
        "",
        "## How to verify",
        "",
        "With improv_vcs installed, check that no file changed and that the package holds "
        "exactly the cited selection:",
        "",
        "```",
        f"improv cite verify {package}",
        "```",
        "",
        "With access to the repository, check it there too (the selection re-run, every image "
        "re-read):",
        "",
        "```",
        f"improv --repo REPOSITORY cite verify {package}",
        "```",
        "",
        "## Files",
        "",
        *(f"- `{name}`: {what}" for name, what in layout),
        "",
    ]
    return "\n".join(lines)
