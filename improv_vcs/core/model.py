"""The pure object model: commits, batches, index segments, tags and the
repository config, and their canonical bytes. No IO happens here.

Every JSON object carries ``kind`` and ``format``; its canonical bytes are
UTF-8 JSON with sorted keys and no whitespace, and its id is their SHA-256.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

from . import canonical
from .errors import IntegrityError, UnsupportedFormatError
from .ids import ObjectId, column_name, instrument_name, object_id, ref_name

FORMAT_VERSION = 1
REPOSITORY_FORMAT = 3
"""Format of new repositories: 2 adds bundles and manifest parts, 3 the
tasks index of commits (``docs/format.md``)."""
OBJECT_FORMAT = 3
"""The newest JSON object format: commits of format 2 may list parts, of
format 3 carry a tasks index."""

Oid = Annotated[str, AfterValidator(object_id)]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("timestamp out of range") from None


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Batch(_Frozen):
    """One appended batch of images from one instrument, with its statistics."""

    instrument: str
    manifest: Oid
    packs: tuple[Oid, ...]
    rows: int = Field(ge=1)
    bytes: int = Field(ge=0)
    time_min: UtcDatetime
    time_max: UtcDatetime
    image_id_min: str
    image_id_max: str
    lat_min: float | None = None
    lat_max: float | None = None
    lon_min: float | None = None
    lon_max: float | None = None
    depth_min: float | None = None
    depth_max: float | None = None
    extra_columns: tuple[str, ...] = Field(
        default=(), description="the batch's own metadata columns"
    )
    extra_types: tuple[str, ...] = Field(default=(), description="their Arrow types, aligned")

    @model_validator(mode="after")
    def _aligned(self) -> Batch:
        if len(self.extra_columns) != len(self.extra_types):
            raise ValueError("extra_columns and extra_types differ in length")
        return self


class ProvenanceSegment(_Frozen):
    """One Parquet segment of provenance records of one kind, with the
    statistics queries prune by."""

    kind: Annotated[str, AfterValidator(column_name)]
    id: Oid
    packs: tuple[Oid, ...] = Field(
        default=(), description="packs holding the records' blobs (masks)"
    )
    rows: int = Field(ge=1)
    image_id_min: str
    image_id_max: str
    time_min: UtcDatetime = Field(description="earliest recorded_at")
    time_max: UtcDatetime = Field(description="latest recorded_at")
    sources: tuple[str, ...] = Field(description="with runs: the (source, run_id) pairs present")
    runs: tuple[str, ...]
    columns: tuple[str, ...] = Field(default=(), description="the kind's columns present")
    types: tuple[str, ...] = Field(default=(), description="their Arrow types, aligned")
    bound_columns: tuple[str, ...] = Field(default=(), description="indexed columns with values")
    bound_min: tuple[float, ...] = ()
    bound_max: tuple[float, ...] = ()

    @model_validator(mode="after")
    def _aligned(self) -> ProvenanceSegment:
        if len(self.sources) != len(self.runs) or len(self.columns) != len(self.types):
            raise ValueError("sources/runs or columns/types differ in length")
        if not len(self.bound_columns) == len(self.bound_min) == len(self.bound_max):
            raise ValueError("bound columns and values differ in length")
        return self


class SourceFiles(_Frozen):
    """Original instrument files (raw bins, whole stacks, their metadata
    documents) kept byte for byte: one table per commit and instrument, one
    row per file, keyed by sample and relative path."""

    instrument: Annotated[str, AfterValidator(instrument_name)]
    table: Oid
    packs: tuple[Oid, ...]
    rows: int = Field(ge=1)
    bytes: int = Field(ge=0)
    time_min: UtcDatetime = Field(description="earliest sample time")
    time_max: UtcDatetime
    sample_id_min: str
    sample_id_max: str


class Part(_Frozen):
    """A consolidated manifest: the rows of ``entries`` consecutive batches of
    an index segment, in order, as one Parquet object (format 2)."""

    id: Oid
    entries: int = Field(ge=1)
    rows: int = Field(ge=0)


class IndexSegment(_Frozen):
    """A reference to one Parquet segment of an index (of batches, provenance
    segments or source files), with a summary that lets readers skip it whole."""

    id: Oid
    level: int = Field(ge=0)
    entries: int = Field(ge=1, description="rows of the segment")
    rows: int = Field(ge=0, description="images, records or files across its entries")
    time_min: UtcDatetime
    time_max: UtcDatetime
    parts: tuple[Part, ...] = Field(
        default=(), description="consolidated manifests of its batches, in order (format 2)"
    )

    @model_serializer(mode="wrap")
    def _without_empty_parts(self, handler: Any) -> dict[str, Any]:
        """Leave ``parts`` out when empty, so format-1 segments keep their bytes."""
        data = handler(self)
        if not data.get("parts"):
            data.pop("parts", None)
        return data


class Commit(_Frozen):
    """A commit: the batches, provenance records and original files it
    appends, and the snapshot indexes after it."""

    kind: Literal["commit"] = "commit"
    format: Literal[1, 2, 3] = FORMAT_VERSION
    parents: tuple[Oid, ...] = ()
    height: int = Field(ge=1, description="1 + the largest parent height")
    author: str
    message: str
    time: UtcDatetime
    batches: tuple[Batch, ...] = ()
    index: tuple[IndexSegment, ...] = ()
    provenance: tuple[ProvenanceSegment, ...] = ()
    provenance_index: tuple[IndexSegment, ...] = ()
    sources: tuple[SourceFiles, ...] = ()
    sources_index: tuple[IndexSegment, ...] = ()
    datasets: Oid | None = Field(
        default=None, description="the dataset definitions in force at this commit"
    )
    registry: Oid | None = Field(
        default=None, description="the organizing metadata in force at this commit"
    )
    task: str | None = Field(default=None, description="the ingest task this commit records")
    tasks_index: tuple[IndexSegment, ...] | None = Field(
        default=None,
        description="the commits of its ancestors that record a task (format 3, else left out)",
    )

    @model_validator(mode="after")
    def _format_fits(self) -> Commit:
        if self.format < 2 and any(s.parts for s in self.index):
            raise ValueError("consolidated manifests (parts) need commit format 2")
        if (self.format == 3) != (self.tasks_index is not None):
            raise ValueError("a commit has a tasks index exactly when it is format 3")
        return self

    @model_serializer(mode="wrap")
    def _without_absent_tasks(self, handler: Any) -> dict[str, Any]:
        """Leave ``tasks_index`` out below format 3, so older commits keep their bytes."""
        data = handler(self)
        if data.get("tasks_index") is None:
            data.pop("tasks_index", None)
        return data


class Span(_Frozen):
    """A half-open time span ``[start, end)`` of one instrument."""

    instrument: Annotated[str, AfterValidator(instrument_name)]
    start: UtcDatetime
    end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Span:
        if self.start >= self.end:
            raise ValueError(
                f"span start {self.start.isoformat()} is not before its end {self.end.isoformat()}"
            )
        return self


class Dataset(_Frozen):
    """A named selection of images: the union of its spans."""

    description: str = ""
    spans: tuple[Span, ...] = ()


class Datasets(_Frozen):
    """Every dataset definition at a commit, by name."""

    kind: Literal["datasets"] = "datasets"
    format: Literal[1] = FORMAT_VERSION
    datasets: dict[Annotated[str, AfterValidator(ref_name)], Dataset] = {}


class Deployment(_Frozen):
    """When an instrument was in the water (or on the bench): ``[start, end)``,
    ``end`` None while it still is."""

    start: UtcDatetime
    end: UtcDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Deployment:
        if self.end is not None and self.start >= self.end:
            raise ValueError(
                f"deployment start {self.start.isoformat()} is not before its end "
                f"{self.end.isoformat()}"
            )
        return self

    def covers(self, when: datetime) -> bool:
        return self.start <= when and (self.end is None or when < self.end)


class Instrument(_Frozen):
    """One version of an instrument's record; an update is a new version."""

    type: str | None = None
    serial: str | None = None
    description: str | None = None
    deployments: tuple[Deployment, ...] = ()
    version: int = Field(default=1, ge=1)


class Taxonomy(_Frozen):
    """A classifier version's ordered class list: position i of a score
    vector is ``classes[i]``."""

    classes: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Taxonomy:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("class names repeat")
        return self


class Registry(_Frozen):
    """The organizing metadata in force at a commit: instruments, taxonomies
    and the sample records (Parquet segments of sample versions, oldest first)."""

    kind: Literal["registry"] = "registry"
    format: Literal[1] = FORMAT_VERSION
    instruments: dict[Annotated[str, AfterValidator(instrument_name)], Instrument] = {}
    taxonomies: dict[str, Taxonomy] = Field(default={}, description="by 'CLASSIFIER@MODEL_VERSION'")
    samples: tuple[Oid, ...] = ()
    strict_instruments: bool = Field(
        default=False, description="refuse commits to unregistered instruments"
    )


class Tag(_Frozen):
    """An annotated tag: a named, immutable pointer to a commit with a
    message, and for a release its bibliographic metadata."""

    kind: Literal["tag"] = "tag"
    format: Literal[1] = FORMAT_VERSION
    name: str
    target: Oid
    tagger: str
    time: UtcDatetime
    message: str
    title: str | None = None
    authors: tuple[str, ...] = ()
    license: str | None = None
    description: str | None = None
    doi: str | None = Field(default=None, pattern=r"^10\.\d{4,9}/\S+$")


class RepositoryConfig(_Frozen):
    """Contents of ``improv.json`` at the repository root."""

    kind: Literal["improv-repository"] = "improv-repository"
    format: Literal[1, 2, 3] = REPOSITORY_FORMAT
    id: str
    hash: Literal["sha256"] = "sha256"
    default_branch: Annotated[str, AfterValidator(ref_name)] = "main"
    created: UtcDatetime


JsonObject = Annotated[Commit | Tag | Datasets | Registry, Field(discriminator="kind")]
_JSON_OBJECT = TypeAdapter(JsonObject)


def canonical_json(model: BaseModel) -> bytes:
    """The canonical bytes of a model (:mod:`improv_vcs.core.canonical`)."""
    return canonical.encode(model.model_dump(mode="json"))


def _refuse_newer(data: bytes, newest: int, what: str) -> None:
    """:class:`UnsupportedFormatError` when ``data`` is JSON whose ``format``
    is a number above ``newest`` (a newer writer's, not a corruption)."""
    try:
        found = json.loads(data).get("format")
    except (ValueError, AttributeError):
        return
    if isinstance(found, int) and not isinstance(found, bool) and found > newest:
        raise UnsupportedFormatError(
            f"{what} is format {found}; this improv_vcs reads formats up to {newest}: upgrade "
            f"improv_vcs"
        )


def decode_object(data: bytes, what: str = "object") -> Commit | Tag | Datasets:
    """Parse canonical JSON bytes into a commit, tag or dataset definitions."""
    try:
        return _JSON_OBJECT.validate_json(data)
    except ValidationError as exc:
        _refuse_newer(data, OBJECT_FORMAT, what)
        raise IntegrityError(
            f"{what} is not a valid commit, tag or datasets object: {exc.errors()[0]['msg']}"
        ) from None


def decode_config(data: bytes) -> RepositoryConfig:
    try:
        return RepositoryConfig.model_validate_json(data)
    except ValidationError as exc:
        _refuse_newer(data, REPOSITORY_FORMAT, "this repository")
        raise IntegrityError(f"improv.json is invalid: {exc.errors()[0]['msg']}") from None


__all__ = [
    "Batch",
    "Commit",
    "Dataset",
    "Datasets",
    "FORMAT_VERSION",
    "REPOSITORY_FORMAT",
    "IndexSegment",
    "ObjectId",
    "ProvenanceSegment",
    "RepositoryConfig",
    "Span",
    "Tag",
    "canonical_json",
    "decode_config",
    "decode_object",
]
