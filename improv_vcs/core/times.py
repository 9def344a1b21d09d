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
from datetime import datetime, timedelta, timezone, tzinfo

from .errors import InvalidInputError

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
    return (parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed).astimezone(
        timezone.utc
    )


__all__ = ["Clock", "parse_iso", "utc_now"]


def parse_time(text: str, what: str = "time") -> datetime:
    """ISO 8601; a date or a time without an offset is taken as UTC."""
    try:
        return parse_iso(text)
    except ValueError:
        raise InvalidInputError(f"{what}: cannot read {text!r} as an ISO 8601 time") from None


def parse_timezone(text: str) -> str:
    """The zone naive metadata times are read in: an IANA name known to the
    standard library's :mod:`zoneinfo` (``Europe/Stockholm``, ``UTC``) or an
    offset ``±HH:MM``; returned as Arrow spells it. Anything else is refused
    in one line."""
    text = text.strip()
    offset = re.fullmatch(r"([+-])(\d\d):(\d\d)", text)
    if offset:
        if int(offset[2]) > 23 or int(offset[3]) > 59:
            raise InvalidInputError(
                f"--timezone {text!r}: an offset is ±HH:MM with HH up to 23 and MM up to 59"
            )
        return text
    try:
        zone_info(text)
    except InvalidInputError:
        raise InvalidInputError(
            f"--timezone {text!r}: unknown time zone; give an IANA name such as Europe/Stockholm, "
            "or an offset such as +02:00"
        ) from None
    return text


def zone_info(zone: str) -> tzinfo:
    """The :class:`~datetime.tzinfo` of a zone :func:`parse_timezone` accepts."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    offset = re.fullmatch(r"([+-])(\d\d):(\d\d)", zone)
    if offset:
        minutes = (int(offset[2]) * 60 + int(offset[3])) * (-1 if offset[1] == "-" else 1)
        return timezone(timedelta(minutes=minutes))
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInputError(f"unknown time zone {zone!r}") from None
