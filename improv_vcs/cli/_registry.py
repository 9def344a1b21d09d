"""Organizing metadata: instruments, samples, taxonomies, ingest tasks."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import (
    INSPECT,
    RECORD,
    App,
    JsonOption,
    RepoOption,
    app,
    handles_errors,
    open_repo,
    print_json,
    report,
)

At = Annotated[str | None, typer.Option("--at", help="Revision (default: the default branch).")]
Branch = Annotated[
    str | None,
    typer.Option("--branch", "-b", help="Branch to commit to (default: the default branch)."),
]
Deployed = Annotated[
    list[str] | None,
    typer.Option(
        "--deployed", help="Deployment window START..END, or START.. while deployed (repeatable)."
    ),
]
TypeOpt = Annotated[
    str | None, typer.Option("--type", help="Kind of instrument (IFCB, microscope, ...).")
]
Serial = Annotated[str | None, typer.Option("--serial", help="Serial number.")]
Description = Annotated[str | None, typer.Option("--description", help="Free text.")]

instrument_app = App(
    help="Instruments and their deployment windows.\n\nVersioned with the repository."
)
sample_app = App(
    help="Samples: time window, quality, alternate ids, metadata.\n\nVersioned with the repository."
)
taxonomy_app = App(
    help="Classifier class lists, by model version.\n\nThey decode positional score vectors."
)
app.add_typer(instrument_app, name="instrument", rich_help_panel=RECORD)
app.add_typer(sample_app, name="sample", rich_help_panel=RECORD)
app.add_typer(taxonomy_app, name="taxonomy", rich_help_panel=RECORD)


def _deployments(windows: list[str] | None) -> tuple | None:
    from ..core.errors import InvalidInputError
    from ..core.times import parse_time
    from ..snapshot.registry import deployment

    if not windows:
        return None
    out = []
    for window in windows:
        start, dots, end = window.partition("..")
        if not start.strip():
            raise InvalidInputError(f"--deployed needs START..END or START.., got {window!r}")
        out.append(
            deployment(
                parse_time(start.strip(), "--deployed"),
                parse_time(end.strip(), "--deployed") if dots and end.strip() else None,
            )
        )
    return tuple(out)


def _instrument_json(name: str, found: Any) -> dict:
    return {"name": name, **found.model_dump(mode="json")}


def _instrument_text(name: str, found: Any) -> str:
    windows = ", ".join(
        f"{d.start:%Y-%m-%d %H:%M}..{'' if d.end is None else f'{d.end:%Y-%m-%d %H:%M}'}"
        for d in found.deployments
    )
    facts = [
        f"type {found.type}" if found.type else "",
        f"serial {found.serial}" if found.serial else "",
        f"deployed {windows}" if windows else "not deployed",
    ]
    return (
        f"{name:<16} v{found.version}  "
        + "; ".join(f for f in facts if f)
        + (f"  ({found.description})" if found.description else "")
    )


def _edit_instrument(
    create: bool,
    name: str,
    type_: str | None,
    serial: str | None,
    deployed: list[str] | None,
    description: str | None,
    branch: str | None,
    json_output: bool,
    repo: str | None,
) -> None:
    from ..snapshot import registry
    from ..write.shortcuts import edit_registry

    repository = open_repo(repo)
    edit = registry.add_instrument if create else registry.update_instrument
    fields = {
        "type": type_,
        "serial": serial,
        "description": description,
        "deployments": _deployments(deployed),
    }
    commit = edit_registry(
        repository,
        functools.partial(edit, name=name, **fields),
        f"Instrument {name}: {'add' if create else 'update'}",
        branch,
    )
    found = repository.snapshot(commit or branch).registry().instruments[name]
    report(
        json_output,
        {"commit": commit, **_instrument_json(name, found)},
        f"{'Added' if create else 'Updated'} {_instrument_text(name, found)}"
        + (f" in {commit[:12]}" if commit else " (unchanged)"),
    )


@instrument_app.command("add")
@handles_errors
def instrument_add(
    name: Annotated[str, typer.Argument(help="Instrument name (as images name it, e.g. IFCB107).")],
    type_: TypeOpt = None,
    serial: Serial = None,
    deployed: Deployed = None,
    description: Description = None,
    branch: Branch = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Register an instrument (a commit).

    Images of a registered instrument must fall inside its deployment windows.
    """
    _edit_instrument(True, name, type_, serial, deployed, description, branch, json_output, repo)


@instrument_app.command("update")
@handles_errors
def instrument_update(
    name: Annotated[str, typer.Argument(help="Instrument name.")],
    type_: TypeOpt = None,
    serial: Serial = None,
    deployed: Deployed = None,
    description: Description = None,
    branch: Branch = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Record a new version of an instrument (a commit).

    Given fields replace the old ones; --deployed replaces the whole list.
    Older commits keep the old version.
    """
    _edit_instrument(False, name, type_, serial, deployed, description, branch, json_output, repo)


@instrument_app.command("list")
@handles_errors
def instrument_list(
    at: At = None, json_output: JsonOption = False, repo: RepoOption = None
) -> None:
    """List instruments, and whether unregistered ones are refused."""
    doc = open_repo(repo).snapshot(at).registry()
    data = {
        "strict": doc.strict_instruments,
        "instruments": [_instrument_json(n, i) for n, i in sorted(doc.instruments.items())],
    }
    lines = [_instrument_text(n, i) for n, i in sorted(doc.instruments.items())] or [
        "No instruments registered."
    ]
    report(json_output, data, "\n".join(lines))


@instrument_app.command("show")
@handles_errors
def instrument_show(
    name: Annotated[str, typer.Argument(help="Instrument name.")],
    at: At = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Show one instrument as of a revision."""
    from ..core.errors import NotFoundError

    found = open_repo(repo).snapshot(at).registry().instruments.get(name)
    if found is None:
        raise NotFoundError(f"no instrument named {name!r} at {at or 'HEAD'}")
    report(json_output, _instrument_json(name, found), _instrument_text(name, found))


@instrument_app.command("strict")
@handles_errors
def instrument_strict(
    setting: Annotated[
        str, typer.Argument(help="on: refuse commits to unregistered instruments; off: warn.")
    ],
    branch: Branch = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Refuse (on) or accept (off) unregistered instruments."""
    from ..core.errors import InvalidInputError
    from ..snapshot import registry
    from ..write.shortcuts import edit_registry

    if setting not in ("on", "off"):
        raise InvalidInputError("say on or off")
    commit = edit_registry(
        open_repo(repo),
        functools.partial(registry.set_strict, strict=setting == "on"),
        f"Instruments: strict {setting}",
        branch,
    )
    report(
        json_output,
        {"commit": commit, "strict": setting == "on"},
        f"Unregistered instruments are "
        f"{'refused' if setting == 'on' else 'accepted with a warning'}",
    )


# -- samples ------------------------------------------------------------------------
@sample_app.command("add")
@handles_errors
def sample_add(
    sample_id: Annotated[str, typer.Argument(help="Sample id (an IFCB bin id, a cast, a well).")],
    instrument: Annotated[str, typer.Option("--instrument", "-i", help="Instrument that took it.")],
    start: Annotated[str, typer.Option(help="Start of the sample (ISO 8601).")],
    end: Annotated[str, typer.Option(help="End of the sample (exclusive).")],
    quality: Annotated[str | None, typer.Option(help="good, questionable or bad.")] = None,
    alt_id: Annotated[
        list[str] | None,
        typer.Option("--alt-id", help="Another id of the same sample (repeatable)."),
    ] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="KEY=VALUE metadata (repeatable).")
    ] = None,
    branch: Branch = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Record a sample (a commit).

    Recording it again with other values is a new version; queries at older
    commits keep the old one.
    """
    from ..core.times import parse_time
    from ..ingest.adapters import parse_options

    row = {
        "sample_id": sample_id,
        "instrument": instrument,
        "start": parse_time(start, "--start"),
        "end": parse_time(end, "--end"),
        "quality": quality,
        "alt_ids": alt_id or [],
        "meta": parse_options(meta or ()),
    }
    commit = _commit_samples(open_repo(repo), [row], f"Sample {sample_id}", branch)
    report(
        json_output,
        {"commit": commit, "samples": 1},
        f"Recorded sample {sample_id} in {commit[:12]}" if commit else "Unchanged",
    )


@sample_app.command("import")
@handles_errors
def sample_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV or Parquet: sample_id, instrument, start, end, and optional quality, "
            "alt_ids (';'-separated), any other columns as metadata."
        ),
    ],
    branch: Branch = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Record many samples at once (one commit)."""
    from ..ingest.tables import read_table
    from ..snapshot.registry import rows_from_table

    rows = rows_from_table(read_table(file))
    commit = _commit_samples(
        open_repo(repo), rows, f"Import {len(rows)} samples from {file.name}", branch
    )
    report(
        json_output,
        {"commit": commit, "samples": len(rows)},
        f"Recorded {len(rows)} sample(s) in {commit[:12]}" if commit else "Unchanged",
    )


def _commit_samples(
    repository: Any, rows: list[dict], message: str, branch: str | None
) -> str | None:
    with repository.transaction(branch, message) as tx:
        tx.add_samples(rows)
    return tx.commit_id


@sample_app.command("list")
@handles_errors
def sample_list(
    instrument: Annotated[
        str | None, typer.Option("--instrument", "-i", help="Only this instrument's samples.")
    ] = None,
    quality: Annotated[str | None, typer.Option(help="Only samples of this quality.")] = None,
    at: At = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """List the latest record of every sample."""
    rows = [
        r
        for r in open_repo(repo).snapshot(at).samples().to_pylist()
        if (instrument is None or r["instrument"] == instrument)
        and (quality is None or r["quality"] == quality)
    ]
    if json_output:
        print_json(rows)
        return
    typer.echo(
        "\n".join(
            f"{r['sample_id']:<28} {r['instrument']:<10} {r['start']:%Y-%m-%d %H:%M}  "
            f"{r['quality'] or '-'}"
            for r in rows
        )
        or "No samples."
    )


@sample_app.command("show")
@handles_errors
def sample_show(
    sample_id: Annotated[str, typer.Argument(help="Sample id.")],
    at: At = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Show every version of a sample's record, oldest first."""
    import pyarrow.compute as pc

    from ..core.errors import NotFoundError

    versions = open_repo(repo).snapshot(at).samples(history=True)
    rows = versions.filter(pc.equal(versions.column("sample_id"), sample_id)).to_pylist()
    if not rows:
        raise NotFoundError(f"no sample {sample_id!r} at {at or 'HEAD'}")
    if json_output:
        print_json(rows)
        return
    for r in rows:
        typer.echo(
            f"{r['recorded_at']:%Y-%m-%d %H:%M:%S}  {r['instrument']}  "
            f"{r['start']:%Y-%m-%d %H:%M}..{r['end']:%Y-%m-%d %H:%M}"
            f"  quality {r['quality'] or '-'}  alt {', '.join(r['alt_ids']) or '-'}  {r['meta']}"
        )


# -- taxonomies ---------------------------------------------------------------------
@taxonomy_app.command("add")
@handles_errors
def taxonomy_add(
    classifier: Annotated[str, typer.Argument(help="Classifier name (the records' model).")],
    model_version: Annotated[
        str, typer.Argument(help="Model version (the records' model_version).")
    ],
    classes: Annotated[
        Path,
        typer.Option(
            "--classes", help="Text file with one class name per line, in score-vector order."
        ),
    ],
    branch: Branch = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Store a classifier version's ordered class list (once).

    Classification records carrying a positional score_vector decode through it.
    """
    from ..core.errors import InvalidInputError
    from ..snapshot import registry
    from ..write.shortcuts import edit_registry

    try:
        names = [
            line.strip()
            for line in classes.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    except OSError as exc:
        raise InvalidInputError(f"cannot read {classes}: {exc.strerror or exc}") from None
    edit = functools.partial(
        registry.add_taxonomy, classifier=classifier, model_version=model_version, classes=names
    )
    commit = edit_registry(
        open_repo(repo),
        edit,
        f"Taxonomy {classifier} {model_version}: {len(names)} classes",
        branch,
    )
    report(
        json_output,
        {"commit": commit, "classes": len(names)},
        f"{classifier} {model_version}: {len(names)} classes"
        + (f" in {commit[:12]}" if commit else " (already there)"),
    )


@taxonomy_app.command("list")
@handles_errors
def taxonomy_list(at: At = None, json_output: JsonOption = False, repo: RepoOption = None) -> None:
    """List every classifier version with a class list."""
    found = open_repo(repo).snapshot(at).registry().taxonomies
    data = {key: list(t.classes) for key, t in sorted(found.items())}
    report(
        json_output,
        data,
        "\n".join(f"{k:<32} {len(v)} classes" for k, v in data.items()) or "No taxonomies.",
    )


# -- tasks --------------------------------------------------------------------------
@app.command(rich_help_panel=INSPECT)
@handles_errors
def tasks(
    instrument: Annotated[
        str | None,
        typer.Option("--instrument", "-i", help="Only tasks that added images of this instrument."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only tasks committed at or after this time.")
    ] = None,
    ref: Annotated[
        str | None,
        typer.Option("--at", help="Revision whose history to list (default: the default branch)."),
    ] = None,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """List the ingest tasks recorded in the history.

    Each task (`improv commit --task-id`) with when, by whom, and how many images.
    """
    from ..core.times import parse_time

    rows = (
        open_repo(repo)
        .snapshot(ref)
        .tasks(instrument, parse_time(since, "--since") if since else None)
    )
    if json_output:
        print_json(rows)
        return
    typer.echo(
        "\n".join(
            f"{r['time'][:19]}  {r['task']:<28} {r['commit'][:12]}  {r['images']:>7} image(s)  "
            f"{','.join(r['instruments'])}  {r['author']}"
            for r in rows
        )
        or "No tasks recorded."
    )
