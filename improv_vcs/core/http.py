"""HTTP conventions shared by ``improv serve`` and its clients: paths, media
types, how errors travel (a status code plus ``{"error": {"type",
"message"}}``, turned back into the same exception class on the client), and
which requests are retried when the network blinks.

Retries (through :mod:`tenacity`: exponential backoff with full jitter,
bounded in count and in total time) cover only requests that are safe to
repeat: reads (``GET``, ``HEAD``), writes of content-addressed keys (a
``PUT`` stores the same bytes under the same key however often it arrives),
and any request that never reached the server (the connection could not be
opened). Everything else — a ref's compare-and-swap — is the caller's to
resolve (see :meth:`improv_vcs.storage.http_store.HttpStore.compare_and_swap`).
Each retry is announced on the ``improv_vcs.network`` logger (a warning,
which the command line prints as a ``note:`` line on stderr).
"""

from __future__ import annotations

import logging
import os
import threading
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
RETRIES_ENV = "IMPROV_HTTP_RETRIES"
"""Environment variable: how many times a failed, repeatable request is retried."""
RETRIES = 4
"""Retries of a repeatable request by default (so at most 5 attempts)."""
RETRY_DEADLINE = 300.0
"""No retry starts later than this many seconds after the first attempt."""
RETRY_BASE = 0.25
"""Backoff: the n-th wait is random in [0, RETRY_BASE * 2**n] seconds …"""
RETRY_MAX_WAIT = 8.0
"""… and never longer than this."""
TRANSIENT_STATUS = frozenset({502, 503, 504})
"""Answers that mean "try again" (a gateway, or the server's own storage, failed)."""

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"

log = logging.getLogger("improv_vcs.network")


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
    """No valid credentials (401), or credentials without the permission
    needed (403): a missing, unknown or refused token, missing S3 credentials."""

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
    if isinstance(exc, AuthError):
        kind = AuthError.__name__
    else:
        kind = next((c.__name__ for c in type(exc).__mro__ if c in STATUS), "ImprovError")
    return {"error": {"type": kind, "message": message if message is not None else str(exc)}}


# -- retries ------------------------------------------------------------------------
_counted = {"retries": 0}
_count_lock = threading.Lock()


def retry_attempts() -> int:
    """How many attempts a repeatable request gets (``$IMPROV_HTTP_RETRIES`` + 1)."""
    text = os.environ.get(RETRIES_ENV, "").strip()
    try:
        retries = int(text) if text else RETRIES
    except ValueError:
        raise InvalidInputError(f"${RETRIES_ENV} must be a whole number, not {text!r}") from None
    return 1 + max(0, retries)


def retried() -> int:
    """How many retries this process has made (HTTP and S3), for reports."""
    return _counted["retries"]


def note_retry(what: str, why: str, attempt: int, attempts: int | None = None) -> None:
    """Count a retry and announce it on the ``improv_vcs.network`` logger."""
    with _count_lock:
        _counted["retries"] += 1
    of = f" of {attempts}" if attempts else ""
    log.warning("note: retrying %s after %s (attempt %d%s)", what, why, attempt, of)


def describe(exc: BaseException) -> str:
    """A short, one-line account of a failure."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ImprovError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def retrying(retry_on: Any, what: str) -> Any:
    """A :class:`tenacity.Retrying` for one logical request: retry while
    ``retry_on(exception)`` says so, with jittered exponential backoff,
    at most :func:`retry_attempts` attempts and :data:`RETRY_DEADLINE`
    seconds; the last exception is re-raised."""
    import tenacity

    attempts = retry_attempts()

    def announce(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        note_retry(
            what,
            describe(error) if error is not None else "a failure",
            state.attempt_number + 1,
            attempts,
        )

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(RETRY_DEADLINE),
        wait=tenacity.wait_random_exponential(multiplier=RETRY_BASE, max=RETRY_MAX_WAIT),
        retry=tenacity.retry_if_exception(retry_on),
        before_sleep=announce,
        reraise=True,
    )


class _TransientAnswer(Exception):
    """A 502/503/504 to a repeatable request: worth another attempt."""

    def __init__(self, response: Any):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _not_sent(exc: BaseException) -> bool:
    """Whether the request certainly never reached the server."""
    import httpx

    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _transient(exc: BaseException) -> bool:
    """A failure of the network (not of the request) that may pass."""
    import httpx

    return isinstance(
        exc,
        (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError, _TransientAnswer),
    )


def send(
    client: Any, method: str, path: str, url: str, *, idempotent: bool | None = None, **options: Any
) -> Any:
    """``client.request(...)`` (an ``httpx.Client``), with transport failures
    as :class:`StorageError` and error responses as the exceptions they stand for.

    Repeatable requests (``idempotent``, by default ``GET`` and ``HEAD``) are
    retried after a transport failure or a 502/503/504; any request is
    retried when its connection could not even be opened."""
    import httpx

    if idempotent is None:
        idempotent = method in ("GET", "HEAD")

    def once() -> Any:
        response = client.request(method, path, **options)
        if idempotent and response.status_code in TRANSIENT_STATUS:
            raise _TransientAnswer(response)
        return response

    def worth_retrying(exc: BaseException) -> bool:
        return _not_sent(exc) or (idempotent and _transient(exc))

    try:
        response = retrying(worth_retrying, f"{method} {url}{path}")(once)
    except _TransientAnswer as exc:
        response = exc.response
    except httpx.InvalidURL as exc:
        raise InvalidInputError(f"invalid URL {url}: {exc}") from None
    except httpx.HTTPError as exc:
        raise StorageError(f"cannot reach {url}: {describe(exc)}") from None
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise_for(response.status_code, body, url)
    return response


def json_of(response: Any, url: str) -> Any:
    """The JSON body of a response, or :class:`StorageError` when the server
    answered with something else (it is probably not an improv server)."""
    try:
        return response.json()
    except ValueError:
        raise StorageError(f"{url} did not answer with JSON; is it an improv server?") from None


def raise_for(status: int, body: Any, url: str) -> None:
    """Raise the exception an error response stands for."""
    detail = body.get("error") if isinstance(body, dict) else None
    message = detail.get("message") if isinstance(detail, dict) else None
    kind = detail.get("type") if isinstance(detail, dict) else None
    if status == 401:
        reason = message or "it needs a bearer token"
        raise AuthError(
            f"{url} refused the request: {reason} (set ${TOKEN_ENV} to a token it accepts)", 401
        )
    if status == 403:
        raise AuthError(message or f"{url}: not allowed (HTTP 403)", 403)
    by_name = {cls.__name__: cls for cls in STATUS}
    cls = by_name.get(str(kind)) or next(
        (c for c, s in STATUS.items() if s == status), StorageError
    )
    raise cls(message or f"{url}: HTTP {status}")
