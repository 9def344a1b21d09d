"""Curation that stays append-only: with a write token, a tag, comment or
flag on an image becomes a ``curation`` provenance record, and a sample's
quality a new version of its sample record, each in a commit that names
who (the token) and why; nothing is edited in place."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from ...core.errors import InvalidInputError
from ...core.ids import image_id as valid_image_id
from ...core.ids import ref_name
from ...query.filters import Query as ImageQuery
from .common import pinned
from .render import query_string
from .session import Curator

router = APIRouter()
SOURCE = "web"
RUN = "curation"
Short = Annotated[str, Form(max_length=500)]


def _branch(request: Request, given: str | None, ref: str | None) -> str:
    branch = given or ref or request.app.state.site.repo.config.default_branch
    return ref_name(branch)


@router.post("/c/{commit}/images/{image}/curate", include_in_schema=False)
def curate_image(
    request: Request,
    commit: str,
    image: str,
    who: Curator,
    action: Annotated[str, Form(pattern="^(tag|comment|flag)$")],
    value: Short,
    reason: Short = "",
    branch: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    pin = pinned(request, commit)
    image = valid_image_id(image)
    pin.snapshot.record(image)  # the image exists at this snapshot
    value = value.strip()
    if not value:
        raise InvalidInputError(f"give the {action}'s text")
    target = _branch(request, branch.strip() or None, pin.ref)
    record = {"image_id": image, "action": action, "value": value, "by": who}
    if reason.strip():
        record["reason"] = reason.strip()
    with pin.repo.transaction(target, f"Curation: {action} {value!r} on {image}", who) as tx:
        tx.add_provenance("curation", [record], source=SOURCE, run_id=RUN)
    after = tx.commit_id or pin.repo.resolve(target)
    return RedirectResponse(
        f"/c/{after}/images/{image}{query_string({'ref': target})}", status_code=303
    )


@router.post("/c/{commit}/samples/{sample}/quality", include_in_schema=False)
def flag_sample(
    request: Request,
    commit: str,
    sample: str,
    who: Curator,
    quality: Annotated[str, Form(pattern="^(good|questionable|bad)$")],
    reason: Short = "",
    branch: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A new version of the sample's record with ``quality`` (and who and
    why in its metadata); the sample's earlier versions stay."""
    pin = pinned(request, commit)
    snapshot = pin.snapshot
    samples = snapshot.samples()
    current = [r for r in samples.to_pylist() if r["sample_id"] == sample]
    if current:
        row = current[0]
    else:  # a sample known only from its images: its record starts here
        images = snapshot.select(
            ImageQuery(samples=(sample,), columns=("instrument", "timestamp"))
        ).table
        if images.num_rows == 0:
            raise InvalidInputError(f"no sample {sample!r} in this snapshot")
        times = images.column("timestamp").to_pylist()
        row = {
            "sample_id": sample,
            "instrument": images.column("instrument")[0].as_py(),
            "start": min(times),
            "end": max(times) + timedelta(microseconds=1),  # a window, even for one image
            "meta": None,
            "alt_ids": None,
        }
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    meta |= {"quality_by": who, "quality_reason": reason.strip() or None}
    version = {
        "sample_id": sample,
        "instrument": row["instrument"],
        "start": row["start"],
        "end": row["end"],
        "quality": quality,
        "meta": {k: v for k, v in meta.items() if v is not None},
    }
    if row.get("alt_ids"):
        version["alt_ids"] = row["alt_ids"]
    target = _branch(request, branch.strip() or None, pin.ref)
    with pin.repo.transaction(target, f"Curation: sample {sample} is {quality}", who) as tx:
        tx.add_samples([version])
    after = tx.commit_id or pin.repo.resolve(target)
    return RedirectResponse(
        f"/c/{after}/samples/{sample}{query_string({'ref': target})}", status_code=303
    )
