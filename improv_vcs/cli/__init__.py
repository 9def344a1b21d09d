"""The ``improv`` command line: a thin layer over the Python API.

Commands parse options, call :mod:`improv_vcs`, and render. Errors become a
one-line message on stderr and the exit code of their class.
"""

from __future__ import annotations

import os
import sys

from . import _cite, _core, _maintenance, _originals, _provenance, _query, _registry, _serve, _sync  # noqa: F401  (register commands)
from ._common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point.

    Exits through ``os._exit`` once output is flushed: Arrow's native thread
    pools can abort the interpreter's own teardown (apache/arrow#34314), which
    would turn a finished command into exit code 134.
    """
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


if __name__ == "__main__":
    main()
