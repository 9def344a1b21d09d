"""Packs: many small blobs back to back in one immutable file.

A pack is two store values, ``packs/<id>.pack`` (the blobs, concatenated) and
``packs/<id>.idx`` (a fixed-width table of ``blob id → offset, length`` sorted
by blob id). The pack id is the SHA-256 of the index bytes; since the index
names every blob by its own SHA-256, the id covers the pack's content like a
Merkle root, and the data never needs a second full hash pass.

Index layout (little-endian)::

    b"IMPRVIDX" | u32 version | u32 0 | u64 pack length | u64 entry count
    entry*: 32-byte blob digest | u64 offset | u64 length

This module is pure: it lays out and parses bytes and never touches a store.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from dataclasses import dataclass

from ..core.errors import IntegrityError
from ..core.ids import ObjectId, hash_bytes

MAGIC = b"IMPRVIDX"
VERSION = 1
_HEADER = struct.Struct("<8sIIQQ")
_ENTRY = struct.Struct("<32sQQ")
DEFAULT_PACK_SIZE = 64 * 2**20


def pack_key(pack_id: str) -> str:
    return f"packs/{pack_id}.pack"


def index_key(pack_id: str) -> str:
    return f"packs/{pack_id}.idx"


@dataclass(frozen=True)
class PackIndex:
    """Parsed pack index: sorted digests with their offsets and lengths."""

    pack_length: int
    digests: tuple[bytes, ...]
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]

    @classmethod
    def parse(cls, data: bytes) -> PackIndex:
        if len(data) < _HEADER.size:
            raise IntegrityError("pack index is truncated")
        magic, version, _, pack_length, count = _HEADER.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise IntegrityError(f"not a version-{VERSION} pack index")
        if len(data) != _HEADER.size + count * _ENTRY.size:
            raise IntegrityError("pack index length does not match its entry count")
        rows = list(_ENTRY.iter_unpack(memoryview(data)[_HEADER.size :]))
        digests = tuple(r[0] for r in rows)
        if any(a >= b for a, b in zip(digests, digests[1:])):
            raise IntegrityError("pack index entries are not sorted and unique")
        offsets = tuple(r[1] for r in rows)
        lengths = tuple(r[2] for r in rows)
        if any(o + n > pack_length for o, n in zip(offsets, lengths)):
            raise IntegrityError("pack index points past the end of its pack")
        return cls(pack_length, digests, offsets, lengths)

    def locate(self, blob_id: str) -> tuple[int, int] | None:
        """``(offset, length)`` of a blob in the pack, or None."""
        digest = bytes.fromhex(blob_id)
        i = bisect.bisect_left(self.digests, digest)
        if i < len(self.digests) and self.digests[i] == digest:
            return self.offsets[i], self.lengths[i]
        return None

    def blob_ids(self) -> list[str]:
        return [d.hex() for d in self.digests]

    def verify(self, pack: bytes | memoryview) -> None:
        """Re-hash every blob of ``pack``; :class:`IntegrityError` on the first mismatch."""
        if len(pack) != self.pack_length:
            raise IntegrityError(f"pack is {len(pack)} bytes, its index says {self.pack_length}")
        view = memoryview(pack)
        for digest, offset, length in zip(self.digests, self.offsets, self.lengths):
            if hashlib.sha256(view[offset : offset + length]).digest() != digest:
                raise IntegrityError(f"blob {digest.hex()} in pack is corrupt")


class PackBuilder:
    """Lays out blobs in a pack and builds its index; identical blobs are laid
    out once. It tracks positions only: the caller writes the bytes."""

    def __init__(self) -> None:
        self._length = 0
        self._where: dict[bytes, tuple[int, int]] = {}

    def __len__(self) -> int:
        """The pack length so far, in bytes."""
        return self._length

    @property
    def blob_count(self) -> int:
        return len(self._where)

    def add(self, digest: bytes, length: int) -> tuple[int, bool]:
        """Place a blob of ``length`` bytes with 32-byte SHA-256 ``digest``.

        Returns its offset, and whether it is new (its bytes must be written
        next) rather than a repeat of a blob already placed.
        """
        found = self._where.get(digest)
        if found is not None:
            return found[0], False
        offset = self._length
        self._where[digest] = (offset, length)
        self._length += length
        return offset, True

    def finish(self) -> tuple[ObjectId, bytes]:
        """``(pack id, index bytes)``."""
        entries = sorted(self._where.items())
        index = bytearray(_HEADER.pack(MAGIC, VERSION, 0, self._length, len(entries)))
        for digest, (offset, length) in entries:
            index += _ENTRY.pack(digest, offset, length)
        index_bytes = bytes(index)
        return hash_bytes(index_bytes), index_bytes
