"""Query commands: query and export."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import _publish
from ._common import (
    QUERY,
    JsonOption,
    QuietOption,
    RepoOption,
    app,
    handles_errors,
    open_repo,
    report,
)
from ._options import (
    DEFAULT_COLUMNS,
    AsOf,
    At,
    Bbox,
    Columns,
    DatasetOpt,
    Depth,
    End,
    Instrument,
    KindOpt,
    Limit,
    Prov,
    Run,
    Sample,
    SampleQuality,
    Start,
    Where,
    With,
    build_from_options,
    parse_as_of,
)
from ._output import (
    FORMATS,
    check_output,
    output_format_for,
    print_explain,
    write_count,
    write_rows,
)

if TYPE_CHECKING:
    from ..query.filters import Query


@app.command(rich_help_panel=QUERY)
@handles_errors
def query(
    at: At = None,
    as_of: AsOf = None,
    instrument: Instrument = None,
    start: Start = None,
    end: End = None,
    bbox: Bbox = None,
    depth: Depth = None,
    dataset: DatasetOpt = None,
    sample: Sample = None,
    where: Where = None,
    kind: KindOpt = None,
    prov: Prov = None,
    run: Run = None,
    with_: With = None,
    sample_quality: SampleQuality = None,
    columns: Columns = None,
    limit: Limit = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help=f"One of {', '.join(FORMATS)} (arrow: an Arrow IPC file). Default: from -o "
            f"FILE's extension, else table.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Rows as JSON: the same as --format json.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to FILE instead of standard output, atomically; its extension (.parquet, "
            ".csv, .json, "
            ".jsonl, .arrow/.feather, .txt) picks the format.",
        ),
    ] = None,
    count: Annotated[
        bool, typer.Option("--count", help="Print only the number of matching images.")
    ] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="Print the SQL, its parameters and how many manifests were scanned."
        ),
    ] = False,
    repo: RepoOption = None,
) -> None:
    """Find images at any snapshot, by metadata or provenance.

    Filter by time, instrument, place, depth, dataset, sample, any manifest
    column, or provenance records; filters are ANDed. Without --columns, shows
    image_id, instrument, timestamp, lat, lon, depth, sample_id and size;
    -c '*' shows every column.
    """
    from ..core.errors import InvalidInputError

    if explain and output is not None:
        raise InvalidInputError("--explain prints to the terminal; it does not combine with -o")
    if output is not None:
        check_output(output)
    chosen = "table" if explain else output_format_for(output_format, json_output, output)
    if columns is None and not (count or explain):
        columns = ",".join(DEFAULT_COLUMNS)
    q = build_from_options(
        instrument,
        start,
        end,
        bbox,
        depth,
        dataset,
        sample,
        where,
        columns,
        limit,
        kind,
        prov,
        run,
        with_,
        sample_quality,
    )
    result = (
        open_repo(repo).snapshot(at, as_of=parse_as_of(as_of)).select(q, count=count or explain)
    )
    if explain:
        print_explain(result)
    elif count:
        write_count(result.table.column(0)[0].as_py(), chosen, output)
    else:
        write_rows(result.table, chosen, output)


@app.command(rich_help_panel=QUERY)
@handles_errors
def export(
    dest: Annotated[
        Path,
        typer.Argument(help="Directory to write images and metadata into (created if missing)."),
    ],
    at: At = None,
    as_of: AsOf = None,
    instrument: Instrument = None,
    start: Start = None,
    end: End = None,
    bbox: Bbox = None,
    depth: Depth = None,
    dataset: DatasetOpt = None,
    sample: Sample = None,
    where: Where = None,
    kind: KindOpt = None,
    prov: Prov = None,
    run: Run = None,
    sample_quality: SampleQuality = None,
    limit: Limit = None,
    metadata_format: Annotated[
        str, typer.Option("--metadata-format", help="parquet or csv.")
    ] = "parquet",
    metadata_only: Annotated[
        bool, typer.Option("--metadata-only", help="Write only the metadata table.")
    ] = False,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Write the selected samples' original files (IFCB .hdr/.adc/.roi, whole stacks, "
            "OME-XML) at their ingest paths, byte for byte, instead of images.",
        ),
    ] = False,
    p: Annotated[
        str | None,
        typer.Option("--p", help="Stack planes: position index N, A:B (end exclusive) or A,B,C."),
    ] = None,
    t: Annotated[str | None, typer.Option("--t", help="Stack planes: time index (as --p).")] = None,
    c: Annotated[
        str | None, typer.Option("--c", help="Stack planes: channel index (as --p).")
    ] = None,
    z: Annotated[str | None, typer.Option("--z", help="Stack planes: z index (as --p).")] = None,
    as_format: _publish.AsFormat = None,
    labels: _publish.Labels = None,
    label_run: _publish.LabelRun = "latest",
    split: _publish.Split = "0.8,0.1,0.1",
    seed: _publish.Seed = 0,
    names: _publish.Names = None,
    content: _publish.Content = "images",
    part_mb: _publish.PartMb = 500,
    title: _publish.Title = None,
    author: _publish.Author = None,
    license: _publish.License = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Write the matching images and a metadata table to a directory.

    Images are named IMAGE_ID.ext in DEST. Files already present with the
    right hash are skipped, so an interrupted export resumes. --p/--t/--c/--z
    pick planes of each stack (positions as in numpy: --z 0:5 is the first
    five z planes); --raw writes original files instead. --as writes a
    training set or publication (imagefolder, parquet-images, ecotaxa, dwca,
    datapackage) with a MANIFEST.json tying it to a citation: check it with
    improv cite verify DEST.
    """
    from ..core.errors import InvalidInputError
    from ..core.progress import progress_bar
    from ..query.stack import parse_selector, select_each_sample

    repository = open_repo(repo)
    q = build_from_options(
        instrument,
        start,
        end,
        bbox,
        depth,
        dataset,
        sample,
        where,
        None,
        limit,
        kind,
        prov,
        run,
        None,
        sample_quality,
    )
    selectors = {
        axis: parse_selector(text, axis)
        for axis, text in {"p": p, "t": t, "c": c, "z": z}.items()
        if text is not None
    }
    if as_format is not None:
        if raw or selectors or metadata_only:
            raise InvalidInputError(
                "--as does not combine with --raw, --p/--t/--c/--z or --metadata-only"
            )
        _publish.publish(
            repository.snapshot(at, as_of=parse_as_of(as_of)),
            q,
            dest,
            as_format,
            labels,
            label_run,
            split,
            seed,
            names,
            content,
            part_mb,
            {"title": title, "authors": tuple(author or ()), "license": license},
            json_output,
        )
        return
    if raw:
        if selectors or metadata_only or limit is not None:
            raise InvalidInputError(
                "--raw exports whole samples; it does not combine with --p/--t/--c/--z, --limit "
                "or --metadata-only"
            )
        _export_raw(repository, q, dest, at, as_of, quiet or json_output, json_output)
        return
    rows = repository.snapshot(at, as_of=parse_as_of(as_of)).select(q).table
    if selectors:
        rows = select_each_sample(rows, selectors)
    with progress_bar(
        "exporting", total=rows.num_rows, disable=quiet or json_output or metadata_only
    ) as advance:
        result = repository.snapshot().export_rows(
            rows, dest, metadata_format, metadata_only, progress=advance
        )
    data = {
        "images": result.images,
        "written": result.written,
        "skipped": result.skipped,
        "bytes_written": result.bytes_written,
        "metadata": str(result.metadata),
    }
    report(
        json_output,
        data,
        f"Exported {result.images} image(s) to {dest}: {result.written} written, "
        f"{result.skipped} already present; metadata in {result.metadata.name}",
    )


def _export_raw(
    repository: Any,
    q: Query,
    dest: Path,
    at: str | None,
    as_of: str | None,
    quiet: bool,
    json_output: bool,
) -> None:
    from ..core.progress import progress_bar

    with progress_bar("exporting original files", total=None, disable=quiet) as advance:
        result = repository.snapshot(at, as_of=parse_as_of(as_of)).export_sources(
            dest, progress=advance, query=q
        )
    report(
        json_output,
        {
            "files": result.files,
            "written": result.written,
            "skipped": result.skipped,
            "bytes_written": result.bytes_written,
        },
        f"Exported {result.files} original file(s) to {dest}: {result.written} written, "
        f"{result.skipped} already present",
    )
