"""``improv serve``: the repository over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import SERVE, QuietOption, app, handles_errors, note, state


@app.command(rich_help_panel=SERVE)
@handles_errors
def serve(
    path: Annotated[
        str | None,
        typer.Argument(
            help="Repository to serve (default: --repo, else the current directory). An empty "
            "directory accepts a first push."
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on (loopback by default; put a TLS proxy in front for the "
            "network)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    tokens: Annotated[
        Path | None,
        typer.Option(
            help="JSON file of bearer tokens and their scopes (default: $IMPROV_SERVE_TOKENS)."
        ),
    ] = None,
    anonymous_read: Annotated[
        bool, typer.Option("--anonymous-read", help="Let callers without a token read.")
    ] = False,
    max_body: Annotated[
        int, typer.Option(min=1024, help="Largest JSON request body, in bytes.")
    ] = 16 * 2**20,
    max_upload: Annotated[
        int, typer.Option(min=1024, help="Largest object or pack a push may upload, in bytes.")
    ] = 2 * 2**30,
    quiet: QuietOption = False,
) -> None:
    """Serve a repository: web pages, REST API and sync protocol.

    Web pages at / (sign in with a token, or none with --anonymous-read);
    the REST API (OpenAPI docs at /docs) and the protocol
    `improv push/pull/clone http://HOST:PORT` speak. Clients send
    `Authorization: Bearer TOKEN` ($IMPROV_TOKEN for improv itself); tokens
    have the scope read or write.
    """
    try:
        import uvicorn

        from ..service.app import create_app
        from ..service.auth import Access
    except ImportError:
        from ..core.errors import InvalidInputError

        raise InvalidInputError(
            "improv serve needs the service extra: pip install 'improv_vcs[service]'"
        ) from None
    from ..core.errors import InvalidInputError

    access = Access.load(tokens, anonymous_read)
    if not access.configured:
        raise InvalidInputError(
            "no tokens configured: give --tokens FILE or $IMPROV_SERVE_TOKENS, or --anonymous-read"
        )
    target = path or state["repo"] or "."
    url = target if "://" in target else str(Path(target).absolute())
    note(f"Serving {url} on http://{host}:{port} (API docs at /docs)", quiet)
    uvicorn.run(
        create_app(url, access, max_body, max_upload),
        host=host,
        port=port,
        log_level="error" if quiet else "warning",
    )
