"""DuckDB connections: in memory, with no file access, speaking UTC."""

from __future__ import annotations

import threading
from typing import Any

_local = threading.local()


def connect() -> Any:
    """A new DuckDB connection that can touch no file and speaks UTC."""
    import duckdb

    connection = duckdb.connect(config={"enable_external_access": False, "threads": 2})
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def thread_connection() -> Any:
    """This thread's reusable connection (opening one costs ~20 ms)."""
    if getattr(_local, "connection", None) is None:
        _local.connection = connect()
    return _local.connection
