"""Packing a transaction's blobs as they stream in: hashed, deduplicated,
appended to the open pack, and each full pack published in the background
while the next one fills."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from ..core.errors import ConflictError, InvalidInputError
from ..core.hashing import Chunk
from ..core.ids import ObjectId
from ..storage.objects import ObjectDatabase, PackWriter


@dataclass
class PendingBatch:
    """New images (or original files) of one instrument and where their bytes went."""

    instrument: str
    metadata: pa.Table  # normalized manifest metadata (or source descriptions), new rows only
    blob_ids: list[str]
    sizes: list[int]
    pack_numbers: list[int]
    offsets: list[int]


class Packer:
    """The packs of one transaction; blobs are numbered by pack until
    :meth:`finish` says which pack ids the numbers stand for."""

    def __init__(self, odb: ObjectDatabase, pack_size: int, progress: Callable[[int], None] | None):
        self._odb = odb
        self._pack_size = pack_size
        self.progress = progress
        self._writer: PackWriter | None = None
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="improv-publish")
        self._pack_futures: list[Future[ObjectId]] = []
        self._packs: list[ObjectId] | None = None  # once published
        self._placed: dict[bytes, tuple[int, int]] = {}  # digest → (pack number, offset)

    def pack_new(
        self,
        instrument: str,
        rows: pa.Table,
        keys: list[str],
        known: Mapping[str, str],
        stream: Iterable[Chunk],
        what: str,
    ) -> PendingBatch | None:
        """Pack the blobs of ``stream`` (aligned with ``rows`` and ``keys``)
        whose key is not in ``known`` (key → blob id); the same key with other
        bytes is a conflict. Returns the new rows with their locations."""
        keep: list[int] = []
        blob_ids: list[str] = []
        sizes: list[int] = []
        pack_numbers: list[int] = []
        offsets: list[int] = []
        row = 0
        for digests, datas in stream:
            if row + len(digests) > len(keys):
                raise InvalidInputError(f"more blobs than the {len(keys)} rows they belong to")
            for digest, data in zip(digests, datas, strict=True):
                blob_id = digest.hex()
                prior = known.get(keys[row]) if known else None
                if prior is None:
                    keep.append(row)
                    blob_ids.append(blob_id)
                    sizes.append(len(data))
                    number, offset = self.place(digest, data)
                    pack_numbers.append(number)
                    offsets.append(offset)
                elif prior != blob_id:
                    raise ConflictError(
                        f"{what.format(keys[row])} is already committed with different bytes"
                    )
                row += 1
            if self.progress:
                self.progress(len(digests))
        if row != len(keys):
            raise InvalidInputError(f"{row} blobs for {len(keys)} rows")
        if not keep:
            return None
        kept = rows if len(keep) == rows.num_rows else rows.take(keep)
        return PendingBatch(instrument, kept, blob_ids, sizes, pack_numbers, offsets)

    def place(self, digest: bytes, data: bytes) -> tuple[int, int]:
        """Add a blob to the open pack: (pack number, offset). Bytes already
        packed by this transaction are not packed again."""
        placed = self._placed.get(digest)
        if placed is not None:
            return placed
        if self._writer is None:
            self._writer = self._odb.pack_writer()
        placed = len(self._pack_futures), self._writer.add(digest, data)
        self._placed[digest] = placed
        if len(self._writer) >= self._pack_size:
            self.flush()
        return placed

    def flush(self) -> None:
        """Publish the current pack in the background (flush, fsync, link)
        while the next one fills; :meth:`finish` waits for all of them."""
        if self._writer is not None:
            self._pack_futures.append(self._publisher.submit(self._writer.finish))
            self._writer = None

    def finish(self) -> list[ObjectId]:
        """Publish the open pack, wait for every pack; their ids by number
        (the same list on every later call)."""
        if self._packs is None:
            self.flush()
            self._packs = [future.result() for future in self._pack_futures]
            self._publisher.shutdown()
        return self._packs

    def close(self) -> None:
        """Stop publishing (after :meth:`finish`, or when nothing was staged)."""
        self._publisher.shutdown()

    def discard(self) -> None:
        """Give up: the open pack is discarded; published packs stay unreferenced."""
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
        self._publisher.shutdown(wait=True)


def with_pack_ids(table: pa.Table, packs: list[ObjectId]) -> pa.Table:
    """``table`` with the pack numbers of its ``pack`` column replaced by
    the ids :meth:`Packer.finish` gave."""
    ids = pa.array(packs, pa.string()).take(table.column("pack"))
    return table.set_column(table.schema.get_field_index("pack"), "pack", ids)
