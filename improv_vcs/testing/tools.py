"""Small tools of the shipped test suites: expecting an exception, skipping
without importing pytest first, and racing threads released together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..storage.store import Store


class raises:
    """``with raises(Kind) as caught:``: the block must raise ``Kind`` (kept
    as ``caught.value``); any other exception passes through."""

    def __init__(self, kind: type[BaseException]):
        self.kind = kind
        self.value: BaseException | None = None

    def __enter__(self) -> raises:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None:
            raise AssertionError(f"did not raise {self.kind.__name__}")
        if not isinstance(exc, self.kind):
            return False
        self.value = exc
        return True


def skip(reason: str) -> None:
    import pytest

    pytest.skip(reason)


def skip_unless(store: Store, flag: str) -> None:
    if not getattr(store, flag):
        skip(f"{type(store).__name__} has no {flag}")


def race(threads: int, work: Callable[[], Any]) -> list[Any]:
    """Run ``work`` on ``threads`` threads released together; their results
    (the first failure, if any, is raised)."""
    start = threading.Barrier(threads)
    results: list[Any] = []
    failures: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(work())
        except BaseException as exc:  # re-raised below, on the test's thread
            failures.append(exc)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if failures:
        raise failures[0]
    return results
