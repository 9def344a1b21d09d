"""``improv cite``: make, verify and materialize citations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    QUERY,
    JsonOption,
    QuietOption,
    RepoOption,
    app,
    handles_errors,
    note,
    open_repo,
    print_json,
    report,
)
from ._options import (
    Bbox,
    DatasetOpt,
    Depth,
    End,
    Instrument,
    KindOpt,
    Prov,
    Run,
    Sample,
    SampleQuality,
    Start,
    Where,
    build_from_options,
)

CITE_HELP = """Cite a selection; verify or materialize a citation.

\b
  improv cite [REF] [--dataset NAME | query options] [--title T] ...
  improv cite --tag RELEASE [...]
  improv cite verify CITATION
  improv cite export CITATION DEST

A citation pins the repository, the commit, the selection (dataset or query,
provenance filters and runs included), the image count and a digest of the
result. Its identifier (improv:1:...) is all `verify` and `export` need; a
citation file in any format works too. `verify` exits 0 only when the
selection re-runs to the same images and records and every cited image's
bytes match their hash.
"""


@app.command(help=CITE_HELP, rich_help_panel=QUERY)
@handles_errors
def cite(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="[REF] | verify CITATION-OR-EXPORT | export CITATION DEST", show_default=False
        ),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option(
            "--tag", help="Cite this release (an annotated tag); its metadata fills the citation."
        ),
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="Title of the cited data.")] = None,
    author: Annotated[
        list[str] | None,
        typer.Option("--author", help="An author, 'Family, Given' or 'Given Family' (repeatable)."),
    ] = None,
    license: Annotated[
        str | None, typer.Option("--license", help="License, e.g. CC-BY-4.0.")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="What the data is.")
    ] = None,
    doi: Annotated[
        str | None, typer.Option("--doi", help="A DOI minted for this data (10.xxxx/...).")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="text, bibtex, csl-json, datacite or json.")
    ] = "text",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the citation to FILE.")
    ] = None,
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
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    from ..core.errors import InvalidInputError

    words = list(args or [])
    if words[:1] == ["verify"]:
        if len(words) != 2:
            raise InvalidInputError("usage: improv cite verify CITATION")
        _verify(words[1], quiet or json_output, json_output, repo)
        return
    if words[:1] == ["export"]:
        if len(words) != 3:
            raise InvalidInputError("usage: improv cite export CITATION DEST")
        _export(words[1], Path(words[2]), quiet or json_output, json_output, repo)
        return
    if len(words) > 1:
        raise InvalidInputError("give at most one revision to cite")
    query = build_from_options(
        instrument,
        start,
        end,
        bbox,
        depth,
        dataset,
        sample,
        where,
        None,
        None,
        kind,
        prov,
        run,
        None,
        sample_quality,
    )
    filters = query.model_dump(exclude_defaults=True)
    citation = (
        open_repo(repo)
        .snapshot(words[0] if words else tag)
        .cite(
            tag=tag,
            title=title,
            authors=tuple(author or ()),
            license=license,
            description=description,
            doi=doi,
            **filters,
        )
    )
    text = citation.render("json" if json_output else output_format)
    if output is not None:
        output.write_text(text)
        note(f"Wrote the citation to {output}\nIdentifier: {citation.identifier}", quiet)
    else:
        typer.echo(text, nl=False)


def _verify(citation: str, quiet: bool, json_output: bool, repo: str | None) -> None:
    from .. import cite
    from ..core.progress import progress_bar

    if _is_artefact(Path(citation)):
        _verify_artefact(Path(citation), json_output, repo)
        return
    pinned = cite.load(citation)
    with progress_bar("re-reading cited images", total=pinned.count, disable=quiet) as advance:
        result = cite.verify(open_repo(repo), pinned, advance)
    report(
        json_output,
        result.to_json(),
        f"Verified: commit {result.commit[:12]}, {result.count} image(s), digest "
        f"{result.digest[:12]}; "
        f"{result.images_checked} image(s) re-read, every byte matches.",
    )


def _is_artefact(path: Path) -> bool:
    """An exported folder or zip (it holds a MANIFEST.json), not a citation file."""
    import zipfile

    try:
        return path.is_dir() or (path.is_file() and zipfile.is_zipfile(path))
    except OSError:  # an identifier is no path (e.g. longer than a file name may be)
        return False


def _verify_artefact(path: Path, json_output: bool, repo: str | None) -> None:
    """Check an export against its manifest and citation, and against the
    repository when one is at hand (--repo, or the current directory's)."""
    from ..core.errors import NotARepositoryError
    from ..publish import verify

    try:
        repository = open_repo(repo)
    except NotARepositoryError:
        if repo is not None:
            raise
        repository = None
    result = verify(path, repository)
    where = "and against the repository" if result.against_repository else "from its files alone"
    report(
        json_output,
        {"verified": True, **result.__dict__},
        f"Verified {path}: {result.images} image(s) and {result.records} label record(s) are "
        f"exactly the cited selection, {result.files} file(s) unchanged ({where}).\n"
        f"Citation: {result.citation}",
    )


def _export(citation: str, dest: Path, quiet: bool, json_output: bool, repo: str | None) -> None:
    from .. import cite
    from ..core.progress import progress_bar

    pinned = cite.load(citation)
    with progress_bar("exporting", total=pinned.count, disable=quiet) as advance:
        result = cite.export(open_repo(repo), pinned, dest, advance)
    data = {
        "images": result.images,
        "written": result.written,
        "skipped": result.skipped,
        "dest": str(dest),
    }
    if json_output:
        print_json(data)
    else:
        typer.echo(
            f"Exported the {result.images} cited image(s) to {dest} ({result.written} written, "
            f"{result.skipped} already there)"
        )
