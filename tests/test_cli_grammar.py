"""One grammar across the ``improv`` commands, JSON errors, and help that
reads well at 80 columns (a newcomer's first hour, with git's habits)."""

from __future__ import annotations

import inspect
import json
import os
import re
import time
from datetime import datetime, timezone
from typing import Any

import pytest
import typer.main
from conftest import assert_error, images, invoke, ok

from improv_vcs import Repository, __version__
from improv_vcs.cli import app
from improv_vcs.cli._common import PANELS
from improv_vcs.maintenance.gc import gc
from improv_vcs.storage.objects import object_key

A1 = "D20240101T120000_IFCB107_00001"
A2 = "D20240101T120000_IFCB107_00002"
B1 = "D20240102T060000_IFCB107_00001"
WARNING = (
    "warning: instrument 'IFCB107' is not registered (`improv instrument add` records its "
    "deployments)"
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("IMPROV_REPO", raising=False)
    monkeypatch.setenv("IMPROV_AUTHOR", "tester")


@pytest.fixture
def committed(runner, tmp_path):
    path = tmp_path / "repo"
    ok(invoke(runner, "init", path))
    ok(
        invoke(
            runner,
            "--repo",
            path,
            "commit",
            images(tmp_path / "d1", A1, A2),
            "-i",
            "IFCB107",
            "-q",
            "-m",
            "First day\n\nmore words",
        )
    )
    ok(
        invoke(
            runner,
            "--repo",
            path,
            "commit",
            images(tmp_path / "d2", B1),
            "-i",
            "IFCB107",
            "-q",
            "-m",
            "Second day",
        )
    )
    return path


def leaves(group: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every command (not group) by its full name."""
    found: dict[str, Any] = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found.update(leaves(command, (*path, name)))
        else:
            found[" ".join((*path, name))] = command
    return found


def groups(group: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """The root and every command group by full name ('' for the root)."""
    found = {" ".join(path): group}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found.update(groups(command, (*path, name)))
    return found


ROOT = typer.main.get_command(app)
COMMANDS = leaves(ROOT)


def options(command: Any) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


# -- 1. one grammar ---------------------------------------------------------------------------


def test_every_command_that_prints_results_has_json():
    lacking = sorted(name for name, command in COMMANDS.items() if "--json" not in options(command))
    assert lacking == ["serve"]  # a server prints no results


@pytest.mark.parametrize(
    "name",
    [
        "commit",
        "export",
        "cite",
        "demo",
        "fsck",
        "push",
        "fetch",
        "pull",
        "clone",
        "get",
        "serve",
        "dataset add",
    ],
)
def test_every_command_with_progress_or_chatter_has_quiet(name):
    assert {"-q", "--quiet"} <= options(COMMANDS[name])


def test_no_short_flag_means_two_things():
    meanings: dict[str, list[set[str]]] = {}
    for command in COMMANDS.values():
        for param in command.params:
            longs = {o for o in param.opts if o.startswith("--")}
            for short in (o for o in param.opts if re.fullmatch(r"-\w", o)):
                meanings.setdefault(short, []).append(longs)
    for short, used in meanings.items():
        assert set.intersection(*used), f"{short} means {used}"
    # -f is --format (commit, query, cite); --force has no short flag
    assert {frozenset(u) for u in meanings["-f"]} == {frozenset({"--format"})}
    assert "-f" not in options(COMMANDS["get"]) and "--force" in options(COMMANDS["get"])
    assert {frozenset(u) for u in meanings["-d"]} == {frozenset({"--delete"})}


def test_version(runner):
    result = ok(invoke(runner, "--version"))
    assert result.stdout == f"improv {__version__}\n"


def test_log_oneline(runner, committed):
    repo = Repository.open(committed)
    head, first = repo.resolve(), repo.resolve("main~1")
    out = ok(invoke(runner, "--repo", committed, "log", "--oneline")).stdout
    assert out.splitlines() == [f"{head[:12]} Second day", f"{first[:12]} First day"]
    assert (
        ok(invoke(runner, "--repo", committed, "log", "--oneline", "-n", "1")).stdout
        == f"{head[:12]} Second day\n"
    )
    assert (
        ok(invoke(runner, "--repo", committed, "log", "--oneline", "--limit", "1")).stdout
        == f"{head[:12]} Second day\n"
    )


def test_branch_delete(runner, committed):
    repo = Repository.open(committed)
    first = repo.resolve("main~1")
    ok(invoke(runner, "--repo", committed, "branch", "old", "main~1"))
    out = ok(invoke(runner, "--repo", committed, "branch", "--delete", "old")).stdout
    assert out.startswith(f"Deleted branch old (was {first[:12]}).")
    assert "while another ref reaches them" in out and "gc" in out and "24 h" in out
    assert set(Repository.open(committed).branches()) == {"main"}
    assert next(Repository.open(committed).log(first, limit=1))[0] == first  # the commit stays

    ok(invoke(runner, "--repo", committed, "branch", "dev"))
    data = json.loads(
        ok(invoke(runner, "--repo", committed, "branch", "-d", "dev", "--json")).stdout
    )
    assert data == {"deleted": "dev", "commit": repo.resolve()}


def test_branch_delete_refuses_the_default_branch_and_a_missing_branch(runner, committed):
    before = Repository.open(committed).branches()
    assert_error(invoke(runner, "--repo", committed, "branch", "-d", "main"), 2, "default branch")
    assert_error(invoke(runner, "--repo", committed, "branch", "--delete", "nope"), 3, "nope")
    assert_error(invoke(runner, "--repo", committed, "branch", "--delete"), 2, "--delete NAME")
    assert Repository.open(committed).branches() == before


def test_a_deleted_branch_keeps_its_commits_through_gc_grace(tmp_path):
    repo = Repository.init(tmp_path / "repo")
    when = datetime(2024, 5, 1, tzinfo=timezone.utc)
    with repo.transaction(message="base") as tx:
        tx.append_bytes("CAM", [{"image_id": "a", "timestamp": when}], [b"image a"])
    repo.create_branch("side")
    with repo.transaction(branch="side", message="only on side") as tx:
        tx.append_bytes("CAM", [{"image_id": "b", "timestamp": when}], [b"image b"])
    side = repo.resolve("side")
    old = time.time() - 7 * 24 * 3600  # written a week ago
    for folder in ("objects", "packs"):
        for path in (tmp_path / "repo" / folder).rglob("*"):
            if path.is_file():
                os.utime(path, (old, old))

    assert repo.delete_branch("side") == side
    assert set(repo.branches()) == {"main"}
    assert gc(repo).removed == []  # young again: kept for the grace period
    assert repo.snapshot(side).read_image("b") == b"image b"
    assert object_key(side) in gc(repo, grace=0).removed  # garbage once the grace period is over


def test_unregistered_instrument_warning_once_and_quiet_silences_it(runner, tmp_path):
    path = tmp_path / "repo"
    ok(invoke(runner, "init", path))
    src = tmp_path / "src"
    images(src / "a", A1, A2)
    images(src / "b", B1)
    loud = ok(invoke(runner, "--repo", path, "commit", src, "-i", "IFCB107"))
    assert [line for line in loud.stderr.splitlines() if line.startswith("warning:")] == [WARNING]
    images(src / "c", "D20240103T060000_IFCB107_00001")
    quiet = ok(invoke(runner, "--repo", path, "commit", src, "-i", "IFCB107", "-q"))
    assert quiet.stderr == ""


def test_quiet_silences_chatter(runner, committed, tmp_path):
    out = tmp_path / "a.png"
    loud = ok(invoke(runner, "--repo", committed, "get", A1, "-o", out))
    assert loud.stderr.startswith("Wrote ")
    quiet = ok(invoke(runner, "--repo", committed, "get", A1, "-o", out, "--force", "-q"))
    assert quiet.stderr == "" and quiet.stdout == ""
    data = json.loads(
        ok(invoke(runner, "--repo", committed, "get", A1, "-o", out, "--force", "--json")).stdout
    )
    assert data == {"image_id": A1, "output": str(out), "bytes": out.stat().st_size}
    warned = ok(
        invoke(
            runner,
            "--repo",
            committed,
            "dataset",
            "add",
            "d",
            "-i",
            "OTHER",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
            "-q",
        )
    )
    assert warned.stderr == ""


def test_demo_json(runner, tmp_path):
    data = json.loads(
        ok(invoke(runner, "demo", tmp_path / "demo", "--images-per-bin", "2", "--json")).stdout
    )
    assert (
        data["built"] is True
        and data["images"] > 0
        and len(data["instruments"]) == 2
        and data["commits"]
    )
    again = json.loads(ok(invoke(runner, "demo", tmp_path / "demo", "--json")).stdout)
    assert again["built"] is False and again["commits"] == data["commits"]


# -- 2. errors as JSON ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "kind"),
    [
        (["show", "nope"], 3, "NotFoundError"),
        (["log", "nope"], 3, "NotFoundError"),
        (["branch", "-d", "main"], 2, "InvalidInputError"),
        (["branch", "bad..name"], 2, "InvalidInputError"),
        (["query", "--start", "yesterday-ish"], 2, "InvalidInputError"),
        (["get", "nope", "-o", "x.png"], 3, "NotFoundError"),
        (["tag", "v1", "nope"], 3, "NotFoundError"),
    ],
)
def test_with_json_errors_are_json_on_stderr(runner, committed, args, code, kind):
    plain = invoke(runner, "--repo", committed, *args)
    assert plain.exit_code == code and plain.stderr.startswith("error: ")
    result = invoke(runner, "--repo", committed, *args, "--json")
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    error = json.loads(lines[0])
    assert error == {"error": {"type": kind, "message": plain.stderr.strip()[len("error: ") :]}}


def test_json_error_outside_a_repository(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "log", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stderr)["error"]["type"] == "NotARepositoryError"


# -- 3. help at 80 columns --------------------------------------------------------------------


def help_text(runner, *path: str, columns: int = 80) -> str:
    result = ok(invoke(runner, *path, "--help", env={"COLUMNS": str(columns)}))
    return result.stdout


EVERY_HELP = sorted({*COMMANDS, *groups(ROOT)})


@pytest.mark.parametrize("name", EVERY_HELP)
def test_help_at_80_columns_cuts_nothing_and_shows_no_bool(runner, name):
    text = help_text(runner, *name.split())
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text, text
    assert "<bool>" not in text, text


def test_top_level_help_groups_commands_in_panels(runner):
    text = help_text(runner)
    titles = re.findall(r"^╭─ (\w+) ─", text, flags=re.M)
    assert titles == ["Options", *PANELS]
    for command in ROOT.commands.values():
        assert command.rich_help_panel in PANELS, command.name


def summary(command: Any) -> str:
    return (command.help or "").split("\n\n")[0]


def panels(text: str) -> dict[str, list[str]]:
    """The rows of each boxed panel of a help text, by title."""
    found: dict[str, list[str]] = {}
    rows: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("╭─ "):
            rows = found.setdefault(line[3:].split(" ─")[0], [])
        elif line.startswith("╰"):
            rows = None
        elif rows is not None:
            rows.append(line)
    return found


@pytest.mark.parametrize("name", sorted(groups(ROOT)))
def test_the_command_listing_shows_each_summary_on_one_line(runner, name):
    group = groups(ROOT)[name]
    listing = {
        title: rows
        for title, rows in panels(help_text(runner, *name.split())).items()
        if title not in ("Options", "Arguments")
    }
    rows = [row for panel in listing.values() for row in panel]
    assert len(rows) == len(group.commands)  # one line each: no wrapped continuation lines
    shown = {}
    for row in rows:
        match = re.fullmatch(r"│ (\S+) +(.*?) *│", row)
        assert match, row
        shown[match.group(1)] = match.group(2)
    assert shown == {
        command_name: summary(command) for command_name, command in group.commands.items()
    }


@pytest.mark.parametrize("name", EVERY_HELP)
def test_help_paragraphs_are_not_hard_wrapped(runner, name):
    """A docstring's line breaks do not show: on a wide terminal every
    paragraph is one line (narrower ones wrap it at their own width)."""
    command = COMMANDS.get(name) or groups(ROOT)[name]
    source = inspect.cleandoc(command.help or "")
    text = help_text(runner, *name.split(), columns=1000)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for paragraph in source.split("\n\n"):
        if paragraph.startswith("\b"):
            continue
        flat = " ".join(paragraph.split())
        assert any(flat in line for line in lines), (name, flat)


def test_docstrings_render_reflowed(runner):
    text = help_text(runner, "gc", columns=1000)
    assert (
        "Objects and packs no branch, tag or remote-tracking ref can reach are removed once older "
        "than" in text
    )
