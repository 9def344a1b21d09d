"""Maintenance commands: fsck and gc."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import (
    MAINTAIN,
    JsonOption,
    QuietOption,
    RepoOption,
    app,
    handles_errors,
    open_repo,
    report,
)


@app.command(rich_help_panel=MAINTAIN)
@handles_errors
def fsck(
    full: Annotated[
        bool, typer.Option("--full", help="Also re-hash every blob of every pack.")
    ] = False,
    repair_from: Annotated[
        str | None,
        typer.Option(
            "--repair-from",
            metavar="REMOTE",
            help="Replace what is missing or corrupt with verified copies from this remote (name "
            "or URL).",
        ),
    ] = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Check that the repository is complete and uncorrupted.

    Everything reachable from a ref must be present and hash to its id, the
    commits and the snapshot structures of the refs' commits must parse, and
    every image must point at its blob's pack entry; --full also parses every
    manifest and segment and re-hashes every blob. Exits 5 when anything is
    (still) wrong.

    With --repair-from, each missing or corrupt object or pack is replaced
    by a copy from REMOTE that verifies against its id."""
    from ..core.errors import IntegrityError
    from ..core.progress import progress_bar
    from ..maintenance.fsck import fsck as run
    from ..sync.sites import repair

    replaced: list[str] = []
    with progress_bar("checking commits", total=None, disable=quiet or json_output) as advance:
        if repair_from is None:
            result = run(open_repo(repo), full, advance)
        else:
            result, replaced = repair(open_repo(repo), repair_from, full, advance)
    lines = [f"repaired {item} from {repair_from}" for item in replaced]
    lines += [
        f"{result.refs} ref(s), {result.commits} commit(s), {result.objects} object(s), "
        f"{result.packs} pack(s)"
        + (f", {result.packs_remote} pack(s) left at the remote" if result.packs_remote else "")
        + (f", {result.bytes_hashed} bytes re-hashed" if full else "")
    ]
    lines += [f"problem: {p}" for p in result.problems]
    lines.append("ok" if result.ok else f"{len(result.problems)} problem(s)")
    report(json_output, {**result.to_json(), "repaired": replaced}, "\n".join(lines))
    if not result.ok:
        raise typer.Exit(IntegrityError.exit_code)


@app.command(rich_help_panel=MAINTAIN)
@handles_errors
def gc(
    grace: Annotated[
        str,
        typer.Option(
            "--grace", help="Keep unreachable objects younger than this (e.g. 24h, 30m, 0)."
        ),
    ] = "24h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be removed.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Take over from another gc that started within the hour (one that was killed).",
        ),
    ] = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Remove objects no ref reaches, once past the grace period.

    Objects and packs no branch, tag or remote-tracking ref can reach are
    removed once older than the grace period (so commits in flight are
    safe), and so are unfinished writes that old. Safe beside concurrent
    commits and transfers; a killed gc leaves the repository consistent.
    """
    from ..maintenance.gc import gc as run
    from ..maintenance.gc import parse_duration

    result = run(open_repo(repo), parse_duration(grace), dry_run, force=force)
    verb = "Would remove" if dry_run else "Removed"
    lines = [
        f"{verb} {len(result.removed)} unreachable object(s) ({result.removed_bytes} bytes)"
        f" and {len(result.temporaries)} unfinished write(s); kept {result.kept_young} younger "
        f"than {grace}"
    ]
    lines += [f"  {key}" for key in result.removed[:50]]
    report(json_output, result.to_json(), "\n".join(lines))


@app.command(rich_help_panel=MAINTAIN)
@handles_errors
def maintenance(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be bundled and merged.")
    ] = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Bundle loose objects and packs, and merge small bundles.

    A history of many small commits becomes a few large files (every value
    verified on the way), so clones, fsck and scans cost per bundle, not per
    commit. Commits run it every 64 commits by themselves
    (IMPROV_AUTO_MAINTENANCE=0 turns that off). Safe beside readers, writers
    and gc; a killed run leaves the repository consistent."""
    from ..core.progress import progress_bar
    from ..maintenance.repack import maintain

    with progress_bar("bundling", total=None, disable=quiet or json_output) as advance:
        result = maintain(open_repo(repo), dry_run, advance)
    verb = "Would bundle" if dry_run else "Bundled"
    text = (
        f"{verb} {result.bundled} loose object(s) and pack half(s), merging "
        f"{result.merged_bundles} bundle(s); "
        f"{result.bundles} bundle(s)"
        + (f" afterwards, {result.bytes_written} bytes written" if not dry_run else "")
    )
    text += "".join(f"\nskipped (failed verification): {key}" for key in result.skipped)
    report(json_output, result.to_json(), text)


@app.command(rich_help_panel=MAINTAIN)
@handles_errors
def upgrade(json_output: JsonOption = False, repo: RepoOption = None) -> None:
    """Move the repository to the newest format (3: tasks index).

    Older improv versions refuse an upgraded repository with their own
    error (exit 8); nothing stored is rewritten."""
    opened = open_repo(repo)
    before = opened.config.format
    changed = opened.upgrade()
    text = (
        f"upgraded from format {before} to {opened.config.format}"
        if changed
        else f"already format {before}"
    )
    report(
        json_output, {"format": opened.config.format, "previous": before, "upgraded": changed}, text
    )
