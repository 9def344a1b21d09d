"""Build a small demo repository from generated IFCB-like images, with what
a site adds over time: positions, sample records with the volume analysed,
two runs of a classifier side by side, and a dataset."""

from __future__ import annotations

import hashlib
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..core.progress import progress_bar
from ..ingest.folders import scan_directory
from ..ingest.synthetic import generate_tree
from ..repository.repository import Repository

INSTRUMENTS = ("IFCB107", "IFCB110")
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
BINS_PER_DAY = 3
STATIONS = {"IFCB107": (41.5253, -70.6717), "IFCB110": (41.3250, -70.5667)}
"""Where each instrument sampled (Woods Hole dock, the MVCO tower)."""
ML_ANALYZED = 5.0
CLASSES = ("Diatom", "Dinoflagellate", "Ciliate", "Detritus", "Other")
RUNS = ("demo-cnn-v1", "demo-cnn-v2")


def build_demo(path: str | Path, images_per_bin: int = 200, quiet: bool = False) -> Repository:
    """Create a repository at ``path`` with one commit per instrument and day
    (two instruments, two days), and a tag on the first day's state."""
    repo = Repository.init(path)
    for day in range(2):
        for number, instrument in enumerate(INSTRUMENTS):
            with tempfile.TemporaryDirectory(prefix="improv-demo-") as tree:
                generate_tree(
                    tree,
                    images=images_per_bin * BINS_PER_DAY,
                    instruments=(instrument,),
                    start=START + timedelta(days=day),
                    days=1,
                    per_bin=images_per_bin,
                    seed=day * len(INSTRUMENTS) + number,
                )
                metadata, paths = scan_directory(tree)
                metadata = _placed(metadata, instrument)
                label = f"{instrument} {(START + timedelta(days=day)).date()}"
                with progress_bar(label, total=len(paths), disable=quiet) as advance:
                    with repo.transaction(
                        message=f"{instrument}: bins of {label.split()[1]}", progress=advance
                    ) as tx:
                        tx.append_files(instrument, metadata, paths)
        if day == 0:
            repo.create_tag("day-1", message="Both instruments, first day")
    _add_products(repo)
    return repo


def _placed(metadata: pa.Table, instrument: str) -> pa.Table:
    """``metadata`` with the instrument's station, a little apart per bin."""
    lat, lon = STATIONS[instrument]
    bins = metadata.column("image_id").to_pylist()
    offsets = [int(name[10:12]) / 1000 for name in bins]  # the bin's hour
    return metadata.append_column("lat", pa.array([lat + o for o in offsets])).append_column(
        "lon", pa.array([lon - o for o in offsets])
    )


def _add_products(repo: Repository) -> None:
    """Sample records, two classification runs, masks of one bin and a
    dataset, each a commit."""
    images = repo.snapshot().query(columns=["image_id", "instrument", "timestamp", "sample_id"])
    samples = images.group_by(["sample_id", "instrument"]).aggregate(
        [("timestamp", "min"), ("timestamp", "max")]
    )
    with repo.transaction(message="Sample records: volume analysed per bin") as tx:
        tx.add_samples(
            [
                {
                    "sample_id": row["sample_id"],
                    "instrument": row["instrument"],
                    "start": row["timestamp_min"],
                    "end": row["timestamp_max"] + timedelta(minutes=20),
                    "meta": {"ml_analyzed": ML_ANALYZED},
                }
                for row in samples.to_pylist()
            ]
        )
    for version, run in enumerate(RUNS, start=1):
        with repo.transaction(message=f"Classifier demo-cnn, run {run}") as tx:
            tx.add_provenance("classification", _classified(images, version), "demo", run)
    first_bins = sorted(samples.column("sample_id").to_pylist())[:1]
    chosen = images.filter(pc.is_in(images.column("sample_id"), pa.array(first_bins)))
    masks = {i: _mask(repo.snapshot().read_image(i)) for i in chosen.column("image_id").to_pylist()}
    with repo.transaction(message="Segmentation of the first bin: a mask per image") as tx:
        tx.add_provenance(
            "segmentation", [{"image_id": i} for i in masks], "demo", "threshold-v1", masks=masks
        )
    with repo.transaction(message="Dataset: IFCB107's first day") as tx:
        tx.add_dataset_span(
            "dock-day-1", "IFCB107", START, START + timedelta(days=1), "the dock, first day"
        )


def _mask(png: bytes) -> bytes:
    """The dark particles of an image (darker than its background by a margin), as a PNG."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    mask = (pixels < np.median(pixels) - 3 * pixels.std() / 2).astype(np.uint8) * 255
    out = io.BytesIO()
    Image.fromarray(mask).save(out, "PNG")
    return out.getvalue()


def _classified(images: pa.Table, version: int) -> pa.Table:
    """One record per image: a class chosen from its id (the second run
    disagrees on about a fifth of them)."""
    ids = images.column("image_id").to_pylist()
    winners, scores = [], []
    for image in ids:
        digest = hashlib.sha256(image.encode()).digest()
        pick = digest[0] % len(CLASSES)
        if version == 2 and digest[1] % 5 == 0:
            pick = (pick + 1) % len(CLASSES)
        winners.append(CLASSES[pick])
        scores.append(round(0.5 + digest[2] / 512, 3))
    return pa.table(
        {
            "image_id": ids,
            "model": pa.repeat(pa.scalar("demo-cnn"), len(ids)),
            "model_version": pa.repeat(pa.scalar(f"v{version}"), len(ids)),
            "winner": winners,
            "score": scores,
        }
    )
