"""Dataset commands: named, versioned time spans per instrument."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import (
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
from ._options import At

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
