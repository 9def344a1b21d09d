"""DuckDB connections: in memory, with no file access, speaking UTC."""

from __future__ import annotations

import atexit
import threading
from typing import Any

_local = threading.local()
_lock = threading.Lock()
_open: list[Any] = []


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
        with _lock:
            _open.append(_local.connection)
    return _local.connection


@atexit.register
def _close_all() -> None:
    """Close every thread's connection before the interpreter tears threads
    down (a server's worker threads still hold theirs; DuckDB aborts the
    process when one is destroyed that late)."""
    with _lock:
        for connection in _open:
            connection.close()
        _open.clear()
