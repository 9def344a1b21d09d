"""HTML from the package's Jinja2 templates, with the helpers every page
uses: short ids, times, counts and links that keep the snapshot."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse

from ... import __version__
from .session import may_write, presented, signed_in

PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""Every page: revalidated (it shows who is signed in), and nothing loaded
from anywhere but this server."""


@cache
def environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("improv_vcs.service.web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(short=short, when=when, number=number, q=quote_path)
    env.globals.update(version=__version__, query_string=query_string)
    return env


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered for ``request``'s reader."""
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            reader=signed_in(request) if presented(request) else None,
            writer=may_write(request),
            **context,
        )
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def short(oid: str | None, n: int = 10) -> str:
    return (oid or "")[:n]


def when(value: datetime | None, precise: bool = False) -> str:
    """A UTC time as ``2024-05-01 08:00`` (with seconds when ``precise``)."""
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S" if precise else "%Y-%m-%d %H:%M") + " UTC"


def number(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def quote_path(value: str) -> str:
    return quote(str(value), safe="")


def query_string(params: dict[str, Any], **changes: Any) -> str:
    """``?…`` of ``params`` with ``changes`` (None removes a key; lists repeat)."""
    merged = {**params, **changes}
    pairs = []
    for key, value in merged.items():
        if value is None or value == "" or value == []:
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append((key, str(item)))
    return "?" + urlencode(pairs) if pairs else ""
