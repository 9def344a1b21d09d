"""The REST API: images, provenance, datasets, the registry (instruments,
taxonomies, samples), commits, refs and citations at any snapshot (``at`` a revision, ``as_of`` a
time). Tables come back as
JSON, or as Arrow IPC or Parquet when the ``Accept`` header asks."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..core.errors import InvalidInputError
from ..core.http import ARROW_STREAM, PARQUET
from ..core.ids import image_id as valid_image_id
from ..core.ids import is_object_id
from ..core.times import parse_time
from ..query.text import query_from_options
from ..write.shortcuts import add_dataset_span
from .requests import Reader, SiteDep, Writer, byte_range, json_body

router = APIRouter()

At = Annotated[
    str | None, Query(max_length=300, description="Revision: commit, branch, tag or REF~N.")
]
AsOf = Annotated[
    str | None,
    Query(max_length=64, description="Newest commit at or before this time on `at`'s line."),
]
Texts = Annotated[list[str], Query(max_length=1000)]
MAX_PAGE = 100_000
MAX_OFFSET = 10**9
"""The deepest page of a search (a bigger offset is a 400, never an overflow)."""


def _cache_control(at: str | None, anonymous_read: bool) -> str:
    """The ``Cache-Control`` of a response read at revision ``at``: cacheable
    forever only when ``at`` is a full object id, which always names the same
    commit (revision parsing never lets a ref shadow it, and no new ref may be
    named like one); anything else (a branch, a tag, ``HEAD``, a prefix,
    ``~N``, no ``at``) can come to mean another commit, so it is revalidated.
    ``as_of`` with a full id is fixed too: it walks that commit's history.
    Shared caches may keep it only when anyone may read it."""
    if at is None or not is_object_id(at):
        return "no-cache"
    return f"{'public' if anonymous_read else 'private'}, max-age=31536000, immutable"


def _as_of(text: str | None) -> datetime | None:
    return parse_time(text, "as_of") if text else None


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, default=_jsonable), status_code=status, media_type="application/json"
    )


def table_response(
    request: Request, table: pa.Table, extra: dict[str, Any] | None = None
) -> Response:
    """``table`` in the format the ``Accept`` header asks for (JSON by default)."""
    accept = request.headers.get("accept", "")
    if ARROW_STREAM in accept:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Response(sink.getvalue().to_pybytes(), media_type=ARROW_STREAM)
    if PARQUET in accept:
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return Response(sink.getvalue().to_pybytes(), media_type=PARQUET)
    return json_response({**(extra or {}), "rows": table.to_pylist()})


# -- repository -------------------------------------------------------------------
@router.get("", tags=["repository"], summary="The served repository")
def info(here: SiteDep, _: Reader) -> Response:
    repo = here.repo
    return json_response(
        {
            "id": repo.id,
            "default_branch": repo.config.default_branch,
            "created": repo.config.created,
        }
    )


@router.get("/refs", tags=["repository"], summary="Branches and tags")
def refs(here: SiteDep, _: Reader) -> Response:
    repo = here.repo
    return json_response(
        {"default": repo.config.default_branch, "branches": repo.branches(), "tags": repo.tags()}
    )


@router.get("/commits", tags=["repository"], summary="History from a revision")
def log(
    here: SiteDep, _: Reader, ref: At = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> Response:
    from ..core.render import commit_dict

    return json_response([commit_dict(oid, c) for oid, c in here.repo.log(ref, limit=limit)])


@router.get("/commits/{rev}", tags=["repository"], summary="One commit")
def show(rev: str, here: SiteDep, _: Reader) -> Response:
    from ..core.render import commit_dict

    oid = here.repo.resolve(rev)
    commit = here.repo.odb.get_commit(oid)
    return json_response(commit_dict(oid, commit))


# -- images -----------------------------------------------------------------------
@router.get("/images", tags=["images"], summary="Search images")
def search(
    request: Request,
    here: SiteDep,
    _: Reader,
    at: At = None,
    as_of: AsOf = None,
    instrument: Texts = [],  # noqa: B006 (FastAPI copies defaults)
    start: Annotated[str | None, Query(max_length=64)] = None,
    end: Annotated[str | None, Query(max_length=64)] = None,
    bbox: Annotated[
        str | None, Query(max_length=200, description="LAT_MIN,LON_MIN,LAT_MAX,LON_MAX")
    ] = None,
    depth: Annotated[str | None, Query(max_length=100, description="MIN:MAX")] = None,
    dataset: Annotated[str | None, Query(max_length=200)] = None,
    sample: Texts = [],  # noqa: B006
    where: Texts = [],  # noqa: B006
    kind: Texts = [],  # noqa: B006
    prov: Texts = [],  # noqa: B006
    run: Texts = [],  # noqa: B006
    with_: Annotated[list[str], Query(alias="with", max_length=1000)] = [],  # noqa: B006
    columns: Annotated[str | None, Query(max_length=4000)] = None,
    limit: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    count: bool = False,
) -> Response:
    """Images matching every filter (the query options of `improv query`),
    sorted by time then image id; page with ``limit`` and ``offset``."""
    query = query_from_options(
        instrument,
        start,
        end,
        bbox,
        depth,
        dataset,
        sample,
        where,
        columns,
        None,
        kind,
        prov,
        run,
        with_,
    )
    repo = here.repo
    if count:
        return json_response(
            {
                "count": int(
                    repo.snapshot(at, as_of=_as_of(as_of))
                    .select(query, count=True)
                    .table.column(0)[0]
                    .as_py()
                )
            }
        )
    page = query.model_copy(update={"limit": offset + limit})
    table = repo.snapshot(at, as_of=_as_of(as_of)).select(page).table.slice(offset, limit)
    more = table.num_rows == limit and limit > 0
    return table_response(
        request, table, {"offset": offset, "next_offset": offset + limit if more else None}
    )


@router.get("/images/{image}", tags=["images"], summary="One image's metadata")
def image_metadata(
    image: str, here: SiteDep, _: Reader, at: At = None, as_of: AsOf = None
) -> Response:
    return json_response(
        here.repo.snapshot(at, _as_of(as_of)).record(valid_image_id(image), extra=True)
    )


@router.get("/images/{image}/data", tags=["images"], summary="One image's bytes")
def image_data(
    request: Request, image: str, here: SiteDep, _: Reader, at: At = None, as_of: AsOf = None
) -> Response:
    """The verified bytes; ``ETag`` is the blob id, ``Range`` is honoured, and
    responses for a full commit id are cacheable forever."""
    snapshot = here.repo.snapshot(at, _as_of(as_of))
    row = snapshot.record(valid_image_id(image))
    etag = f'"{row["blob_id"]}"'
    headers = {
        "ETag": etag,
        "Cache-Control": _cache_control(at, request.app.state.access.anonymous_read),
        "Accept-Ranges": "bytes",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    data = here.repo.odb.read_blob(row["pack"], row["offset"], row["size"], row["blob_id"])
    media = row["media_type"] or "application/octet-stream"
    wanted = byte_range(request.headers.get("range"), len(data))
    if wanted is None:
        return Response(data, media_type=media, headers=headers)
    start, end = wanted
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    return Response(data[start:end], status_code=206, media_type=media, headers=headers)


# -- provenance -------------------------------------------------------------------
@router.get(
    "/images/{image}/provenance", tags=["provenance"], summary="One image's provenance records"
)
def image_provenance(
    image: str,
    here: SiteDep,
    _: Reader,
    kind: Annotated[str | None, Query(max_length=63)] = None,
    at: At = None,
    as_of: AsOf = None,
) -> Response:
    records = here.repo.snapshot(at, as_of=_as_of(as_of)).provenance(
        valid_image_id(image), kind=kind
    )
    return json_response([r.to_json() for r in records])


@router.get("/provenance/{kind}", tags=["provenance"], summary="Every record of a kind")
def kind_records(
    request: Request,
    kind: str,
    here: SiteDep,
    _: Reader,
    run: Annotated[str | None, Query(max_length=200)] = None,
    at: At = None,
    as_of: AsOf = None,
) -> Response:
    return table_response(
        request, here.repo.snapshot(at, as_of=_as_of(as_of)).provenance_records(kind, run=run)
    )


@router.post(
    "/provenance/{kind}",
    tags=["provenance"],
    summary="Append records (write scope)",
    status_code=201,
)
async def add_records(request: Request, kind: str, here: SiteDep, who: Writer) -> Response:
    """Body: ``{"records": [{"image_id": …, …}], "source": …, "run_id": …,
    "branch": …, "message": …}``; identical records already there are skipped."""
    from starlette.concurrency import run_in_threadpool

    body = _fields(
        await json_body(request),
        required=("records", "source"),
        optional=("run_id", "branch", "message"),
    )
    if not isinstance(body["records"], list) or not body["records"]:
        raise InvalidInputError("records must be a non-empty list of objects")
    repo = here.repo

    def write() -> tuple[str | None, int]:
        message = body.get("message") or f"Add {kind} records from {body['source']}"
        with repo.transaction(body.get("branch"), message, who) as tx:
            added = tx.add_provenance(
                kind, body["records"], source=body["source"], run_id=body.get("run_id")
            )
        return tx.commit_id, added

    commit, added = await run_in_threadpool(write)
    return json_response({"commit": commit, "added": added}, status=201)


# -- datasets ---------------------------------------------------------------------
@router.get("/datasets", tags=["datasets"], summary="Every dataset")
def datasets(here: SiteDep, _: Reader, at: At = None, as_of: AsOf = None) -> Response:
    found = here.repo.snapshot(at, _as_of(as_of)).datasets()
    return json_response({name: d.model_dump(mode="json") for name, d in found.items()})


@router.get("/datasets/{name}", tags=["datasets"], summary="One dataset")
def dataset(name: str, here: SiteDep, _: Reader, at: At = None, as_of: AsOf = None) -> Response:
    return json_response(
        here.repo.snapshot(at, _as_of(as_of)).dataset(name).model_dump(mode="json")
    )


@router.post(
    "/datasets/{name}/spans", tags=["datasets"], summary="Add a span (write scope)", status_code=201
)
async def add_span(request: Request, name: str, here: SiteDep, who: Writer) -> Response:
    """Body: ``{"instrument": …, "start": …, "end": …, "description": …, "branch": …}``."""
    from starlette.concurrency import run_in_threadpool

    body = _fields(
        await json_body(request),
        required=("instrument", "start", "end"),
        optional=("description", "branch"),
    )
    start, end = parse_time(str(body["start"]), "start"), parse_time(str(body["end"]), "end")
    commit = await run_in_threadpool(
        add_dataset_span,
        here.repo,
        name,
        body["instrument"],
        start,
        end,
        body.get("description"),
        body.get("branch"),
        who,
    )
    return json_response({"commit": commit}, status=201)


# -- organizing metadata ------------------------------------------------------------
@router.get("/registry", tags=["registry"], summary="Instruments and taxonomies")
def registry(here: SiteDep, _: Reader, at: At = None, as_of: AsOf = None) -> Response:
    doc = here.repo.snapshot(at, _as_of(as_of)).registry()
    return json_response(
        doc.model_dump(mode="json", include={"instruments", "taxonomies", "strict_instruments"})
    )


@router.get("/samples", tags=["registry"], summary="Sample records")
def samples(
    request: Request,
    here: SiteDep,
    _: Reader,
    at: At = None,
    as_of: AsOf = None,
    history: bool = False,
) -> Response:
    """The latest record of every sample (every version, oldest first, with ``history``)."""
    return table_response(request, here.repo.snapshot(at, _as_of(as_of)).samples(history=history))


# -- citations --------------------------------------------------------------------
_CITE_OPTIONS = ("title", "authors", "license", "description", "doi")
_QUERY_OPTIONS = (
    "instrument",
    "start",
    "end",
    "bbox",
    "depth",
    "dataset",
    "sample",
    "where",
    "kind",
    "prov",
    "run",
)


@router.post("/citations", tags=["citations"], summary="Cite a snapshot selection")
async def cite(request: Request, here: SiteDep, _: Reader) -> Response:
    """Body: ``{"at": …}`` or ``{"tag": …}``, the query options of `improv
    query` (lists for repeatable ones) and ``title``, ``authors``,
    ``license``, ``description``, ``doi``."""
    from starlette.concurrency import run_in_threadpool

    body = _fields(
        await json_body(request),
        required=(),
        optional=("at", "tag", *_CITE_OPTIONS, *_QUERY_OPTIONS),
    )

    def listed(name: str) -> list[str]:
        value = body.get(name) or []
        return [str(v) for v in (value if isinstance(value, list) else [value])]

    query = query_from_options(
        listed("instrument"),
        body.get("start"),
        body.get("end"),
        body.get("bbox"),
        body.get("depth"),
        body.get("dataset"),
        listed("sample"),
        listed("where"),
        None,
        None,
        listed("kind"),
        listed("prov"),
        listed("run"),
    )
    extra = {k: body[k] for k in _CITE_OPTIONS if body.get(k) is not None}
    if "authors" in extra:
        extra["authors"] = tuple(
            str(a)
            for a in (
                extra["authors"] if isinstance(extra["authors"], list) else [extra["authors"]]
            )
        )
    filters = query.model_dump(exclude_defaults=True)
    made = await run_in_threadpool(
        lambda: here.repo.snapshot(body.get("at") or body.get("tag")).cite(
            tag=body.get("tag"), **filters, **extra
        )
    )
    made = made.model_copy(
        update={"urls": (str(request.base_url).rstrip("/"),)}
    )  # where readers find it, not a server path
    return json_response(
        {
            "identifier": made.identifier,
            "citation": made.model_dump(mode="json"),
            "text": made.to_text(),
        }
    )


@router.post("/citations/verify", tags=["citations"], summary="Verify a citation")
async def verify(request: Request, here: SiteDep, _: Reader) -> Response:
    """Body: ``{"citation": "improv:1:…"}`` (an identifier, or any rendering
    that contains one). 200 with the verification when it holds; 422 when
    the data no longer matches."""
    from starlette.concurrency import run_in_threadpool

    from ..cite.citation import find_identifier
    from ..cite.citing import verify as verify_pinned

    body = _fields(await json_body(request), required=("citation",), optional=())
    pinned = find_identifier(str(body["citation"]))  # text only: never a path on the server
    result = await run_in_threadpool(verify_pinned, here.repo, pinned)
    return json_response(result.to_json())


def _fields(body: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object with exactly these fields (the required ones present)."""
    if not isinstance(body, dict):
        raise InvalidInputError("the request body must be a JSON object")
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise InvalidInputError(f"unknown field {unknown[0]!r}")
    missing = [f for f in required if body.get(f) in (None, "")]
    if missing:
        raise InvalidInputError(f"missing field {missing[0]!r}")
    return body
