"""Media types of blobs, from their first bytes, and decoding images."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

Decode = Callable[[bytes], Any]

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"II+\x00", "image/tiff"),
    (b"MM\x00+", "image/tiff"),
    (b"BM", "image/bmp"),
    (b"GIF8", "image/gif"),
)


def media_type(data: bytes) -> str:
    """The media type the bytes announce; ``application/octet-stream`` if unknown."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    return "application/octet-stream"


def decode_array(data: bytes) -> np.ndarray:
    """Image bytes as a NumPy array (height × width [× channels])."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def decoder(decode: str | Decode) -> Decode | None:
    """The function for ``decode``: ``"bytes"`` (None: keep the bytes),
    ``"array"`` (:func:`decode_array`) or the user's own."""
    if callable(decode):
        return decode
    if decode == "bytes":
        return None
    if decode == "array":
        return decode_array
    raise InvalidInputError(f"decode must be 'bytes', 'array' or a function, not {decode!r}")
