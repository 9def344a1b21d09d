"""Canonical JSON (docs/format.md): one encoding for every JSON whose bytes matter."""

from __future__ import annotations

import base64
import json
import math

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from improv_vcs.cite.citation import Pinned, _check, decode_identifier, encode_identifier
from improv_vcs.core import canonical

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(values)
def test_canonical_json_round_trips_and_is_one_encoding(value):
    text = canonical.dumps(value)
    assert json.loads(text) == value
    assert canonical.dumps(json.loads(text)) == text  # parsing and writing again changes nothing
    assert canonical.encode(value) == text.encode("utf-8")


@given(st.dictionaries(st.text(min_size=1), st.integers(), min_size=2, max_size=6))
def test_keys_are_sorted_and_nothing_separates_tokens(mapping):
    text = canonical.dumps(mapping)
    assert list(json.loads(text)) == sorted(mapping)
    assert (
        text
        == "{"
        + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in sorted(mapping.items()))
        + "}"
    )


def test_text_beyond_ascii_is_written_as_itself():
    assert canonical.encode({"operator": "Åsa"}) == '{"operator":"Åsa"}'.encode()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(bad):
    with pytest.raises(ValueError):
        canonical.dumps({"score": bad})


def test_an_identifier_written_with_escaped_text_still_decodes():
    pinned = Pinned(
        repository="r",
        commit="a" * 64,
        query={"where": [{"column": "operator", "op": "=", "value": "Åsa"}]},
        count=1,
        digest="b" * 64,
    )
    old_payload = json.dumps(
        pinned.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    ).encode()
    assert b"\\u00c5" in old_payload
    body = (
        base64.urlsafe_b64encode(zstandard.ZstdCompressor().compress(old_payload))
        .decode()
        .rstrip("=")
    )
    assert decode_identifier(f"improv:1:{body}.{_check(body)}") == pinned
    assert decode_identifier(encode_identifier(pinned)) == pinned
