"""Maintenance commands: fsck."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonOption, QuietOption, RepoOption, app, handles_errors, open_repo, report


@app.command()
@handles_errors
def fsck(
    full: Annotated[bool, typer.Option("--full", help="Also re-hash every blob of every pack.")] = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Check that everything reachable from a ref is present and parses, that
    every manifest points at its blobs' pack entries, and (--full) that every
    byte hashes to its id. Exits 5 when anything is wrong."""
    from .._progress import progress_bar
    from ..errors import IntegrityError
    from ..fsck import fsck as run

    with progress_bar("checking commits", total=None, disable=quiet or json_output) as advance:
        result = run(open_repo(repo), full, advance)
    lines = [
        f"{result.refs} ref(s), {result.commits} commit(s), {result.objects} object(s), {result.packs} pack(s)"
        + (f", {result.packs_remote} pack(s) left at the remote" if result.packs_remote else "")
        + (f", {result.bytes_hashed} bytes re-hashed" if full else "")
    ]
    lines += [f"problem: {p}" for p in result.problems]
    lines.append("ok" if result.ok else f"{len(result.problems)} problem(s)")
    report(json_output, result.to_json(), "\n".join(lines))
    if not result.ok:
        raise typer.Exit(IntegrityError.exit_code)
