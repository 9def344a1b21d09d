"""One reading of ISO 8601 times everywhere, whatever Python's own accepts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from improv_vcs.core.times import parse_iso

UTC = timezone.utc
_instant = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)
_offset = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def _cut(value: datetime, digits: int) -> datetime:
    """``value`` with only the first ``digits`` digits of its fraction."""
    return value.replace(microsecond=int(f"{value.microsecond:06d}"[:digits].ljust(6, "0")))


def _written(value: datetime, digits: int, suffix: str) -> str:
    """``value`` (in its own zone) as ISO 8601 with ``digits`` of fraction and ``suffix`` for its
    offset."""
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{value.microsecond:06d}{'0' * 3}"[:digits]
    return text + suffix


@given(instant=_instant, zone=_offset, digits=st.integers(0, 9))
def test_an_offset_time_reads_as_its_instant_to_the_microsecond(instant, zone, digits):
    local = instant.astimezone(zone)
    offset = local.strftime("%z")
    text = _written(local, digits, f"{offset[:3]}:{offset[3:]}")
    assert parse_iso(text) == _cut(instant, digits)


@given(instant=_instant, digits=st.sampled_from([0, 1, 3, 6, 7]), z=st.sampled_from(["Z", "z"]))
def test_a_z_suffix_is_utc_and_ome_ticks_are_cut_to_microseconds(instant, digits, z):
    parsed = parse_iso(_written(instant, digits, z))
    assert parsed.tzinfo == UTC and parsed == _cut(instant, digits)


def test_a_time_without_an_offset_is_read_in_the_given_zone():
    eastern = timezone(timedelta(hours=-5))
    assert parse_iso("2024-05-01T12:00:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_iso("2024-05-01T12:00:00", eastern) == datetime(2024, 5, 1, 17, tzinfo=UTC)
    assert parse_iso(" 2024-05-01 ") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_iso("2019-03-04T10:11:12.1234567Z") == datetime(
        2019, 3, 4, 10, 11, 12, 123456, tzinfo=UTC
    )
    assert parse_iso("2019-03-04 10:11:12,5") == datetime(
        2019, 3, 4, 10, 11, 12, 500000, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "text", ["", "Z", "yesterday", "2024-13-01", "2024-05-01T25:00:00", "2024-05-01T12:00:00+25:00"]
)
def test_what_is_not_an_iso_time_is_a_value_error(text):
    with pytest.raises(ValueError):
        parse_iso(text)
