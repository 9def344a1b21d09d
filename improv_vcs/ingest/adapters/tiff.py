"""The ``tiff`` format: TIFF and OME-TIFF stacks (read with tifffile).

``split=planes`` (the default) stores every 2-D plane of every series as its
own image (a zlib-compressed single-page TIFF, any pixel type kept; RGB with
its samples last, planar files included), with its ``t, c, z, p`` indices
(``p`` = the series, a position or scene), channel name, plane shape, samples
per pixel, pixel type, physical sizes, time increment and the OME ``Plane``
fields (``delta_t``, ``exposure_time``, ``position_x/y/z``) as columns;
image ids are ``<stem>_p<p>_t<t>_c<c>_z<z>``. ``split=none`` stores each file
whole as one image with its shape and metadata as columns. Either way the
stack is a sample (``sample_id`` = its file stem), the file itself is kept
as an original file and its OME-XML as a metadata document.

Quantities keep the value as written, its unit and the value in µm or
seconds (see :mod:`.ome`). A TIFF without OME-XML takes its physical sizes
from ``XResolution``/``YResolution`` when ``ResolutionUnit`` is a length:
the pixel size ``1/XResolution`` in ``in`` or ``cm`` (``mm``, ``µm`` for
tifffile's extensions).

Timestamps: the ``time`` option, else the OME ``AcquisitionDate`` (no offset
means UTC), else the TIFF ``DateTime`` tag; a plane's is its stack's plus its
``DeltaT``.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ...core.errors import InvalidInputError
from ...core.times import parse_iso, parse_timezone, zone_info
from ...snapshot.sources import SourceFile
from .base import Adapter, IngestPlan, PlannedBatch
from .ome import (
    PLANE_QUANTITIES,
    SERIES_QUANTITIES,
    OmeImage,
    parse_ome,
    quantity_fields,
    quantity_values,
)
from .units import LENGTH_UM, Quantity

SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
INDEX_AXES = {"T": "t", "C": "c", "Z": "z"}
PLANE_AXES = ("Y", "X", "S")
_PLANE_LAYOUTS = ("YX", "YXS", "SYX")  # SYX: planar samples, stored samples last
_RESOLUTION_UNITS = {2: "in", 3: "cm", 4: "mm", 5: "µm"}  # TIFF ResolutionUnit (4, 5: tifffile)
_TIME = pa.timestamp("us", tz="UTC")
_COMMON = [
    *quantity_fields(SERIES_QUANTITIES),
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
        ("samples", pa.int64()),
        ("dtype", pa.string()),
    ]
    + _COMMON
    + quantity_fields(PLANE_QUANTITIES)
)
WHOLE_SCHEMA = pa.schema(
    _KEYS
    + [("axes", pa.string()), ("shape", pa.string()), ("dtype", pa.string())]
    + [(f"size_{a}", pa.int64()) for a in "tczp"]
    + [("channels", pa.string())]
    + _COMMON
)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:+@=-]")


def _utc(value: datetime, zone: tzinfo = timezone.utc) -> datetime:
    """``value`` in UTC; without an offset it is read in ``zone``."""
    return (value.replace(tzinfo=zone) if value.tzinfo is None else value).astimezone(timezone.utc)


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
    sizes: dict[str, Quantity]  # SERIES_QUANTITIES columns, from OME or resolution tags

    @property
    def leading(self) -> tuple[int, ...]:
        return self.shape[: self.planes_from]

    @property
    def planes_from(self) -> int:
        n = len(self.axes)
        while n and self.axes[n - 1] in PLANE_AXES:
            n -= 1
        return n

    @property
    def planar(self) -> bool:
        """Whether a plane's samples come before its rows (TIFF ``PlanarConfiguration=2``)."""
        return self.axes[self.planes_from :] == "SYX"

    def size(self, axis: str) -> int:
        return self.shape[self.axes.index(axis)] if axis in self.axes else 1


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
                ome = self._parse_ome(zone)
                self.series = [self._series(i, s, ome, axes) for i, s in enumerate(tif.series)]
                tag = tif.pages[0].tags.get("DateTime") if tif.pages else None
                tagged = _tag_time(tag.value if tag is not None else None, zone)
        except InvalidInputError:
            raise
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            raise InvalidInputError(f"cannot read {path} as TIFF: {exc}") from None
        acquired = next((s.ome.acquired for s in self.series if s.ome.acquired), None)
        self.time = time or acquired or tagged
        if self.time is None:
            raise InvalidInputError(
                f"cannot tell when {path} was acquired (no OME AcquisitionDate or TIFF DateTime); "
                "pass --option time=2024-05-01T12:00:00Z"
            )

    def _parse_ome(self, zone: tzinfo) -> list[OmeImage]:
        if not self.ome_xml:
            return []
        try:
            return parse_ome(self.ome_xml, zone)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{self.path}: {exc}") from None

    def _series(self, index: int, series: Any, ome: list[OmeImage], axes: str | None) -> Series:
        letters = series.axes
        if axes is not None:
            if len(axes) != len(letters):
                raise InvalidInputError(
                    f"{self.path}: axes={axes} has {len(axes)} letters, the file has "
                    f"{len(letters)} ({letters})"
                )
            letters = axes.upper()
        image = ome[index] if index < len(ome) else OmeImage()
        image.name = image.name or getattr(series, "name", None) or None
        found = Series(
            index,
            letters,
            tuple(series.shape),
            np.dtype(series.dtype).name,
            image,
            image.sizes if self.ome_xml else resolution_sizes(series.keyframe),
        )
        unknown = [a for a in letters[: found.planes_from] if a not in INDEX_AXES]
        if unknown or letters[found.planes_from :] not in _PLANE_LAYOUTS:
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
                delta_t = fields.get("delta_t")
                channels = s.ome.channels
                rows.append(
                    {
                        "image_id": f"{self.sample_id}_p{s.index}_t{index['t']}"
                        f"_c{index['c']}_z{index['z']}",
                        "timestamp": self.time
                        + timedelta(seconds=delta_t.canonical if delta_t else 0.0),
                        "sample_id": self.sample_id,
                        "media_type": "image/tiff",
                        "t": index["t"],
                        "c": index["c"],
                        "z": index["z"],
                        "p": s.index,
                        "channel": channels[index["c"]] if index["c"] < len(channels) else None,
                        "height": s.size("Y"),
                        "width": s.size("X"),
                        "samples": s.size("S"),
                        "dtype": s.dtype,
                        **self._common(s),
                        **quantity_values(PLANE_QUANTITIES, fields),
                    }
                )
        return rows

    def whole_row(self) -> dict[str, Any]:
        first = self.series[0]
        return {
            "image_id": self.sample_id,
            "timestamp": self.time,
            "sample_id": self.sample_id,
            "media_type": "image/tiff",
            "axes": first.axes,
            "shape": "x".join(str(n) for n in first.shape),
            "dtype": first.dtype,
            **{f"size_{axis.lower()}": first.size(axis) for axis in INDEX_AXES},
            "size_p": len(self.series),
            "channels": ",".join(c or "" for c in first.ome.channels) or None,
            **self._common(first),
        }

    def _common(self, s: Series) -> dict[str, Any]:
        return {
            **quantity_values(SERIES_QUANTITIES, s.sizes),
            "series_name": s.ome.name,
            "source_path": self.relative,
        }

    def planes(self) -> Iterator[bytes]:
        """Each plane as single-page TIFF bytes, in :meth:`plane_rows` order."""
        import tifffile

        with tifffile.TiffFile(self.path) as tif:
            for s, series in zip(self.series, tif.series):
                for plane in _series_planes(s, series):
                    yield encode_plane(np.moveaxis(plane, 0, -1) if s.planar else plane)

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


def _series_planes(s: Series, series: Any) -> Iterator[np.ndarray]:
    """The planes of a tifffile series in :meth:`Stack.plane_rows` order, as stored in the file."""
    count = math.prod(s.leading)
    shape = s.shape[s.planes_from :]
    pages = list(series.pages)
    if len(pages) == count and all(p is not None and p.shape == shape for p in pages):
        for page in pages:
            yield page.asarray()
    else:  # planes not one per page: read the series whole
        yield from series.asarray().reshape((count, *shape))


def resolution_sizes(page: Any) -> dict[str, Quantity]:
    """The physical pixel sizes a TIFF page's ``XResolution``/``YResolution`` give (pixels per
    ``ResolutionUnit``); none when the unit is not a length."""
    unit = _RESOLUTION_UNITS.get(int(page.tags.valueof("ResolutionUnit", 2)))
    sizes = {}
    for axis in "XY":
        resolution = page.tags.valueof(f"{axis}Resolution")
        if unit is None or resolution is None or not resolution[0] or not resolution[1]:
            continue
        size = Fraction(resolution[1], resolution[0])
        sizes[f"physical_size_{axis.lower()}"] = Quantity(
            float(size),
            unit,
            float(size * LENGTH_UM[unit]),  # type: ignore[operator]
        )
    return sizes


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
    """A plane as a zlib-compressed little-endian single-page TIFF; the same pixels always
    give the same bytes (no software or time tags, whatever the input's byte order)."""
    import tifffile

    out = io.BytesIO()
    photometric = "rgb" if plane.ndim == 3 and plane.shape[-1] in (3, 4) else "minisblack"
    tifffile.imwrite(
        out,
        np.ascontiguousarray(plane, dtype=plane.dtype.newbyteorder("<")),
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
