"""Looking at a snapshot: the timeline, a sample's mosaic, an image with its
whole provenance, the map, and the bytes pages show (images, outlines of
masks, original files), served immutable under their content ids."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from ...core.errors import InvalidInputError, NotFoundError
from ...core.ids import image_id as valid_image_id
from ...core.ids import ref_name
from ...core.times import parse_time
from ...query.filters import Query as ImageQuery
from ...query.filters import Run
from ...query.timeline import BUCKETS, class_counts, overlapping, timeline
from . import charts
from .common import chosen_run, classification_runs, pinned, time_span
from .origins import origins
from .render import page, query_string
from .session import Viewer

router = APIRouter()
IMMUTABLE = "private, max-age=31536000, immutable"
CLASS_COUNT_IMAGES = 1_000_000
"""A timeline counts classes by itself up to this many images (beyond, on request)."""
MOSAIC_SIZES = {"small": 64, "medium": 128, "large": 224}
PAGE_SIZES = (50, 100, 200)
Text = Annotated[str | None, Query(max_length=200)]


@router.get("/", include_in_schema=False)
def home(request: Request, _: Viewer) -> Response:
    repo = request.app.state.site.repo
    branch = repo.config.default_branch
    return _to_ref(request, branch, "")


@router.get("/ref/{name:path}", include_in_schema=False)
def by_ref(name: str, request: Request, _: Viewer) -> Response:
    """``/ref/NAME[/-/PAGE]``: the page at the commit NAME names now."""
    name, _sep, rest = name.partition("/-/")
    return _to_ref(request, ref_name(name), rest)


def _to_ref(request: Request, name: str, rest: str) -> Response:
    commit = request.app.state.site.repo.resolve(name)
    query = dict(request.query_params) | {"ref": name}
    return RedirectResponse(f"/c/{commit}/{rest}{query_string(query)}", status_code=303)


# -- timeline -------------------------------------------------------------------------------
@router.get("/c/{commit}/", include_in_schema=False)
def timeline_page(
    request: Request,
    commit: str,
    _: Viewer,
    start: Text = None,
    end: Text = None,
    instrument: Annotated[list[str], Query(max_length=100)] = [],  # noqa: B006
    bucket: Text = None,
    run: Text = None,
    count_classes: bool = False,
) -> Response:
    pin = pinned(request, commit)
    snapshot = pin.snapshot
    span = time_span(snapshot)
    if span is None:
        return page(request, "timeline.html", **pin.context, empty=True, params={})
    begin = parse_time(start, "start") if start else span[0].replace(minute=0, second=0)
    finish = parse_time(end, "end") if end else _after(span[1])
    if bucket not in (None, "", *BUCKETS):
        raise InvalidInputError(f"unknown bucket {bucket!r}")
    chosen = tuple(instrument)
    found = timeline(snapshot.reader, begin, finish, chosen, bucket or None)
    rows = found.table.to_pylist()
    params = {
        "start": start,
        "end": end,
        "instrument": list(chosen),
        "bucket": bucket,
        "run": run,
        "ref": pin.ref,
    }
    width = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}

    kept = query_string({"run": run, "ref": pin.ref})
    narrower = query_string(params, start=None, end=None, bucket=None, instrument=None)
    narrower = (narrower + "&") if narrower else "?"

    def link(row: dict[str, Any]) -> str:
        if found.bucket == "sample":
            return pin.url(f"samples/{quote(row['sample_id'], safe='')}") + kept
        zoom = {
            "start": row["bucket"].isoformat(),
            "end": (row["bucket"] + width[found.bucket]).isoformat(),
            "instrument": row["instrument"],
        }
        return pin.url("") + narrower + urlencode(zoom)

    rows = [{**r, "link": link(r)} for r in rows]
    the_run = chosen_run(snapshot, run)
    images = sum(r["images"] for r in rows)
    classes: list[tuple[str, int]] = []
    if the_run is not None and (images <= CLASS_COUNT_IMAGES or count_classes):
        winners = _winners(snapshot, the_run, begin, finish, chosen)
        counted = class_counts(snapshot.reader, winners, begin, finish, chosen, found.bucket)
        totals: dict[str, int] = {}
        for row in counted.to_pylist():
            totals[row["winner"]] = totals.get(row["winner"], 0) + row["images"]
        classes = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    concentration = any(r["concentration"] is not None for r in rows)
    return page(
        request,
        "timeline.html",
        **pin.context,
        empty=False,
        params=params,
        found=found,
        rows=rows,
        chart=charts.timeline_svg(rows, begin, finish, _link),
        concentration_chart=(
            charts.timeline_svg(rows, begin, finish, _link, "concentration")
            if concentration
            else None
        ),
        instruments=snapshot.instruments(),
        chosen=chosen,
        buckets=BUCKETS,
        runs=classification_runs(snapshot),
        run=the_run,
        classes=classes,
        classes_deferred=the_run is not None and not classes and images > CLASS_COUNT_IMAGES,
        begin=begin,
        finish=finish,
    )


def _link(row: dict[str, Any]) -> str:
    return row["link"]


def _winners(
    snapshot: Any, run: str, start: datetime, end: datetime, instruments: tuple[str, ...]
) -> pa.Table:
    """``image_id`` and ``winner`` of one classification run's records about
    the images in ``[start, end)`` (through the query engine, which reads
    only the segments those images can have records in)."""
    found = snapshot.select(
        ImageQuery(
            instruments=instruments,
            start=start,
            end=end,
            kinds=("classification",),
            runs=(Run(run, kind="classification"),),
            provenance_columns=("classification.winner",),
            columns=("image_id",),
        )
    ).table
    return pa.table({"image_id": found["image_id"], "winner": found["classification.winner"]})


def _after(last: datetime) -> datetime:
    """The end a default range gets: the hour after the last image's."""
    return last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


# -- samples --------------------------------------------------------------------------------
@router.get("/c/{commit}/samples/{sample}", include_in_schema=False)
def sample_page(
    request: Request,
    commit: str,
    sample: str,
    _: Viewer,
    size: Annotated[str, Query(pattern="^(small|medium|large)$")] = "medium",
    per_page: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    run: Text = None,
) -> Response:
    pin = pinned(request, commit)
    snapshot = pin.snapshot
    selection = ImageQuery(samples=(sample,))
    rows = snapshot.select(selection.model_copy(update={"limit": offset + per_page})).table
    total = snapshot.count(selection)
    if total == 0:
        raise NotFoundError(f"no images of sample {sample!r} in this snapshot")
    images = rows.slice(offset, per_page).to_pylist()
    first = rows.slice(0, 1).to_pylist()[0]  # rows start at the sample's first image
    instrument = first["instrument"]
    record = _sample_record(snapshot, sample)
    previous, following = _neighbours(snapshot, instrument, sample, first["timestamp"])
    the_run = chosen_run(snapshot, run)
    classes: list[tuple[str, int]] = []
    if the_run is not None:  # the sample's images with the run's winner, by the query engine
        labelled = selection.model_copy(
            update={
                "kinds": ("classification",),
                "runs": (Run(the_run, kind="classification"),),
                "provenance_columns": ("classification.winner",),
                "columns": ("image_id",),
            }
        )
        winners = snapshot.select(labelled).table.column("classification.winner")
        counts = pa.table({"winner": winners}).group_by("winner").aggregate([([], "count_all")])
        classes = sorted(
            zip(counts.column("winner").to_pylist(), counts.column("count_all").to_pylist()),
            key=lambda kv: (-kv[1], kv[0]),
        )
    files = snapshot.source_files(samples=[sample]).to_pylist()
    params = {"size": size, "per_page": per_page, "run": run, "ref": pin.ref}
    return page(
        request,
        "sample.html",
        **pin.context,
        sample=sample,
        instrument=instrument,
        images=images,
        total=total,
        offset=offset,
        per_page=per_page,
        page_sizes=PAGE_SIZES,
        size=size,
        pixels=MOSAIC_SIZES[size],
        sizes=MOSAIC_SIZES,
        params=params,
        record=record,
        previous=previous,
        following=following,
        runs=classification_runs(snapshot),
        run=the_run,
        classes=classes,
        files=files,
        qualities=("good", "questionable", "bad"),
    )


def _sample_record(snapshot: Any, sample: str) -> dict[str, Any] | None:
    samples = snapshot.samples()
    found = samples.filter(pc.equal(samples.column("sample_id"), sample))
    return found.to_pylist()[0] if found.num_rows else None


def _neighbours(
    snapshot: Any, instrument: str, sample: str, when: datetime
) -> tuple[str | None, str | None]:
    """The samples of ``instrument`` just before and after ``sample`` (among
    the batches within two days of it)."""
    reader = snapshot.reader
    near = overlapping(reader.batches, when - timedelta(days=2), when + timedelta(days=2))
    near = near.filter(pc.equal(near.column("instrument"), instrument))
    rows = reader.rows(near.column("manifest").to_pylist(), ["sample_id", "timestamp"])
    firsts = rows.group_by("sample_id").aggregate([("timestamp", "min")])
    ordered = [
        r["sample_id"]
        for r in firsts.sort_by(
            [("timestamp_min", "ascending"), ("sample_id", "ascending")]
        ).to_pylist()
        if r["sample_id"] is not None
    ]
    if sample not in ordered:
        return None, None
    at = ordered.index(sample)
    return (ordered[at - 1] if at > 0 else None), (
        ordered[at + 1] if at + 1 < len(ordered) else None
    )


@router.get("/c/{commit}/samples/{sample}/files/{name}", include_in_schema=False)
def source_file(request: Request, commit: str, sample: str, name: str, _: Viewer) -> Response:
    pin = pinned(request, commit)
    data = pin.snapshot.read_source(sample, name)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Cache-Control": IMMUTABLE,
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


# -- images ---------------------------------------------------------------------------------
@router.get("/c/{commit}/images/{image}", include_in_schema=False)
def image_page(request: Request, commit: str, image: str, _: Viewer) -> Response:
    pin = pinned(request, commit)
    snapshot = pin.snapshot
    image = valid_image_id(image)
    row = snapshot.record(image, extra=True)
    records = snapshot.provenance(image)
    by_kind: dict[str, list[Any]] = {}
    for record in records:
        by_kind.setdefault(record.kind, []).append(record)
    columns = {
        kind: sorted({k for r in found for k in r.values if k != "score_vector"})
        for kind, found in by_kind.items()
    }
    added = origins(pin, image, records)
    masked = "segmentation" in by_kind
    return page(
        request,
        "image.html",
        **pin.context,
        image=image,
        row=row,
        by_kind=by_kind,
        columns=columns,
        added=added,
        masked=masked,
        flags=("skip", "questionable", "bad", "good"),
    )


@router.get("/c/{commit}/images/{image}/data", include_in_schema=False)
def image_bytes(request: Request, commit: str, image: str, _: Viewer) -> Response:
    pin = pinned(request, commit)
    row = pin.snapshot.record(valid_image_id(image))
    etag = f'"{row["blob_id"]}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    data = pin.repo.odb.read_blob(row["pack"], row["offset"], row["size"], row["blob_id"])
    return Response(
        data, media_type=row["media_type"] or "application/octet-stream", headers=headers
    )


@router.get("/c/{commit}/images/{image}/outline.png", include_in_schema=False)
def mask_outline(request: Request, commit: str, image: str, _: Viewer) -> Response:
    """The edge of the latest segmentation mask, opaque on transparent."""
    from PIL import Image, ImageFilter

    pin = pinned(request, commit)
    mask = Image.open(io.BytesIO(pin.snapshot.read_mask(valid_image_id(image)))).convert("L")
    solid = mask.point(lambda v: 255 if v else 0)
    edge = solid.filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v else 0)
    outline = Image.new("RGBA", solid.size, (255, 64, 0, 0))
    outline.putalpha(edge)
    out = io.BytesIO()
    outline.save(out, "PNG")
    return Response(out.getvalue(), media_type="image/png", headers={"Cache-Control": IMMUTABLE})


# -- map ------------------------------------------------------------------------------------
@router.get("/c/{commit}/map", include_in_schema=False)
def map_page(request: Request, commit: str, _: Viewer) -> Response:
    """One point per instrument and position (the centre of each batch's
    position box, from the index); batches at one place share a point."""
    pin = pinned(request, commit)
    batches = pin.snapshot.reader.batches
    places: dict[tuple[str, float, float], dict[str, Any]] = {}
    for b in batches.select(
        ["instrument", "rows", "lat_min", "lat_max", "lon_min", "lon_max"]
    ).to_pylist():
        if b["lat_min"] is None or b["lon_min"] is None:
            continue
        lat = round((b["lat_min"] + b["lat_max"]) / 2, 4)
        lon = round((b["lon_min"] + b["lon_max"]) / 2, 4)
        place = places.setdefault(
            (b["instrument"], lat, lon),
            {"lat": lat, "lon": lon, "instrument": b["instrument"], "batches": 0, "images": 0},
        )
        place["batches"] += 1
        place["images"] += b["rows"]
    points = [
        {**p, "label": f"{p['instrument']} at {p['lat']}, {p['lon']}: {p['images']:,} images"}
        for p in places.values()
    ]

    def link(point: dict[str, Any]) -> str:
        lat, lon = point["lat"], point["lon"]
        box = f"{lat - 0.00005:.5f},{lon - 0.00005:.5f},{lat + 0.00005:.5f},{lon + 0.00005:.5f}"
        return pin.url("query") + query_string(
            {"instrument": point["instrument"], "bbox": box, "ref": pin.ref}
        )

    chart = charts.map_svg(points, link)
    return page(
        request, "map.html", **pin.context, chart=chart, points=points, batches=batches.num_rows
    )
