"""The ``improv`` command line: a thin layer over the Python API.

Commands parse options, call :mod:`improv_vcs`, and render. Errors become a
one-line message on stderr and the exit code of their class.
"""

from __future__ import annotations

import os
import sys

from . import (  # noqa: F401  (register commands)
    _cite,
    _commit,
    _core,
    _datasets,
    _maintenance,
    _originals,
    _provenance,
    _query,
    _registry,
    _serve,
    _sync,
)
from ._common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point.

    Exits through ``os._exit`` once output is flushed: Arrow's native thread
    pools can abort the interpreter's own teardown (apache/arrow#34314), which
    would turn a finished command into exit code 134.
    """
    _only_the_invoked_command(sys.argv[1:])
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)


def _only_the_invoked_command(argv: list[str]) -> None:
    """Keep only the command ``argv`` invokes in the app, so the command line
    is not built for all of them (typer inspects every command's signature:
    most of a short command's start-up). With no command, every command
    stays (the overview of ``improv --help``)."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--version"):
            return
        if word in ("-R", "--repo"):
            next(words, None)
        elif not word.startswith("-"):
            commands = [
                c
                for c in app.registered_commands
                if (c.name or c.callback.__name__.replace("_", "-")) == word
            ]
            groups = [g for g in app.registered_groups if g.name == word]
            if commands or groups:
                app.registered_commands, app.registered_groups = commands, groups
            return


if __name__ == "__main__":
    main()
