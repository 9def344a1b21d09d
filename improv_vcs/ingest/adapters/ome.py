"""OME-XML: what it says about each image, and the columns its quantities become.

A quantity (a physical size, a time increment, a plane's ``DeltaT``,
``ExposureTime`` or position) becomes three columns: ``NAME`` (the value as
written), ``NAME_unit`` (its unit; OME's default when the file names none)
and ``NAME_um`` or ``NAME_s`` (the value in µm or seconds; null for a length
in ``pixel`` or ``reference frame``). A unit outside OME's enumerations is
refused (see :mod:`.units`); an unreadable or non-finite value is left out,
like other unreadable OME values.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any

import pyarrow as pa

from ...core.errors import InvalidInputError
from ...core.times import parse_iso
from .units import SUFFIX, Quantity, quantity

# OME attribute → (column, kind, OME's default unit)
_PIXELS = {
    "PhysicalSizeX": ("physical_size_x", "length", "µm"),
    "PhysicalSizeY": ("physical_size_y", "length", "µm"),
    "PhysicalSizeZ": ("physical_size_z", "length", "µm"),
    "TimeIncrement": ("time_increment", "time", "s"),
}
_PLANE = {
    "DeltaT": ("delta_t", "time", "s"),
    "ExposureTime": ("exposure_time", "time", "s"),
    "PositionX": ("position_x", "length", "reference frame"),
    "PositionY": ("position_y", "length", "reference frame"),
    "PositionZ": ("position_z", "length", "reference frame"),
}
SERIES_QUANTITIES = {column: SUFFIX[kind] for column, kind, _ in _PIXELS.values()}
"""Quantities of a series (OME ``Pixels``), column → canonical suffix."""
PLANE_QUANTITIES = {column: SUFFIX[kind] for column, kind, _ in _PLANE.values()}
"""Quantities of a plane (OME ``Plane``), column → canonical suffix."""


@dataclass
class OmeImage:
    """What OME-XML says about one image (one series)."""

    name: str | None = None
    acquired: datetime | None = None
    sizes: dict[str, Quantity] = field(default_factory=dict)  # SERIES_QUANTITIES columns
    channels: list[str | None] = field(default_factory=list)
    planes: dict[tuple[int, int, int], dict[str, Quantity]] = field(
        default_factory=dict
    )  # (t, c, z) → PLANE_QUANTITIES columns


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
                image.sizes = _quantities(child, _PIXELS)
            elif tag == "Channel":
                image.channels.append(child.get("Name"))
            elif tag == "Plane":
                key = tuple(int(child.get(f"The{a}", "0")) for a in "TCZ")
                image.planes[key] = _quantities(child, _PLANE)  # type: ignore[index]
        images.append(image)
    return images


def _quantities(
    element: ElementTree.Element, attributes: dict[str, tuple[str, str, str]]
) -> dict[str, Quantity]:
    found = {}
    for attribute, (column, kind, default) in attributes.items():
        value = quantity(
            element.get(attribute), element.get(f"{attribute}Unit", default), kind, attribute
        )
        if value is not None:
            found[column] = value
    return found


def quantity_fields(quantities: dict[str, str]) -> list[tuple[str, pa.DataType]]:
    """The schema fields of ``quantities`` (column → canonical suffix)."""
    return [
        field
        for column, suffix in quantities.items()
        for field in (
            (column, pa.float64()),
            (f"{column}_unit", pa.string()),
            (f"{column}_{suffix}", pa.float64()),
        )
    ]


def quantity_values(quantities: dict[str, str], found: dict[str, Quantity]) -> dict[str, Any]:
    """The column values of ``found`` for ``quantities`` (nulls for those missing)."""
    values: dict[str, Any] = {}
    for column, suffix in quantities.items():
        q = found.get(column)
        values[column] = q.value if q else None
        values[f"{column}_unit"] = q.unit if q else None
        values[f"{column}_{suffix}"] = q.canonical if q else None
    return values


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _iso_or_none(text: str, zone: tzinfo) -> datetime | None:
    """An OME time (ISO 8601, read in ``zone`` without an offset); None when unreadable, like other
    OME values."""
    try:
        return parse_iso(text, zone)
    except ValueError:
        return None
