"""Classifier-file benchmark: attaching a run of IFCB v3 class files
(``<bin>_class.h5``, the IFCB Dashboard layout) as classification records.

A v3 file names one bin, so the layout is one file per bin: N ROIs over
N / 2,000 bins of 2,000 ROIs each (a busy IFCB bin; at one bin every 20
minutes, the full scale is 17 hours of sampling), one instrument. Each file
holds what iRfcb writes: ``output_scores`` (float64, ROIs × 45 classes,
softmax-like rows), ``class_labels``, ``roi_numbers``, ``thresholds`` (the
model's, the same in every file),
``classifier_name``, ``class_name_auto`` (the highest score's class) and
``class_name`` (``unclassified`` under the class's threshold).

The repository holds the bins' images (tiny unique bytes; this benchmark is
about records) and is built once per run, untimed. Then, R times on a
freshly opened ``Repository``, it times what ``improv provenance add
classification DIR --run-id run-k`` does: reading every file
(``read_files``) and one transaction adding the class list's taxonomy and
the N records (validation, record ids, the image check, segments, the
commit). Run k adds N new records (a new run id), so none is a no-op.

Prints one JSON object: the medians and records/s, end to end.

    python benchmarks/bench_classifiers.py                 # CI size: 10,000 ROIs, 5 files
    python benchmarks/bench_classifiers.py --scale full    # 100,000 ROIs, 50 files
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from improv_vcs.ingest.provenance_files import ReadOptions, read_files  # noqa: E402
from improv_vcs.repository.repository import Repository  # noqa: E402
from improv_vcs.snapshot import registry  # noqa: E402

SCALES = {"ci": 10_000, "full": 100_000}
ROIS_PER_BIN = 2_000
RUNS = 3
CLASSES = tuple(f"class_{k:02d}" for k in range(45))
THRESHOLDS = np.round(np.random.default_rng(0).uniform(0.3, 0.7, len(CLASSES)), 2)
"""The classifier's per-class thresholds: one model, one set."""
MODEL = "bench ResNet50"
INSTRUMENT = "IFCB999"
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
TARGET_RECORDS_PER_S = 200_000.0


def bins(rois: int) -> list[tuple[str, int]]:
    """(bin id, ROI count) of each bin, one every 20 minutes."""
    count = -(-rois // ROIS_PER_BIN)
    return [
        (
            f"D{T0 + timedelta(minutes=20 * k):%Y%m%dT%H%M%S}_{INSTRUMENT}",
            min(ROIS_PER_BIN, rois - k * ROIS_PER_BIN),
        )
        for k in range(count)
    ]


def build_repository(path: Path, layout: list[tuple[str, int]]) -> None:
    repo = Repository.init(path)
    with repo.transaction(message="images") as tx:
        for index, (bin_id, rois) in enumerate(layout):
            start = int((T0 + timedelta(minutes=20 * index)).timestamp() * 1e6)
            rows = pa.table(
                {
                    "image_id": [f"{bin_id}_{roi:05d}" for roi in range(1, rois + 1)],
                    "timestamp": pa.array(
                        start + np.arange(rois) * 500_000, pa.timestamp("us", "UTC")
                    ),
                    "sample_id": [bin_id] * rois,
                }
            )
            blobs = [f"{bin_id}/{roi}".encode() for roi in range(1, rois + 1)]
            tx.append_bytes(INSTRUMENT, rows, blobs)


def write_class_file(path: Path, rois: int, seed: int) -> None:
    """One bin's v3 class file, as iRfcb writes it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (rois, len(CLASSES)))
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    thresholds = THRESHOLDS
    best = scores.argmax(axis=1)
    winners = np.array(CLASSES, dtype=object)[best]
    above = scores[np.arange(rois), best] >= thresholds[best]
    labels = np.where(above, winners, "unclassified")
    text = h5py.string_dtype("ascii")
    with h5py.File(path, "w") as f:
        f["output_scores"] = scores
        f.create_dataset("class_labels", data=list(CLASSES), dtype=text)
        f["roi_numbers"] = np.arange(1, rois + 1, dtype=np.int32)
        f["thresholds"] = thresholds
        f.create_dataset("classifier_name", data=[MODEL], dtype=text)
        f.create_dataset("class_name", data=labels.tolist(), dtype=text)
        f.create_dataset("class_name_auto", data=winners.tolist(), dtype=text)


def attach(repo_path: Path, files: Path, run: str) -> tuple[float, float, int]:
    """Read every class file and commit their records as run ``run``:
    (read seconds, commit seconds, records added)."""
    began = time.perf_counter()
    repo = Repository.open(repo_path)
    submission = read_files([files], "classification", None, ReadOptions(annotator="bench"), {})
    read = time.perf_counter()
    with repo.transaction(message=f"classes {run}") as tx:
        for (model, version), classes in submission.taxonomies.items():
            tx.edit_registry(
                functools.partial(
                    registry.add_taxonomy, classifier=model, model_version=version, classes=classes
                )
            )
        added = tx.add_provenance("classification", submission.table, "bench", run)
    done = time.perf_counter()
    return read - began, done - read, added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="ci")
    rois = SCALES[parser.parse_args().scale]
    layout = bins(rois)
    with tempfile.TemporaryDirectory() as scratch:
        repo_path, files = Path(scratch) / "repo", Path(scratch) / "class"
        files.mkdir()
        build_repository(repo_path, layout)
        for seed, (bin_id, count) in enumerate(layout):
            write_class_file(files / f"{bin_id}_class.h5", count, seed)
        file_bytes = sum(p.stat().st_size for p in files.iterdir())
        timings = [attach(repo_path, files, f"run-{k}") for k in range(1, RUNS + 1)]
    if any(added != rois for _, _, added in timings):
        sys.exit(f"expected {rois} new records per run, got {[t[2] for t in timings]}")
    read = statistics.median(t[0] for t in timings)
    commit = statistics.median(t[1] for t in timings)
    total = statistics.median(t[0] + t[1] for t in timings)
    rate = round(rois / total)
    print(
        json.dumps(
            {
                "rois": rois,
                "files": len(layout),
                "rois_per_file": ROIS_PER_BIN,
                "classes": len(CLASSES),
                "class_file_mb": round(file_bytes / 2**20, 1),
                "runs": RUNS,
                "median_seconds": {
                    "read": round(read, 3),
                    "commit": round(commit, 3),
                    "total": round(total, 3),
                },
                "records_per_s": rate,
                "target": "attach at least 200,000 records/s from v3 class files",
                "target_met": rate >= TARGET_RECORDS_PER_S,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
