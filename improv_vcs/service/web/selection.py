"""The query page: the filters of ``improv query`` as a form, the count and
a mosaic of the matches, downloads (CSV, Parquet, a zip of images with their
metadata) and "cite this selection"."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ...core.errors import InvalidInputError
from ...query.filters import Query as ImageQuery
from ...query.text import query_from_options
from .common import classification_runs, pinned
from .render import page
from .session import Viewer

router = APIRouter()
MAX_ZIP_IMAGES = 5_000
"""Largest zip of images a page offers (``improv export`` has no limit)."""
PER_PAGE = 100
Text = Annotated[str | None, Query(max_length=1000)]
Texts = Annotated[list[str], Query(max_length=1000)]
FIELDS = (
    "instrument",
    "start",
    "end",
    "bbox",
    "depth",
    "dataset",
    "sample",
    "where",
    "prov",
    "run",
    "quality",
)
REPEATED = ("instrument", "sample", "where", "prov", "run", "quality")


def selection(params: dict[str, Any]) -> ImageQuery:
    """The query a form's fields describe (empty fields ignored)."""

    def many(name: str) -> list[str]:
        return [v.strip() for v in params.get(name) or [] if v and v.strip()]

    def one(name: str) -> str | None:
        value = params.get(name)
        return value.strip() or None if isinstance(value, str) else None

    return query_from_options(
        many("instrument"),
        one("start"),
        one("end"),
        one("bbox"),
        one("depth"),
        one("dataset"),
        many("sample"),
        many("where"),
        None,
        None,
        None,
        many("prov"),
        many("run"),
        None,
        many("quality"),
    )


def form_params(request: Request) -> dict[str, Any]:
    """The filter fields of a request's query string (multi-line text
    areas give one condition per line)."""
    params: dict[str, Any] = {}
    for name in FIELDS:
        values = request.query_params.getlist(name)
        if name in REPEATED:
            params[name] = [line for v in values for line in v.splitlines() if line.strip()]
        else:
            params[name] = values[-1] if values else ""
    return params


@router.get("/c/{commit}/query", include_in_schema=False)
def query_page(
    request: Request,
    commit: str,
    _: Viewer,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Response:
    pin = pinned(request, commit)
    snapshot = pin.snapshot
    params = form_params(request)
    asked = any(params[name] for name in FIELDS)
    chosen = selection(params)
    count = snapshot.count(chosen) if asked else None
    images: list[dict[str, Any]] = []
    if asked and count:
        rows = snapshot.select(chosen.model_copy(update={"limit": offset + PER_PAGE})).table
        images = rows.slice(offset, PER_PAGE).to_pylist()
    return page(
        request,
        "query.html",
        **pin.context,
        params=params,
        asked=asked,
        count=count,
        images=images,
        offset=offset,
        per_page=PER_PAGE,
        instruments=snapshot.instruments(),
        datasets=sorted(snapshot.datasets()),
        runs=classification_runs(snapshot),
        max_zip=MAX_ZIP_IMAGES,
        zip_ok=count is not None and count <= MAX_ZIP_IMAGES,
    )


@router.get("/c/{commit}/query/download.{fmt}", include_in_schema=False)
def download(request: Request, commit: str, fmt: str, _: Viewer) -> Response:
    pin = pinned(request, commit)
    snapshot = pin.snapshot
    chosen = selection(form_params(request))
    name = f"improv-{pin.commit_id[:12]}"
    if fmt == "zip":
        if snapshot.count(chosen) > MAX_ZIP_IMAGES:
            raise InvalidInputError(
                f"a zip holds at most {MAX_ZIP_IMAGES} images; narrow the query or use "
                "'improv export'"
            )
        return _attachment(
            _zip(pin, snapshot.select(chosen).table), f"{name}.zip", "application/zip"
        )
    table = snapshot.select(chosen).table
    if fmt == "csv":
        return _attachment(_csv(table), f"{name}.csv", "text/csv")
    if fmt == "parquet":
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return _attachment(
            sink.getvalue().to_pybytes(), f"{name}.parquet", "application/vnd.apache.parquet"
        )
    raise InvalidInputError(f"no download as {fmt!r}; use csv, parquet or zip")


def _attachment(data: bytes, filename: str, media: str) -> Response:
    return Response(
        data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _csv(table: pa.Table) -> bytes:
    """The table's scalar columns as CSV (lists and structs left out)."""
    keep = [f.name for f in table.schema if not pa.types.is_nested(f.type)]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(keep)
    for row in table.select(keep).to_pylist():
        writer.writerow(["" if row[k] is None else row[k] for k in keep])
    return out.getvalue().encode()


def _zip(pin: Any, rows: pa.Table) -> bytes:
    """Each image as ``images/<image_id><ext>`` and ``metadata.csv``."""
    from ...query.export import extension

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for row in rows.to_pylist():
            data = pin.repo.odb.read_blob(row["pack"], row["offset"], row["size"], row["blob_id"])
            archive.writestr(f"images/{row['image_id']}{extension(row['media_type'])}", data)
        archive.writestr("metadata.csv", _csv(rows))
    return out.getvalue()


@router.post("/c/{commit}/cite", include_in_schema=False)
async def cite_page(request: Request, commit: str, _: Viewer) -> Response:
    from starlette.concurrency import run_in_threadpool

    pin = pinned(request, commit)
    form = await request.form()
    params: dict[str, Any] = {}
    for name in FIELDS:
        values = [str(v) for v in form.getlist(name)]
        params[name] = (
            [line for v in values for line in v.splitlines() if line.strip()]
            if name in REPEATED
            else (values[-1] if values else "")
        )
    title = str(form.get("title") or "").strip()[:500] or None
    authors = tuple(a.strip() for a in str(form.get("authors") or "").split(";") if a.strip())
    chosen = selection(params)
    made = await run_in_threadpool(
        lambda: pin.snapshot.cite(query=chosen, title=title, authors=authors)
    )
    made = made.model_copy(update={"urls": (str(request.base_url).rstrip("/"),)})
    return page(
        request,
        "citation.html",
        **pin.context,
        citation=made,
        params=params,
    )
