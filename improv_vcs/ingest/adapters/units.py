"""Lengths and times in OME units, converted to µm and seconds.

Every unit of OME's ``UnitsLength`` and ``UnitsTime`` enumerations is known
(spelled as OME spells them; ``µ`` may be the micro sign or the Greek mu); a
unit outside them is refused. ``pixel`` and ``reference frame`` are OME
lengths without a fixed size: their values have no canonical form.
Conversions go through exact fractions of the decimal text: the canonical
float is the one nearest the exact product (``854.06 nm`` is ``0.85406`` µm,
where multiplying floats gives ``0.8540599999999999``).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

from ...core.errors import InvalidInputError

_PREFIXES = {
    "Y": Fraction(10**24),
    "Z": Fraction(10**21),
    "E": Fraction(10**18),
    "P": Fraction(10**15),
    "T": Fraction(10**12),
    "G": Fraction(10**9),
    "M": Fraction(10**6),
    "k": Fraction(10**3),
    "h": Fraction(10**2),
    "da": Fraction(10),
    "": Fraction(1),
    "d": Fraction(1, 10),
    "c": Fraction(1, 10**2),
    "m": Fraction(1, 10**3),
    "µ": Fraction(1, 10**6),
    "n": Fraction(1, 10**9),
    "p": Fraction(1, 10**12),
    "f": Fraction(1, 10**15),
    "a": Fraction(1, 10**18),
    "z": Fraction(1, 10**21),
    "y": Fraction(1, 10**24),
}
_INCH = Fraction(25400)  # µm
_AU = Fraction(149_597_870_700 * 10**6)  # µm
LENGTH_UM: dict[str, Fraction | None] = {
    **{f"{prefix}m": size * 10**6 for prefix, size in _PREFIXES.items()},
    "Å": Fraction(1, 10**4),
    "thou": _INCH / 1000,
    "li": _INCH / 12,
    "in": _INCH,
    "ft": _INCH * 12,
    "yd": _INCH * 36,
    "mi": _INCH * 63360,
    "ua": _AU,
    "ly": Fraction(9_460_730_472_580_800 * 10**6),
    "pc": _AU * Fraction(648000 / math.pi),
    "pt": _INCH / 72,
    "pixel": None,
    "reference frame": None,
}
"""µm per OME length unit; None for the units with no fixed size."""
TIME_S: dict[str, Fraction | None] = {
    **{f"{prefix}s": size for prefix, size in _PREFIXES.items()},
    "min": Fraction(60),
    "h": Fraction(3600),
    "d": Fraction(86400),
}
"""Seconds per OME time unit."""


@dataclass(frozen=True)
class Quantity:
    """A value as written, its unit (OME's spelling) and the value in µm or s (None when the
    unit has no fixed size)."""

    value: float
    unit: str
    canonical: float | None


def _spelling(table: dict[str, Fraction | None]) -> dict[str, str]:
    return {unicodedata.normalize("NFKC", unit): unit for unit in table}


_TABLES = {"length": LENGTH_UM, "time": TIME_S}
_SPELLINGS = {kind: _spelling(table) for kind, table in _TABLES.items()}
_EXAMPLES = {"length": "e.g. m, mm, µm, nm, Å, in", "time": "e.g. s, ms, µs, ns, min, h"}
SUFFIX = {"length": "um", "time": "s"}
"""The suffix of a canonical column, by kind: ``physical_size_z_um``, ``delta_t_s``."""


def quantity(text: str | None, unit: str, kind: str, attribute: str) -> Quantity | None:
    """The ``kind`` (length or time) ``text`` in ``unit``; None when there is no readable,
    finite value. ``attribute`` names the value in errors."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    known = _SPELLINGS[kind].get(unicodedata.normalize("NFKC", unit))
    if known is None:
        raise InvalidInputError(
            f"{attribute} is in {unit!r}, which is not an OME {kind} unit ({_EXAMPLES[kind]})"
        )
    size = _TABLES[kind][known]
    if size is None:
        return Quantity(value, known, None)
    try:
        exact = Fraction(text.strip())
    except ValueError:
        exact = Fraction(value)
    return Quantity(value, known, float(exact * size))
