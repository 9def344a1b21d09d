"""Growth benchmark: does ingest slow down, and how does query latency grow,
as a repository fills up?

One repository receives K commits of B images each (in-memory blobs of
~7 KB, two instruments, one hour of timestamps per commit). After every
commit it records the commit's ingest rate (images/s of
``Transaction.append_bytes`` + ``commit``) and the repository's size; every
few commits it times (warm, median of 3) two queries over the whole
snapshot:

* ``hour``: one instrument, one hour (the manifest statistics prune all but
  one batch: latency should stay flat);
* ``scan_all``: every image's id and time (reads every manifest: latency
  grows with rows).

Prints one JSON object with both series; ``python -m benchmarks`` plots them.
The baseline for the ingest rate is the same run's first commits: the
median rate of the first quarter of commits over that of the last quarter
shows whether commits slow down as history grows.

    python benchmarks/bench_growth.py                 # CI size: 16 commits x 500 images
    python benchmarks/bench_growth.py --scale full    # 40 commits x 2,500 images
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from improv_vcs.repository.repository import Repository  # noqa: E402

SCALES = {
    "ci": (16, 500, 5),
    "full": (40, 2_500, 5),
}  # commits, images per commit, query every N commits
BLOB_BYTES = 7_000
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
TARGET_LAST_OVER_FIRST = 1.5  # late commits ingest at least 1/1.5 as fast as early ones


def batch(commit: int, size: int, rng: np.random.Generator) -> tuple[list[dict], list[bytes]]:
    start = T0 + timedelta(hours=commit)
    rows, blobs = [], []
    for i in range(size):
        instrument = "IFCB107" if i % 2 else "IFCB110"
        rows.append(
            {
                "image_id": f"c{commit:04d}_{i:06d}",
                "timestamp": start + timedelta(seconds=i * 3600 / size),
                "instrument_hint": instrument,
            }
        )
        blobs.append(rng.bytes(BLOB_BYTES))
    return rows, blobs


def timed(fn, repeat: int = 3) -> float:
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", choices=SCALES, default="ci", help="ci: 16 x 500 images; full: 40 x 2,500"
    )
    args = parser.parse_args(argv)
    commits, size, every = SCALES[args.scale]
    rng = np.random.default_rng(0)
    series = []
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        repo = Repository.init(Path(tmp) / "repo")
        for k in range(commits):
            rows, blobs = batch(k, size, rng)
            by_instrument: dict[str, tuple[list[dict], list[bytes]]] = {}
            for row, blob in zip(rows, blobs):
                group = by_instrument.setdefault(row.pop("instrument_hint"), ([], []))
                group[0].append(row)
                group[1].append(blob)
            began = time.perf_counter()
            with repo.transaction(message=f"growth {k}") as tx:
                for instrument, (meta, data) in sorted(by_instrument.items()):
                    tx.append_bytes(instrument, meta, data)
            seconds = time.perf_counter() - began
            point = {
                "commit": k + 1,
                "images": (k + 1) * size,
                "repository_mb": round(
                    sum(p.stat().st_size for p in (Path(tmp) / "repo").rglob("*") if p.is_file())
                    / 1e6,
                    1,
                ),
                "commit_s": round(seconds, 4),
                "images_per_s": round(size / seconds),
            }
            if (k + 1) % every == 0 or k == 0 or k + 1 == commits:
                hour = (T0 + timedelta(hours=k // 2), T0 + timedelta(hours=k // 2 + 1))
                repo.snapshot().count(instruments=("IFCB107",), start=hour[0], end=hour[1])  # warm
                point["hour_ms"] = round(
                    1000
                    * timed(
                        lambda hour=hour: repo.snapshot().count(
                            instruments=("IFCB107",), start=hour[0], end=hour[1]
                        )
                    ),
                    2,
                )
                point["scan_all_ms"] = round(
                    1000 * timed(lambda: repo.snapshot().query(columns=("image_id", "timestamp"))),
                    2,
                )
            series.append(point)
    quarter = max(1, commits // 4)
    first = statistics.median(p["images_per_s"] for p in series[:quarter])
    last = statistics.median(p["images_per_s"] for p in series[-quarter:])
    report = {
        "benchmark": "growth",
        "scale": args.scale,
        "commits": commits,
        "images_per_commit": size,
        "series": series,
        "first_quarter_images_per_s": round(first),
        "last_quarter_images_per_s": round(last),
        "first_over_last": round(first / last, 2),
        "target_first_over_last_le": TARGET_LAST_OVER_FIRST,
        "target_met": first / last <= TARGET_LAST_OVER_FIRST,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
