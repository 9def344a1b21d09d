"""New images: checked against the deployment policy, packed as they stream
in, one manifest per append. On a concurrent commit, images it holds with
the same bytes are dropped; other bytes under the same id clash."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import ConflictError, InvalidInputError
from ..core.hashing import Chunk
from ..core.ids import instrument_name
from ..core.model import Registry
from ..core.times import Clock
from ..snapshot import manifest, registry
from ..snapshot.reader import SnapshotReader
from ..storage.objects import ObjectDatabase
from .packing import Packer, with_pack_ids
from .stage import Stage, Written


@dataclass
class Deployments:
    """The deployment policy. Images of a registered instrument must fall
    inside its deployment windows and not in the future (unless
    ``allow_outside``); an unregistered instrument is refused in a strict
    repository or transaction, else noted once in ``warnings``."""

    registry: Callable[[], Registry]  # the registry as the commit will hold it
    clock: Clock
    warnings: list[str]
    allow_outside: bool = False
    strict: bool = False

    def check(self, instrument: str, metadata: pa.Table) -> None:
        doc = self.registry()
        found = doc.instruments.get(instrument)
        if found is None:
            if doc.strict_instruments or self.strict:
                raise InvalidInputError(
                    f"instrument {instrument!r} is not registered (strict); add it with `improv "
                    f"instrument add`"
                )
            note = (
                f"instrument {instrument!r} is not registered (`improv instrument add` records "
                f"its deployments)"
            )
            if note not in self.warnings:
                self.warnings.append(note)
            return
        if self.allow_outside:
            return
        ids = metadata.column("image_id").combine_chunks()
        times = metadata.column("timestamp").combine_chunks()
        future = pc.greater(times, pa.scalar(self.clock(), times.type))
        if pc.any(future).as_py():
            row = pc.index(future, True).as_py()
            raise InvalidInputError(
                f"image {ids[row].as_py()!r} is dated {times[row].as_py().isoformat()}, in the "
                "future (pass --allow-outside-deployment if that is right)"
            )
        outside = registry.outside_deployment(found, ids, times)
        if outside is not None:
            raise InvalidInputError(
                f"image {outside[0]!r} ({outside[1].isoformat()}) is outside every deployment of "
                f"{instrument}; update the instrument or pass --allow-outside-deployment"
            )


class Images(Stage):
    """New images, one manifest table per append (its ``pack`` column holds
    pack numbers until the packs are published)."""

    def __init__(self, base: SnapshotReader, packer: Packer, deployments: Deployments):
        super().__init__(base)
        self._packer = packer
        self._deployments = deployments
        self._manifests: list[pa.Table] = []
        self._blobs: dict[str, str] = {}  # image id → blob id, every image staged

    @property
    def empty(self) -> bool:
        return not self._manifests

    def append(self, instrument: str, metadata: pa.Table, stream: Iterator[Chunk]) -> int:
        """Stage the images of ``metadata`` whose bytes ``stream`` yields in
        row order; returns how many are new (identical images already
        committed or staged are skipped, other bytes under their id clash)."""
        instrument_name(instrument)
        metadata = manifest.normalize_metadata(metadata)
        manifest.check_extra_columns(metadata, self._known_extra_types())
        self._deployments.check(instrument, metadata)
        ids = metadata.column("image_id").combine_chunks()
        known = self._known_blob_ids(ids)
        pending = self._packer.pack_new(
            instrument, metadata, ids.to_pylist(), known, stream, "image {!r}"
        )
        if pending is None:
            return 0
        self._blobs.update(
            zip(pending.metadata.column("image_id").to_pylist(), pending.blob_ids, strict=True)
        )
        located = manifest.build_manifest(
            pending.metadata,
            instrument,
            pa.array(pending.blob_ids, pa.string()),
            pa.array(pending.sizes, pa.int64()),
            pa.array(pending.pack_numbers, pa.int64()),
            pa.array(pending.offsets, pa.int64()),
        )
        self._manifests.append(located)
        return pending.metadata.num_rows

    def require(self, ids: pa.Array) -> None:
        """Every id must name an image of the base snapshot or of this stage."""
        unique = pc.unique(ids)
        if self._blobs:
            staged = pa.array(list(self._blobs), pa.string())
            unique = pc.filter(unique, pc.invert(pc.is_in(unique, value_set=staged)))
        found = self.base.find(unique, ["image_id"]).column("image_id")
        if len(found) == len(unique):
            return  # ids are unique in a snapshot: every one was found
        missing = pc.filter(unique, pc.invert(pc.is_in(unique, value_set=found.combine_chunks())))
        base = self.base.commit_id
        where = f"commit {base[:12]}" if base else "this (empty) repository"
        raise InvalidInputError(
            f"{len(missing)} record(s) refer to images not in {where}, e.g. {missing[0].as_py()!r}"
        )

    def _known_extra_types(self) -> dict[str, str]:
        """Extra column types of the base snapshot and of the staged images."""
        known = self.base.extra_column_types()
        for table in self._manifests:
            for field in table.schema:
                extra = field.name not in manifest.CORE_ORDER
                if extra and known.get(field.name, "null") == "null":
                    known[field.name] = str(field.type)
        return known

    def _known_blob_ids(self, ids: pa.Array) -> dict[str, str]:
        """Image id → blob id of the given ids already in the base snapshot or staged."""
        found = self.base.find(ids, ["image_id", "blob_id"])
        known = dict(
            zip(
                found.column("image_id").to_pylist(),
                found.column("blob_id").to_pylist(),
                strict=True,
            )
        )
        if self._blobs:
            for image in ids.to_pylist():
                blob = self._blobs.get(image)
                if blob is not None:
                    known[image] = blob
        return known

    def write(self, odb: ObjectDatabase) -> Written:
        packs = self._packer.finish()
        batches = []
        for table in self._manifests:
            table = with_pack_ids(table, packs)
            batches.append(manifest.summarize(table, odb.put_bytes(manifest.encode(table))))
        return Written(batches=tuple(batches))

    def rebase(self, onto: SnapshotReader) -> bool:
        """Images ``onto`` gained with the same bytes are dropped; other bytes
        under the same id, or an extra column of another type, clash."""
        old = set(self.base.batches.column("manifest").to_pylist())
        concurrent = [m for m in onto.batches.column("manifest").to_pylist() if m not in old]
        known = onto.extra_column_types()
        rebased = []
        for table in self._manifests:
            try:
                extras = table.drop_columns(list(manifest.STORED_COLUMNS))
                manifest.check_extra_columns(extras, known)
            except InvalidInputError as exc:
                raise ConflictError(f"a concurrent commit clashes: {exc}") from None
            table = _without_committed(table, onto, concurrent)
            if table.num_rows:
                rebased.append(table)
        self._manifests, self.base = rebased, onto
        return not self.empty


def _without_committed(table: pa.Table, onto: SnapshotReader, manifests: list) -> pa.Table:
    """``table`` without the images ``manifests`` of ``onto`` hold with the
    same bytes; other bytes under the same id are a ConflictError."""
    ids = table.column("image_id").combine_chunks()
    theirs = onto.find(ids, ["image_id", "blob_id"], among=manifests)
    if not theirs.num_rows:
        return table
    ours = dict(zip(ids.to_pylist(), table.column("blob_id").to_pylist(), strict=True))
    for image, blob in zip(
        theirs.column("image_id").to_pylist(), theirs.column("blob_id").to_pylist(), strict=True
    ):
        if ours[image] != blob:
            raise ConflictError(f"image {image!r} was committed concurrently with different bytes")
    return table.filter(pc.invert(pc.is_in(ids, value_set=theirs.column("image_id"))))
