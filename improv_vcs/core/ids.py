"""Typed, validated identifiers: object ids, ref names, image ids, column names.

Everything that may end up in a store key is validated here, at the boundary,
so that no name read from a user or a remote can escape its directory.
"""

from __future__ import annotations

import hashlib
import re
from typing import NewType

from .errors import InvalidInputError

ObjectId = NewType("ObjectId", str)
"""Lower-case hex SHA-256 of an object's stored bytes (64 characters)."""

OBJECT_ID_LENGTH = 64
_OBJECT_ID = re.compile(r"[0-9a-f]{64}\Z")
_HEX_PREFIX = re.compile(r"[0-9a-f]{4,64}\Z")
_REF_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
IMAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+@=-]{0,254}$"
_IMAGE_ID = re.compile(IMAGE_ID_PATTERN[:-1] + r"\Z")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
MAX_REF_LENGTH = 200


def hash_bytes(data: bytes | bytearray | memoryview) -> ObjectId:
    """The object id of ``data``."""
    return ObjectId(hashlib.sha256(data).hexdigest())


def object_id(value: str) -> ObjectId:
    """Validate a full object id."""
    if not isinstance(value, str) or not _OBJECT_ID.match(value):
        raise InvalidInputError(f"not an object id (64 lower-case hex digits): {value!r}")
    return ObjectId(value)


def is_object_id(value: str) -> bool:
    return bool(_OBJECT_ID.match(value))


def is_hex_prefix(value: str) -> bool:
    """True for 4 to 64 lower-case hex digits, an abbreviation of an object id."""
    return bool(_HEX_PREFIX.match(value))


def ref_name(value: str) -> str:
    """Validate a branch or tag name (``main``, ``survey/2024``, ``v1.0``).

    Components are separated by ``/``; each starts with a letter, digit or
    underscore and holds only letters, digits, ``.``, ``_`` and ``-``; no
    component ends in ``.lock`` and ``..`` never appears.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_REF_LENGTH:
        raise InvalidInputError(f"invalid ref name: {value!r}")
    for part in value.split("/"):
        if not _REF_COMPONENT.match(part) or part.endswith(".lock") or ".." in part:
            raise InvalidInputError(
                f"invalid ref name {value!r}: use letters, digits, '.', '_', '-' and '/'"
            )
    return value


def new_ref_name(value: str) -> str:
    """Validate the name of a branch or tag about to be created.

    On top of :func:`ref_name`, a new name must not be readable as another
    revision, so that no ref can shadow one (see :mod:`improv_vcs.storage.revparse`):

    * not ``HEAD``, in any case (``HEAD`` names the default branch; ``head``
      is refused too, as case-insensitive file systems would confuse them);
    * not 4 to 64 lower-case hex digits (``abcd``, a full commit id): that is
      read as a commit id or an abbreviation of one;
    * no ``~`` (``main~1`` is revision syntax), which :func:`ref_name`
      already refuses.

    Refs that already exist are read with :func:`ref_name` alone, so an older
    repository holding such a name still opens; only creating one is refused.
    Whether the name is free (a branch and a tag never share a name) is
    :meth:`improv_vcs.storage.refs.RefStore.check_new_name`'s job.
    """
    ref_name(value)
    if value.upper() == "HEAD":
        raise InvalidInputError(f"invalid ref name {value!r}: HEAD names the default branch")
    if is_hex_prefix(value):
        raise InvalidInputError(
            f"invalid ref name {value!r}: 4 to 64 hex digits would be read as a commit id"
        )
    return value


def image_id(value: str) -> str:
    """Validate one image id (safe as a file name, at most 255 characters)."""
    if not isinstance(value, str) or not _IMAGE_ID.match(value):
        raise InvalidInputError(
            f"invalid image id {value!r}: start with a letter or digit, then use letters, "
            "digits and . _ : + @ = - (at most 255 characters)"
        )
    return value


def column_name(value: str) -> str:
    """Validate a metadata column name (an SQL-friendly identifier)."""
    if not isinstance(value, str) or not _COLUMN.match(value):
        raise InvalidInputError(
            f"invalid column name {value!r}: use letters, digits and '_', not starting with a digit"
        )
    return value


_INSTRUMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")


def instrument_name(value: str) -> str:
    """Validate an instrument name (``IFCB107``, ``scope-a``)."""
    if not isinstance(value, str) or not _INSTRUMENT.match(value):
        raise InvalidInputError(
            f"invalid instrument name {value!r}: use letters, digits, '.', '_' and '-' (at most 64)"
        )
    return value


def label(value: str, what: str) -> str:
    """Validate a free-text name such as a provenance source or run id:
    1 to 200 printable characters, no surrounding spaces."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 200
        or not value.isprintable()
        or value != value.strip()
    ):
        raise InvalidInputError(f"invalid {what} {value!r}: use 1 to 200 printable characters")
    return value


MAX_PATH_LENGTH = 1024


def relative_path(value: str) -> str:
    """Validate the relative path an original file is restored under
    (``D2024/D20240101T120000_IFCB107.adc``): ``/``-separated names, none
    empty, ``.`` or ``..``, no backslash or control character, so it can
    never leave the directory it is written into."""
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_LENGTH:
        raise InvalidInputError(f"invalid file path {value!r}")
    for part in value.split("/"):
        if part in ("", ".", "..") or "\\" in part or len(part) > 255 or not part.isprintable():
            raise InvalidInputError(
                f"invalid file path {value!r}: give a relative path of printable names without '..'"
            )
    return value
