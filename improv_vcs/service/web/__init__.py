"""The web pages of ``improv serve``: server-rendered HTML at ``/`` over the
same repository and tokens as the API. Every page's URL names a commit
(``/c/<id>/…``); ``/ref/<name>`` resolves a branch or tag and redirects."""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ...core.errors import ImprovError
from ...core.http import API, AuthError, status_of
from . import curation, history, pages, selection
from .render import page, query_string
from .session import COOKIE

HEADINGS = {401: "Sign in to see this", 403: "Not allowed", 404: "Not found"}


def mount(app: FastAPI) -> None:
    """Add the pages, sign-in and the packaged assets to ``app``."""
    for module in (pages, selection, history, curation):
        app.include_router(module.router)
    app.mount(
        "/static",
        StaticFiles(directory=str(files("improv_vcs.service.web") / "static")),
        name="static",
    )

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> Response:
        return page(request, "login.html", pin=None, base=None, error=None, next=_local(next))

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        token: Annotated[str, Form(max_length=4096)],
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        try:
            request.app.state.access.check(f"Bearer {token}", "read")
        except AuthError as exc:
            return page(
                request,
                "login.html",
                status=401,
                pin=None,
                base=None,
                error=str(exc),
                next=_local(next),
            )
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(
            COOKIE,
            token.strip(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response


def _local(target: str) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirect)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def is_page(request: Request) -> bool:
    """Whether an error is answered as a page: a browser (it accepts HTML)
    asking for anything but the API; other clients get the API's JSON."""
    path = request.url.path
    return (
        "text/html" in request.headers.get("accept", "")
        and not path.startswith(API)
        and not path.startswith("/static")
    )


def error_page(
    request: Request, exc: ImprovError | Exception, status: int | None = None
) -> Response:
    """An error as a page, with a sign-in link when credentials are missing."""
    status = status or (status_of(exc) if isinstance(exc, ImprovError) else 500)
    if status == 401 and request.method == "GET":
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login{query_string({'next': here})}", status_code=303)
    message = str(exc) if status < 500 else "the server could not complete the request"
    return page(
        request,
        "error.html",
        status=status,
        pin=None,
        base=None,
        code=status,
        heading=HEADINGS.get(status, "Something went wrong"),
        message=message,
    )
