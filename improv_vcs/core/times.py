"""Times: how text becomes a UTC instant, and where "now" comes from.

Every time the package reads from text (command-line options, OME-XML,
instrument metadata) goes through :func:`parse_iso`, which reads the same
ISO 8601 forms on every supported Python (3.10's ``fromisoformat`` accepts
neither a ``Z`` suffix nor fractions other than 3 or 6 digits; OME writes 7).
Every time the package records (commits, tags, sample versions) comes from a
:data:`Clock`, which tests replace instead of sleeping.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone, tzinfo

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware."""

_FRACTION = re.compile(r"([T ]\d{2}:\d{2}:\d{2})[.,](\d+)")


def utc_now() -> datetime:
    """The system clock, in UTC: the default :data:`Clock`."""
    return datetime.now(timezone.utc)


def parse_iso(text: str, zone: tzinfo = timezone.utc) -> datetime:
    """An ISO 8601 date or date-time in UTC; one without an offset is read in
    ``zone``. A ``Z`` suffix means UTC; fractions of a second beyond
    microseconds are cut. :class:`ValueError` if ``text`` is not one."""
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    value = _FRACTION.sub(lambda m: f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}", value, count=1)
    parsed = datetime.fromisoformat(value)
    return (parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed).astimezone(timezone.utc)


__all__ = ["Clock", "parse_iso", "utc_now"]
