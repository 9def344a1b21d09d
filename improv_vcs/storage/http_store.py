"""A store served by ``improv serve``: the store protocol over HTTP.

Push, pull, fetch and clone move objects through any :class:`Store`, so a
repository behind ``http://host:port`` works exactly like a path or an S3
bucket: the client verifies everything it reads, and the server verifies
everything written to it (object ids, pack indexes against their packs, ref
targets) before it becomes visible. A bearer token comes from the ``token``
storage option or ``$IMPROV_TOKEN``.

Reads, existence checks and writes of (content-addressed) keys are retried
when the network blinks (see :mod:`improv_vcs.core.http`). A ref's
compare-and-swap is not repeated blindly: when its answer is lost, the ref
is read again to learn whether it moved.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from ..core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    StorageError,
)
from ..core.http import STORE, TOKEN_ENV, json_of, retrying, send
from .store import Bytes, Store, check_key, check_listing

_TIMEOUT = 60.0


class _NotMoved(StorageError):
    """A compare-and-swap whose answer was lost, and which (the ref says) did
    not happen: safe to send again."""


class HttpStore(Store):
    """Keys of a served repository. The server checks every write (an object
    must hash to its key, a ref must name a commit whose history it holds),
    deletes nothing and keeps its own objects young."""

    resolves_bundles = True
    supports_deletes = False
    supports_freshen = False

    def __init__(
        self, url: str, token: str | None = None, timeout: float = _TIMEOUT, read_only: bool = False
    ):
        import httpx

        self.url = url.rstrip("/")
        self.read_only = read_only
        token = token or os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        except httpx.InvalidURL as exc:
            raise InvalidInputError(f"invalid URL {url!r}: {exc}") from None

    def close(self) -> None:
        """Close the connection pool too."""
        self._client.close()
        super().close()

    def _request(self, method: str, path: str, **options: Any) -> Any:
        self._check_open()
        return send(self._client, method, path, self.url, **options)

    def _head(self, key: str, header: str) -> str:
        value = self._request("HEAD", self._key_path(key)).headers.get(header)
        if value is None:
            raise StorageError(
                f"{self.url} did not say the {header} of {key}; is it an improv server?"
            )
        return value

    def _key_path(self, key: str) -> str:
        return f"{STORE}/{quote(check_key(key))}"

    def get(self, key: str) -> bytes:
        return self._request("GET", self._key_path(key)).content

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if length == 0:
            if start > self.size(key):
                raise StorageError(f"range {start}+0 is past the end of {key}")
            return b""
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        data = self._request("GET", self._key_path(key), headers=headers).content
        if len(data) != length:
            raise StorageError(f"range {start}+{length} is past the end of {key}")
        return data

    def put_if_absent(self, key: str, data: Bytes) -> bool:
        self._check_writable("write")
        # content-addressed: the same bytes under the same key, so safe to repeat
        response = self._request("PUT", self._key_path(key), content=bytes(data), idempotent=True)
        return response.status_code == 201

    def freshen(self, key: str) -> bool:
        """Whether the key exists: the server keeps its own objects young (it
        freshens what a client re-sends and what a ref move makes reachable)."""
        self._check_writable("freshen")
        return self.exists(key)

    def exists(self, key: str) -> bool:
        try:
            self._request("HEAD", self._key_path(key))
            return True
        except NotFoundError:
            return False

    def size(self, key: str) -> int:
        value = self._head(key, "content-length")
        try:
            return int(value)
        except ValueError:
            raise StorageError(f"{self.url} gave a malformed size for {key}") from None

    def modified(self, key: str) -> float:
        value = self._head(key, "x-improv-modified")
        try:
            return float(value)
        except ValueError:
            raise StorageError(f"{self.url} gave a malformed time for {key}") from None

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """Pages of keys, the first from ``start_after``, each from the
        last key of the one before (the server reads on from there)."""
        self._check_open()
        return self._pages(prefix, check_listing(prefix, start_after))

    def _pages(self, prefix: str, after: str) -> Iterator[str]:
        while True:
            response = self._request("GET", STORE, params={"prefix": prefix, "after": after})
            page = json_of(response, self.url)
            if not isinstance(page, dict) or not isinstance(page.get("keys"), list):
                raise StorageError(
                    f"{self.url} did not answer with a key listing; is it an improv server?"
                )
            for key in page["keys"]:
                yield check_key(key)
            if not page.get("more"):
                return
            after = page["keys"][-1]

    def delete(self, key: str) -> None:
        self._check_writable("delete")
        check_key(key)
        raise ReadOnlyError(f"{self.url} does not delete over HTTP; run gc on the server")

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes) -> None:
        """One ``POST``, not repeated blindly: if its answer is lost (the
        connection drops, the server's storage fails) it may or may not have
        happened, so the ref is read again. Holding ``new``, it moved; still
        holding ``expected``, it did not, and the swap is sent again (with
        backoff, a bounded number of times); holding anything else, another
        writer moved it (:class:`ConflictError`)."""
        self._check_writable("compare and swap")
        body = json.dumps(
            {"expected": expected.decode() if expected is not None else None, "new": new.decode()}
        )
        lost: list[str] = []  # answers lost so far

        def swap() -> None:
            try:
                self._request(
                    "POST",
                    self._key_path(key),
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
            except ConflictError:
                # after a lost answer, our own earlier swap may be what moved it
                if lost and self.get_if_exists(key) == new:
                    return
                raise
            except StorageError as exc:
                lost.append(str(exc))
                current = self.get_if_exists(key)
                if current == new:
                    return
                if current == expected:
                    raise _NotMoved(f"cannot move {key}: {exc} (it did not move)") from None
                raise ConflictError(f"{key} changed concurrently") from None

        retrying(lambda exc: isinstance(exc, _NotMoved), f"POST {self.url}{self._key_path(key)}")(
            swap
        )
