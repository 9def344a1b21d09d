"""Core commands: init, commit, log, show, branch, tag, get, demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

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
    warn,
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
    and header fields as columns; the bin is the sample.

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


def _default_message(images: int, files: int, instruments: str) -> str:
    kept = f" and {files} original files" if files else ""
    return f"Add {images} images{kept} from {instruments}"


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
    quiet: QuietOption = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="With -o: describe the written file as JSON.")
    ] = False,
    repo: RepoOption = None,
) -> None:
    """Write one image's verified bytes to a file or stdout.

    The bytes are checked against the image's hash before anything is written.
    """
    from ..core.errors import InvalidInputError

    if json_output and output is None:
        raise InvalidInputError("--json describes the file -o writes; give -o FILE")
    data = open_repo(repo).snapshot(at).read_image(image_id)
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
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Build a demo repository from generated IFCB-like images.

    Two instruments, two days, several commits; then the log and a count are
    printed. An existing demo repository at PATH is shown again, not rebuilt.
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
        return
    typer.echo(
        f"Demo repository: {repository.url}\n"
        if built
        else f"Demo repository already built: {repository.url}\n"
    )
    log(ref=None, max_count=None, oneline=False, json_output=False, repo=repository.url)
    typer.echo(
        f"{images.num_rows} images from {len(instruments)} instruments ({', '.join(instruments)}) "
        f"at {repository.config.default_branch}"
    )
