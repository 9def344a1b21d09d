"""The ``files`` format: a directory of image files, described by
``metadata.csv``/``metadata.parquet`` tables or by IFCB-style file names
(see :mod:`improv_vcs.ingest`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import InvalidInputError
from ..ingest import scan_directory
from . import Adapter, IngestPlan, PlannedBatch


class FilesAdapter(Adapter):
    name = "files"
    description = "a directory of image files with metadata.csv/metadata.parquet tables or IFCB-style names"

    def plan(
        self, source: Path, instrument: str | None, options: Mapping[str, str], keep_raw: bool = True
    ) -> IngestPlan:
        self.check_options(options)
        if instrument is None:
            raise InvalidInputError("--format files needs --instrument")
        skipped: list[str] = []
        metadata, paths = scan_directory(source, warn=skipped.append)
        return IngestPlan(batches=[PlannedBatch(instrument, metadata, paths=paths)], warnings=skipped)
