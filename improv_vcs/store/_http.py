"""A store served by ``improv serve``: the store protocol over HTTP.

Push, pull, fetch and clone move objects through any :class:`Store`, so a
repository behind ``http://host:port`` works exactly like a path or an S3
bucket: the client verifies everything it reads, and the server verifies
everything written to it (object ids, pack indexes against their packs, ref
targets) before it becomes visible. A bearer token comes from the ``token``
storage option or ``$IMPROV_TOKEN``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from .._http import STORE, TOKEN_ENV, send
from ..errors import ReadOnlyError, StorageError
from ._base import Bytes, Store, check_key, check_prefix

_TIMEOUT = 60.0


class HttpStore(Store):
    """Keys of a served repository."""

    def __init__(self, url: str, token: str | None = None, timeout: float = _TIMEOUT):
        import httpx

        self.url = url.rstrip("/")
        token = token or os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def _request(self, method: str, path: str, **options: Any) -> Any:
        return send(self._client, method, path, self.url, **options)

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
        response = self._request("PUT", self._key_path(key), content=bytes(data))
        return response.status_code == 201

    def freshen(self, key: str) -> bool:
        """Whether the key exists: the server keeps its own objects young (it
        freshens what a client re-sends and what a ref move makes reachable)."""
        return self.exists(key)

    def exists(self, key: str) -> bool:
        from ..errors import NotFoundError

        try:
            self._request("HEAD", self._key_path(key))
            return True
        except NotFoundError:
            return False

    def size(self, key: str) -> int:
        return int(self._request("HEAD", self._key_path(key)).headers["content-length"])

    def modified(self, key: str) -> float:
        return float(self._request("HEAD", self._key_path(key)).headers["x-improv-modified"])

    def list(self, prefix: str = "") -> Iterator[str]:
        after = ""
        while True:
            page = self._request("GET", STORE, params={"prefix": check_prefix(prefix), "after": after}).json()
            for key in page["keys"]:
                yield check_key(key)
            if not page.get("more"):
                return
            after = page["keys"][-1]

    def delete(self, key: str) -> None:
        raise ReadOnlyError(f"{self.url} does not delete over HTTP; run gc on the server")

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes) -> None:
        body = {"expected": expected.decode() if expected is not None else None, "new": new.decode()}
        self._request("POST", self._key_path(key), content=json.dumps(body), headers={"Content-Type": "application/json"})
