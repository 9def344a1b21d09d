"""Shared pieces of the command line: the app, common options, error
handling, repository lookup and output helpers."""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    import click

    from ..repository.repository import Repository

# -- help panels of `improv --help`, in the order they are listed ----------------------
START = "Start"
RECORD = "Record"
INSPECT = "Inspect"
QUERY = "Query"
SHARE = "Share"
MAINTAIN = "Maintain"
SERVE = "Serve"
PANELS = (START, RECORD, INSPECT, QUERY, SHARE, MAINTAIN, SERVE)


def reflow(text: str | None) -> str | None:
    """Help text with each paragraph on one line, so the terminal wraps it
    at its own width (rich keeps a docstring's line breaks otherwise).
    Paragraphs starting with ``\\b`` keep their lines."""
    if not text:
        return text
    text, marker, rest = inspect.cleandoc(text).partition("\f")
    paragraphs = [
        part if part.startswith("\b") else " ".join(line.strip() for line in part.splitlines())
        for part in text.split("\n\n")
    ]
    return "\n\n".join(paragraphs) + marker + rest


def _plain_flags(params: list[click.Parameter]) -> list[click.Parameter]:
    """Flags take no value, so they show no ``<bool>`` type in help; a
    repeatable option shows its value's type (its help says "repeatable"),
    which keeps the type column narrow enough for 80 columns."""
    for param in params:
        if not isinstance(param, TyperOption) or param.metavar is not None:
            continue
        if param.is_flag:
            param.metavar = ""
            continue
        described = getattr(
            param, "type_descriptor", None
        )  # typer versions that label types <type>
        values = (
            get_args(described.annotation)
            if param.multiple and getattr(described, "is_list", False)
            else ()
        )
        if len(values) == 1 and isinstance(values[0], type):
            param.metavar = f"<{values[0].__name__}>"
    return params


def _summary(help: str | None) -> str | None:
    """The first paragraph: what command listings show, whole."""
    return help.split("\n\n")[0] if help and not help.startswith("\b") else None


class Command(TyperCommand):
    """A command whose help reads well at any width."""

    def __init__(
        self, *args: Any, help: str | None = None, short_help: str | None = None, **kwargs: Any
    ) -> None:
        help = reflow(help)
        super().__init__(*args, help=help, short_help=short_help or _summary(help), **kwargs)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _plain_flags(super().get_params(ctx))


class Group(TyperGroup):
    """A command group: help as :class:`Command`'s, commands listed panel by
    panel (:data:`PANELS`)."""

    def __init__(
        self, *args: Any, help: str | None = None, short_help: str | None = None, **kwargs: Any
    ) -> None:
        help = reflow(help)
        super().__init__(*args, help=help, short_help=short_help or _summary(help), **kwargs)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _plain_flags(super().get_params(ctx))

    def list_commands(self, ctx: click.Context) -> list[str]:
        def panel(name: str) -> int:
            title = getattr(self.commands[name], "rich_help_panel", None)
            return PANELS.index(title) if title in PANELS else len(PANELS)

        return sorted(
            super().list_commands(ctx), key=panel
        )  # stable: registration order within a panel


class App(typer.Typer):
    """A :class:`typer.Typer` whose commands and groups are :class:`Command`
    and :class:`Group`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("no_args_is_help", True)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


app = App(
    name="improv",
    help="Immutable, content-addressed, versioned store for scientific imaging data.",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

REPO_HELP = (
    "Repository path or URL (default: $IMPROV_REPO, else the repository containing the current "
    "directory)."
)
RepoOption = Annotated[str | None, typer.Option("--repo", "-R", help=REPO_HELP)]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON (errors too, on stderr).")
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar, notes or advisory warnings.")
]

state: dict[str, Any] = {"repo": None}


def error_line(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _json_error(kind: str, message: str) -> None:
    typer.echo(json.dumps({"error": {"type": kind, "message": message}}), err=True)


def handles_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into the class's exit code and one line on stderr:
    ``error: MESSAGE``, or with ``--json`` (a ``json_output`` parameter)
    ``{"error": {"type": CLASS, "message": MESSAGE}}``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..core.errors import ImprovError

        as_json = bool(kwargs.get("json_output"))
        logging.getLogger("improv_vcs.network").disabled = bool(kwargs.get("quiet"))  # retry notes
        try:
            return func(*args, **kwargs)
        except ImprovError as exc:
            if as_json:
                _json_error(type(exc).__name__, str(exc))
            else:
                error_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            message = "interrupted; no ref was moved"
            if as_json:
                _json_error("Interrupted", message)
            else:
                error_line(message)
            raise typer.Exit(130) from None

    return wrapper


def warn(message: str, quiet: bool = False) -> None:
    """An advisory ``warning:`` line on stderr: once per command, none with
    ``--quiet``."""
    seen = state.setdefault("warned", set())
    if quiet or message in seen:
        return
    seen.add(message)
    typer.echo(f"warning: {message}", err=True)


def note(message: str, quiet: bool = False) -> None:
    """Chatter on stderr (what was written where), none with ``--quiet``."""
    if not quiet:
        typer.echo(message, err=True)


def open_repo(repo: str | None) -> Repository:
    from ..repository.repository import Repository

    url = repo or state["repo"]
    return Repository.open(url) if url else Repository.find(Path.cwd())


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def report(json_output: bool, data: Any, text: str) -> None:
    """Print ``data`` as JSON for scripts, or ``text`` for people."""
    if json_output:
        print_json(data)
    else:
        typer.echo(text)
