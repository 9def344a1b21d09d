"""Commands about ingest formats and original files: formats, sources."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import INSPECT, JsonOption, RepoOption, app, handles_errors, open_repo, print_json


@app.command(rich_help_panel=INSPECT)
@handles_errors
def formats(json_output: JsonOption = False) -> None:
    """List the input formats `improv commit --format` accepts.

    Built-in formats and installed adapters, with their options.
    """
    from ..ingest.adapters import known_adapters

    adapters = [
        {
            "name": a.name,
            "description": a.description,
            "options": dict(a.options),
            "needs_instrument": a.needs_instrument,
        }
        for a in sorted(known_adapters().values(), key=lambda a: a.name)
    ]
    if json_output:
        print_json(adapters)
        return
    for a in adapters:
        typer.echo(f"{a['name']:<8} {a['description']}")
        for name, text in a["options"].items():
            typer.echo(f"{'':<8}   --option {name}=…  {text}")


@app.command(rich_help_panel=INSPECT)
@handles_errors
def sources(
    sample: Annotated[
        list[str] | None, typer.Option("--sample", help="Only these samples (repeatable).")
    ] = None,
    instrument: Annotated[
        list[str] | None,
        typer.Option("--instrument", "-i", help="Only these instruments (repeatable)."),
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Revision (default: the default branch).")
    ] = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """List the original files kept (raw bins, stacks, documents).

    Each with its sample, path, role and size. `improv export DEST --raw`
    writes them back.
    """
    files = (
        open_repo(repo)
        .snapshot(at)
        .source_files(samples=tuple(sample or ()), instruments=tuple(instrument or ()))
    )
    columns = ["sample_id", "path", "instrument", "role", "media_type", "size", "blob_id"]
    rows = files.select(columns).to_pylist()
    if json_output:
        print_json(rows)
        return
    if not rows:
        typer.echo("No original files.")
    for r in rows:
        typer.echo(f"{r['sample_id']:<32} {r['role']:<8} {r['size']:>12}  {r['path']}")
