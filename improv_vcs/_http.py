"""HTTP conventions shared by ``improv serve`` and its clients: paths, media
types, and how errors travel (a status code plus ``{"error": {"type",
"message"}}``, turned back into the same exception class on the client)."""

from __future__ import annotations

from typing import Any

from .errors import (
    ConflictError,
    ImprovError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    StorageError,
)

API = "/v1"
STORE = f"{API}/store"
TOKEN_ENV = "IMPROV_TOKEN"
"""Environment variable a client reads its bearer token from."""

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"

class TooLargeError(InvalidInputError):
    """A request body over the server's limit (413)."""


STATUS: dict[type[ImprovError], int] = {
    TooLargeError: 413,
    InvalidInputError: 400,
    ReadOnlyError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    IntegrityError: 422,
    StorageError: 503,
}


class AuthError(ReadOnlyError):
    """No valid credentials (401), or a token without the scope needed (403)."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


def status_of(exc: ImprovError) -> int:
    if isinstance(exc, AuthError):
        return exc.status
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(exc: ImprovError, message: str | None = None) -> dict[str, Any]:
    kind = next((c.__name__ for c in type(exc).__mro__ if c in STATUS), "ImprovError")
    return {"error": {"type": kind, "message": message if message is not None else str(exc)}}


def send(client: Any, method: str, path: str, url: str, **options: Any) -> Any:
    """``client.request(...)`` (an ``httpx.Client``), with transport failures
    as :class:`StorageError` and error responses as the exceptions they stand for."""
    import httpx

    try:
        response = client.request(method, path, **options)
    except httpx.HTTPError as exc:
        raise StorageError(f"cannot reach {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise_for(response.status_code, body, url)
    return response


def raise_for(status: int, body: Any, url: str) -> None:
    """Raise the exception an error response stands for."""
    detail = body.get("error") if isinstance(body, dict) else None
    message = detail.get("message") if isinstance(detail, dict) else None
    kind = detail.get("type") if isinstance(detail, dict) else None
    if status in (401, 403):
        raise AuthError(message or f"{url}: not allowed (HTTP {status})", status)
    by_name = {cls.__name__: cls for cls in STATUS}
    cls = by_name.get(str(kind)) or next((c for c, s in STATUS.items() if s == status), StorageError)
    raise cls(message or f"{url}: HTTP {status}")
