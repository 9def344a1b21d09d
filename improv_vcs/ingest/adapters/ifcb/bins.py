"""Bins on disk: finding them, and telling a usable bin from an incomplete
or bad one.

A bin is usable when its ``.hdr`` holds header fields, its ``.adc`` parses,
every ROI has a time within a day of the bin's start, the volume analyzed
is not ≤ 0 and, when it has a ``.roi``, the ROIs tile that file: back to
back in row order from its first byte to its last (a legacy file may add a
padding byte at either end). A usable bin without ``.roi`` (header and
ADC only) keeps its record and files without images; an empty bin (0-byte
``.adc`` and ``.roi``) is a real run that saw nothing. Anything else raises
:class:`InvalidInputError` with the reason, for the adapter to report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ....core.errors import InvalidInputError
from .adc import TIME_COLUMNS, TIMESTAMP, adc_column_names, parse_adc, with_times
from .header import BinId, header_columns, parse_bin_id, parse_header
from .volume import ml_analyzed

SUFFIXES = (".hdr", ".adc", ".roi")


@dataclass(frozen=True)
class Bin:
    """One usable bin, parsed (pixels are read later)."""

    id: BinId
    files: dict[str, Path]  # suffix → path
    adc: pa.Table  # every trigger: roi_number, the ADC columns, timestamp
    facts: dict[str, pa.Scalar]  # the bin_* columns

    @property
    def rois(self) -> pa.Table:
        """ADC rows that carry an image."""
        a = self.adc
        return a.filter(
            pc.and_(pc.greater(a.column("roi_width"), 0), pc.greater(a.column("roi_height"), 0))
        )

    @property
    def without_images(self) -> str | None:
        """Why the bin gives no image, or None when it gives its ROIs."""
        if ".roi" not in self.files:
            return "no .roi file"
        return None if self.rois.num_rows else "no ROIs"

    def metadata(self) -> pa.Table:
        """One row per ROI: id, its own time, the bin as sample, the ADC row,
        the bin's start (``bin_time``) and the ``bin_*`` facts."""
        rois = self.rois
        n = rois.num_rows
        numbers = rois.column("roi_number").to_pylist()
        columns: dict[str, pa.Array | pa.ChunkedArray] = {
            "image_id": pa.array([f"{self.id.bin_id}_{r:05d}" for r in numbers], pa.string()),
            "timestamp": rois.column("timestamp"),
            "sample_id": pa.array([self.id.bin_id] * n, pa.string()),
            "media_type": pa.array(["image/png"] * n, pa.string()),
        }
        columns.update({name: rois.column(name) for name in rois.column_names})
        columns["bin_time"] = pa.array([self.id.time] * n, TIMESTAMP)
        columns.update({name: pa.array([v.as_py()] * n, v.type) for name, v in self.facts.items()})
        return pa.table(columns)

    def sample(self, instrument: str) -> dict:
        """The bin's sample record: its run (from the bin's start for the
        header's run time, at least a second and past the last trigger), the
        volume analyzed, header facts and how many triggers and ROIs it has."""
        start = self.id.time
        end = start + timedelta(seconds=max(self.facts["bin_run_time"].as_py() or 0.0, 1.0))
        last = pc.max(self.adc.column("timestamp")).as_py()
        if last is not None and last >= end:
            end = last + timedelta(seconds=1)
        meta = {k.removeprefix("bin_"): v.as_py() for k, v in self.facts.items() if v.is_valid}
        meta |= {"triggers": self.adc.num_rows, "rois": self.rois.num_rows}
        return {
            "sample_id": self.id.bin_id,
            "instrument": instrument,
            "start": start,
            "end": end,
            "meta": meta,
        }


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None


def bin_name(files: dict[str, Path]) -> str:
    """The stem the files of a bin share."""
    any_file = next(iter(files.values()))
    return any_file.name[: -len(any_file.suffix)]


def load_bin(files: dict[str, Path]) -> Bin:
    """Parse and check one bin (its files by suffix); the reason it cannot be
    used is an :class:`InvalidInputError`."""
    bin_id = parse_bin_id(bin_name(files))
    if ".hdr" not in files:
        raise InvalidInputError("no .hdr file")
    if ".adc" not in files:
        raise InvalidInputError("no .adc file (header only)" if len(files) == 1 else "no .adc file")
    text = read_bytes(files[".hdr"]).decode("latin-1")
    if not text.strip():
        raise InvalidInputError("empty .hdr file")
    header = parse_header(text)
    if not header:
        raise InvalidInputError("the .hdr file holds no header fields")
    where = files[".adc"].name
    adc = parse_adc(read_bytes(files[".adc"]), adc_column_names(header, bin_id.legacy), where)
    for column in ("roi_width", "roi_height", "start_byte"):
        if adc.column(column).null_count:
            row = pc.index(pc.is_null(adc.column(column)), True).as_py()
            raise InvalidInputError(f"{where}: row {row + 1} has no {column}")
    facts = header_columns(header)
    volume = ml_analyzed(
        bin_id, facts["bin_run_time"].as_py(), facts["bin_inhibit_time"].as_py(), adc
    )
    facts["bin_ml_analyzed"] = pa.scalar(volume, pa.float64())
    found = Bin(bin_id, files, with_times(adc, bin_id), facts)
    _check_times(found.rois)
    if volume is not None and volume <= 0:
        raise InvalidInputError(f"ml_analyzed is {volume:.6g} ml, not positive")
    if ".roi" in files:
        try:
            size = os.stat(files[".roi"]).st_size
        except OSError as exc:
            raise InvalidInputError(f"cannot read {files['.roi']}: {exc.strerror}") from None
        check_tiling(found.rois, size, bin_id.legacy)
    return found


def _check_times(rois: pa.Table) -> None:
    """Every ROI has a time (its ADC time column within a day of the start)."""
    missing = pc.is_null(rois.column("timestamp"))
    if pc.any(missing).as_py():
        row = rois.filter(missing).slice(0, 1).to_pylist()[0]
        name = next(n for n in TIME_COLUMNS if n in row)
        raise InvalidInputError(
            f"ROI {row['roi_number']} has no usable {name} ({row[name]}): not a time within a "
            "day of the bin's start"
        )


def check_tiling(rois: pa.Table, size: int, legacy: bool) -> None:
    """The ROIs lie back to back in row order, from the ``.roi`` file's first
    byte to its last; a legacy file may hold one padding byte before the
    first ROI and one after the last (as the real legacy bins do), and an
    empty one may be one byte long."""
    padding = 1 if legacy else 0
    if not rois.num_rows:
        if size > padding:
            raise InvalidInputError(
                f"the .adc file lists no ROIs but the .roi file has {size} bytes"
            )
        return
    numbers = rois.column("roi_number").to_numpy()
    starts = rois.column("start_byte").to_numpy()
    ends = starts + rois.column("roi_width").to_numpy() * rois.column("roi_height").to_numpy()
    outside = (starts < 0) | (ends > size)
    if outside.any():
        number = numbers[np.argmax(outside)]
        raise InvalidInputError(f"ROI {number} lies outside its {size}-byte .roi file")
    if starts[0] not in (0, padding):
        raise InvalidInputError(
            f"ROI {numbers[0]} starts at byte {starts[0]}, not at the start of the .roi file"
        )
    apart = np.flatnonzero(starts[1:] != ends[:-1])
    if apart.size:
        i = apart[0] + 1
        raise InvalidInputError(
            f"ROI {numbers[i]} starts at byte {starts[i]}, not where ROI {numbers[i - 1]} ends "
            f"(byte {ends[i - 1]})"
        )
    if not 0 <= size - ends[-1] <= padding:
        raise InvalidInputError(
            f"the .roi file has {size - ends[-1]} bytes after its last ROI (ROI {numbers[-1]})"
        )


def find_bins(source: Path) -> tuple[Path, list[dict[str, Path]]]:
    """The root that relative paths start from, and each bin's files by suffix.

    ``source`` is a bin's file, a bin's path without suffix, or a directory
    searched recursively (hidden entries skipped, other files ignored)."""
    if source.is_dir():
        groups: dict[tuple[str, str], dict[str, Path]] = {}
        for directory, dirnames, filenames in os.walk(source):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                stem, suffix = os.path.splitext(name)
                if suffix in SUFFIXES and not name.startswith("."):
                    groups.setdefault((directory, stem), {})[suffix] = Path(directory) / name
        seen: dict[str, str] = {}
        for directory, stem in groups:
            if stem in seen:
                raise InvalidInputError(f"bin {stem} is both in {seen[stem]} and in {directory}")
            seen[stem] = directory
        bins = [groups[key] for key in sorted(groups, key=lambda k: (k[1], k[0]))]
        if not bins:
            raise InvalidInputError(f"no IFCB bins (.hdr/.adc/.roi files) under {source}")
        return source, bins
    stem = source.name[: -len(source.suffix)] if source.suffix in SUFFIXES else source.name
    files = {
        s: source.parent / (stem + s) for s in SUFFIXES if (source.parent / (stem + s)).is_file()
    }
    if not files:
        raise InvalidInputError(f"{source} is neither a directory nor an IFCB bin's file")
    return source.parent, [files]
