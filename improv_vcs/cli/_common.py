"""Shared pieces of the command line: the app, common options, error
handling, repository lookup and output helpers."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from ..repository import Repository

app = typer.Typer(
    name="improv",
    help="Immutable, content-addressed, versioned store for scientific imaging data.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

REPO_HELP = "Repository path or URL (default: $IMPROV_REPO, else the repository containing the current directory)."
RepoOption = Annotated[Optional[str], typer.Option("--repo", "-R", help=REPO_HELP)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]

state: dict[str, Any] = {"repo": None}


def error_line(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def handles_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-line message and the class's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import ImprovError

        try:
            return func(*args, **kwargs)
        except ImprovError as exc:
            error_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error_line("interrupted; no ref was moved")
            raise typer.Exit(130) from None

    return wrapper


def open_repo(repo: str | None) -> Repository:
    from ..repository import Repository

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
