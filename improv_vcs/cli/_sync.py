"""Site-to-site commands: remote, push, fetch, pull, clone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import (
    SHARE,
    START,
    App,
    JsonOption,
    QuietOption,
    RepoOption,
    app,
    handles_errors,
    open_repo,
    report,
)
from ._options import Bbox, DatasetOpt, End, Instrument, Sample, Start, Where, build_from_options

remote_app = App(
    help="Other copies of this repository: paths or URLs.\n\nEach a path, or a file:// or s3:// "
    "URL."
)
app.add_typer(remote_app, name="remote", rich_help_panel=SHARE)

RemoteArg = Annotated[str | None, typer.Argument(help="Remote name or URL (default: origin).")]
BranchArg = Annotated[str | None, typer.Argument(help="Branch (default: the default branch).")]
Endpoint = Annotated[
    str | None, typer.Option("--endpoint-url", help="S3 endpoint (e.g. http://127.0.0.1:9000).")
]


def _summary(verb: str, result: Any) -> str:
    moved = result.transfer
    lines = [
        f"{verb} {result.remote}: {moved.commits} commit(s), {moved.objects} object(s), "
        f"{moved.packs} pack(s), "
        + (f"{moved.bundles} whole bundle(s) of history, " if moved.bundles else "")
        + f"{_size(moved.bytes)}; {moved.skipped} already there"
    ]
    lines += [f"  {ref} -> {target[:12]}" for ref, target in sorted(result.refs.items())]
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _transferring(quiet: bool) -> Any:
    from ..core.progress import progress_bar

    return progress_bar("transferring objects", total=None, disable=quiet)


@remote_app.command("add")
@handles_errors
def remote_add(
    name: Annotated[str, typer.Argument(help="Remote name, e.g. origin or shore-lab.")],
    url: Annotated[
        str,
        typer.Argument(
            help="A path, file://, s3://bucket/prefix or http(s)://host:port (a site running "
            "improv serve)."
        ),
    ],
    endpoint_url: Endpoint = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Remember another copy of this repository under a name."""
    options = {"endpoint_url": endpoint_url} if endpoint_url else {}
    remote = open_repo(repo).remotes.add(name, url, options)
    report(json_output, {"name": name, **remote.model_dump()}, f"Added remote {name}: {remote.url}")


@remote_app.command("list")
@handles_errors
def remote_list(json_output: JsonOption = False, repo: RepoOption = None) -> None:
    """List remotes."""
    repository = open_repo(repo)
    remotes = repository.remotes.all()
    promisor = repository.remotes.promisor
    data = {
        name: {**r.model_dump(), "image_bytes_from_here": name == promisor}
        for name, r in remotes.items()
    }
    lines = [
        f"{name:<16} {r.url}" + ("  (image bytes fetched on demand)" if name == promisor else "")
        for name, r in remotes.items()
    ]
    report(json_output, data, "\n".join(lines) or "No remotes.")


@remote_app.command("remove")
@handles_errors
def remote_remove(
    name: Annotated[str, typer.Argument(help="Remote name.")],
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Forget a remote and its remote-tracking refs.

    Nothing is deleted at the remote.
    """
    open_repo(repo).remotes.remove(name)
    report(json_output, {"removed": name}, f"Removed remote {name}")


@app.command(rich_help_panel=SHARE)
@handles_errors
def push(
    remote: RemoteArg = None,
    branch: BranchArg = None,
    tags: Annotated[bool, typer.Option("--tags", help="Also push every tag.")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Move the remote branch even if it is not a fast-forward."),
    ] = False,
    endpoint_url: Endpoint = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Send a branch (and tags) to a remote.

    Only what the remote lacks is sent, verified; its branch moves last, by
    compare-and-swap. An empty remote location is initialized as a copy of
    this repository.
    """
    from ..sync.sites import push as run

    with _transferring(quiet or json_output) as advance:
        result = run(open_repo(repo), remote, branch, tags, force, endpoint_url, advance)
    report(json_output, result.to_json(), _summary("Pushed to", result))


@app.command(rich_help_panel=SHARE)
@handles_errors
def fetch(
    remote: RemoteArg = None,
    blobs: Annotated[
        bool,
        typer.Option(
            "--blobs", help="Metadata-only clone: fetch the image bytes the query options select."
        ),
    ] = False,
    instrument: Instrument = None,
    start: Start = None,
    end: End = None,
    bbox: Bbox = None,
    dataset: DatasetOpt = None,
    sample: Sample = None,
    where: Where = None,
    endpoint_url: Endpoint = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Copy new commits from a remote; local branches stay put.

    The remote's branches are recorded under refs/remotes/REMOTE/. With
    --blobs, fetch the image bytes of the selected images instead.
    """
    from ..sync.sites import fetch as run
    from ..sync.sites import fetch_blobs

    repository = open_repo(repo)
    with _transferring(quiet or json_output) as advance:
        if blobs:
            query = build_from_options(
                instrument, start, end, bbox, None, dataset, sample, where, None, None
            )
            moved = fetch_blobs(repository, repository.snapshot().select(query).table, advance)
            report(
                json_output,
                moved.to_json(),
                f"Fetched {moved.packs} pack(s), {_size(moved.bytes)}; "
                f"{moved.skipped} already here",
            )
            return
        result = run(repository, remote, endpoint_url, advance)
    report(json_output, result.to_json(), _summary("Fetched from", result))


@app.command(rich_help_panel=SHARE)
@handles_errors
def pull(
    remote: RemoteArg = None,
    branch: BranchArg = None,
    endpoint_url: Endpoint = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Fetch, then bring the remote branch into the local one.

    A fast-forward, or a merge commit holding both sides' images when both
    appended. If an image id holds different bytes on the two sides nothing
    changes and the ids are listed.
    """
    from ..sync.sites import pull as run

    with _transferring(quiet or json_output) as advance:
        result = run(open_repo(repo), remote, branch, None, endpoint_url, advance)
    text = (
        _summary("Pulled from", result)
        + f"\n{result.action}: {result.commit[:12] if result.commit else '-'}"
    )
    report(json_output, result.to_json(), text)


@app.command(rich_help_panel=START)
@handles_errors
def clone(
    url: Annotated[
        str,
        typer.Argument(help="Path, file://, s3:// or http(s):// URL of the repository to copy."),
    ],
    dest: Annotated[Path, typer.Argument(help="New local directory.")],
    branch: Annotated[
        str | None,
        typer.Option("--branch", "-b", help="Create only this local branch (default: all)."),
    ] = None,
    metadata_only: Annotated[
        bool,
        typer.Option(
            "--metadata-only",
            help="Copy commits, manifests and segments; fetch image bytes on first read.",
        ),
    ] = False,
    hardlinks: Annotated[
        bool,
        typer.Option(
            "--hardlinks/--no-hardlinks",
            help="On the same disk, share pack files by hard links (default) or copy them (an "
            "independent backup).",
        ),
    ] = True,
    endpoint_url: Endpoint = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Copy a repository to a new directory, as remote 'origin'."""
    from ..sync.sites import clone as run

    with _transferring(quiet or json_output) as advance:
        _, result = run(url, dest, branch, metadata_only, endpoint_url, advance, hardlinks)
    report(json_output, result.to_json(), _summary(f"Cloned into {dest} from", result))
