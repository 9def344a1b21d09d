"""Who is browsing: the same bearer tokens as the API, presented in the
``Authorization`` header or kept in a cookie after signing in on ``/login``.

The cookie is ``HttpOnly`` and ``SameSite=Strict``; a form that writes must
also come from this site (its ``Origin``, or else ``Referer``, names this
host), so another site cannot make a signed-in browser curate.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from ...core.http import AuthError
from ..auth import Scope

COOKIE = "improv_token"


def presented(request: Request) -> str | None:
    """The credentials a request carries, as an ``Authorization`` value."""
    header = request.headers.get("authorization")
    if header is not None:
        return header
    token = request.cookies.get(COOKIE)
    return f"Bearer {token}" if token else None


def caller(request: Request, scope: Scope) -> str:
    """The name of a caller allowed ``scope`` (:class:`AuthError` otherwise)."""
    return request.app.state.access.check(presented(request), scope)


def signed_in(request: Request) -> str | None:
    """The reader's name, or None when the request carries no valid token."""
    try:
        return caller(request, "read")
    except AuthError:
        return None


def may_write(request: Request) -> bool:
    try:
        caller(request, "write")
    except AuthError:
        return False
    return True


def _viewer(request: Request) -> str:
    return caller(request, "read")


def _curator(request: Request) -> str:
    same_site(request)
    return caller(request, "write")


def same_site(request: Request) -> None:
    """Refuse a form posted from another site (403)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None or urlsplit(origin).netloc != request.url.netloc:
        raise AuthError("a form that changes the repository must come from this site", 403)


Viewer = Annotated[str, Depends(_viewer)]
Curator = Annotated[str, Depends(_curator)]
