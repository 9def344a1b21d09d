"""fsck benchmark: ``fsck(repo, full=True)`` throughput against ``sha256sum``
of the same pack bytes.

The repository is the one ``bench_sync.py`` builds (N synthetic IFCB ROIs,
PNG, ~7.4 KB mean, one 1,000-image bin per commit, one pack per commit),
reused from its cache (``benchmarks/out/sync/n<N>-s<seed>/improv``) when
present and built from the same generators otherwise (cached in the work
directory, keyed like bench_sync's).  fsck only reads: the cached repository
is never modified.

Then, warm page cache (every file read once first), in one process and one
run, rounds interleaving the sides (the order alternates every round), it
times:

* ``fsck_full``: ``Repository.open(path)`` + ``fsck(repo, full=True)``
  (walks every commit, reads every manifest and pack index, and re-hashes
  every blob of every pack on 2 threads);
* ``fsck_quick``: the same without ``full`` (no blob hashing), to split the
  full run into walking and hashing;
* ``sha256sum``: ``sha256sum packs/*.pack bundles/*.bundle`` (the files
  holding the packs, loose or bundled by automatic maintenance; one process,
  the baseline the target is stated against);
* ``sha256sum_p2``: the same pack files through ``xargs -P 2`` (two
  processes: as parallel as fsck's two hashing threads);
* ``hashlib_2_threads``: for information, Python's ``hashlib.sha256`` of each
  whole pack file (read into memory) on 2 threads: what fsck's hashing could
  reach without per-blob work.

Throughput is MB/s (1 MB = 10^6 bytes) of the packs' bytes for fsck, and of
the files hashed (packs and bundles) for the baselines. Prints one JSON
object with the medians, the ratios the target is stated in (fsck_full MB/s
/ sha256sum MB/s >= 0.7) and whether it is met.
``--profile`` also prints cProfile top lists (all threads merged) of one more
``fsck --full`` to stderr.

    python benchmarks/bench_fsck.py                           # CI size: 5,000 images
    python benchmarks/bench_fsck.py --scale full --profile    # 100,000 images
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sync  # same generators, helpers and cache as the sync benchmark)

# images, timed repetitions
SCALES = {"ci": (5_000, 3), "full": (100_000, 3)}
TARGET_FSCK_OVER_SHA256SUM = 0.7  # fsck --full MB/s / sha256sum MB/s >= 0.7
HERE = Path(__file__).resolve().parent
DEFAULT_WORKDIR = HERE / "out" / "fsck"
SYNC_WORKDIR = HERE / "out" / "sync"
XARGS_CHUNKS_PER_PROCESS = 4  # xargs -n: packs / (2 * this), so the two processes balance


# -- the repository -------------------------------------------------------------------
def build(home: Path, images: int, seed: int) -> dict:
    """A repository like bench_sync's (same bins, same commits), without the git side."""
    from improv_vcs import Repository

    started = time.perf_counter()
    total_bytes = bench_sync.commit_bins(Repository.init(home / "improv"), images, seed)
    return {"images_bytes": total_bytes, "seconds": round(time.perf_counter() - started, 2)}


def cache_key(images: int, seed: int) -> dict:
    from improv_vcs.core.model import FORMAT_VERSION

    return {
        "images": images,
        "seed": seed,
        "batch": bench_sync.BATCH,
        "format": FORMAT_VERSION,
        "generator": bench_sync.generator_key(),
    }


def reusable(home: Path, images: int, seed: int) -> bool:
    """Whether ``home`` holds a finished build of this repository (bench_sync's or ours)."""
    marker = home / "build.json"
    if not marker.is_file() or not (home / "improv" / "improv.json").is_file():
        return False
    key = json.loads(marker.read_text()).get("key", {})
    wanted = cache_key(images, seed)
    return all(key.get(k) == v for k, v in wanted.items())


def prepare(workdir: Path, images: int, seed: int, source: Path | None) -> tuple[Path, dict]:
    """The repository to check and where it came from, building it if needed."""
    if source is not None:
        return source, {"source": str(source), "reused": "given with --source"}
    name = f"n{images}-s{seed}"
    for home, origin in (
        (SYNC_WORKDIR / name, "bench_sync cache"),
        (workdir / name, "bench_fsck cache"),
    ):
        if reusable(home, images, seed):
            return home / "improv", {"source": str(home / "improv"), "reused": origin}
    home = workdir / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    print(f"building {images:,} images under {home} ...", file=sys.stderr)
    info = build(home, images, seed)
    (home / "build.json").write_text(
        json.dumps({"key": cache_key(images, seed), "build": info}, indent=2)
    )
    return home / "improv", {"source": str(home / "improv"), "reused": False, "build": info}


# -- the sides ---------------------------------------------------------------------------
def time_fsck(repo_dir: Path, full: bool) -> tuple[float, dict]:
    from improv_vcs import Repository
    from improv_vcs.maintenance.fsck import fsck

    t0 = time.perf_counter()
    report = fsck(Repository.open(repo_dir), full=full)
    elapsed = time.perf_counter() - t0
    if not report.ok:
        sys.exit(f"fsck found problems: {report.to_json()}")
    return elapsed, report.to_json()


def bundled_pack_bytes(repo_dir: Path) -> int:
    """The bytes of every pack the repository's images live in, loose or bundled."""
    from improv_vcs import Repository
    from improv_vcs.storage.packs import pack_key

    repo = Repository.open(repo_dir)
    ids = set(repo.snapshot().query(columns=["pack"]).column("pack").to_pylist())
    return sum(repo.store.size(pack_key(p)) for p in ids)


def time_sha256sum(packs: list[Path]) -> float:
    t0 = time.perf_counter()
    bench_sync.run(["sha256sum", *map(str, packs)])
    return time.perf_counter() - t0


def time_sha256sum_p2(packs: list[Path]) -> float:
    per_call = max(1, math.ceil(len(packs) / (2 * XARGS_CHUNKS_PER_PROCESS)))
    listing = "".join(f"{p}\0" for p in packs)
    t0 = time.perf_counter()
    done = subprocess.run(
        ["xargs", "-0", "-P", "2", "-n", str(per_call), "sha256sum"],
        input=listing,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if done.returncode or done.stdout.count("\n") != len(packs):
        sys.exit(f"xargs sha256sum failed ({done.returncode}): {done.stderr}")
    return elapsed


def _hash_file(path: Path) -> int:
    with open(path, "rb") as f:
        data = f.read()
    hashlib.sha256(data).digest()
    return len(data)


def time_hashlib(packs: list[Path]) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        sum(pool.map(_hash_file, packs))
    return time.perf_counter() - t0


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="ci",
        help="ci: 5,000 images; full: 100,000 images (3 timed runs each)",
    )
    parser.add_argument("--images", type=int, help="images in the repository (overrides --scale)")
    parser.add_argument("--repeat", type=int, help="timed runs of every side")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument(
        "--source", type=Path, help="check this existing repository instead (it is only read)"
    )
    parser.add_argument(
        "--workdir",
        "--work",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"where a repository is built when bench_sync's cache has none "
        f"(default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print cProfile top lists of one more fsck --full to stderr",
    )
    args = parser.parse_args(argv)
    images, repeat = SCALES[args.scale]
    args.images = images if args.images is None else args.images
    args.repeat = repeat if args.repeat is None else args.repeat
    if min(args.images, args.repeat) < 1:
        parser.error("--images and --repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import improv_vcs

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    repo_dir, origin = prepare(
        workdir, args.images, args.seed, args.source.resolve() if args.source else None
    )
    # the files holding the packs: loose ones, and the bundles the repository's automatic
    # maintenance moved the others into (bundles also hold small objects: manifests, …)
    packs = sorted((repo_dir / "packs").glob("*.pack")) + sorted(
        (repo_dir / "bundles").glob("*.bundle")
    )
    file_bytes = sum(p.stat().st_size for p in packs)
    pack_bytes = bundled_pack_bytes(repo_dir)
    repo_files = bench_sync.files_under(repo_dir)
    if not packs:
        sys.exit(f"{repo_dir} holds no packs")

    bench_sync.read_all(repo_dir)  # warm the page cache
    time_fsck(repo_dir, full=True)  # and the imports / first-call costs: discarded
    sides = {
        "fsck_full": lambda: time_fsck(repo_dir, True)[0],
        "fsck_quick": lambda: time_fsck(repo_dir, False)[0],
        "sha256sum": lambda: time_sha256sum(packs),
        "sha256sum_p2": lambda: time_sha256sum_p2(packs),
        "hashlib_2_threads": lambda: time_hashlib(packs),
    }
    runs: dict[str, list[float]] = {side: [] for side in sides}
    load_before = os.getloadavg()
    for rep in range(args.repeat):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for side in order:
            runs[side].append(sides[side]())
    load_after = os.getloadavg()
    _, fsck_report = time_fsck(repo_dir, True)
    if fsck_report["bytes_hashed"] != pack_bytes:
        sys.exit(f"fsck hashed {fsck_report['bytes_hashed']} bytes of {pack_bytes} pack bytes")

    seconds = {side: median(v) for side, v in runs.items()}
    mbps = {
        side: bench_sync.mb_per_s(pack_bytes if side.startswith("fsck") else file_bytes, s)
        for side, s in seconds.items()
    }
    hashing_s = seconds["fsck_full"] - seconds["fsck_quick"]
    ratio = round(mbps["fsck_full"] / mbps["sha256sum"], 3)
    ratio_p2 = round(mbps["fsck_full"] / mbps["sha256sum_p2"], 3)
    profile = None
    if args.profile:
        profile = bench_sync.profile_call(lambda: time_fsck(repo_dir, True), top=30)

    report = {
        "images": args.images,
        "seed": args.seed,
        "repeat": args.repeat,
        "repository": {
            **origin,
            "repo_bytes": sum(repo_files.values()),
            "repo_files": len(repo_files),
            "packs": len(packs),
            "pack_bytes": pack_bytes,
            "file_bytes": file_bytes,
            "commits": fsck_report["commits"],
            "objects": fsck_report["objects"],
        },
        "median_seconds": seconds,
        "runs_seconds": {s: [round(x, 4) for x in v] for s, v in runs.items()},
        "mb_per_s": mbps,
        "fsck_full_split": {
            "walk_seconds (fsck_quick)": seconds["fsck_quick"],
            "hashing_seconds (full - quick)": round(hashing_s, 4),
            "hashing_mb_per_s": bench_sync.mb_per_s(pack_bytes, hashing_s)
            if hashing_s > 0
            else None,
        },
        "ratio_fsck_full_over_sha256sum": ratio,
        "ratio_fsck_full_over_sha256sum_p2": ratio_p2,
        "ratio_fsck_full_over_hashlib_2_threads": round(
            mbps["fsck_full"] / mbps["hashlib_2_threads"], 3
        ),
        "targets": {"fsck_full_mb_per_s_over_sha256sum_ge": TARGET_FSCK_OVER_SHA256SUM},
        "targets_met": {
            "fsck_full_ge_0_7x_sha256sum": ratio >= TARGET_FSCK_OVER_SHA256SUM,
        },
        "informational": {
            "fsck_full_ge_0_7x_sha256sum_p2": ratio_p2 >= TARGET_FSCK_OVER_SHA256SUM,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
        },
        "versions": {
            "python": sys.version.split()[0],
            "improv_vcs": improv_vcs.__version__,
            "pyarrow": pa.__version__,
            "sha256sum": bench_sync.run(["sha256sum", "--version"]).stdout.splitlines()[0],
            "openssl": __import__("ssl").OPENSSL_VERSION,
        },
        "source": bench_sync.source_state(),
        "notes": [
            "warm page cache (every repository file read first); one discarded fsck --full first",
            "sides interleave, order alternating every round; medians of --repeat runs",
            "MB/s = bytes / seconds (10^6 bytes per MB): the packs' bytes for fsck, the files "
            "hashed (loose packs and bundles) for the baselines",
            "fsck_full = Repository.open + fsck(repo, full=True), in this process",
            f"sha256sum_p2 = xargs -0 -P 2 -n ceil(packs / {2 * XARGS_CHUNKS_PER_PROCESS}) "
            f"sha256sum",
            "hashlib_2_threads: whole pack files read and hashed on 2 threads (no per-blob work)",
        ],
    }
    if profile is not None:
        print(f"== cProfile of one fsck --full ==\n{profile}", file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
