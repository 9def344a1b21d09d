"""``improv export --as FORMAT``: a selection written as a training set or a
publication (the publish layer does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import report

AsFormat = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="Write a training set or publication instead of files: imagefolder, "
        "parquet-images, ecotaxa, dwca or datapackage (each with MANIFEST.json).",
    ),
]
Labels = Annotated[
    str | None,
    typer.Option(
        "--labels",
        help="Label each image from records of KIND[.COLUMN] (classification: winner, "
        "annotation: label); images without one are left out.",
    ),
]
LabelRun = Annotated[
    str, typer.Option("--label-run", help="The run the labels come from (default: latest).")
]
Split = Annotated[
    str, typer.Option("--split", help="train,val,test shares (imagefolder, parquet-images).")
]
Seed = Annotated[int, typer.Option("--seed", help="Seeds the split.")]
Names = Annotated[
    Path | None,
    typer.Option(
        "--names", help="dwca: a CSV naming each class: class, scientificName, scientificNameID."
    ),
]
Content = Annotated[
    str, typer.Option("--content", help="datapackage: images, raw (original files) or metadata.")
]
PartMb = Annotated[int, typer.Option("--part-mb", min=1, help="ecotaxa: largest zip, in MB.")]
Title = Annotated[str | None, typer.Option("--title", help="Title for the citation.")]
Author = Annotated[
    list[str] | None, typer.Option("--author", help="An author of the data (repeatable).")
]
License = Annotated[str | None, typer.Option("--license", help="License, e.g. CC-BY-4.0.")]


def publish(
    snapshot: Any,
    query: Any,
    dest: Path,
    fmt: str,
    labels: str | None,
    label_run: str,
    split: str,
    seed: int,
    names: Path | None,
    content: str,
    part_mb: int,
    citation: dict[str, Any],
    json_output: bool,
) -> None:
    from ..core.errors import InvalidInputError
    from ..publish import ExportOptions, Labels, export, select

    chosen = None
    if labels:
        kind, _, column = labels.partition(".")
        chosen = Labels(kind, label_run, column or None)
    try:
        ratios = tuple(float(x) for x in split.split(","))
    except ValueError:
        raise InvalidInputError(
            f"--split takes three numbers, e.g. 0.8,0.1,0.1, not {split!r}"
        ) from None
    if len(ratios) != 3:
        raise InvalidInputError("--split takes three numbers: train,val,test")
    selection = select(snapshot, query, chosen, **citation)
    options = ExportOptions(
        ratios=ratios,  # type: ignore[arg-type]
        seed=seed,
        names=names,
        content=content,
        part_bytes=part_mb * 2**20,
    )
    done = export(selection, dest, fmt, options)
    report(
        json_output,
        {
            "format": done.format,
            "path": str(done.path),
            "images": done.images,
            "files": done.files,
            "written": done.written,
            "kept": done.kept,
            "citation": done.citation,
        },
        f"Exported {done.images} image(s) as {done.format} to {done.path} ({done.written} "
        f"file(s) written, {done.kept} already there)\nCitation: {done.citation}\n"
        f"Check it any time: improv cite verify {done.path}",
    )
