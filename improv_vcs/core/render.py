"""Plain-data and text renderings of commits and batches for the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .model import Batch, Commit


def commit_dict(oid: str, commit: Commit) -> dict[str, Any]:
    data = commit.model_dump(
        mode="json", exclude={"index", "provenance_index", "sources_index", "tasks_index"}
    )
    data["id"] = oid
    data["images"] = sum(b.rows for b in commit.batches)
    data["records"] = sum(s.rows for s in commit.provenance)
    data["files"] = sum(s.rows for s in commit.sources)
    return data


def provenance_lines(commit: Commit) -> list[str]:
    """One line per (kind, runs) of provenance records the commit adds."""
    totals: dict[tuple[str, tuple[str, ...]], int] = {}
    for segment in commit.provenance:
        key = (segment.kind, tuple(f"{r} ({s})" for s, r in zip(segment.sources, segment.runs)))
        totals[key] = totals.get(key, 0) + segment.rows
    return [
        f"{kind}: {rows} record(s), run {', '.join(runs)}" for (kind, runs), rows in totals.items()
    ]


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _range(low: float | None, high: float | None) -> str:
    if low is None:
        return "-"
    return f"{low:g}" if low == high else f"{low:g}..{high:g}"


def batch_line(batch: Batch) -> str:
    return (
        f"{batch.instrument}: {batch.rows} image(s), "
        f"{_time(batch.time_min)} .. {_time(batch.time_max)} UTC"
    )


def batch_row(batch: Batch) -> list[str]:
    return [
        batch.instrument,
        str(batch.rows),
        _time(batch.time_min),
        _time(batch.time_max),
        _range(batch.lat_min, batch.lat_max),
        _range(batch.lon_min, batch.lon_max),
        _range(batch.depth_min, batch.depth_max),
        batch.manifest[:12],
    ]


BATCH_HEADER = [
    "instrument",
    "images",
    "time min (UTC)",
    "time max (UTC)",
    "lat",
    "lon",
    "depth",
    "manifest",
]


def _header(oid: str, commit: Commit) -> list[str]:
    lines = [f"commit {oid}"]
    if len(commit.parents) > 1:
        lines.append("Merge: " + " ".join(p[:12] for p in commit.parents))
    lines += [f"Author: {commit.author}", f"Date:   {_time(commit.time)} UTC", ""]
    lines += [f"    {line}" for line in (commit.message or "(no message)").splitlines()]
    return lines


def log_text(oid: str, commit: Commit) -> str:
    lines = _header(oid, commit) + [f"    + {batch_line(b)}" for b in commit.batches]
    lines += [f"    + {line}" for line in provenance_lines(commit)]
    return "\n".join(lines) + "\n"


def show_text(oid: str, commit: Commit) -> str:
    """The commit header, then an aligned table of its batches."""
    rows = [BATCH_HEADER] + [batch_row(b) for b in commit.batches]
    widths = [max(len(r[i]) for r in rows) for i in range(len(BATCH_HEADER))]
    table = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines = _header(oid, commit) + [
        "",
        f"{len(commit.batches)} batch(es), {sum(b.rows for b in commit.batches)} image(s):",
    ]
    records = [f"    {line}" for line in provenance_lines(commit)]
    if records:
        records.insert(0, "\nprovenance:")
    files = [f"    {s.instrument}: {s.rows} file(s), {s.bytes} bytes" for s in commit.sources]
    if files:
        files.insert(0, "\noriginal files:")
    return "\n".join(lines + table + records + files) + "\n"
