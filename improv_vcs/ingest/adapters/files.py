"""The ``files`` format: a directory of image files, described by
``metadata.csv``/``metadata.parquet`` tables or by IFCB-style file names
(see :mod:`improv_vcs.ingest.folders`). Rows are split into one batch per
instrument: ``--instrument``, else each row's ``instrument`` cell, else the
instrument an IFCB-style name carries."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ...core.times import parse_timezone
from ..folders import scan_directory, split_by_instrument
from .base import Adapter, IngestPlan, PlannedBatch


class FilesAdapter(Adapter):
    name = "files"
    description = (
        "a directory of image files with metadata.csv/metadata.parquet tables or IFCB-style names"
    )
    options = {
        "timezone": "the zone of metadata times without a UTC offset: an IANA name "
        "(Europe/Stockholm) or ±HH:MM; default UTC",
    }
    needs_instrument = False

    def plan(
        self,
        source: Path,
        instrument: str | None,
        options: Mapping[str, str],
        keep_raw: bool = True,
    ) -> IngestPlan:
        self.check_options(options)
        zone = parse_timezone(options["timezone"]) if "timezone" in options else "UTC"
        skipped: list[str] = []
        metadata, paths = scan_directory(
            source, warn=skipped.append, instrument=instrument, zone=zone
        )
        batches = [
            PlannedBatch(name, rows, paths=files)
            for name, rows, files in split_by_instrument(metadata, paths, instrument)
        ]
        return IngestPlan(batches=batches, warnings=skipped)
