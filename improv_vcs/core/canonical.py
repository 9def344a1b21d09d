"""Canonical JSON: the one way the package writes JSON whose bytes matter
(hashed objects, record ids, citation identifiers, stored metadata).

Rules (``docs/format.md``, "Canonical JSON"): UTF-8; object keys sorted;
no whitespace between tokens; characters beyond ASCII written as
themselves, not escaped; NaN and infinities refused. This is RFC 8785
(JCS) but for two corners no stored value meets: keys are sorted by code
point (JCS: by UTF-16 unit, which differs only beyond the Basic
Multilingual Plane) and floats are written as Python's shortest round-trip
form (JCS: ECMAScript's, which differs only in exponent notation).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``value`` as canonical JSON text; ``default`` converts what JSON
    cannot hold (as :func:`json.dumps`)."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=default,
    )


def encode(value: Any) -> bytes:
    """``value`` as canonical JSON bytes (UTF-8)."""
    return dumps(value).encode()
