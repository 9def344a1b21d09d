"""The commit command: ingest a folder, IFCB bins or TIFF stacks as one commit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import (
    RECORD,
    JsonOption,
    QuietOption,
    RepoOption,
    app,
    handles_errors,
    open_repo,
    print_json,
    report,
    warn,
)

if TYPE_CHECKING:
    from ..ingest.adapters import IngestPlan

PARTIAL_EXIT_CODE = 10
"""Exit code of a commit that left some samples out (IFCB bins that cannot
be ingested): what could be ingested is committed; not an error."""


@app.command(rich_help_panel=RECORD)
@handles_errors
def commit(
    source: Annotated[
        Path,
        typer.Argument(
            help="What to ingest: a directory of image files (--format files), IFCB bins or a "
            "dated tree of them (ifcb), TIFF/OME-TIFF files or a directory of them (tiff)."
        ),
    ],
    instrument: Annotated[
        str | None,
        typer.Option(
            "--instrument",
            "-i",
            help="Instrument that took the images (files: default from an instrument column or "
            "IFCB-style names, one batch per instrument; ifcb: default from each bin id).",
        ),
    ] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="Input format: files, ifcb, tiff, or an installed adapter (see `improv formats`).",
        ),
    ] = "files",
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="tiff: 'planes' (each 2-D plane an image, the default) or 'none' (each file one "
            "image).",
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="Adapter option KEY=VALUE (repeatable), e.g. time=2024-05-01T12:00:00Z for tiff.",
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            help="Read metadata times without a UTC offset in this zone: an IANA name "
            "(Europe/Stockholm) or ±HH:MM (default UTC; IFCB-style names are always UTC).",
        ),
    ] = None,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw/--no-raw",
            help="Keep the original files (IFCB .hdr/.adc/.roi, whole stacks, OME-XML) byte for "
            "byte.",
        ),
    ] = True,
    task_id: Annotated[
        str | None,
        typer.Option(
            "--task-id",
            help="The ingest task this commit records; running the same task again does nothing "
            "and prints its commit.",
        ),
    ] = None,
    allow_outside_deployment: Annotated[
        bool,
        typer.Option(
            "--allow-outside-deployment",
            help="Accept images outside their registered instrument's deployments, or dated in "
            "the future.",
        ),
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse images of instruments that are not registered.")
    ] = False,
    strict_bins: Annotated[
        bool,
        typer.Option(
            "--strict-bins",
            help="ifcb: refuse the whole SOURCE, writing nothing, when any bin is incomplete or "
            "bad (default: commit the others and exit 10).",
        ),
    ] = False,
    message: Annotated[str, typer.Option("--message", "-m", help="Commit message.")] = "",
    branch: Annotated[
        str | None,
        typer.Option("--branch", "-b", help="Branch to append to (default: the default branch)."),
    ] = None,
    author: Annotated[
        str | None, typer.Option(help="Author (default: $IMPROV_AUTHOR or the login name).")
    ] = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Ingest images (and their original files) as one commit.

    SOURCE becomes a batch of images per instrument, plus the original files
    when the format has them.

    --format files: each folder's metadata table gives image_id (or filename)
    and timestamp, and optionally lat, lon, depth, sample_id, instrument and
    any extra columns; without a table, ids and timestamps come from IFCB-style
    file names (D20240101T120000_IFCB107_00001.png). Columns `improv export`
    writes are accepted: blob_id and size are checked against the bytes, pack
    and offset ignored. Times without an offset are UTC unless --timezone.

    --format ifcb: every ROI of every bin becomes a PNG image with its ADC row
    and header fields as columns, timed by its own trigger (bin_time: the
    bin's start); the bin is the sample. A bin with a header and ADC but no
    .roi, or an empty one, keeps its sample record and files without images.
    Incomplete or bad bins (no .adc, an unreadable ADC, ROIs that do not tile
    the .roi, ml_analyzed <= 0) are skipped and listed with their reason, and
    the command exits 10 once the others are committed; --strict-bins refuses
    the whole SOURCE instead.

    --format tiff: planes get t, c, z, p indices and channel names; the stack
    is the sample (read it back with Snapshot.read_stack).

    Only regular files are read (FIFOs, sockets, devices and links to outside
    SOURCE are skipped with a warning). Limits, raised through environment
    variables: IMPROV_MAX_IMAGE_BYTES (one image file, default 256M),
    IMPROV_MAX_METADATA_COLUMNS (default 1000), IMPROV_MAX_FIELD_BYTES (one
    metadata field, default 1M); see docs/operations.md.
    """
    from ..core.errors import InvalidInputError
    from ..core.progress import progress_bar
    from ..ingest.adapters import apply_plan, get_adapter, parse_options

    repository = open_repo(repo)
    if task_id is not None:
        done = repository.snapshot(branch).task_commit(task_id)
        if done is not None:
            report(
                json_output,
                {"commit": done, "task": task_id, "already_done": True},
                f"Task {task_id} is already committed as {done[:12]}; nothing to do",
            )
            return
    adapter = get_adapter(format_)
    options = parse_options(option or ())
    if split is not None:
        options["split"] = split
    if timezone is not None:
        if "timezone" not in adapter.options:
            raise InvalidInputError(
                f"--timezone does not apply to --format {adapter.name}: its times carry their zone"
            )
        options["timezone"] = timezone
    plan = adapter.plan(source, instrument, options, keep_raw=raw)
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if strict_bins and plan.skipped:
        name, reason = next(iter(plan.skipped.items()))
        raise InvalidInputError(
            f"{len(plan.skipped)} bin(s) under {source} cannot be ingested (--strict-bins), "
            f"e.g. bin {name}: {reason}"
        )
    if not plan.images and not plan.files:
        raise InvalidInputError(f"{source} holds no images, and --no-raw keeps no original files")
    instruments = ", ".join(plan.instruments)
    with progress_bar(
        "ingesting", total=plan.images + plan.files, disable=quiet or json_output
    ) as advance:
        tx = repository.transaction(
            branch=branch,
            message=message or _default_message(plan.images, plan.files, instruments),
            author=author,
            progress=advance,
            task=task_id,
            allow_outside_deployment=allow_outside_deployment,
            strict=strict,
        )
        added, kept = apply_plan(tx, plan)
        commit_id = tx.commit()
    if tx.task_done is not None:  # another writer committed the task meanwhile
        report(
            json_output,
            {"commit": tx.task_done, "task": task_id, "already_done": True},
            f"Task {task_id} is already committed as {tx.task_done[:12]}; nothing to do",
        )
        return
    for warning in tx.warnings:
        warn(warning, quiet)
    result = {
        "commit": commit_id,
        "branch": tx.branch,
        "task": task_id,
        "format": adapter.name,
        "instruments": plan.instruments,
        "images": plan.images,
        "new_images": added if commit_id else 0,
        "files": plan.files,
        "new_files": kept if commit_id else 0,
        **_samples(plan),
    }
    files_note = f" and {kept} original file(s)" if kept else ""
    if json_output:
        print_json(result)
    elif commit_id is None:
        parts = [
            f"{plan.images} images" if plan.images else "",
            f"{plan.files} original files" if plan.files else "",
        ]
        typer.echo(
            f"Nothing new to commit: all {' and '.join(p for p in parts if p)} are already on "
            f"{tx.branch}"
        )
    else:
        skipped = plan.images - added
        note = f" ({skipped} already committed)" if skipped else ""
        typer.echo(
            f"[{tx.branch} {commit_id[:12]}] {added} image(s){files_note} from {instruments}{note}"
        )
    if not json_output:
        _print_samples(result)
    if plan.skipped:
        raise typer.Exit(PARTIAL_EXIT_CODE)


def _samples(plan: IngestPlan) -> dict:
    """The samples a plan keeps with and without images, and those it skips."""
    recorded = [s["sample_id"] for s in plan.samples]
    return {
        "samples": sorted(s for s in recorded if s not in plan.without_images),
        "samples_without_images": [
            {"sample": s, "reason": r} for s, r in sorted(plan.without_images.items())
        ],
        "skipped": [{"sample": s, "reason": r} for s, r in sorted(plan.skipped.items())],
    }


def _print_samples(result: dict) -> None:
    """The sample lines of the text summary (none when all have images)."""
    if not (result["samples_without_images"] or result["skipped"]):
        return
    if result["samples"]:
        typer.echo(f"  with images: {', '.join(result['samples'])}")
    for row in result["samples_without_images"]:
        typer.echo(f"  kept without images: {row['sample']}: {row['reason']}")
    for row in result["skipped"]:
        typer.echo(f"  skipped: {row['sample']}: {row['reason']}")


def _default_message(images: int, files: int, instruments: str) -> str:
    kept = f" and {files} original files" if files else ""
    return f"Add {images} images{kept} from {instruments}"
