"""What routes take from a request: the caller (by scope), the site, a
JSON body within the size limit, a byte range."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from ..core.errors import InvalidInputError
from .auth import Scope
from .site import Site, read_limited


def site(request: Request) -> Site:
    return request.app.state.site


def allowed(scope: Scope) -> Callable[..., str]:
    """A dependency that admits callers with ``scope`` (and names them)."""

    def check(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
        return request.app.state.access.check(authorization, scope)

    return check


Reader = Annotated[str, Depends(allowed("read"))]
Writer = Annotated[str, Depends(allowed("write"))]
SiteDep = Annotated[Site, Depends(site)]


async def json_body(request: Request) -> Any:
    """The request's JSON body, read within the size limit."""
    data = await read_limited(request.stream(), request.app.state.max_body)
    try:
        return json.loads(data)
    except ValueError:
        raise InvalidInputError("the request body is not JSON") from None
    except RecursionError:  # e.g. 100,000 nested [ — the parser recurses once a level
        raise InvalidInputError("the request body nests JSON too deeply") from None


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``[start, end)`` a single ``Range: bytes=…`` header asks for, or None
    for the whole value; :class:`InvalidInputError` when unsatisfiable."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    try:
        if unit.strip() != "bytes" or not dash or "," in spec:
            raise ValueError
        if not first:
            start, end = max(0, size - int(last)), size
        else:
            start, end = int(first), (min(int(last) + 1, size) if last else size)
    except ValueError:
        raise RangeError(f"unsupported Range header {header!r}", size) from None
    if start >= end or start >= size:
        raise RangeError(f"range {header!r} is outside the {size}-byte value", size)
    return start, end


class RangeError(InvalidInputError):
    """An unsatisfiable range (HTTP 416)."""

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size
