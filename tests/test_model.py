"""The pure object model and the identifier validators.

Properties: every valid Commit / Tag / RepositoryConfig survives
``canonical_json`` → ``decode_*`` unchanged, and canonical bytes are stable
(``encode(decode(b)) == b``). Identifiers that end up in store keys are
validated strictly.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from improv_vcs.core.errors import IntegrityError, InvalidInputError, UnsupportedFormatError
from improv_vcs.core.ids import (
    IMAGE_ID_PATTERN,
    column_name,
    hash_bytes,
    image_id,
    instrument_name,
    is_hex_prefix,
    is_object_id,
    object_id,
    ref_name,
)
from improv_vcs.core.model import (
    Batch,
    Commit,
    IndexSegment,
    ProvenanceSegment,
    RepositoryConfig,
    Tag,
    canonical_json,
    decode_config,
    decode_object,
)
from improv_vcs.storage import check_key

# -- strategies ----------------------------------------------------------------

oids = st.binary(min_size=32, max_size=32).map(bytes.hex)
fixed_offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_datetimes = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=fixed_offsets
)
finite = st.floats(allow_nan=False, allow_infinity=False)
maybe_float = st.none() | finite
texts = st.text(max_size=40)
counts = st.integers(0, 2**63 - 1)

batches = st.builds(
    Batch,
    instrument=texts,
    manifest=oids,
    packs=st.lists(oids, max_size=3).map(tuple),
    rows=st.integers(1, 2**63 - 1),
    bytes=counts,
    time_min=aware_datetimes,
    time_max=aware_datetimes,
    image_id_min=texts,
    image_id_max=texts,
    lat_min=maybe_float,
    lat_max=maybe_float,
    lon_min=maybe_float,
    lon_max=maybe_float,
    depth_min=maybe_float,
    depth_max=maybe_float,
)
segments = st.builds(
    IndexSegment,
    id=oids,
    level=st.integers(0, 64),
    entries=st.integers(1, 2**40),
    rows=counts,
    time_min=aware_datetimes,
    time_max=aware_datetimes,
)
column_names = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
provenance_segments = st.integers(0, 3).flatmap(
    lambda n: st.builds(
        ProvenanceSegment,
        kind=column_names,
        id=oids,
        packs=st.lists(oids, max_size=2).map(tuple),
        rows=st.integers(1, 2**63 - 1),
        image_id_min=texts,
        image_id_max=texts,
        time_min=aware_datetimes,
        time_max=aware_datetimes,
        sources=st.lists(texts, min_size=n, max_size=n).map(tuple),
        runs=st.lists(texts, min_size=n, max_size=n).map(tuple),
        columns=st.lists(column_names, min_size=n, max_size=n).map(tuple),
        types=st.lists(texts, min_size=n, max_size=n).map(tuple),
        bound_columns=st.lists(column_names, min_size=n, max_size=n).map(tuple),
        bound_min=st.lists(finite, min_size=n, max_size=n).map(tuple),
        bound_max=st.lists(finite, min_size=n, max_size=n).map(tuple),
    )
)
commits = st.builds(
    Commit,
    parents=st.lists(oids, max_size=3).map(tuple),
    height=st.integers(1, 2**63 - 1),
    author=texts,
    message=st.text(max_size=200),
    time=aware_datetimes,
    batches=st.lists(batches, max_size=3).map(tuple),
    index=st.lists(segments, max_size=4).map(tuple),
    provenance=st.lists(provenance_segments, max_size=2).map(tuple),
    provenance_index=st.lists(segments, max_size=2).map(tuple),
)
tags = st.builds(
    Tag, name=texts, target=oids, tagger=texts, time=aware_datetimes, message=st.text(max_size=200)
)
configs = st.builds(
    RepositoryConfig,
    id=st.uuids().map(str),
    default_branch=st.sampled_from(["main", "master", "survey/2024", "v1.0"]),
    created=aware_datetimes,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
OID = hashlib.sha256(b"x").hexdigest()


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def _assert_canonical(data: bytes) -> None:
    """``data`` is strict JSON in canonical form: sorted keys, no whitespace, UTF-8."""
    parsed = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    again = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert again == data


def _batch(**changes) -> Batch:
    fields = dict(
        instrument="IFCB1",
        manifest=OID,
        packs=(OID,),
        rows=1,
        bytes=10,
        time_min=T0,
        time_max=T0,
        image_id_min="a",
        image_id_max="a",
    )
    fields.update(changes)
    return Batch(**fields)


def _commit_dict(**changes) -> dict:
    commit = Commit(height=1, author="a", message="m", time=T0, batches=(_batch(),))
    data = json.loads(canonical_json(commit))
    data.update(changes)
    return data


# -- round trips ---------------------------------------------------------------


@given(commits)
def test_commit_round_trip(commit):
    data = canonical_json(commit)
    decoded = decode_object(data)
    assert isinstance(decoded, Commit)
    assert decoded == commit
    assert canonical_json(decoded) == data
    assert decoded.time.utcoffset() == timedelta(0)
    assert all(b.time_min.utcoffset() == timedelta(0) for b in decoded.batches)
    _assert_canonical(data)


@given(tags)
def test_tag_round_trip(tag):
    data = canonical_json(tag)
    decoded = decode_object(data)
    assert isinstance(decoded, Tag)
    assert decoded == tag
    assert canonical_json(decoded) == data
    _assert_canonical(data)


@given(configs)
def test_config_round_trip(config):
    data = canonical_json(config)
    decoded = decode_config(data)
    assert decoded == config
    assert canonical_json(decoded) == data
    _assert_canonical(data)


@given(st.one_of(commits, tags))
def test_canonical_bytes_are_stable(obj):
    """encode(decode(b)) == b, so an object's id never depends on who re-encodes it."""
    data = canonical_json(obj)
    assert canonical_json(decode_object(data)) == data
    assert hash_bytes(canonical_json(decode_object(data))) == hash_bytes(data)


@given(aware_datetimes)
def test_timestamps_are_normalized_to_utc(when):
    commit = Commit(height=1, author="a", message="m", time=when)
    assert commit.time == when
    assert commit.time.utcoffset() == timedelta(0)
    assert canonical_json(commit) == canonical_json(
        Commit(height=1, author="a", message="m", time=when.astimezone(timezone.utc))
    )


def test_non_ascii_text_is_stored_as_utf8():
    commit = Commit(height=1, author="Zoë", message='échantillon 🌊\n"quoted"', time=T0)
    data = canonical_json(commit)
    assert "Zoë".encode() in data
    assert decode_object(data) == commit


def test_decode_tells_commit_from_tag():
    tag = Tag(name="v1", target=OID, tagger="t", time=T0, message="release")
    commit = Commit(height=1, author="a", message="m", time=T0)
    assert isinstance(decode_object(canonical_json(tag)), Tag)
    assert isinstance(decode_object(canonical_json(commit)), Commit)
    with pytest.raises(IntegrityError):
        decode_object(canonical_json(RepositoryConfig(id="x", created=T0)))
    with pytest.raises(IntegrityError):
        decode_config(canonical_json(commit))


# -- rejections ----------------------------------------------------------------


def test_naive_datetimes_are_rejected():
    naive = datetime(2024, 1, 1)
    with pytest.raises(ValidationError):
        Commit(height=1, author="a", message="m", time=naive)
    with pytest.raises(ValidationError):
        Tag(name="v", target=OID, tagger="t", time=naive, message="m")
    with pytest.raises(ValidationError):
        RepositoryConfig(id="x", created=naive)
    with pytest.raises(ValidationError):
        _batch(time_min=naive)
    with pytest.raises(ValidationError):
        IndexSegment(id=OID, level=0, entries=1, rows=1, time_min=T0, time_max=naive)


@pytest.mark.parametrize("field", ["time", "batches.0.time_min"])
def test_decode_rejects_naive_timestamps(field):
    data = _commit_dict()
    if field == "time":
        data["time"] = "2024-01-01T00:00:00"
    else:
        data["batches"][0]["time_min"] = "2024-01-01T00:00:00"
    with pytest.raises(IntegrityError):
        decode_object(json.dumps(data).encode())


def test_decode_config_rejects_naive_created():
    data = json.loads(canonical_json(RepositoryConfig(id="x", created=T0)))
    data["created"] = "2024-01-01T00:00:00"
    with pytest.raises(IntegrityError):
        decode_config(json.dumps(data).encode())


def test_out_of_range_timestamp_is_an_integrity_error():
    """A timestamp whose UTC conversion overflows must not escape as OverflowError."""
    data = _commit_dict(time="0001-01-01T00:00:00+05:00")
    with pytest.raises(IntegrityError):
        decode_object(json.dumps(data).encode())


BAD_OIDS = [
    "",
    "abc",
    OID[:-1],
    OID + "0",
    OID.upper(),
    "g" * 64,
    " " + OID[1:],
    OID[:-1] + "\n",
    "../" + OID[3:],
]


@pytest.mark.parametrize("bad", BAD_OIDS)
def test_bad_object_ids_are_rejected(bad):
    with pytest.raises(InvalidInputError):
        object_id(bad)
    assert not is_object_id(bad)
    with pytest.raises(ValidationError):
        Commit(parents=(bad,), height=2, author="a", message="m", time=T0)
    with pytest.raises(ValidationError):
        Tag(name="v", target=bad, tagger="t", time=T0, message="m")
    with pytest.raises(ValidationError):
        _batch(manifest=bad)
    with pytest.raises(ValidationError):
        _batch(packs=(OID, bad))
    with pytest.raises(IntegrityError):
        decode_object(json.dumps(_commit_dict(parents=[bad])).encode())


@given(st.text(max_size=70))
def test_object_id_accepts_exactly_64_lowercase_hex(value):
    ok = len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    assert is_object_id(value) == ok
    if ok:
        assert object_id(value) == value
    else:
        with pytest.raises(InvalidInputError):
            object_id(value)


def test_hex_prefix():
    assert is_hex_prefix("abcd")
    assert is_hex_prefix(OID)
    assert not is_hex_prefix("abc")
    assert not is_hex_prefix("ABCD")
    assert not is_hex_prefix(OID + "0")


def test_newer_formats_are_refused_as_unsupported_not_corrupt():
    with pytest.raises(UnsupportedFormatError, match="format 4"):
        decode_object(json.dumps(_commit_dict(format=4, tasks_index=[])).encode())
    config = json.loads(canonical_json(RepositoryConfig(id="x", created=T0)))
    with pytest.raises(UnsupportedFormatError, match="format 4"):
        decode_config(json.dumps({**config, "format": 4}).encode())
    assert decode_config(json.dumps({**config, "format": 1}).encode()).format == 1


def test_a_tasks_index_is_there_exactly_in_format_3_and_left_out_below():
    older = decode_object(json.dumps(_commit_dict()).encode())
    assert older.tasks_index is None and b"tasks_index" not in canonical_json(older)
    newer = decode_object(json.dumps(_commit_dict(format=3, tasks_index=[])).encode())
    assert newer.tasks_index == () and b'"tasks_index":[]' in canonical_json(newer)
    for wrong in (_commit_dict(format=3), _commit_dict(format=2, tasks_index=[])):
        with pytest.raises(IntegrityError, match="tasks index exactly when it is format 3"):
            decode_object(json.dumps(wrong).encode())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"kind":"blob"}',
        json.dumps(_commit_dict(format="2")).encode(),
        json.dumps(_commit_dict(height=0)).encode(),
        json.dumps(_commit_dict(surprise=1)).encode(),
        json.dumps({k: v for k, v in _commit_dict().items() if k != "author"}).encode(),
    ],
)
def test_decode_object_rejects_garbage(data):
    with pytest.raises(IntegrityError):
        decode_object(data)


@given(st.binary(max_size=200))
def test_decode_object_never_raises_anything_but_integrity_error(data):
    try:
        decode_object(data)
    except IntegrityError:
        pass


def test_batch_statistics_are_bounded():
    with pytest.raises(ValidationError):
        _batch(rows=0)
    with pytest.raises(ValidationError):
        _batch(bytes=-1)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_floats_never_reach_canonical_json(value):
    """Canonical bytes must be strict JSON (RFC 8259 has no NaN/Infinity) and
    must round-trip; a model holding NaN/inf should be refused up front."""
    try:
        batch = _batch(depth_max=value)
    except ValidationError:
        return
    commit = Commit(height=1, author="a", message="m", time=T0, batches=(batch,))
    data = canonical_json(commit)
    _assert_canonical(data)
    assert decode_object(data) == commit


def test_models_are_frozen():
    commit = Commit(height=1, author="a", message="m", time=T0)
    with pytest.raises(ValidationError):
        commit.message = "changed"  # type: ignore[misc]


# -- identifiers ---------------------------------------------------------------

GOOD_REFS = [
    "main",
    "survey/2024",
    "v1.0",
    "feature_x",
    "a-b",
    "_x",
    "release/v1.0/rc-1",
    "a" * 200,
]
BAD_REFS = [
    "",
    "..",
    ".",
    "a/../b",
    "a..b",
    "/x",
    "x/",
    "a//b",
    "x.lock",
    "a/x.lock",
    ".hidden",
    "a/.hidden",
    "-x",
    "has space",
    " main",
    "main\n",
    "a\\b",
    "a:b",
    "a~1",
    "é",
    "a" * 201,
]


@pytest.mark.parametrize("name", GOOD_REFS)
def test_good_ref_names(name):
    assert ref_name(name) == name
    check_key("refs/heads/" + name)


@pytest.mark.parametrize("name", BAD_REFS)
def test_bad_ref_names(name):
    with pytest.raises(InvalidInputError):
        ref_name(name)


@pytest.mark.parametrize("value", [None, 1, b"main"])
def test_ref_name_rejects_non_strings(value):
    with pytest.raises(InvalidInputError):
        ref_name(value)  # type: ignore[arg-type]


def _ref_is_safe(name: str) -> None:
    for part in name.split("/"):
        assert part not in ("", ".", "..")
        assert not part.startswith(".")
        assert ".." not in part
        assert not part.endswith(".lock")
    check_key("refs/heads/" + name)  # a valid store key, too


@given(st.text(alphabet="ab._-/~ \\:", max_size=16) | st.text(max_size=16))
def test_accepted_ref_names_are_safe(name):
    """Property: whatever ref_name accepts has no '..' or hidden component."""
    try:
        ref_name(name)
    except InvalidInputError:
        return
    _ref_is_safe(name)


@given(
    st.lists(
        st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,10}", fullmatch=True), min_size=1, max_size=4
    )
)
def test_ref_names_built_from_components(parts):
    name = "/".join(parts)
    ok = len(name) <= 200 and not any(p.endswith(".lock") or ".." in p for p in parts)
    if ok:
        assert ref_name(name) == name
        _ref_is_safe(name)
    else:
        with pytest.raises(InvalidInputError):
            ref_name(name)


GOOD_IMAGE_IDS = ["a", "IFCB107_D20240501T120000_00001", "x.png", "s:1+2@3=4-5", "0", "a" * 255]
BAD_IMAGE_IDS = [
    "",
    ".x",
    "-x",
    "_x",
    "a/b",
    "../x",
    "a b",
    "a\\b",
    "a\x00",
    "é",
    "a" * 256,
    "abc\n",
    "\nabc",
]


@pytest.mark.parametrize("value", GOOD_IMAGE_IDS)
def test_good_image_ids(value):
    assert image_id(value) == value


@pytest.mark.parametrize("value", BAD_IMAGE_IDS)
def test_bad_image_ids(value):
    with pytest.raises(InvalidInputError):
        image_id(value)


@given(st.text(max_size=20) | st.from_regex(IMAGE_ID_PATTERN))
def test_accepted_image_ids_are_safe_file_names(value):
    try:
        image_id(value)
    except InvalidInputError:
        return
    assert "/" not in value and "\\" not in value
    assert not value.startswith(".")
    assert value.isprintable() and value.isascii()
    assert not any(c.isspace() for c in value)
    assert 0 < len(value) <= 255


GOOD_INSTRUMENTS = ["IFCB107", "scope-a", "_x", "a.b", "0", "a" * 64]
BAD_INSTRUMENTS = ["", ".a", "-a", "a/b", "a b", "a\n", "é", "a" * 65]


@pytest.mark.parametrize("value", GOOD_INSTRUMENTS)
def test_good_instrument_names(value):
    assert instrument_name(value) == value


@pytest.mark.parametrize("value", BAD_INSTRUMENTS)
def test_bad_instrument_names(value):
    with pytest.raises(InvalidInputError):
        instrument_name(value)


GOOD_COLUMNS = ["lat", "_x", "a1", "roi_count", "A", "a" * 63]
BAD_COLUMNS = ["", "1a", "a-b", "a b", "a.b", "é", "a\n", "a" * 64, '"x"', "x;drop"]


@pytest.mark.parametrize("value", GOOD_COLUMNS)
def test_good_column_names(value):
    assert column_name(value) == value


@pytest.mark.parametrize("value", BAD_COLUMNS)
def test_bad_column_names(value):
    with pytest.raises(InvalidInputError):
        column_name(value)


@given(st.text(max_size=70))
def test_column_name_property(value):
    ok = (
        0 < len(value) <= 63
        and all(c.isascii() and (c.isalnum() or c == "_") for c in value)
        and not value[0].isdigit()
    )
    if ok:
        assert column_name(value) == value
    else:
        with pytest.raises(InvalidInputError):
            column_name(value)
