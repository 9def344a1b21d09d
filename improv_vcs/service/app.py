"""The FastAPI application: authentication, limits, error handling, and the
store protocol that push, pull, fetch and clone speak (the REST API is in
:mod:`improv_vcs.service.api`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..core.errors import ImprovError, InvalidInputError, NotFoundError, StorageError
from ..core.http import API, STORE, AuthError, TooLargeError, error_body, status_of
from ..storage.s3_store import S3CredentialsError
from . import web
from .api import router as api_router
from .auth import Access
from .requests import RangeError, Reader, SiteDep, Writer, byte_range, json_body
from .site import Site, readable, readable_prefix, receive, swap_ref

log = logging.getLogger("improv_vcs.service")

MAX_BODY = 16 * 2**20
"""Largest JSON request body (bytes)."""
MAX_UPLOAD = 2 * 2**30
"""Largest object or pack a client may upload (bytes)."""
LIST_PAGE = 10_000


def create_app(
    url: str, access: Access, max_body: int = MAX_BODY, max_upload: int = MAX_UPLOAD
) -> FastAPI:
    """The service for the repository at ``url`` (which may still be empty:
    a first push creates it)."""

    app = FastAPI(
        title="improv_vcs",
        version=__version__,
        description="Search, fetch and cite a versioned imaging repository; push and pull between "
        "sites.",
    )
    app.state.site = Site(url)
    app.state.access = access
    app.state.max_body = max_body
    app.state.max_upload = max_upload

    @app.exception_handler(ImprovError)
    async def _improv_error(request: Request, exc: ImprovError) -> Response:
        if web.is_page(request):
            return web.error_page(request, exc)
        if isinstance(exc, RangeError):
            headers = {"Content-Range": f"bytes */{exc.size}"}
            return JSONResponse(error_body(exc), status_code=416, headers=headers)
        kind = type(exc).__name__
        if isinstance(
            exc, S3CredentialsError
        ):  # the server's own storage failed, not the client's token
            exc = StorageError(str(exc))
        status = status_of(exc)
        if status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, kind)
            return JSONResponse(
                error_body(exc, "the server could not complete the request"), status_code=status
            )
        message = http_words(str(exc).replace(app.state.site.url, "<repository>"))
        headers = (
            {"WWW-Authenticate": 'Bearer realm="improv"'}
            if isinstance(exc, AuthError) and status == 401
            else None
        )
        return JSONResponse(error_body(exc, message), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        message = f"{where}: {first.get('msg', 'invalid')}"
        if web.is_page(request):
            return web.error_page(request, InvalidInputError(message))
        return JSONResponse(error_body(InvalidInputError(message)), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "NotFoundError", 405: "InvalidInputError"}.get(exc.status_code, "HTTPError")
        message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        if web.is_page(request):
            page_error = NotFoundError("no such page") if exc.status_code == 404 else None
            return web.error_page(
                request, page_error or InvalidInputError(message), exc.status_code
            )
        return JSONResponse(
            {"error": {"type": kind, "message": message}}, status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        if web.is_page(request):
            return web.error_page(request, exc, 500)
        return JSONResponse(
            {"error": {"type": "InternalError", "message": "internal server error"}},
            status_code=500,
        )

    @app.middleware("http")
    async def _limit_bodies(request: Request, call_next: Callable[..., Any]) -> Response:
        limit = max_upload if request.url.path.startswith(STORE) else max_body
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            error = TooLargeError(
                f"the request body is larger than the server's limit of {limit} bytes"
            )
            return JSONResponse(error_body(error), status_code=413)
        return await call_next(request)

    app.include_router(api_router, prefix=API)
    _store_routes(app)
    web.mount(app)
    return app


def _store_routes(app: FastAPI) -> None:
    """The store protocol: keys of the repository, read and (checked) written."""

    @app.get(STORE, tags=["sync"], summary="List keys")
    def list_keys(
        here: SiteDep,
        _: Reader,
        prefix: Annotated[str, Query(max_length=1024)] = "",
        after: Annotated[str, Query(max_length=1024)] = "",
    ) -> dict[str, Any]:
        keys = []  # the store reads on from ``after``: paging through is one pass over the keys
        for key in here.store.list(readable_prefix(prefix), start_after=after):
            try:
                keys.append(readable(key))
            except NotFoundError:
                continue
            if len(keys) == LIST_PAGE:
                return {"keys": keys, "more": True}
        return {"keys": keys, "more": False}

    @app.get(STORE + "/{key:path}", tags=["sync"], summary="Read a key")
    @app.head(
        STORE + "/{key:path}",
        tags=["sync"],
        summary="Size and age of a key",
        operation_id="stat_key",
    )
    def read_key(request: Request, key: str, here: SiteDep, _: Reader) -> Response:
        readable(key)
        size = here.store.size(key)
        headers = {"X-Improv-Modified": repr(here.store.modified(key)), "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return Response(headers={**headers, "Content-Length": str(size)})
        wanted = byte_range(request.headers.get("range"), size)
        if wanted is None:
            return Response(
                here.store.get(key), media_type="application/octet-stream", headers=headers
            )
        start, end = wanted
        data = here.store.get_range(key, start, end - start)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        return Response(
            data, status_code=206, media_type="application/octet-stream", headers=headers
        )

    @app.put(STORE + "/{key:path}", tags=["sync"], summary="Write a key unless it exists (checked)")
    async def write_key(request: Request, key: str, here: SiteDep, _: Writer) -> Response:
        written = await receive(here, key, request.stream(), request.app.state.max_upload)
        return Response(status_code=201 if written else 200)

    @app.post(STORE + "/{key:path}", tags=["sync"], summary="Move a ref by compare-and-swap")
    async def swap_key(request: Request, key: str, here: SiteDep, _: Writer) -> Response:
        from starlette.concurrency import run_in_threadpool

        body = await json_body(request)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("new"), str)
            or not isinstance(body.get("expected"), (str, type(None)))
        ):
            raise InvalidInputError('send {"expected": <old value or null>, "new": <new value>}')
        await run_in_threadpool(swap_ref, here, key, body["expected"], body["new"])
        return Response(status_code=204)


_CLI_ONLY = (
    # hints at command-line options that have no HTTP counterpart
    (" (pass --allow-outside-deployment if that is right)", ""),
    (" or pass --allow-outside-deployment", ""),
    (" or in --timezone", ""),
)
_OPTION = re.compile(r"(?<![\w-])--([a-z][a-z-]*)")


def http_words(message: str) -> str:
    """A library message as an HTTP client should read it: the query
    parameters and body fields, not the command-line options they mirror
    (``--as-of`` is ``as_of``, ``--bbox`` is ``bbox``)."""
    for cli, http in _CLI_ONLY:
        message = message.replace(cli, http)
    return _OPTION.sub(lambda m: m[1].replace("-", "_"), message)
