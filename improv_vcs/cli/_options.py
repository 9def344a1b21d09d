"""Options shared by the commands that select images (query, export, cite,
fetch, provenance …): their types, help texts and how they become a Query."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ..query.filters import Query

At = Annotated[
    str | None,
    typer.Option(
        "--at", help="Revision: commit, prefix, branch, tag or REF~N (default: the default branch)."
    ),
]
AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Newest commit at or before this time on --at's first-parent line."
    ),
]
Instrument = Annotated[
    list[str] | None,
    typer.Option("--instrument", "-i", help="Only these instruments (repeatable)."),
]
Start = Annotated[
    str | None,
    typer.Option("--start", help="From this time (ISO 8601, UTC if no offset), inclusive."),
]
End = Annotated[str | None, typer.Option("--end", help="Until this time, exclusive.")]
Bbox = Annotated[
    str | None,
    typer.Option(
        "--bbox",
        help="Bounding box S,W,N,E: minimum latitude, minimum longitude, maximum latitude, "
        "maximum longitude (e.g. 41,-71,42,-70).",
    ),
]
Depth = Annotated[str | None, typer.Option("--depth", help="MIN:MAX (either side may be empty).")]
DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", help="Only images inside this dataset's spans.")
]
Sample = Annotated[
    list[str] | None, typer.Option("--sample", help="Only these sample ids (repeatable).")
]
SampleQuality = Annotated[
    list[str] | None,
    typer.Option(
        "--sample-quality",
        help="Only images whose sample's latest record has this quality: good, questionable, bad "
        "(repeatable).",
    ),
]
Where = Annotated[
    list[str] | None,
    typer.Option(
        "--where", "-w", help="'COLUMN OP VALUE', OP in = != < <= > >= like (repeatable)."
    ),
]
KindOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kind", "-k", help="Only images with provenance records of this kind (repeatable)."
    ),
]
Prov = Annotated[
    list[str] | None,
    typer.Option(
        "--prov",
        help="'KIND.COLUMN OP VALUE' on provenance records; conditions on one kind hold for the "
        "same record (repeatable).",
    ),
]
Run = Annotated[
    list[str] | None,
    typer.Option(
        "--run",
        help="Which run's records count: 'latest' (per image) or a run id; 'KIND=RUN' for one "
        "kind (repeatable).",
    ),
]
With = Annotated[
    list[str] | None,
    typer.Option(
        "--with",
        help="Add KIND.COLUMN from each image's latest matching record, or sample.COLUMN from "
        "its sample's record (repeatable).",
    ),
]
DEFAULT_COLUMNS = (
    "image_id",
    "instrument",
    "timestamp",
    "lat",
    "lon",
    "depth",
    "sample_id",
    "size",
)
"""What ``improv query`` shows without ``--columns`` (``-c '*'`` shows all)."""
Columns = Annotated[
    str | None,
    typer.Option(
        "--columns",
        "-c",
        help=f"Comma-separated columns to return, or '*' for every column (default: "
        f"{', '.join(DEFAULT_COLUMNS)}).",
    ),
]
Limit = Annotated[int | None, typer.Option("--limit", "-n", min=0, help="At most N rows.")]


def build_from_options(*options: Any, **named: Any) -> Query:
    """The :class:`Query` the shared query options describe (imported lazily
    to keep start-up fast)."""
    from ..query.text import query_from_options

    return query_from_options(*options, **named)


def parse_as_of(text: str | None) -> datetime | None:
    from ..core.times import parse_time

    return parse_time(text, "--as-of") if text else None
