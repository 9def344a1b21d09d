"""The ``tiff`` format: TIFF and OME-TIFF stacks (read with tifffile).

``split=planes`` (the default) stores every 2-D plane of every series as its
own image (a zlib-compressed single-page TIFF, any pixel type kept), with its
``t, c, z, p`` indices (``p`` = the series, a position or scene), channel
name, plane shape, pixel type, physical sizes and the OME ``Plane`` fields
(``delta_t``, ``exposure_time``, ``position_x/y/z``) as columns; image ids
are ``<stem>_p<p>_t<t>_c<c>_z<z>``. ``split=none`` stores each file whole as
one image with its shape and metadata as columns. Either way the stack is a
sample (``sample_id`` = its file stem), the file itself is kept as an
original file and its OME-XML as a metadata document.

Timestamps: the ``time`` option, else the OME ``AcquisitionDate`` (no offset
means UTC), else the TIFF ``DateTime`` tag; a plane's is its stack's plus its
``DeltaT``.
"""

from __future__ import annotations

import io
import math
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ...core.errors import InvalidInputError
from ...core.times import parse_iso, parse_timezone, zone_info
from ...snapshot.sources import SourceFile
from .base import Adapter, IngestPlan, PlannedBatch

SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
INDEX_AXES = {"T": "t", "C": "c", "Z": "z"}
PLANE_AXES = ("Y", "X", "S")
_PLANE_FIELDS = {
    "DeltaT": "delta_t",
    "ExposureTime": "exposure_time",
    "PositionX": "position_x",
    "PositionY": "position_y",
    "PositionZ": "position_z",
}
_SECONDS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0, "h": 3600.0}
_TIME = pa.timestamp("us", tz="UTC")
_COMMON = [
    ("physical_size_x", pa.float64()),
    ("physical_size_y", pa.float64()),
    ("physical_size_z", pa.float64()),
    ("series_name", pa.string()),
    ("source_path", pa.string()),
]
_KEYS = [
    ("image_id", pa.string()),
    ("timestamp", _TIME),
    ("sample_id", pa.string()),
    ("media_type", pa.string()),
]
PLANE_SCHEMA = pa.schema(
    _KEYS
    + [(n, pa.int64()) for n in ("t", "c", "z", "p")]
    + [
        ("channel", pa.string()),
        ("height", pa.int64()),
        ("width", pa.int64()),
        ("dtype", pa.string()),
    ]
    + _COMMON
    + [(column, pa.float64()) for column in _PLANE_FIELDS.values()]
)
WHOLE_SCHEMA = pa.schema(
    _KEYS
    + [("axes", pa.string()), ("shape", pa.string()), ("dtype", pa.string())]
    + [(f"size_{a}", pa.int64()) for a in "tczp"]
    + [("channels", pa.string())]
    + _COMMON
)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:+@=-]")


@dataclass
class OmeImage:
    """What OME-XML says about one image (one series)."""

    name: str | None = None
    acquired: datetime | None = None
    physical: dict[str, float] = field(default_factory=dict)  # x, y, z
    channels: list[str | None] = field(default_factory=list)
    planes: dict[tuple[int, int, int], dict[str, float]] = field(
        default_factory=dict
    )  # (t, c, z) → fields


def parse_ome(xml: str, zone: tzinfo = timezone.utc) -> list[OmeImage]:
    """The images of an OME-XML document, in document order (an
    ``AcquisitionDate`` without an offset is read in ``zone``)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise InvalidInputError(f"the OME-XML is not well-formed: {exc}") from None
    images = []
    for element in root:
        if _local(element.tag) != "Image":
            continue
        image = OmeImage(name=element.get("Name"))
        for child in element.iter():
            tag = _local(child.tag)
            if tag == "AcquisitionDate" and child.text:
                image.acquired = _iso_or_none(child.text, zone)
            elif tag == "Pixels":
                for axis in "XYZ":
                    value = _number(child.get(f"PhysicalSize{axis}"))
                    if value is not None:
                        image.physical[axis.lower()] = value
            elif tag == "Channel":
                image.channels.append(child.get("Name"))
            elif tag == "Plane":
                key = tuple(int(child.get(f"The{a}", "0")) for a in "TCZ")
                values = {}
                for attribute, column in _PLANE_FIELDS.items():
                    value = _number(child.get(attribute))
                    if value is not None and attribute == "DeltaT":
                        value *= _SECONDS.get(child.get("DeltaTUnit", "s"), math.nan)
                    if value is not None and math.isfinite(value):
                        values[column] = value
                image.planes[key] = values  # type: ignore[index]
        images.append(image)
    return images


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _utc(value: datetime, zone: tzinfo = timezone.utc) -> datetime:
    """``value`` in UTC; without an offset it is read in ``zone``."""
    return (value.replace(tzinfo=zone) if value.tzinfo is None else value).astimezone(timezone.utc)


def _iso_or_none(text: str, zone: tzinfo) -> datetime | None:
    """An OME time (ISO 8601, read in ``zone`` without an offset); None when unreadable, like other
    OME values."""
    try:
        return parse_iso(text, zone)
    except ValueError:
        return None


def _time_option(text: str, zone: tzinfo) -> datetime:
    """The ``time`` option: ISO 8601, read in ``zone`` without an offset."""
    try:
        return parse_iso(text, zone)
    except ValueError:
        raise InvalidInputError(f"time: cannot read {text!r} as an ISO 8601 time") from None


def stem(path: Path) -> str:
    """The file name without its TIFF suffix, made safe as an id."""
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    safe = _ID_UNSAFE.sub("_", name).lstrip("._:+@=-")
    if not safe:
        raise InvalidInputError(f"cannot make a sample id from the file name {path.name!r}")
    return safe


def find_stacks(source: Path) -> tuple[Path, list[Path]]:
    """The root relative paths start from, and every TIFF file under ``source``."""
    if source.is_file():
        return source.parent, [source]
    if not source.is_dir():
        raise InvalidInputError(f"{source} is neither a TIFF file nor a directory")
    found = []
    for directory, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(directory) / n
            for n in sorted(filenames)
            if n.lower().endswith(SUFFIXES) and not n.startswith(".")
        ]
    if not found:
        raise InvalidInputError(f"no .tif/.tiff files under {source}")
    return source, found


@dataclass
class Series:
    """One series (position) of a stack: its axes and where its planes are."""

    index: int
    axes: str  # leading (index) axes then plane axes, tifffile letters
    shape: tuple[int, ...]
    dtype: str
    ome: OmeImage

    @property
    def leading(self) -> tuple[int, ...]:
        return self.shape[: self.planes_from]

    @property
    def planes_from(self) -> int:
        n = len(self.axes)
        while n and self.axes[n - 1] in PLANE_AXES:
            n -= 1
        return n


class Stack:
    """One TIFF file, opened for reading."""

    def __init__(
        self,
        path: Path,
        root: Path,
        axes: str | None,
        time: datetime | None,
        zone: tzinfo = timezone.utc,
    ):
        import tifffile

        self.path = path
        self.relative = path.relative_to(root).as_posix()
        self.sample_id = stem(path)
        try:
            with tifffile.TiffFile(path) as tif:
                self.ome_xml = tif.ome_metadata if tif.is_ome else None
                ome = parse_ome(self.ome_xml, zone) if self.ome_xml else []
                self.series = [self._series(i, s, ome, axes) for i, s in enumerate(tif.series)]
                tag = tif.pages[0].tags.get("DateTime") if tif.pages else None
                tagged = _tag_time(tag.value if tag is not None else None, zone)
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            raise InvalidInputError(f"cannot read {path} as TIFF: {exc}") from None
        acquired = next((s.ome.acquired for s in self.series if s.ome.acquired), None)
        self.time = time or acquired or tagged
        if self.time is None:
            raise InvalidInputError(
                f"cannot tell when {path} was acquired (no OME AcquisitionDate or TIFF DateTime); "
                "pass --option time=2024-05-01T12:00:00Z"
            )

    def _series(self, index: int, series: Any, ome: list[OmeImage], axes: str | None) -> Series:
        letters = series.axes
        if axes is not None:
            if len(axes) != len(letters):
                raise InvalidInputError(
                    f"{self.path}: axes={axes} has {len(axes)} letters, the file has "
                    f"{len(letters)} ({letters})"
                )
            letters = axes.upper()
        found = Series(
            index,
            letters,
            tuple(series.shape),
            str(series.dtype),
            ome[index] if index < len(ome) else OmeImage(),
        )
        found.ome.name = found.ome.name or getattr(series, "name", None) or None
        unknown = [a for a in letters[: found.planes_from] if a not in INDEX_AXES]
        if unknown or not {"Y", "X"} <= set(letters[found.planes_from :]):
            raise InvalidInputError(
                f"{self.path}: cannot map axes {letters!r} to t, c, z planes; "
                "name them with --option axes=... (letters T, C, Z, then Y, X and S for samples)"
            )
        return found

    def plane_rows(self) -> list[dict[str, Any]]:
        rows = []
        for s in self.series:
            for position in np.ndindex(*s.leading):
                index = dict.fromkeys("tcz", 0) | {
                    INDEX_AXES[a]: int(i) for a, i in zip(s.axes, position)
                }
                fields = s.ome.planes.get((index["t"], index["c"], index["z"]), {})
                channels = s.ome.channels
                rows.append(
                    {
                        "image_id": f"{self.sample_id}_p{s.index}_t{index['t']}"
                        f"_c{index['c']}_z{index['z']}",
                        "timestamp": self.time + timedelta(seconds=fields.get("delta_t", 0.0)),
                        "sample_id": self.sample_id,
                        "media_type": "image/tiff",
                        "t": index["t"],
                        "c": index["c"],
                        "z": index["z"],
                        "p": s.index,
                        "channel": channels[index["c"]] if index["c"] < len(channels) else None,
                        "height": s.shape[s.axes.index("Y")],
                        "width": s.shape[s.axes.index("X")],
                        "dtype": s.dtype,
                        **self._common(s),
                        **{column: fields.get(column) for column in _PLANE_FIELDS.values()},
                    }
                )
        return rows

    def whole_row(self) -> dict[str, Any]:
        first = self.series[0]
        sizes = {f"size_{letter.lower()}": 1 for letter in "TCZ"}
        for axis, size in zip(first.axes, first.shape):
            if axis in INDEX_AXES:
                sizes[f"size_{axis.lower()}"] = size
        return {
            "image_id": self.sample_id,
            "timestamp": self.time,
            "sample_id": self.sample_id,
            "media_type": "image/tiff",
            "axes": first.axes,
            "shape": "x".join(str(n) for n in first.shape),
            "dtype": first.dtype,
            **sizes,
            "size_p": len(self.series),
            "channels": ",".join(c or "" for c in first.ome.channels) or None,
            **self._common(first),
        }

    def _common(self, s: Series) -> dict[str, Any]:
        return {
            "physical_size_x": s.ome.physical.get("x"),
            "physical_size_y": s.ome.physical.get("y"),
            "physical_size_z": s.ome.physical.get("z"),
            "series_name": s.ome.name,
            "source_path": self.relative,
        }

    def planes(self) -> Iterator[bytes]:
        """Each plane as single-page TIFF bytes, in :meth:`plane_rows` order."""
        import tifffile

        with tifffile.TiffFile(self.path) as tif:
            for s, series in zip(self.series, tif.series):
                count = math.prod(s.leading)
                pages = list(series.pages)
                if len(pages) == count and all(
                    p is not None and p.shape == s.shape[s.planes_from :] for p in pages
                ):
                    for page in pages:
                        yield encode_plane(page.asarray())
                else:  # planes not one per page: read the series whole
                    data = series.asarray().reshape((count, *s.shape[s.planes_from :]))
                    for plane in data:
                        yield encode_plane(plane)

    def sources(self, keep_raw: bool) -> list[SourceFile]:
        files = []
        if keep_raw:
            files.append(
                SourceFile(
                    self.sample_id,
                    self.relative,
                    self.time,
                    media_type="image/tiff",
                    location=self.path,
                )
            )
        if self.ome_xml:
            files.append(
                SourceFile(
                    self.sample_id,
                    _without_suffix(self.relative) + ".ome.xml",
                    self.time,
                    role="metadata",
                    media_type="application/xml",
                    data=self.ome_xml.encode("utf-8"),
                )
            )
        return files


def _without_suffix(path: str) -> str:
    for suffix in SUFFIXES:
        if path.lower().endswith(suffix):
            return path[: -len(suffix)]
    return path


def _tag_time(value: Any, zone: tzinfo = timezone.utc) -> datetime | None:
    """The time of a TIFF ``DateTime`` tag value (``YYYY:MM:DD HH:MM:SS``, read in ``zone``, UTC by
    default)."""
    if value is None:
        return None
    try:
        return _utc(datetime.strptime(str(value).strip(), "%Y:%m:%d %H:%M:%S"), zone)
    except ValueError:
        return None


def encode_plane(plane: np.ndarray) -> bytes:
    """A plane as a zlib-compressed single-page TIFF; the same pixels always
    give the same bytes (no software or time tags)."""
    import tifffile

    out = io.BytesIO()
    photometric = "rgb" if plane.ndim == 3 and plane.shape[-1] in (3, 4) else "minisblack"
    tifffile.imwrite(
        out,
        np.ascontiguousarray(plane),
        compression="zlib",
        software=None,
        metadata=None,
        photometric=photometric,
    )
    return out.getvalue()


class TiffAdapter(Adapter):
    name = "tiff"
    description = (
        "TIFF / OME-TIFF stacks: each 2-D plane an image (split=planes) or each file one "
        "(split=none)"
    )
    options = {
        "split": "planes (default): one image per 2-D plane; none: one image per file",
        "axes": "the file's axis letters when tifffile cannot tell them, e.g. ZYX for a plain "
        "multi-page z-stack",
        "time": "acquisition time (ISO 8601) for files without one",
        "timezone": "the zone of times without a UTC offset (time=, OME AcquisitionDate, TIFF "
        "DateTime): "
        "an IANA name (Europe/Stockholm) or ±HH:MM; default UTC",
    }

    def plan(
        self,
        source: Path,
        instrument: str | None,
        options: Mapping[str, str],
        keep_raw: bool = True,
    ) -> IngestPlan:
        self.check_options(options)
        if instrument is None:
            raise InvalidInputError("--format tiff needs --instrument")
        split = options.get("split", "planes")
        if split not in ("planes", "none"):
            raise InvalidInputError(f"split must be planes or none, not {split!r}")
        zone = (
            zone_info(parse_timezone(options["timezone"]))
            if "timezone" in options
            else timezone.utc
        )
        time = _time_option(options["time"], zone) if "time" in options else None
        root, paths = find_stacks(source)
        stacks = [Stack(p, root, options.get("axes"), time, zone) for p in paths]
        seen: dict[str, Path] = {}
        for stack in stacks:
            if stack.sample_id in seen:
                raise InvalidInputError(
                    f"{seen[stack.sample_id]} and {stack.path} would both be sample "
                    f"{stack.sample_id!r}"
                )
            seen[stack.sample_id] = stack.path
        plan = IngestPlan(sources={instrument: [f for s in stacks for f in s.sources(keep_raw)]})
        if split == "none":
            metadata = pa.Table.from_pylist([s.whole_row() for s in stacks], schema=WHOLE_SCHEMA)
            plan.batches.append(
                PlannedBatch(instrument, metadata, paths=[str(s.path) for s in stacks])
            )
        else:
            metadata = pa.Table.from_pylist(
                [row for s in stacks for row in s.plane_rows()], schema=PLANE_SCHEMA
            )
            plan.batches.append(
                PlannedBatch(
                    instrument, metadata, blobs=lambda: (b for s in stacks for b in s.planes())
                )
            )
        if not plan.sources[instrument]:
            del plan.sources[instrument]
        return plan
