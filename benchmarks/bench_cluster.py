"""Cluster benchmark: a trivial per-image function (decode + mean pixel) over
every image of a snapshot, in this process against a Dask ``LocalCluster`` of
two worker processes, in the same run.

The repository is ``bench_loader``'s (reused from its cache in
``benchmarks/out/loader/`` when its key, images, seed, format version and the
generators' source, matches; built there otherwise): N synthetic IFCB ROIs
(PNG, 3-18 KB, ~7.4 KB mean), one 1,000-image bin per commit. The selection
is every image (``Query()``), split by ``improv_vcs.cluster.parts`` into
partitions of ``rows_per_part`` rows (whole batches: a batch is one bin of
1,000 images, so a partition holds rows_per_part / 1,000 of them).

Two sides, in one process and one run (round 0 a warm-up, not timed; the
sides take turns going first):

* single process: for each part, ``part.images(decode="array")`` (read,
  check against the blob id, decode), then ``float(array.mean())`` of each,
  summed, all in this process;
* cluster: ``LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True)`` on 127.0.0.1 (no dashboard), started before any timing
  (its start-up reported apart); timed:
  ``cluster.images_to_dask(snap, decode="array", rows_per_part=...)``
  mapped per partition to (images, sum of means, decoded bytes), computed:
  the workers read and decode the images themselves and hand back three
  numbers per partition.

Both sides must give the same image count and the same total (within 1e-6
relative). A background thread samples this (the client's) process's RSS
every 20 ms during each timed round of each side: the growth (peak minus the
round's start) is compared with the image bytes read (the sum of the
manifest's ``size``). On a 2-core machine the client process also runs the
scheduler (LocalCluster's is in-process).

Prints one JSON object: seconds per round and side, images/s, the ratio
cluster / single process (target ≥ 1.6) and the client's memory growth
(target < 5% of the image bytes).

    python benchmarks/bench_cluster.py                 # CI size: 5,000 images
    python benchmarks/bench_cluster.py --scale full    # 100,000 images
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_loader  # the same repository (and its cache) as the loader benchmark

# images, rows per partition, timed rounds. CI: 5 batches of 1,000 images can make at most
# 5 partitions, so two workers split them 3:2 and the ratio is bounded by 5/3.
SCALES = {"ci": (5_000, 1_000, 5), "full": (100_000, 2_000, 3)}
WORKERS = 2
TARGET_CLUSTER_OVER_SINGLE = 1.6
TARGET_CLIENT_GROWTH_FRACTION = 0.05
SAMPLE_SECONDS = 0.02
HERE = Path(__file__).resolve().parent
DEFAULT_WORKDIR = bench_loader.DEFAULT_WORKDIR
MB = 1e6


# -- measuring memory ------------------------------------------------------------------
class RssSampler:
    """This process's RSS, and its anonymous part (RSS minus file-backed and
    shared pages: a mapped pack or bundle file counts in RSS once touched),
    sampled every ``SAMPLE_SECONDS`` by a background thread while the block
    runs: at its start, their peaks and at its end."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._stop = threading.Event()
        self.samples = 0

    def _read(self) -> tuple[int, int]:
        info = self._process.memory_info()
        return info.rss, info.rss - getattr(info, "shared", 0)

    def __enter__(self) -> RssSampler:
        self.start, self.anon_start = self._read()
        self.peak, self.anon_peak = self.start, self.anon_start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        rss, anon = self._read()
        self.peak, self.anon_peak = max(self.peak, rss), max(self.anon_peak, anon)
        self.samples += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.end = self._read()[0]


# -- the sides -------------------------------------------------------------------------
Result = tuple[int, float, int]
"""Images, the sum of their mean pixels, their decoded bytes."""


def single(snap: Any, rows_per_part: int) -> Result:
    """Every image read, checked, decoded and averaged in this process."""
    from improv_vcs import cluster
    from improv_vcs.query.filters import Query

    count, total, decoded = 0, 0.0, 0
    for part in cluster.parts(snap, Query(), rows_per_part=rows_per_part):
        for _image_id, array in part.images(decode="array"):
            total += float(array.mean())
            decoded += array.nbytes
            count += 1
    return count, total, decoded


def partition_means(items: list) -> list[Result]:
    """On a worker: one partition's (images, sum of mean pixels, decoded bytes)."""
    total, decoded = 0.0, 0
    for _image_id, array in items:
        total += float(array.mean())
        decoded += array.nbytes
    return [(len(items), total, decoded)]


def on_cluster(snap: Any, rows_per_part: int) -> Result:
    """The same on the cluster: the workers read and decode, three numbers come back each."""
    from improv_vcs import cluster

    bag = cluster.images_to_dask(snap, decode="array", rows_per_part=rows_per_part)
    results = bag.map_partitions(partition_means).compute()
    return (
        sum(r[0] for r in results),
        sum(r[1] for r in results),
        sum(r[2] for r in results),
    )


def measure(sides: dict[str, Callable[[], Result]], repeat: int) -> dict:
    """Each side once per round (round 0: warm-up, not timed), rotating which
    goes first, the client's RSS sampled during every timed run."""
    names = list(sides)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    rss: dict[str, list[RssSampler]] = {n: [] for n in names}
    results: dict[str, list[Result]] = {n: [] for n in names}
    for r in range(repeat + 1):
        turn = names[r % len(names) :] + names[: r % len(names)]
        for name in turn:
            with RssSampler() as sampler:
                started = time.perf_counter()
                results[name].append(sides[name]())
                elapsed = time.perf_counter() - started
            if r:
                seconds[name].append(elapsed)
                rss[name].append(sampler)
    return {"seconds": seconds, "rss": rss, "results": results}


def rss_summary(samplers: list[RssSampler]) -> dict:
    """Start and peak of the round that grew most (RSS and its anonymous part), and
    every round's; the other side runs between rounds, so rounds start at different RSS."""
    worst = max(samplers, key=lambda s: s.peak - s.start)
    anon = max(samplers, key=lambda s: s.anon_peak - s.anon_start)
    return {
        "start": round(worst.start / MB, 1),
        "peak": round(worst.peak / MB, 1),
        "growth": round((worst.peak - worst.start) / MB, 1),
        "per_round": [
            {"start": round(s.start / MB, 1), "peak": round(s.peak / MB, 1)} for s in samplers
        ],
        "anonymous": {
            "start": round(anon.anon_start / MB, 1),
            "peak": round(anon.anon_peak / MB, 1),
            "growth": round((anon.anon_peak - anon.anon_start) / MB, 1),
        },
        "samples": sum(s.samples for s in samplers),
    }


def check(results: dict[str, list[Result]], images: int) -> None:
    """Every run of both sides: every image once, the same total."""
    reference = results["single"][0]
    if reference[0] != images:
        sys.exit(f"the single process read {reference[0]} images, expected {images}")
    for name, runs in results.items():
        for count, total, decoded in runs:
            if count != reference[0] or decoded != reference[2]:
                sys.exit(f"{name}: {count} images / {decoded} decoded bytes, expected {reference}")
            if abs(total - reference[1]) > 1e-6 * abs(reference[1]):
                sys.exit(f"{name}: total of mean pixels {total!r}, single process {reference[1]!r}")


# -- main ------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="ci",
        help="ci: 5,000 images, partitions of 1,000 rows, 5 rounds; "
        "full: 100,000 images, partitions of 2,000 rows, 3 rounds",
    )
    parser.add_argument("--images", type=int, help="images in the repository (overrides --scale)")
    parser.add_argument("--rows-per-part", type=int, help="rows per partition")
    parser.add_argument("--repeat", type=int, help="timed rounds; medians are reported")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"where the cached repository is (default {DEFAULT_WORKDIR}, shared with "
        "bench_loader)",
    )
    args = parser.parse_args(argv)
    images, rows_per_part, repeat = SCALES[args.scale]
    args.images = images if args.images is None else args.images
    args.rows_per_part = rows_per_part if args.rows_per_part is None else args.rows_per_part
    args.repeat = repeat if args.repeat is None else args.repeat
    if min(args.images, args.rows_per_part, args.repeat) < 1:
        parser.error("--images, --rows-per-part and --repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import distributed

    from improv_vcs import Repository, cluster
    from improv_vcs.query.filters import Query

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    repo_path, built = bench_loader.prepare(workdir, args.images, args.seed)
    snap = Repository.open(repo_path).snapshot()
    sizes = snap.query(columns=["image_id", "size"]).column("size")
    image_bytes = sum(sizes.to_pylist())
    partitions = len(cluster.parts(snap, Query(), rows_per_part=args.rows_per_part))
    bench_loader.bench_sync.read_all(repo_path)  # warm the page cache

    started = time.perf_counter()
    local = distributed.LocalCluster(
        n_workers=WORKERS,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(local)
    client.wait_for_workers(WORKERS)
    startup_s = time.perf_counter() - started
    try:
        addresses = [local.scheduler_address, *client.scheduler_info()["workers"]]
        result = measure(
            {
                "single": lambda: single(snap, args.rows_per_part),
                "cluster": lambda: on_cluster(snap, args.rows_per_part),
            },
            args.repeat,
        )
        worker_rss = client.run(lambda: __import__("psutil").Process().memory_info().rss)
    finally:
        client.close()
        local.close()
    check(result["results"], len(sizes))
    count, total, decoded = result["results"]["single"][0]
    medians = {n: statistics.median(v) for n, v in result["seconds"].items()}
    rate = {n: round(count / s) for n, s in medians.items()}
    ratio = round(medians["single"] / medians["cluster"], 2)
    client_rss = rss_summary(result["rss"]["cluster"])
    single_rss = rss_summary(result["rss"]["single"])
    growth_fraction = client_rss["growth"] * MB / image_bytes
    met = {
        "cluster_over_single_ge_1_6": ratio >= TARGET_CLUSTER_OVER_SINGLE,
        "client_growth_le_5pct_of_bytes": growth_fraction <= TARGET_CLIENT_GROWTH_FRACTION,
    }
    report = {
        "images": count,
        "seed": args.seed,
        "build": built,
        "partitions": partitions,
        "rows_per_part": args.rows_per_part,
        "balance_bound": round(partitions / -(-partitions // WORKERS), 2),
        "workers": WORKERS,
        "cpus": os.cpu_count(),
        "image_bytes": image_bytes,
        "decoded_bytes": decoded,
        "mean_pixel": round(total / count, 4),
        "rounds": args.repeat,
        "seconds": {n: [round(x, 3) for x in v] for n, v in result["seconds"].items()},
        "median_seconds": {n: round(s, 3) for n, s in medians.items()},
        "images_per_s": rate,
        "cluster_over_single": ratio,
        "cluster_startup_seconds": round(startup_s, 2),
        "client_rss_mb": client_rss,
        "client_growth_fraction_of_bytes": round(growth_fraction, 4),
        "single_rss_mb": single_rss,
        "single_growth_fraction_of_bytes": round(single_rss["growth"] * MB / image_bytes, 4),
        "worker_rss_mb_after": sorted(round(v / MB, 1) for v in worker_rss.values()),
        "addresses": sorted(addresses),
        "targets": {
            "cluster_over_single_ge": TARGET_CLUSTER_OVER_SINGLE,
            "client_growth_le_fraction_of_bytes": TARGET_CLIENT_GROWTH_FRACTION,
        },
        "targets_met": met,
        "target_met": all(met.values()),
        "notes": [
            "one process and one run; round 0 is a warm-up (each worker opens the repository) "
            "and is not timed; the sides take turns going first; medians of the timed rounds",
            "single: cluster.parts(snap, Query(), rows_per_part) then part.images("
            "decode='array') and float(array.mean()) per image, in this process",
            "cluster: LocalCluster(n_workers=2, threads_per_worker=1, processes=True) on "
            "127.0.0.1, no dashboard, started before timing (cluster_startup_seconds); timed: "
            "images_to_dask(snap, decode='array', rows_per_part) mapped per partition to "
            "(images, sum of means, decoded bytes), computed; the workers read the packs",
            f"rows_per_part {args.rows_per_part:,}: {partitions} partitions of whole 1,000-image "
            f"batches for {WORKERS} workers; balance_bound is partitions / the most any worker "
            "must take (the best ratio an even split allows)",
            "both sides give the same image count, decoded bytes and total of mean pixels "
            "(within 1e-6 relative) in every round",
            "client_rss_mb / single_rss_mb: this process's RSS sampled every 20 ms during each "
            "timed round; start, peak and growth are those of the round that grew most (peak "
            "minus its start), compared with image_bytes (the PNG bytes read, sum of the "
            "manifest's size); this process also runs LocalCluster's scheduler; RSS counts the "
            "pages of a mapped pack or bundle file once touched (a local repository's packs are "
            "read through mapped views), 'anonymous' is RSS minus file-backed and shared pages",
            "the scheduler's HTTP endpoint (no dashboard) listens on 127.0.0.1 too; if port "
            "8787 is taken, distributed warns and picks another",
            "warm page cache; the machine's other load is not controlled",
        ],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
