"""Who a change is recorded as."""

from __future__ import annotations

import getpass
import os


def default_author() -> str:
    """``IMPROV_AUTHOR``, else the login name."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return os.environ.get("IMPROV_AUTHOR") or user
