"""Media types of blobs, from their first bytes."""

from __future__ import annotations

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
