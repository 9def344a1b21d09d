"""Writing query results: choosing the format, and text, CSV, JSON, Parquet
or Arrow to standard output or atomically to a file."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

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


def check_output(output: Path) -> None:
    """Refuse an output path that cannot be written, before the query runs."""
    from ..core.errors import InvalidInputError

    if output.is_dir():
        raise InvalidInputError(f"-o {output}: is a directory")
    if not output.parent.is_dir():
        raise InvalidInputError(f"-o {output}: directory {output.parent} does not exist")


def print_explain(result: Any) -> None:
    typer.echo(f"snapshot: {result.commit_id or '(empty repository)'}")
    typer.echo(f"manifests scanned: {result.manifests_scanned} of {result.manifests_total}")
    typer.echo(f"batches counted whole from their statistics: {result.batches_counted_whole}")
    typer.echo(f"sql: {result.sql}")
    typer.echo(f"parameters: {[str(p) for p in result.params]}")
    typer.echo(f"matching images: {result.table.column(0)[0].as_py()}")


def write_count(number: int, output_format: str, output: Path | None) -> None:
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


def write_rows(table: Any, output_format: str, output: Path | None) -> None:
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
    if isinstance(value, list) and len(value) > 8 and all(isinstance(v, float) for v in value):
        return f"[{len(value)} numbers]"  # a score vector or an embedding
    text = str(value)
    return text[:12] if len(text) == 64 else text
