"""The built-in provenance kinds."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from ..core.errors import InvalidInputError
from .kinds import JsonText, Kind, Numbers, Scores, Vector


class Geolocation(BaseModel):
    lat: float = Field(ge=-90, le=90, description="latitude, degrees north")
    lon: float = Field(ge=-180, le=180, description="longitude, degrees east")
    depth: float | None = Field(default=None, description="metres below the surface")
    method: str | None = Field(
        default=None, description="how the position was found (GPS, ship track …)"
    )


class SampleContext(BaseModel):
    sample_id: str
    cruise: str | None = None
    station: str | None = None
    cast: str | None = None
    niskin: str | None = None
    extra: JsonText | None = Field(default=None, description="free-form JSON")


class Segmentation(BaseModel):
    area: int | None = Field(
        default=None, ge=0, description="mask pixels (computed from the mask when absent)"
    )
    bbox_x: int | None = Field(default=None, ge=0)
    bbox_y: int | None = Field(default=None, ge=0)
    bbox_width: int | None = Field(default=None, ge=0)
    bbox_height: int | None = Field(default=None, ge=0)
    method: str | None = None


class Classification(BaseModel):
    model: str = Field(description="classifier name")
    model_version: str | None = None
    winner: str = Field(description="the winning class")
    score: float | None = Field(default=None, ge=0, le=1, description="the winner's score")
    label: str | None = Field(
        default=None, description="the class after thresholds (e.g. 'unclassified')"
    )
    scores: Scores | None = Field(default=None, description="every class's score, by class name")
    score_vector: Numbers | None = Field(
        default=None,
        description="every class's score by position, decoded through the taxonomy of model and "
        "model_version",
    )
    thresholds: Numbers | None = Field(
        default=None, description="every class's threshold by position, as score_vector"
    )


class Annotation(BaseModel):
    label: str
    annotator: str
    region: Literal["frame", "bbox"] = "frame"
    bbox_x: int | None = Field(default=None, ge=0)
    bbox_y: int | None = Field(default=None, ge=0)
    bbox_width: int | None = Field(default=None, ge=0)
    bbox_height: int | None = Field(default=None, ge=0)
    comment: str | None = None


class Embedding(BaseModel):
    model: str = Field(description="the model that computed the vector")
    model_version: str | None = None
    vector: Vector = Field(description="the embedding, one length for every record")


class Curation(BaseModel):
    action: Literal["tag", "comment", "flag"] = Field(description="what the curator did")
    value: str = Field(min_length=1, max_length=500, description="the tag, comment or flag")
    by: str = Field(min_length=1, max_length=200, description="who (the token's name)")
    reason: str | None = Field(default=None, max_length=500, description="why")


class IfcbFeatures(BaseModel):
    """Morphometric features: an open set of numeric columns (Area, Biovolume, …)."""


_BBOX = ("bbox_x", "bbox_y", "bbox_width", "bbox_height")


def _mask_stats(table: pa.Table, masks: list[bytes]) -> pa.Table:
    """Area and bounding box of each mask's non-zero pixels, where not given."""
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    todo = pc.is_null(table.column("area")).to_pylist()
    columns = {name: table.column(name).to_pylist() for name in ("area", *_BBOX)}
    for row, needed in enumerate(todo):
        if not needed:
            continue
        try:
            pixels = np.asarray(Image.open(io.BytesIO(masks[row])))
        except (UnidentifiedImageError, OSError, ValueError):
            continue  # not an image we can read: leave the statistics empty
        ys, xs = np.nonzero(pixels if pixels.ndim == 2 else pixels.any(axis=-1))
        columns["area"][row] = int(len(xs))
        if len(xs):
            box = (
                int(xs.min()),
                int(ys.min()),
                int(xs.max() - xs.min() + 1),
                int(ys.max() - ys.min() + 1),
            )
            for name, value in zip(_BBOX, box):
                if columns[name][row] is None:
                    columns[name][row] = value
    for name, values in columns.items():
        table = table.set_column(
            table.schema.get_field_index(name), name, pa.array(values, pa.int64())
        )
    return table


def _check_annotation(table: pa.Table) -> None:
    region = table.column("region")
    has_box = pc.and_(*[pc.is_valid(table.column(c)) for c in _BBOX[:2]])
    has_box = pc.and_(has_box, pc.and_(*[pc.is_valid(table.column(c)) for c in _BBOX[2:]]))
    boxed = pc.equal(region, "bbox")
    for mask, message in (
        (
            pc.and_(boxed, pc.invert(has_box)),
            "region 'bbox' needs bbox_x, bbox_y, bbox_width and bbox_height",
        ),
        (
            pc.and_(pc.invert(boxed), pc.or_(*[pc.is_valid(table.column(c)) for c in _BBOX[:2]])),
            "bbox columns need region 'bbox'",
        ),
    ):
        if pc.any(mask).as_py():
            row = pc.index(mask, True).as_py()
            raise InvalidInputError(f"annotation record {row + 1}: {message}")


def _check_score_vectors(table: pa.Table) -> None:
    """Numbers by position need the model version whose taxonomy names the positions."""
    for name in ("score_vector", "thresholds"):
        unnamed = pc.and_(
            pc.is_valid(table.column(name)), pc.is_null(table.column("model_version"))
        )
        if pc.any(unnamed).as_py():
            row = pc.index(unnamed, True).as_py() + 1
            raise InvalidInputError(
                f"classification record {row}: a {name} needs model_version (to find its class "
                "list)"
            )


BUILTIN_KINDS = (
    Kind(
        "geolocation",
        Geolocation,
        "where an image was taken; used by --bbox when the manifest has no position",
        indexed=("lat", "lon", "depth"),
    ),
    Kind(
        "sample_context",
        SampleContext,
        "the sample an image came from: cruise, station, cast, bottle",
    ),
    Kind(
        "segmentation",
        Segmentation,
        "a mask image per image, with its area and bounding box",
        indexed=("area",),
        blob=True,
        from_blobs=_mask_stats,
    ),
    Kind(
        "classification",
        Classification,
        "a classifier's output: winner class and score, and every class's score (by name, or by "
        "position)",
        indexed=("score",),
        aliases={"class_name_auto": "winner", "class_name": "label", "model_name": "model"},
        check=_check_score_vectors,
    ),
    Kind(
        "annotation",
        Annotation,
        "a human label, for the whole frame or a bounding box",
        check=_check_annotation,
    ),
    Kind(
        "embedding",
        Embedding,
        "a model's vector for an image (float16 or float32, one length per repository)",
    ),
    Kind(
        "curation",
        Curation,
        "a curator's tag, comment or flag on an image (the web pages record these)",
    ),
    Kind(
        "ifcb_features",
        IfcbFeatures,
        "IFCB morphometric features (an open set of numeric columns)",
        open_columns="numeric",
    ),
)
