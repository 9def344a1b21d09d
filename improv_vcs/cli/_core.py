"""Core commands: init, log, show, branch, tag, get, demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import (
    INSPECT,
    RECORD,
    REPO_HELP,
    START,
    JsonOption,
    QuietOption,
    RepoOption,
    app,
    handles_errors,
    note,
    open_repo,
    print_json,
    report,
    state,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"improv {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    repo: Annotated[
        str | None, typer.Option("--repo", "-R", envvar="IMPROV_REPO", help=REPO_HELP)
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    state["repo"] = repo
    state["warned"] = set()


@app.command(rich_help_panel=START)
@handles_errors
def init(
    path: Annotated[
        str | None,
        typer.Argument(
            help="Directory or URL (s3://bucket/prefix) for the new repository (default: --repo, "
            "else the current directory)."
        ),
    ] = None,
    default_branch: Annotated[str, typer.Option(help="Name of the default branch.")] = "main",
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--endpoint-url",
            help="S3 endpoint for s3:// URLs other than AWS (e.g. http://127.0.0.1:9000).",
        ),
    ] = None,
    create_bucket: Annotated[
        bool,
        typer.Option(
            "--create-bucket", help="For s3:// URLs: create the bucket first if it does not exist."
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Create an empty repository."""
    from ..core.errors import InvalidInputError
    from ..repository.repository import Repository

    url = path or state["repo"] or "."
    options = {"endpoint_url": endpoint_url} if endpoint_url else {}
    created = None  # the bucket --create-bucket created
    if create_bucket:
        if not str(url).startswith("s3://"):
            raise InvalidInputError(f"--create-bucket is for s3:// URLs, not {url!r}")
        from ..storage import S3Store

        store = S3Store(url, **options)
        created = store.bucket if store.create_bucket() else None
    repo = Repository.init(url, default_branch=default_branch, **options)
    data = {"url": repo.url, "id": repo.id, "default_branch": default_branch}
    if create_bucket:
        data["bucket_created"] = created is not None
    text = f"Initialized empty improv repository {repo.id} in {repo.url}"
    report(json_output, data, (f"Created bucket {created}\n" if created else "") + text)


@app.command(rich_help_panel=INSPECT)
@handles_errors
def log(
    ref: Annotated[
        str | None, typer.Argument(help="Where to start (default: the default branch).")
    ] = None,
    max_count: Annotated[
        int | None,
        typer.Option("--max-count", "-n", "--limit", min=1, help="Show at most N commits."),
    ] = None,
    oneline: Annotated[
        bool,
        typer.Option(
            "--oneline", help="One commit per line: short id and the message's first line."
        ),
    ] = False,
    task_id: Annotated[
        str | None,
        typer.Option("--task-id", help="Only the commit that recorded this ingest task."),
    ] = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Show the commit history, newest first."""
    from itertools import islice

    from ..core.render import commit_dict, log_text

    history = open_repo(repo).log(ref)
    if task_id is not None:
        history = (entry for entry in history if entry[1].task == task_id)
    entries = list(islice(history, max_count))
    if json_output:
        print_json([commit_dict(oid, c) for oid, c in entries])
        return
    if not entries:
        typer.echo("No commits yet.")
    elif oneline:
        typer.echo(
            "\n".join(
                f"{oid[:12]} {(c.message.strip().splitlines() or [''])[0]}".rstrip()
                for oid, c in entries
            )
        )
    else:
        typer.echo("\n".join(log_text(oid, c) for oid, c in entries), nl=False)


@app.command(rich_help_panel=INSPECT)
@handles_errors
def show(
    ref: Annotated[str, typer.Argument(help="Commit, branch, tag, prefix or REF~N.")] = "HEAD",
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Show a commit and its batches.

    Each batch with its row count, time range and lat/lon/depth bounds.
    """
    from ..core.render import commit_dict, show_text

    repository = open_repo(repo)
    oid = repository.resolve(ref)
    commit_obj = repository.odb.get_commit(oid)
    if json_output:
        data = commit_dict(oid, commit_obj)
        data["index"] = [s.model_dump(mode="json") for s in commit_obj.index]
        print_json(data)
    else:
        typer.echo(show_text(oid, commit_obj), nl=False)


@app.command(rich_help_panel=RECORD)
@handles_errors
def branch(
    name: Annotated[
        str | None, typer.Argument(help="Branch to create or delete (omit to list branches).")
    ] = None,
    ref: Annotated[
        str | None,
        typer.Argument(help="Where the new branch starts (default: the default branch)."),
    ] = None,
    delete: Annotated[
        bool, typer.Option("--delete", "-d", help="Delete branch NAME (not the default branch).")
    ] = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """List branches, create one at REF, or delete one.

    Deleting a branch removes only the name: its commits stay while another
    ref reaches them, and otherwise for gc's grace period (24 h by default).
    """
    from ..core.errors import InvalidInputError

    repository = open_repo(repo)
    if delete:
        if name is None or ref is not None:
            raise InvalidInputError("usage: improv branch --delete NAME")
        target = repository.delete_branch(name)
        report(
            json_output,
            {"deleted": name, "commit": target},
            f"Deleted branch {name} (was {target[:12]}). Its commits stay while another ref "
            f"reaches them; "
            "otherwise gc keeps them for its grace period (24 h by default).",
        )
        return
    if name is None:
        default = repository.config.default_branch
        branches = repository.branches()
        lines = [f"{'*' if b == default else ' '} {b:<24} {c[:12]}" for b, c in branches.items()]
        report(
            json_output,
            {"default": default, "branches": branches},
            "\n".join(lines) or "No branches yet.",
        )
        return
    target = repository.create_branch(name, ref)
    report(
        json_output, {"branch": name, "commit": target}, f"Created branch {name} at {target[:12]}"
    )


@app.command(rich_help_panel=RECORD)
@handles_errors
def tag(
    name: Annotated[str | None, typer.Argument(help="Tag to create (omit to list tags).")] = None,
    ref: Annotated[
        str | None, typer.Argument(help="Commit to tag (default: the default branch).")
    ] = None,
    message: Annotated[
        str | None,
        typer.Option("--message", "-m", help="Make an annotated tag with this message."),
    ] = None,
    title: Annotated[
        str | None,
        typer.Option(
            "--title", help="Release title (makes an annotated tag; used by `improv cite --tag`)."
        ),
    ] = None,
    author: Annotated[
        list[str] | None, typer.Option("--author", help="Release author (repeatable).")
    ] = None,
    license: Annotated[
        str | None, typer.Option("--license", help="Release license, e.g. CC-BY-4.0.")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Release description.")
    ] = None,
    doi: Annotated[
        str | None, typer.Option("--doi", help="DOI minted for the release (10.xxxx/...).")
    ] = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """List tags, or create one (tags never move).

    Release metadata makes a tag citable with `improv cite --tag NAME`.
    """
    repository = open_repo(repo)
    if name is None:
        tags = repository.tags()
        report(
            json_output,
            tags,
            "\n".join(f"{t:<24} {c[:12]}" for t, c in tags.items()) or "No tags yet.",
        )
        return
    release = {
        "title": title,
        "authors": tuple(author or ()),
        "license": license,
        "description": description,
        "doi": doi,
    }
    target = repository.create_tag(name, ref, message, **{k: v for k, v in release.items() if v})
    report(json_output, {"tag": name, "commit": target}, f"Tagged {target[:12]} as {name}")


@app.command(rich_help_panel=INSPECT)
@handles_errors
def get(
    image_id: Annotated[str, typer.Argument(help="Image id.")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="Revision to read from (default: the default branch)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to FILE instead of standard output."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing output file.")
    ] = False,
    mask: Annotated[
        bool,
        typer.Option("--mask", help="The image's segmentation mask (its latest run) instead."),
    ] = False,
    quiet: QuietOption = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="With -o: describe the written file as JSON.")
    ] = False,
    repo: RepoOption = None,
) -> None:
    """Write one image's verified bytes to a file or stdout.

    The bytes are checked against the image's hash before anything is written;
    with --mask, the image's segmentation mask, checked against its own.
    """
    from ..core.errors import InvalidInputError

    if json_output and output is None:
        raise InvalidInputError("--json describes the file -o writes; give -o FILE")
    snapshot = open_repo(repo).snapshot(at)
    data = snapshot.read_mask(image_id) if mask else snapshot.read_image(image_id)
    if output is None:
        if sys.stdout.isatty():
            raise InvalidInputError(
                "refusing to write image bytes to a terminal; use -o FILE or a pipe"
            )
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    _write_file(output, data, force)
    if json_output:
        print_json({"image_id": image_id, "output": str(output), "bytes": len(data)})
    else:
        note(f"Wrote {len(data)} bytes to {output}", quiet)


def _write_file(output: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to ``output`` atomically; never clobber without ``force``."""
    from ..core.errors import InvalidInputError
    from ..core.files import write_atomic

    output = output.absolute()
    if output.is_dir():
        raise InvalidInputError(f"{output} is a directory; give a file name")
    if output.exists() and not force:
        raise InvalidInputError(f"{output} exists; pass --force to overwrite it")
    write_atomic(output, data)


@app.command(rich_help_panel=START)
@handles_errors
def demo(
    path: Annotated[Path, typer.Argument(help="Where to create the demo repository.")] = Path(
        "improv-demo"
    ),
    images_per_bin: Annotated[
        int, typer.Option(min=1, help="Images per generated IFCB bin.")
    ] = 200,
    serve_pages: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Then serve it on 127.0.0.1 for this machine to browse (web pages at /).",
        ),
    ] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port for --serve.")] = 8000,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Build a demo repository from generated IFCB-like images.

    Two instruments, two days, positions, sample records, two classifier runs
    and a dataset, in several commits; then the log and a count are printed.
    An existing demo repository at PATH is shown again, not rebuilt. With
    --serve, the web pages follow at http://127.0.0.1:PORT/.
    """
    from ..core.errors import NotARepositoryError
    from ..repository.repository import Repository
    from .demo import build_demo

    try:
        repository = Repository.open(path)
        built = False
    except NotARepositoryError:
        repository = build_demo(path, images_per_bin=images_per_bin, quiet=quiet or json_output)
        built = True
    images = repository.snapshot().images()
    instruments = sorted(set(images.column("instrument").to_pylist()))
    if json_output:
        print_json(
            {
                "url": repository.url,
                "built": built,
                "commits": [oid for oid, _ in repository.log()],
                "images": images.num_rows,
                "instruments": instruments,
                "branch": repository.config.default_branch,
            }
        )
    else:
        _show_demo(repository, built, images.num_rows, instruments)
    if serve_pages:
        from ._serve import serve

        serve(repository.url, port=port, anonymous_read=True, quiet=quiet or json_output)


def _show_demo(repository: Any, built: bool, images: int, instruments: list[str]) -> None:
    typer.echo(
        f"Demo repository: {repository.url}\n"
        if built
        else f"Demo repository already built: {repository.url}\n"
    )
    log(ref=None, max_count=None, oneline=False, json_output=False, repo=repository.url)
    typer.echo(
        f"{images} images from {len(instruments)} instruments ({', '.join(instruments)}) "
        f"at {repository.config.default_branch}"
    )
