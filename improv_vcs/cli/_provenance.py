"""Provenance commands: add, show, kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import (
    RECORD,
    App,
    JsonOption,
    RepoOption,
    app,
    handles_errors,
    open_repo,
    print_json,
    report,
)
from ._options import AsOf, At

provenance_app = App(
    help="Append-only records about images: classes, masks, features.\n\n"
    "Classifications, segmentation masks, features, annotations and any kind a plugin adds.",
)
app.add_typer(provenance_app, name="provenance", rich_help_panel=RECORD)


def _constants(pairs: list[str] | None) -> dict[str, str]:
    from ..core.errors import InvalidInputError

    out = {}
    for pair in pairs or ():
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise InvalidInputError(f"--set needs COLUMN=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out


@provenance_app.command("add")
@handles_errors
def provenance_add(
    kind: Annotated[str, typer.Argument(help="Record kind (see `improv provenance kinds`).")],
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Files (or directories of them): CSV or Parquet records keyed by image_id (or "
            "file_name, or IFCB roi_number); IFCB class files (v1 .mat, v3 .h5, v4 CSV) or "
            "per-class Parquet; classlist annotations (.mat); embeddings (Parquet); zips of masks."
        ),
    ],
    format_name: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="The files' format (default: told from each file): records, class-v1, class-v3, "
            "class-v4, class-parquet, classlist, embeddings or mask-zip.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Classifier or embedding model (default: as the file says)."),
    ] = None,
    model_version: Annotated[
        str | None,
        typer.Option(
            "--model-version",
            help="Model version (default: as the file says; for class files, classes-HASH of "
            "their class list).",
        ),
    ] = None,
    class_list: Annotated[
        Path | None,
        typer.Option(
            "--class-list",
            help="class2use.mat (or text, a name per line) that classlist indexes point into "
            "(default: the file's class2use_manual).",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Who or what produced the records (default: you)."),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="Name of this run (default: derived from the records, so re-adding them is a "
            "no-op).",
        ),
    ] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks", help="Directory or zip of mask files named IMAGE_ID.ext (segmentation)."
        ),
    ] = None,
    constants: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="COLUMN=VALUE added to every record, e.g. model=resnet50 (repeatable)."
        ),
    ] = None,
    branch: Annotated[
        str | None, typer.Option("--branch", "-b", help="Branch to commit to.")
    ] = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Attach records to images as a new commit.

    Nothing is replaced: a re-run with a new run id sits next to the old one;
    identical records are skipped. The class list of a class file becomes the
    taxonomy of its model version in the same commit.
    """
    import functools

    from ..core.authors import default_author
    from ..core.errors import InvalidInputError
    from ..ingest.provenance_files import ReadOptions, read_files, read_masks
    from ..snapshot import registry

    repository = open_repo(repo)
    source = source or default_author()
    options = ReadOptions(model, model_version, class_list, annotator=source)
    submission = read_files(files, kind, format_name, options, _constants(constants))
    table, mask_bytes = submission.table, submission.masks
    if masks is not None:
        if mask_bytes is not None:
            raise InvalidInputError("--masks: the zip given holds the masks already")
        mask_bytes = read_masks(masks, table.column("image_id").to_pylist())
    with repository.transaction(branch, message or f"Provenance: {kind} from {source}") as tx:
        for (classifier, version), classes in submission.taxonomies.items():
            tx.edit_registry(
                functools.partial(
                    registry.add_taxonomy,
                    classifier=classifier,
                    model_version=version,
                    classes=classes,
                )
            )
        added = tx.add_provenance(kind, table, source, run_id, mask_bytes)
    runs = sorted({r for s in tx.segments for r in s.runs})
    data = {
        "kind": kind,
        "records": table.num_rows,
        "added": added,
        "commit": tx.commit_id,
        "runs": runs,
    }
    where = f" in {tx.commit_id[:12]}" if tx.commit_id else " (all were already there)"
    run_text = f", run {', '.join(runs)}" if runs else ""
    report(
        json_output, data, f"Added {added} of {table.num_rows} {kind} record(s){run_text}{where}"
    )


@provenance_app.command("show")
@handles_errors
def provenance_show(
    image_id: Annotated[str, typer.Argument(help="Image id.")],
    kind: Annotated[
        str | None, typer.Option("--kind", "-k", help="Only records of this kind.")
    ] = None,
    at: At = None,
    as_of: AsOf = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Show one image's records: every run, oldest first."""
    from ._options import parse_as_of

    found = open_repo(repo).snapshot(at, parse_as_of(as_of)).provenance(image_id, kind)
    if json_output:
        print_json([r.to_json() for r in found])
        return
    if not found:
        typer.echo(f"No provenance records for {image_id}.")
        return
    for record in found:
        typer.echo(
            f"{record.recorded_at:%Y-%m-%d %H:%M:%S}  {record.kind:<15} run {record.run_id}  "
            f"source {record.source}  record {record.record_id[:12]}"
        )
        for name, value in record.values.items():
            typer.echo(f"    {name}: {_value(value)}")
        if record.blob_id:
            typer.echo(f"    mask: {record.blob_id[:12]}")


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in value.items()
            if v is not None
        )
    if isinstance(value, list):
        shown = ", ".join(f"{v:.4g}" for v in value[:8])
        return f"[{shown}, … ({len(value)} numbers)]" if len(value) > 8 else f"[{shown}]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@provenance_app.command("kinds")
@handles_errors
def provenance_kinds(json_output: JsonOption = False) -> None:
    """List the record kinds known here (built-in and plugins)."""
    from ..provenance.catalog import known_kinds

    described = [k.describe() for k in known_kinds().values()]
    lines = []
    for kind in described:
        columns = ", ".join(c["name"] + ("*" if c["required"] else "") for c in kind["columns"])
        if kind["open_columns"]:
            columns += (", " if columns else "") + f"any {kind['open_columns']} columns"
        lines.append(
            f"{kind['name']:<15} {kind['description']}\n{'':<15} columns: {columns or '-'}"
        )
    report(json_output, described, "\n".join(lines) + "\n(* required)")
