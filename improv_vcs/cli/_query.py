"""Query commands: query, export and dataset."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import (
    QUERY,
    RECORD,
    App,
    JsonOption,
    QuietOption,
    RepoOption,
    app,
    handles_errors,
    open_repo,
    report,
    warn,
)

if TYPE_CHECKING:
    from ..query.filters import Query

At = Annotated[
    str | None,
    typer.Option(
        "--at", help="Revision: commit, prefix, branch, tag or REF~N (default: the default branch)."
    ),
]
AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Newest commit at or before this time on --at's first-parent line."
    ),
]
Instrument = Annotated[
    list[str] | None,
    typer.Option("--instrument", "-i", help="Only these instruments (repeatable)."),
]
Start = Annotated[
    str | None,
    typer.Option("--start", help="From this time (ISO 8601, UTC if no offset), inclusive."),
]
End = Annotated[str | None, typer.Option("--end", help="Until this time, exclusive.")]
Bbox = Annotated[
    str | None,
    typer.Option(
        "--bbox",
        help="Bounding box S,W,N,E: minimum latitude, minimum longitude, maximum latitude, "
        "maximum longitude (e.g. 41,-71,42,-70).",
    ),
]
Depth = Annotated[str | None, typer.Option("--depth", help="MIN:MAX (either side may be empty).")]
DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", help="Only images inside this dataset's spans.")
]
Sample = Annotated[
    list[str] | None, typer.Option("--sample", help="Only these sample ids (repeatable).")
]
SampleQuality = Annotated[
    list[str] | None,
    typer.Option(
        "--sample-quality",
        help="Only images whose sample's latest record has this quality: good, questionable, bad "
        "(repeatable).",
    ),
]
Where = Annotated[
    list[str] | None,
    typer.Option(
        "--where", "-w", help="'COLUMN OP VALUE', OP in = != < <= > >= like (repeatable)."
    ),
]
KindOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kind", "-k", help="Only images with provenance records of this kind (repeatable)."
    ),
]
Prov = Annotated[
    list[str] | None,
    typer.Option(
        "--prov",
        help="'KIND.COLUMN OP VALUE' on provenance records; conditions on one kind hold for the "
        "same record (repeatable).",
    ),
]
Run = Annotated[
    list[str] | None,
    typer.Option(
        "--run",
        help="Which run's records count: 'latest' (per image) or a run id; 'KIND=RUN' for one "
        "kind (repeatable).",
    ),
]
With = Annotated[
    list[str] | None,
    typer.Option(
        "--with",
        help="Add KIND.COLUMN from each image's latest matching record, or sample.COLUMN from "
        "its sample's record (repeatable).",
    ),
]
DEFAULT_COLUMNS = (
    "image_id",
    "instrument",
    "timestamp",
    "lat",
    "lon",
    "depth",
    "sample_id",
    "size",
)
"""What ``improv query`` shows without ``--columns`` (``-c '*'`` shows all)."""
Columns = Annotated[
    str | None,
    typer.Option(
        "--columns",
        "-c",
        help=f"Comma-separated columns to return, or '*' for every column (default: "
        f"{', '.join(DEFAULT_COLUMNS)}).",
    ),
]
Limit = Annotated[int | None, typer.Option("--limit", "-n", min=0, help="At most N rows.")]
FORMATS = ("table", "csv", "json", "jsonl", "parquet", "arrow")
EXTENSIONS = {
    ".arrow": "arrow",
    ".csv": "csv",
    ".feather": "arrow",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".txt": "table",
}
"""The format each ``-o FILE`` extension implies (``arrow`` is an Arrow IPC file)."""
BINARY = ("parquet", "arrow")


def build_from_options(*options: Any, **named: Any) -> Query:
    """The :class:`Query` the shared query options describe (imported lazily
    to keep start-up fast)."""
    from ..query.text import query_from_options

    return query_from_options(*options, **named)


def _as_of(text: str | None) -> datetime | None:
    from ..core.times import parse_time

    return parse_time(text, "--as-of") if text else None


def output_format_for(output_format: str | None, json_output: bool, output: Path | None) -> str:
    """The format to write: ``--format``, ``--json``, else ``-o FILE``'s
    extension, else a text table. Disagreements between them, an extension
    that names no format, and a binary format without a file are refused."""
    from ..core.errors import InvalidInputError

    if output_format is not None and output_format not in FORMATS:
        raise InvalidInputError(f"--format must be one of {', '.join(FORMATS)}")
    if json_output:
        if output_format not in (None, "json"):
            raise InvalidInputError(
                f"--json means --format json; it contradicts --format {output_format}"
            )
        output_format = "json"
    if output is None:
        if output_format in BINARY:
            raise InvalidInputError(f"--format {output_format} needs -o FILE")
        return output_format or "table"
    implied = EXTENSIONS.get(output.suffix.lower())
    if output_format is None:
        if implied is None:
            known = ", ".join(EXTENSIONS)
            raise InvalidInputError(
                f"cannot tell which format to write to {output.name!r} from its extension; "
                f"use one of {known} or give --format"
            )
        return implied
    if implied is not None and implied != output_format:
        raise InvalidInputError(
            f"--format {output_format} disagrees with -o {output.name!r}, which names a "
            f"{implied} file; "
            "drop --format or rename the file"
        )
    return output_format


def _check_output(output: Path) -> None:
    """Refuse an output path that cannot be written, before the query runs."""
    from ..core.errors import InvalidInputError

    if output.is_dir():
        raise InvalidInputError(f"-o {output}: is a directory")
    if not output.parent.is_dir():
        raise InvalidInputError(f"-o {output}: directory {output.parent} does not exist")


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
        _check_output(output)
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
    result = open_repo(repo).snapshot(at, as_of=_as_of(as_of)).select(q, count=count or explain)
    if explain:
        _print_explain(result)
    elif count:
        _write_count(result.table.column(0)[0].as_py(), chosen, output)
    else:
        _write_rows(result.table, chosen, output)


def _print_explain(result: Any) -> None:
    typer.echo(f"snapshot: {result.commit_id or '(empty repository)'}")
    typer.echo(f"manifests scanned: {result.manifests_scanned} of {result.manifests_total}")
    typer.echo(f"batches counted whole from their statistics: {result.batches_counted_whole}")
    typer.echo(f"sql: {result.sql}")
    typer.echo(f"parameters: {[str(p) for p in result.params]}")
    typer.echo(f"matching images: {result.table.column(0)[0].as_py()}")


def _write_count(number: int, output_format: str, output: Path | None) -> None:
    if output_format in BINARY:
        import pyarrow as pa

        _write_table(pa.table({"count": pa.array([number], pa.int64())}), output_format, output)
    elif output_format in ("json", "jsonl"):
        _write_text(output, f'{{"count": {number}}}\n')
    elif output_format == "csv":
        _write_text(output, f"count\n{number}\n")
    else:
        _write_text(output, f"{number}\n")


def _write_text(output: Path | None, text: str) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomically(output, lambda file: file.write(text.encode()))


def write_atomically(output: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file next to ``output``, then
    rename it into place: readers see the old file or the whole new one,
    and a failure leaves no partial file behind."""
    import os
    import tempfile

    from ..core.errors import StorageError

    try:
        mode = output.stat().st_mode & 0o777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        mode = 0o666 & ~mask
    try:
        handle, temporary = tempfile.mkstemp(
            prefix=f".{output.name}.", suffix=".partial", dir=output.parent
        )
    except OSError as exc:
        raise StorageError(f"cannot write {output}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, output)
    except BaseException as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise StorageError(f"cannot write {output}: {exc.strerror or exc}") from None
        raise


def _write_table(table: Any, output_format: str, output: Path | None) -> None:
    """A binary format (parquet, Arrow IPC file) to ``output``."""
    if output_format == "parquet":
        import pyarrow.parquet as pq

        write_atomically(output, lambda file: pq.write_table(table, file, compression="zstd"))  # type: ignore[arg-type]
    else:
        import pyarrow as pa

        def write_ipc(file: Any) -> None:
            with pa.ipc.new_file(file, table.schema) as writer:
                writer.write_table(table)

        write_atomically(output, write_ipc)  # type: ignore[arg-type]


def _write_rows(table: Any, output_format: str, output: Path | None) -> None:
    import json

    if output_format in BINARY:
        _write_table(table, output_format, output)
        return
    if output_format == "csv":
        text = _csv_text(table)
    elif output_format == "json":
        text = json.dumps(table.to_pylist(), default=_json_value, indent=2) + "\n"
    elif output_format == "jsonl":
        text = "".join(json.dumps(r, default=_json_value) + "\n" for r in table.to_pylist())
    else:
        text = _table_text(table)
    _write_text(output, text)


def _csv_text(table: Any) -> str:
    """CSV, nested values (lists such as sample.alt_ids) as JSON text."""
    import io
    import json

    import pyarrow as pa
    import pyarrow.csv as csv

    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            values = [
                None if v is None else json.dumps(v, default=_json_value)
                for v in table.column(i).to_pylist()
            ]
            table = table.set_column(i, field.name, pa.array(values, pa.string()))
    buffer = io.BytesIO()
    csv.write_csv(table, buffer)
    return buffer.getvalue().decode()


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _table_text(table: Any) -> str:
    """Rows as aligned text columns, times in UTC."""
    if table.num_rows == 0:
        return "No matching images.\n"
    rows = [table.column_names]
    for record in table.to_pylist():
        rows.append([_cell(record[c]) for c in table.column_names])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines) + f"\n({table.num_rows} image(s))\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text[:12] if len(text) == 64 else text


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
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Write the matching images and a metadata table to a directory.

    Images are named IMAGE_ID.ext in DEST. Files already present with the
    right hash are skipped, so an interrupted export resumes. --p/--t/--c/--z
    pick planes of each stack (positions as in numpy: --z 0:5 is the first
    five z planes); --raw writes original files instead.
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
    if raw:
        if selectors or metadata_only or limit is not None:
            raise InvalidInputError(
                "--raw exports whole samples; it does not combine with --p/--t/--c/--z, --limit "
                "or --metadata-only"
            )
        _export_raw(repository, q, dest, at, as_of, quiet or json_output, json_output)
        return
    rows = repository.snapshot(at, as_of=_as_of(as_of)).select(q).table
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
        result = repository.snapshot(at, as_of=_as_of(as_of)).export_sources(
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


dataset_app = App(help="Named datasets: versioned time spans per instrument.")
app.add_typer(dataset_app, name="dataset", rich_help_panel=RECORD)


@dataset_app.command("add")
@handles_errors
def dataset_add(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    instrument: Annotated[str, typer.Option("--instrument", "-i", help="Instrument of the span.")],
    start: Annotated[str, typer.Option("--start", help="Span start (inclusive).")],
    end: Annotated[str, typer.Option("--end", help="Span end (exclusive).")],
    description: Annotated[
        str | None, typer.Option("--description", help="Describe the dataset.")
    ] = None,
    branch: Annotated[
        str | None, typer.Option("--branch", "-b", help="Branch to commit to.")
    ] = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Add a span to a dataset (created if new) as a commit."""
    from ..core.errors import ImprovError
    from ..core.times import parse_time
    from ..write.shortcuts import add_dataset_span

    repository = open_repo(repo)
    try:
        known = repository.snapshot(branch).instruments()
    except ImprovError:
        known = []
    if instrument not in known:
        warn(f"no images from instrument {instrument!r} yet", quiet)
    commit_id = add_dataset_span(
        repository,
        name,
        instrument,
        parse_time(start, "--start"),
        parse_time(end, "--end"),
        description,
        branch,
    )
    text = f"Dataset {name}: added {instrument} span" + (
        f" in {commit_id[:12]}" if commit_id else " (already there)"
    )
    report(json_output, {"dataset": name, "commit": commit_id}, text)


@dataset_app.command("remove-span")
@handles_errors
def dataset_remove_span(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    instrument: Annotated[str, typer.Option("--instrument", "-i", help="Instrument of the span.")],
    start: Annotated[str, typer.Option("--start", help="Span start, as given when added.")],
    end: Annotated[str, typer.Option("--end", help="Span end, as given when added.")],
    branch: Annotated[
        str | None, typer.Option("--branch", "-b", help="Branch to commit to.")
    ] = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Remove one span from a dataset.

    Removing the last span removes the dataset.
    """
    from ..core.times import parse_time
    from ..write.shortcuts import remove_dataset_span

    commit_id = remove_dataset_span(
        open_repo(repo),
        name,
        instrument,
        parse_time(start, "--start"),
        parse_time(end, "--end"),
        branch,
    )
    report(
        json_output,
        {"dataset": name, "commit": commit_id},
        f"Dataset {name}: removed {instrument} span in {commit_id[:12] if commit_id else '-'}",
    )


@dataset_app.command("list")
@handles_errors
def dataset_list(at: At = None, json_output: JsonOption = False, repo: RepoOption = None) -> None:
    """List datasets at a revision."""
    datasets = open_repo(repo).snapshot(at).datasets()
    data = {name: d.model_dump(mode="json") for name, d in datasets.items()}
    lines = [
        f"{name:<24} {len(d.spans)} span(s)  {d.description}".rstrip()
        for name, d in datasets.items()
    ]
    report(json_output, data, "\n".join(lines) or "No datasets yet.")


@dataset_app.command("show")
@handles_errors
def dataset_show(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    at: At = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Show a dataset's description and spans at a revision."""
    found = open_repo(repo).snapshot(at).dataset(name)
    lines = [f"dataset {name}", f"    {found.description}" if found.description else ""]
    lines += [
        f"  {s.instrument:<12} {s.start.isoformat()} .. {s.end.isoformat()}" for s in found.spans
    ]
    report(json_output, found.model_dump(mode="json"), "\n".join(line for line in lines if line))
