"""Training loaders over a selection: a map-style dataset PyTorch's
``DataLoader`` takes as it is, and a stream that shards by rank and worker
and shuffles from a seed. Neither imports torch.

Bytes come from the packs through a :class:`~improv_vcs.storage.blob_reader.BlobReader`
(mapped views of a local repository, ranged reads from S3 or HTTP) and are
verified against their blob ids. The stream reads *blocks* of images that
lie next to each other in a pack with one request, then shuffles blocks and
the images inside each block: each image once per epoch, in an order fixed by
the seed and the epoch. Both pickle to worker processes as the repository's
URL and the selected rows; each process opens the repository itself.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..core.errors import InvalidInputError
from ..core.media import Decode, decode_array, decoder
from ..storage.blob_reader import BlobReader, locations, runs
from .selection import LABEL, Selection

__all__ = ["BLOCK", "ImageDataset", "ImageStream", "decode_array"]

BLOCK = 64
"""Images read with one request by the stream (neighbours in a pack)."""


class _Source:
    """What both loaders share: the rows, the label indexes, and a blob
    reader over the repository, opened lazily in each process."""

    def __init__(self, selection: Selection, decode: str | Decode, storage_options: dict | None):
        repository = selection.snapshot.repository
        self.url = repository.url
        self.storage_options = (
            repository.storage_options if storage_options is None else storage_options
        )
        self.citation = selection.citation
        self.classes = selection.classes
        rows = selection.rows
        self.image_ids: list[str] = rows.column("image_id").to_pylist()
        self.locations = locations(rows)
        index = selection.class_index
        self.labels: list[int] | None = (
            [index[name] for name in rows.column(LABEL).to_pylist()]
            if LABEL in rows.column_names
            else None
        )
        self._decode = decoder(decode)
        self._reader: BlobReader | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None}

    @property
    def reader(self) -> BlobReader:
        if self._reader is None:
            from ..repository.repository import Repository

            self._reader = BlobReader(Repository.open(self.url, **self.storage_options).odb)
        return self._reader

    def item(self, i: int, data: bytes) -> tuple[Any, int | None, str]:
        image = data if self._decode is None else self._decode(data)
        return image, (None if self.labels is None else self.labels[i]), self.image_ids[i]

    def read(self, i: int) -> bytes:
        return self.reader.read(self.locations[i])

    def read_run(self, rows: list[int]) -> list[bytes]:
        """The blobs of ``rows`` (one pack, ascending offsets) by one read."""
        return self.reader.read_run([self.locations[i] for i in rows])


class ImageDataset:
    """Map-style: ``len(ds)`` images; ``ds[i]`` is ``(image, label index or
    None, image id)``. ``classes[label]`` names a label; ``citation`` pins
    the images and labels. Recently read bytes stay in a cache of at most
    ``cache_bytes``."""

    def __init__(
        self,
        selection: Selection,
        decode: str | Decode = "bytes",
        cache_bytes: int = 64 * 2**20,
        storage_options: dict | None = None,
    ):
        self._source = _Source(selection, decode, storage_options)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cached = 0
        self.cache_bytes = cache_bytes

    def __getstate__(self) -> dict[str, Any]:
        """A worker process gets the rows, not the bytes cached here."""
        return {**self.__dict__, "_cache": OrderedDict(), "_cached": 0}

    @property
    def classes(self) -> tuple[str, ...]:
        return self._source.classes

    @property
    def citation(self) -> Any:
        return self._source.citation

    def __len__(self) -> int:
        return len(self._source.image_ids)

    def __getitem__(self, i: int) -> tuple[Any, int | None, str]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        data = self._cache.get(i)
        if data is None:
            data = self._source.read(i)
            self._remember(i, data)
        else:
            self._cache.move_to_end(i)
        return self._source.item(i, data)

    def _remember(self, i: int, data: bytes) -> None:
        if len(data) > self.cache_bytes:
            return
        self._cache[i] = data
        self._cached += len(data)
        while self._cached > self.cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= len(dropped)


class ImageStream:
    """Iterable: each image of the selection once per epoch, sharded over
    ``world_size`` ranks and the DataLoader's workers, shuffled by ``seed``
    and the epoch (:meth:`set_epoch`); ``shuffle=False`` keeps pack order.

    When the program has imported torch, the class is registered as a
    ``torch.utils.data.IterableDataset``, so a ``DataLoader`` iterates it
    (in each worker, its share) instead of indexing it."""

    def __init__(
        self,
        selection: Selection,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        decode: str | Decode = "bytes",
        block: int = BLOCK,
        storage_options: dict | None = None,
    ):
        if not 0 <= rank < world_size:
            raise InvalidInputError(f"rank {rank} is not in 0..{world_size - 1}")
        if block < 1:
            raise InvalidInputError("block must be at least 1")
        if seed < 0:
            raise InvalidInputError(f"seed must be 0 or more, not {seed}")
        self._source = _Source(selection, decode, storage_options)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.shuffle, self.block, self.epoch = shuffle, block, 0
        _register_with_torch()

    @property
    def classes(self) -> tuple[str, ...]:
        return self._source.classes

    @property
    def citation(self) -> Any:
        return self._source.citation

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """The images this rank reads in the current epoch (all its workers)."""
        return sum(map(len, self.shard()))

    def shard(self, worker: int = 0, workers: int = 1) -> list[list[int]]:
        """The blocks (lists of row numbers) one worker of one rank reads, in order."""
        blocks = self._blocks()
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            blocks = [blocks[k] for k in rng.permutation(len(blocks))]
        shards = self.world_size * workers
        mine = blocks[self.rank * workers + worker :: shards]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
            mine = [[b[k] for k in rng.permutation(len(b))] for b in mine]
        return mine

    def _blocks(self) -> list[list[int]]:
        """Rows in pack order, cut into blocks of neighbours of one pack."""
        return runs(self._source.locations, self.block)

    def __iter__(self) -> Iterator[tuple[Any, int | None, str]]:
        worker, workers = _worker()
        source = self._source
        for rows in self.shard(worker, workers):
            ordered = sorted(rows, key=lambda i: source.locations[i].offset)
            data = dict(zip(ordered, source.read_run(ordered), strict=True))
            for i in rows:
                yield source.item(i, data[i])


def _worker() -> tuple[int, int]:
    """(this worker, how many) inside a PyTorch DataLoader, else (0, 1);
    torch is asked only when the program has imported it."""
    torch = sys.modules.get("torch")
    info = None if torch is None else torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _register_with_torch() -> None:
    """Make :class:`ImageStream` a virtual ``IterableDataset`` once torch is loaded."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.utils.data.IterableDataset.register(ImageStream)
