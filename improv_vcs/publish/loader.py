"""Training loaders over a selection: a map-style dataset PyTorch's
``DataLoader`` takes as it is, and a stream that shards by rank and worker
and shuffles from a seed. Neither imports torch.

Bytes come by ranged reads from the packs (local, S3, HTTP) and are
verified against their blob ids. The stream reads *blocks* of images that
lie next to each other in a pack with one request, then shuffles blocks and
the images inside each block: each image once per epoch, in an order fixed by
the seed and the epoch. Both pickle to worker processes as the repository's
URL and the selected rows; each process opens the repository itself.
"""

from __future__ import annotations

import io
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..core.errors import IntegrityError, InvalidInputError
from ..core.ids import hash_bytes
from ..storage.packs import pack_key
from .selection import LABEL, Selection

Decode = Callable[[bytes], Any]
BLOCK = 64
"""Images read with one request by the stream (neighbours in a pack)."""


def decode_array(data: bytes) -> np.ndarray:
    """Image bytes as a NumPy array (height × width [× channels])."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def _decoder(decode: str | Decode) -> Decode | None:
    if callable(decode):
        return decode
    if decode == "bytes":
        return None
    if decode == "array":
        return decode_array
    raise InvalidInputError(f"decode must be 'bytes', 'array' or a function, not {decode!r}")


class _Source:
    """What both loaders share: the rows, the label indexes, and a lazily
    opened repository (per process)."""

    def __init__(self, selection: Selection, decode: str | Decode, storage_options: dict):
        self.url = selection.snapshot.repository.url
        self.storage_options = storage_options
        self.citation = selection.citation
        self.classes = selection.classes
        rows = selection.rows
        self.image_ids: list[str] = rows.column("image_id").to_pylist()
        self.packs: list[str] = rows.column("pack").to_pylist()
        self.offsets = np.asarray(rows.column("offset").to_numpy(), np.int64)
        self.sizes = np.asarray(rows.column("size").to_numpy(), np.int64)
        self.blob_ids: list[str] = rows.column("blob_id").to_pylist()
        index = selection.class_index
        self.labels: list[int] | None = (
            [index[name] for name in rows.column(LABEL).to_pylist()]
            if LABEL in rows.column_names
            else None
        )
        self._decode = _decoder(decode)
        self._odb: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_odb": None}

    @property
    def odb(self) -> Any:
        if self._odb is None:
            from ..repository.repository import Repository

            self._odb = Repository.open(self.url, **self.storage_options).odb
        return self._odb

    def item(self, i: int, data: bytes) -> tuple[Any, int | None, str]:
        image = data if self._decode is None else self._decode(data)
        return image, (None if self.labels is None else self.labels[i]), self.image_ids[i]

    def read(self, i: int) -> bytes:
        return self.odb.read_blob(
            self.packs[i], int(self.offsets[i]), int(self.sizes[i]), self.blob_ids[i]
        )

    def read_block(self, rows: list[int]) -> list[bytes]:
        """The blobs of ``rows`` (one pack, ascending offsets) by one ranged read."""
        start = int(self.offsets[rows[0]])
        end = int(max(self.offsets[i] + self.sizes[i] for i in rows))
        span = self.odb.store.get_range(pack_key(self.packs[rows[0]]), start, end - start)
        out = []
        for i in rows:
            at = int(self.offsets[i]) - start
            data = bytes(span[at : at + int(self.sizes[i])])
            if hash_bytes(data) != self.blob_ids[i]:
                raise IntegrityError(f"image {self.image_ids[i]} is corrupt in its pack")
            out.append(data)
        return out


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
        self._source = _Source(selection, decode, storage_options or {})
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cached = 0
        self.cache_bytes = cache_bytes

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
    and the epoch (:meth:`set_epoch`); ``shuffle=False`` keeps pack order."""

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
        self._source = _Source(selection, decode, storage_options or {})
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.shuffle, self.block, self.epoch = shuffle, block, 0

    @property
    def classes(self) -> tuple[str, ...]:
        return self._source.classes

    @property
    def citation(self) -> Any:
        return self._source.citation

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._source.image_ids)

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
        source = self._source
        order = sorted(
            range(len(source.image_ids)), key=lambda i: (source.packs[i], source.offsets[i])
        )
        blocks: list[list[int]] = []
        for i in order:
            if (
                blocks
                and len(blocks[-1]) < self.block
                and source.packs[blocks[-1][0]] == source.packs[i]
            ):
                blocks[-1].append(i)
            else:
                blocks.append([i])
        return blocks

    def __iter__(self) -> Iterator[tuple[Any, int | None, str]]:
        worker, workers = _worker()
        source = self._source
        for rows in self.shard(worker, workers):
            ordered = sorted(rows, key=lambda i: source.offsets[i])
            data = dict(zip(ordered, source.read_block(ordered), strict=True))
            for i in rows:
                yield source.item(i, data[i])


def _worker() -> tuple[int, int]:
    """(this worker, how many) inside a PyTorch DataLoader, else (0, 1);
    torch is asked only when the program has imported it."""
    torch = sys.modules.get("torch")
    info = None if torch is None else torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)
