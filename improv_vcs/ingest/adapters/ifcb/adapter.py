"""The ``ifcb`` adapter: usable bins become images, sample records and
original files; the others are reported with their reason."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from ....core.errors import InvalidInputError
from ....snapshot.sources import SourceFile
from ..base import Adapter, IngestPlan, PlannedBatch
from .bins import Bin, bin_name, find_bins, load_bin
from .pixels import encoded_rois

_MEDIA = {".hdr": "text/plain", ".adc": "text/csv", ".roi": "application/octet-stream"}


class IfcbAdapter(Adapter):
    name = "ifcb"
    description = "raw IFCB bins (.hdr/.adc/.roi): a bin, a directory of bins, or a dated tree"
    needs_instrument = False

    def plan(
        self,
        source: Path,
        instrument: str | None,
        options: Mapping[str, str],
        keep_raw: bool = True,
    ) -> IngestPlan:
        """Every usable bin under ``source``; incomplete or bad bins are in
        ``plan.skipped`` with their reason, and bins kept without images in
        ``plan.without_images``. Refused when no bin is usable."""
        self.check_options(options)
        root, found = find_bins(source)
        plan = IngestPlan()
        bins: list[Bin] = []
        for files in found:
            try:
                bins.append(load_bin(files))
            except InvalidInputError as exc:
                plan.skipped[bin_name(files)] = str(exc)
        if not bins:
            name, reason = next(iter(plan.skipped.items()))
            others = len(plan.skipped) - 1
            more = f"; {others} other bin(s) cannot be ingested either" if others else ""
            raise InvalidInputError(f"bin {name}: {reason}{more}")
        by_instrument: dict[str, list[Bin]] = {}
        for b in bins:
            by_instrument.setdefault(instrument or b.id.instrument, []).append(b)
            if b.without_images:
                plan.without_images[b.id.bin_id] = b.without_images
        for name, group in sorted(by_instrument.items()):
            with_rois = [b for b in group if not b.without_images]
            if with_rois:
                metadata = pa.concat_tables(
                    [b.metadata() for b in with_rois], promote_options="permissive"
                )
                plan.batches.append(
                    PlannedBatch(name, metadata, blobs=lambda g=with_rois: encoded_rois(g))
                )
            plan.samples += [b.sample(name) for b in group]
            if keep_raw:
                plan.sources[name] = [
                    SourceFile(
                        sample_id=b.id.bin_id,
                        path=path.relative_to(root).as_posix(),
                        timestamp=b.id.time,
                        media_type=_MEDIA[suffix],
                        location=path,
                    )
                    for b in group
                    for suffix, path in sorted(b.files.items())
                ]
        return plan
