"""A Python client for a repository served by ``improv serve``.

    from improv_vcs.service.client import Client

    with Client("http://127.0.0.1:8000", token="…") as client:   # or $IMPROV_TOKEN
        rows = client.query(instrument="IFCB107", start="2024-05-01", at="paper-2025")   #
        pyarrow.Table
        png = client.read_image(rows["image_id"][0].as_py())                           # verified
        bytes

Filters take the text forms of ``improv query``'s options (``bbox="41,-71,42,-70"``,
``where=["roi_width > 100"]``); tuples, numbers and datetimes are turned into them.
Image bytes are checked against their SHA-256 (the response's ``ETag``).
Reads are retried when the network blinks (see :mod:`improv_vcs.core.http`);
writes are sent once. Every failure is an :class:`~improv_vcs.core.errors.ImprovError`.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from typing import Any

import pyarrow as pa

from ..core.errors import IntegrityError, InvalidInputError, StorageError
from ..core.http import API, ARROW_STREAM, TOKEN_ENV, json_of, send

PAGE = 100_000
_LISTS = ("instrument", "sample", "where", "kind", "prov", "run", "with")


class Client:
    """The read API (and the write calls a token with ``write`` scope allows)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0):
        import httpx

        self.url = url.rstrip("/")
        token = token or os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        except httpx.InvalidURL as exc:
            raise InvalidInputError(f"invalid URL {url!r}: {exc}") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **options: Any) -> Any:
        return send(self._http, method, API + path, self.url, **options)

    def _json(self, method: str, path: str, **options: Any) -> Any:
        return json_of(self._call(method, path, **options), self.url)

    def _table(self, response: Any) -> pa.Table:
        try:
            return pa.ipc.open_stream(response.content).read_all()
        except (pa.ArrowInvalid, OSError):
            raise StorageError(
                f"{self.url} did not answer with an Arrow stream; is it an improv server?"
            ) from None

    # -- repository -----------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self._json("GET", "")

    def refs(self) -> dict[str, Any]:
        return self._json("GET", "/refs")

    def log(self, ref: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._json("GET", "/commits", params=_params(ref=ref, limit=limit))

    def commit(self, rev: str) -> dict[str, Any]:
        return self._json("GET", f"/commits/{rev}")

    # -- images ---------------------------------------------------------------
    def query(
        self,
        at: str | None = None,
        as_of: str | datetime | None = None,
        limit: int | None = None,
        **filters: Any,
    ) -> pa.Table:
        """Matching image rows as Arrow, sorted by time then image id (all of
        them, fetched page by page, unless ``limit``)."""
        tables, offset = [], 0
        while True:
            size = PAGE if limit is None else min(PAGE, limit - offset)
            params = _params(at=at, as_of=as_of, limit=size, offset=offset, **filters)
            response = self._call("GET", "/images", params=params, headers={"Accept": ARROW_STREAM})
            table = self._table(response)
            tables.append(table)
            offset += table.num_rows
            if table.num_rows < size or (limit is not None and offset >= limit):
                return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def count(
        self, at: str | None = None, as_of: str | datetime | None = None, **filters: Any
    ) -> int:
        return int(
            self._json("GET", "/images", params=_params(at=at, as_of=as_of, count=True, **filters))[
                "count"
            ]
        )

    def image(
        self, image_id: str, at: str | None = None, as_of: str | datetime | None = None
    ) -> dict[str, Any]:
        """One image's metadata (its manifest row)."""
        return self._json("GET", f"/images/{image_id}", params=_params(at=at, as_of=as_of))

    def read_image(
        self, image_id: str, at: str | None = None, as_of: str | datetime | None = None
    ) -> bytes:
        """One image's bytes, verified against their SHA-256."""
        response = self._call("GET", f"/images/{image_id}/data", params=_params(at=at, as_of=as_of))
        expected = response.headers.get("etag", "").strip('"')
        if hashlib.sha256(response.content).hexdigest() != expected:
            raise IntegrityError(f"image {image_id!r} from {self.url} does not match its hash")
        return response.content

    # -- provenance -----------------------------------------------------------
    def provenance(
        self,
        image_id: str,
        kind: str | None = None,
        at: str | None = None,
        as_of: str | datetime | None = None,
    ) -> list[dict[str, Any]]:
        return self._json(
            "GET", f"/images/{image_id}/provenance", params=_params(kind=kind, at=at, as_of=as_of)
        )

    def provenance_records(
        self,
        kind: str,
        run: str | None = None,
        at: str | None = None,
        as_of: str | datetime | None = None,
    ) -> pa.Table:
        response = self._call(
            "GET",
            f"/provenance/{kind}",
            params=_params(run=run, at=at, as_of=as_of),
            headers={"Accept": ARROW_STREAM},
        )
        return self._table(response)

    def add_provenance(
        self,
        kind: str,
        records: list[dict[str, Any]],
        source: str,
        run_id: str | None = None,
        branch: str | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "records": records,
            "source": source,
            "run_id": run_id,
            "branch": branch,
            "message": message,
        }
        return self._json(
            "POST",
            f"/provenance/{kind}",
            content=_dumps(body),
            headers={"Content-Type": "application/json"},
        )

    # -- datasets -------------------------------------------------------------
    def datasets(self, at: str | None = None) -> dict[str, Any]:
        return self._json("GET", "/datasets", params=_params(at=at))

    def dataset(self, name: str, at: str | None = None) -> dict[str, Any]:
        return self._json("GET", f"/datasets/{name}", params=_params(at=at))

    def add_dataset_span(
        self,
        name: str,
        instrument: str,
        start: str | datetime,
        end: str | datetime,
        description: str | None = None,
        branch: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "instrument": instrument,
            "start": start,
            "end": end,
            "description": description,
            "branch": branch,
        }
        return self._json(
            "POST",
            f"/datasets/{name}/spans",
            content=_dumps(body),
            headers={"Content-Type": "application/json"},
        )

    # -- citations ------------------------------------------------------------
    def cite(self, at: str | None = None, tag: str | None = None, **options: Any) -> dict[str, Any]:
        """A citation (``identifier``, ``citation``, ``text``) of the selection
        ``options`` describe (query filters, ``title``, ``authors``, …)."""
        body = {"at": at, "tag": tag, **{k: _text(v) for k, v in options.items()}}
        return self._json(
            "POST", "/citations", content=_dumps(body), headers={"Content-Type": "application/json"}
        )

    def verify(self, citation: str) -> dict[str, Any]:
        """Re-derive and re-read a cited selection on the server; raises
        :class:`IntegrityError` when it no longer matches."""
        body = _dumps({"citation": citation})  # only reads: safe to repeat
        return self._json(
            "POST",
            "/citations/verify",
            content=body,
            headers={"Content-Type": "application/json"},
            idempotent=True,
        )


def _text(value: Any) -> Any:
    """A filter value in the text form the API reads."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple) and len(value) == 4:
        return ",".join(str(v) for v in value)  # bbox
    if isinstance(value, tuple) and len(value) == 2:
        return ":".join("" if v is None else str(v) for v in value)  # depth
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def _params(**options: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in options.items():
        name = "with" if name == "with_" else name
        if value is None or value == [] or value is False:
            continue
        if name in _LISTS and not isinstance(value, list):
            value = [value]
        params[name] = _text(value)
    return params


def _dumps(body: dict[str, Any]) -> str:
    import json

    return json.dumps({k: v for k, v in body.items() if v is not None}, default=_text)
