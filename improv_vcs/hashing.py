"""Read and hash many small files quickly, in order, with bounded memory.

Work is cut into chunks of files; a small thread pool reads and hashes a
chunk per task (file reads and SHA-256 of buffers over 2 KiB release the
GIL, so threads use every core), and at most a few chunks are in flight.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from .errors import InvalidInputError

CHUNK = 256


def _read_chunk(paths: Sequence[str]) -> list[tuple[bytes, bytes]]:
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
        out.append((hashlib.sha256(data).digest(), data))
    return out


def hash_files(paths: Sequence[str], workers: int | None = None) -> Iterator[tuple[bytes, bytes]]:
    """``(sha256 digest, bytes)`` of every file, in the order of ``paths``."""
    workers = workers or min(4, os.cpu_count() or 1)
    chunks = (paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="improv-hash") as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(_read_chunk, chunk))
            if len(pending) > 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def hash_blobs(blobs: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """``(sha256 digest, bytes)`` of in-memory blobs."""
    for data in blobs:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"image data must be bytes, not {type(data).__name__}")
        yield hashlib.sha256(data).digest(), bytes(data)
