"""Read and hash many small files quickly, in order, with bounded memory.

Work is cut into chunks of files. Each chunk is read and hashed by a small
thread pool (file reads and SHA-256 of large buffers release the GIL), at
most a few chunks are in flight, and chunks come back in input order as
``(digests, blobs)`` lists so the consumer does little per-file work.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from .errors import InvalidInputError

CHUNK = 512
_FIRST_READ = 1 << 16

Chunk = tuple[list[bytes], list]
"""SHA-256 digests and the bytes they hash (or a :class:`LargeFile`), aligned."""


def read_file(path: str) -> bytes:
    """The whole file, with as few system calls and allocations as possible."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = os.read(fd, _FIRST_READ)
        if len(data) == _FIRST_READ:
            parts = [data]
            while part := os.read(fd, 1 << 22):
                parts.append(part)
            data = b"".join(parts)
        return data
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


LARGE = 64 * 2**20
"""Files at least this large are streamed, never held in memory whole."""
_BLOCK = 8 * 2**20


class LargeFile:
    """A file too large to hold in memory: its length, and its bytes read
    block by block (the content must not change while it is committed)."""

    def __init__(self, path: str, size: int):
        self.path, self.size = path, size

    def __len__(self) -> int:
        return self.size

    def blocks(self) -> Iterator[bytes]:
        try:
            with open(self.path, "rb") as f:
                while block := f.read(_BLOCK):
                    yield block
        except OSError as exc:
            raise InvalidInputError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def digest(self) -> bytes:
        digest = hashlib.sha256()
        size = 0
        for block in self.blocks():
            digest.update(block)
            size += len(block)
        if size != self.size:
            raise InvalidInputError(f"{self.path} changed while it was being read")
        return digest.digest()


def _read_one(path: str) -> tuple[bytes, bytes | LargeFile]:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block forever
        raise InvalidInputError(f"cannot read {path}: not a regular file")
    size = info.st_size
    if size >= LARGE:
        large = LargeFile(path, size)
        return large.digest(), large
    data = read_file(path)
    return hashlib.sha256(data).digest(), data


def _read_chunk(paths: Sequence[str]) -> Chunk:
    pairs = [_read_one(p) for p in paths]
    return [d for d, _ in pairs], [b for _, b in pairs]


def hash_files(paths: Sequence[str], workers: int = 2) -> Iterator[Chunk]:
    """Chunks of ``(digests, blobs)`` for ``paths``, in order."""
    chunks = (paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="improv-read") as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(_read_chunk, chunk))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def hash_blobs(blobs: Iterable[bytes]) -> Iterator[Chunk]:
    """Chunks of ``(digests, blobs)`` for in-memory blobs."""
    chunk: list[bytes] = []
    for data in blobs:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"image data must be bytes, not {type(data).__name__}")
        chunk.append(bytes(data))
        if len(chunk) == CHUNK:
            yield [hashlib.sha256(b).digest() for b in chunk], chunk
            chunk = []
    if chunk:
        yield [hashlib.sha256(b).digest() for b in chunk], chunk
