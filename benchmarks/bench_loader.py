"""Training-loader benchmark: ``ImageStream`` and ``ImageDataset`` against
reading the same bytes straight out of the pack files, locally and from S3.

Builds once (cached in the work directory, keyed by images, seed, the format
version and the generators' source) a local repository of N synthetic IFCB
ROIs (PNG, 3-18 KB, ~7.4 KB mean: ``bench_sync``'s generator), one
1,000-image bin per commit, and one classification run labelling every image
(``bench-cnn``, five classes). The selection is every labelled image
(``publish.select``).

Then, in one process and one run (first round a warm-up that also checks
every byte against its blob id and is not timed; the sides take turns going
first), it times reading every selected image's bytes:

* raw, stream order: for each image, in the order the stream yields it
  (seed 0, the round's epoch), open the file holding its pack (the pack's
  own file, or the bundle the repository's automatic maintenance moved a
  small pack into: located once, untimed), seek, read (no hash);
* ``ImageStream`` (``decode="bytes"``, blocks of 64 pack neighbours, one
  ranged read each, every image checked against its blob id);
* raw, random order: the same per-image reads in a random permutation;
* ``ImageDataset`` random access (``ds[i]`` in that permutation; a new
  dataset per round, so nothing comes from its cache);

then the same against a moto S3 server (``ThreadedMotoServer`` in a child
process, bound to 127.0.0.1, dummy credentials) holding a pushed repository
of S images built the same way (raw: one ranged GET per image through
s3fs, the client library the S3 store uses). S3 gets a smaller repository
of its own because moto reads a whole object to answer a ranged GET: from
the 470 MB bundle that the repository's maintenance makes of 100,000 images
it answers about 5 a second, a cost of moto, not of S3. The page cache is
warm for the local side (the loaders' overhead is what is measured, not the
disk).

Prints one JSON object: images/s per side, the ratios loader / raw (target
≥ 0.7) and whether each is met.

    python benchmarks/bench_loader.py                 # CI size: 5,000 images (S3: 1,000)
    python benchmarks/bench_loader.py --scale full    # 100,000 images (S3: 5,000)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sync  # same generators, moto server and S3 environment as the sync benchmark

# images, timed rounds (local, S3), images read from S3 per side (a GET each for raw: moto
# answers ~200 a second, so S3 reads a share)
SCALES = {"ci": (5_000, 7, 3, 1_000), "full": (100_000, 5, 3, 5_000)}
TARGET_LOADER_OVER_RAW = 0.7
CLASSES = ("Diatom", "Dinoflagellate", "Ciliate", "Detritus", "Other")
RUN = "bench-cnn"
HERE = Path(__file__).resolve().parent
DEFAULT_WORKDIR = HERE / "out" / "loader"


# -- building ------------------------------------------------------------------------
def labels(ids: list[str]) -> pa.Table:
    """One classification record per image, its class picked from the id's hash."""
    winners = [CLASSES[hashlib.sha256(i.encode()).digest()[0] % len(CLASSES)] for i in ids]
    return pa.table(
        {
            "image_id": ids,
            "model": pa.repeat(pa.scalar(RUN), len(ids)),
            "model_version": pa.repeat(pa.scalar("v1"), len(ids)),
            "winner": winners,
            "score": pa.repeat(pa.scalar(0.9), len(ids)),
        }
    )


def build(path: Path, images: int, seed: int) -> dict:
    """The repository: one commit per 1,000-image bin, then the label run."""
    from improv_vcs import Repository

    started = time.perf_counter()
    repo = Repository.init(path)
    total = bench_sync.commit_bins(repo, images, seed)
    ingest = time.perf_counter() - started
    ids = repo.snapshot().query(columns=["image_id"]).column("image_id").to_pylist()
    with repo.transaction(message=f"classifier run {RUN}", author="bench") as tx:
        tx.add_provenance("classification", labels(ids), "bench", RUN)
    return {
        "build_seconds": round(time.perf_counter() - started, 2),
        "ingest_seconds": round(ingest, 2),
        "image_bytes": total,
        "commits": len(bench_sync.counts(images)) + 1,
    }


def generator_key() -> str:
    import inspect

    return hashlib.sha256(
        "".join(
            (
                bench_sync.generator_key(),
                inspect.getsource(bench_sync.commit_bins),
                inspect.getsource(labels),
                inspect.getsource(build),
            )
        ).encode()
    ).hexdigest()


def prepare(workdir: Path, images: int, seed: int) -> tuple[Path, dict]:
    """The cached repository (built if missing or stale) and its build figures."""
    from improv_vcs.core.model import FORMAT_VERSION

    home = workdir / f"n{images}-s{seed}"
    repo, marker = home / "repo", home / "build.json"
    wanted = {
        "images": images,
        "seed": seed,
        "format": FORMAT_VERSION,
        "generator": generator_key(),
    }
    if marker.is_file() and repo.is_dir():
        info = json.loads(marker.read_text())
        if info.get("key") == wanted and readable(repo):
            return repo, {**info["build"], "cached": True}
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    print(f"building {images:,} images under {home} ...", file=sys.stderr)
    built = build(repo, images, seed)
    marker.write_text(json.dumps({"key": wanted, "build": built}, indent=2))
    return repo, {**built, "cached": False}


def readable(path: Path) -> bool:
    from improv_vcs import ImprovError, Repository

    try:
        next(Repository.open(path).log(limit=1))
        return True
    except ImprovError:
        return False


# -- the sides -----------------------------------------------------------------------
class Rows:
    """Where each selected image's bytes are (row numbers as in the selection):
    the file (store key) its pack lives in and the image's offset in that
    file. A pack is a file of its own (``packs/<id>.pack``) or, once
    maintenance has bundled small values, a stretch of a bundle file
    (``bundles/<id>.bundle``); both are found once, before any timing."""

    def __init__(self, selection: Any):
        from improv_vcs.storage.packs import pack_key

        rows = selection.rows
        self.packs = rows.column("pack").to_pylist()
        self.sizes = rows.column("size").to_pylist()
        self.blob_ids = rows.column("blob_id").to_pylist()
        self.image_ids = rows.column("image_id").to_pylist()
        self.row_of = {image_id: k for k, image_id in enumerate(self.image_ids)}
        store = selection.snapshot.repository.odb.store
        places = {}
        for pack in set(self.packs):
            key = pack_key(pack)
            found = store.locate(key, look_again=False) if hasattr(store, "locate") else None
            places[pack] = (key, 0) if found is None else (f"bundles/{found[0]}.bundle", found[1])
        self.bundled = sum(1 for key, _ in places.values() if key.startswith("bundles/"))
        self.files = [places[pack][0] for pack in self.packs]
        self.offsets = [
            places[pack][1] + offset
            for pack, offset in zip(self.packs, rows.column("offset").to_pylist())
        ]


def raw_local(root: Path, rows: Rows, order: list[int], check: bool, verify: bool = False) -> int:
    """Open the pack file, seek, read: one image at a time, in ``order``
    (with ``verify``, also the SHA-256 of each, as the loaders do)."""
    total = 0
    for i in order:
        with open(root / rows.files[i], "rb") as f:
            f.seek(rows.offsets[i])
            data = f.read(rows.sizes[i])
        if (check or verify) and hashlib.sha256(data).hexdigest() != rows.blob_ids[i]:
            sys.exit(f"raw read of {rows.image_ids[i]} is not its blob")
        total += len(data)
    return total


def raw_s3(fs: Any, prefix: str, rows: Rows, order: list[int], check: bool) -> int:
    """One ranged GET per image through s3fs, in ``order``."""
    total = 0
    for i in order:
        start = rows.offsets[i]
        data = fs.cat_file(f"{prefix}/{rows.files[i]}", start=start, end=start + rows.sizes[i])
        if check and hashlib.sha256(data).hexdigest() != rows.blob_ids[i]:
            sys.exit(f"S3 raw read of {rows.image_ids[i]} is not its blob")
        total += len(data)
    return total


def loaded(
    items: Iterable[tuple[Any, Any, str]], rows: Rows, expected: list[int], check: bool
) -> int:
    """Drain a loader; with ``check``, every image once, in ``expected`` order, bytes verified."""
    total = 0
    if not check:
        for data, _, _ in items:
            total += len(data)
        return total
    got = []
    for data, label, image_id in items:
        i = rows.row_of[image_id]
        if hashlib.sha256(data).hexdigest() != rows.blob_ids[i] or label is None:
            sys.exit(f"the loader gave wrong bytes or no label for {image_id}")
        got.append(i)
        total += len(data)
    if got != expected:
        sys.exit(f"the loader gave {len(got)} images, not the {len(expected)} expected in order")
    return total


def stream_order(stream: Any) -> list[int]:
    return [row for block in stream.shard() for row in block]


def measure(sides: dict[str, Callable[[int, bool], int]], repeat: int) -> dict:
    """Run each side once per round (round 0: warm-up and checks, not timed),
    rotating which goes first; returns per-side seconds and the bytes read."""
    names = list(sides)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    read: dict[str, int] = {}
    for r in range(repeat + 1):
        turn = names[r % len(names) :] + names[: r % len(names)]
        for name in turn:
            started = time.perf_counter()
            read[name] = sides[name](r, r == 0)
            if r:
                seconds[name].append(time.perf_counter() - started)
    return {"seconds": seconds, "bytes": read}


def summarize(result: dict, images: int, pairs: dict[str, tuple[str, str]]) -> dict:
    medians = {n: statistics.median(v) for n, v in result["seconds"].items()}
    rate = {n: round(images / s) for n, s in medians.items()}
    return {
        "images": images,
        "mb": round(next(iter(result["bytes"].values())) / 1e6, 1),
        "images_per_s": rate,
        "mb_per_s": {n: round(result["bytes"][n] / 1e6 / s, 1) for n, s in medians.items()},
        "ratios": {key: round(rate[loader] / rate[raw], 2) for key, (loader, raw) in pairs.items()},
        "median_seconds": {n: round(s, 4) for n, s in medians.items()},
        "runs_seconds": {n: [round(x, 4) for x in v] for n, v in result["seconds"].items()},
    }


PAIRS = {
    "stream_over_raw": ("stream", "raw_stream_order"),
    "dataset_over_raw": ("dataset", "raw_random_order"),
}


def time_local(repo_path: Path, selection: Any, rows: Rows, repeat: int, seed: int) -> dict:
    from improv_vcs.publish import ImageDataset, ImageStream

    n = len(rows.image_ids)
    streams = {}
    orders = {}
    for r in range(repeat + 1):
        stream = ImageStream(selection, seed=0)
        stream.set_epoch(r)
        streams[r], orders[r] = stream, stream_order(stream)
    perms = {r: np.random.default_rng([seed, r]).permutation(n).tolist() for r in range(repeat + 1)}
    datasets = {r: ImageDataset(selection) for r in range(repeat + 1)}
    bench_sync.read_all(repo_path)  # warm the page cache

    def dataset(r: int, check: bool) -> int:
        ds = datasets.pop(r)  # a new dataset each round: an empty cache
        return loaded((ds[i] for i in perms[r]), rows, perms[r], check)

    sides = {
        "raw_stream_order": lambda r, check: raw_local(repo_path, rows, orders[r], check),
        "stream": lambda r, check: loaded(streams[r], rows, orders[r], check),
        "raw_random_order": lambda r, check: raw_local(repo_path, rows, perms[r], check),
        "dataset": dataset,
        "raw_random_order_sha256": lambda r, check: raw_local(
            repo_path, rows, perms[r], check, verify=True
        ),
    }
    return summarize(measure(sides, repeat), n, PAIRS)


def time_s3(repo_path: Path, scratch: Path, repeat: int, seed: int) -> dict:
    import boto3
    import s3fs

    from improv_vcs import Repository
    from improv_vcs.publish import ImageDataset, ImageStream, Labels, select
    from improv_vcs.sync import sites

    bench_sync.s3_environment()
    scratch.mkdir(parents=True, exist_ok=True)
    with bench_sync.MotoServer(scratch / "moto.log") as endpoint:
        bucket = f"bench-loader-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/repo"
        options = {"endpoint_url": endpoint}
        started = time.perf_counter()
        pushed = sites.push(Repository.open(repo_path), url, endpoint_url=endpoint)
        push_s = time.perf_counter() - started
        cloud = Repository.open(url, **options)
        selection = select(cloud.snapshot(), None, Labels("classification", RUN))
        rows = Rows(selection)
        n = len(rows.image_ids)
        streams, orders = {}, {}
        for r in range(repeat + 1):
            stream = ImageStream(selection, seed=0, storage_options=options)
            stream.set_epoch(r)
            streams[r], orders[r] = stream, stream_order(stream)
        perms = {
            r: np.random.default_rng([seed, r]).permutation(n).tolist() for r in range(repeat + 1)
        }
        datasets = {r: ImageDataset(selection, storage_options=options) for r in range(repeat + 1)}
        fs = s3fs.S3FileSystem(
            endpoint_url=endpoint, use_listings_cache=False, skip_instance_cache=True
        )
        prefix = f"{bucket}/repo"

        def dataset(r: int, check: bool) -> int:
            ds = datasets.pop(r)
            return loaded((ds[i] for i in perms[r]), rows, perms[r], check)

        sides = {
            "raw_stream_order": lambda r, check: raw_s3(fs, prefix, rows, orders[r], check),
            "stream": lambda r, check: loaded(streams[r], rows, orders[r], check),
            "raw_random_order": lambda r, check: raw_s3(fs, prefix, rows, perms[r], check),
            "dataset": dataset,
        }
        result = summarize(measure(sides, repeat), n, PAIRS)
    return {
        "server": "moto ThreadedMotoServer in a child process on 127.0.0.1",
        "moto": bench_sync._version("moto"),
        "push_seconds": round(push_s, 2),
        "push_bytes": pushed.transfer.bytes,
        "packs_in_bundles": rows.bundled,
        **result,
    }


# -- main ------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="ci",
        help="ci: 5,000 images (S3: a repository of 1,000), 7 local and 3 S3 rounds; "
        "full: 100,000 images (S3: a repository of 5,000), 5 local and 3 S3 rounds",
    )
    parser.add_argument("--images", type=int, help="images in the repository (overrides --scale)")
    parser.add_argument("--repeat", type=int, help="timed local rounds; medians are reported")
    parser.add_argument("--s3-repeat", type=int, help="timed S3 rounds")
    parser.add_argument("--s3-images", type=int, help="images in the repository pushed to S3")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 measurements")
    parser.add_argument("--seed", type=int, default=0, help="generator and permutation seed")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"where the cached repository goes (default {DEFAULT_WORKDIR})",
    )
    args = parser.parse_args(argv)
    images, repeat, s3_repeat, s3_images = SCALES[args.scale]
    args.images = images if args.images is None else args.images
    args.repeat = repeat if args.repeat is None else args.repeat
    args.s3_repeat = s3_repeat if args.s3_repeat is None else args.s3_repeat
    args.s3_images = min(args.images, s3_images if args.s3_images is None else args.s3_images)
    if min(args.images, args.repeat, args.s3_repeat, args.s3_images) < 1:
        parser.error("--images, --repeat, --s3-repeat and --s3-images must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from improv_vcs import Repository
    from improv_vcs.publish import Labels, select

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    repo_path, built = prepare(workdir, args.images, args.seed)
    repo = Repository.open(repo_path)
    started = time.perf_counter()
    selection = select(repo.snapshot(), None, Labels("classification", RUN))
    select_s = time.perf_counter() - started
    rows = Rows(selection)
    if len(rows.image_ids) != args.images:
        sys.exit(f"selected {len(rows.image_ids)} labelled images, expected {args.images}")
    local = time_local(repo_path, selection, rows, args.repeat, args.seed)
    s3 = None
    if not args.no_s3:
        # its own repository of s3_images images (the same generator: the CI-size one is
        # reused at full size): moto reads a whole object for each ranged GET, so a GET from
        # the 470 MB bundle that maintenance makes of 100,000 images takes ~0.2 s there
        s3_path, s3_built = prepare(workdir, args.s3_images, args.seed)
        scratch = workdir / f"s3-{uuid.uuid4().hex[:8]}"
        try:
            s3 = {"build": s3_built, **time_s3(s3_path, scratch, args.s3_repeat, args.seed)}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    met = {f"local_{k}_ge_0_7": v >= TARGET_LOADER_OVER_RAW for k, v in local["ratios"].items()}
    if s3 is not None:
        met |= {f"s3_{k}_ge_0_7": v >= TARGET_LOADER_OVER_RAW for k, v in s3["ratios"].items()}
    report = {
        "images": args.images,
        "seed": args.seed,
        "repeat": {"local": args.repeat, "s3": args.s3_repeat},
        "build": built,
        "mean_image_bytes": round(sum(rows.sizes) / len(rows.sizes)),
        "packs": len(set(rows.packs)),
        "packs_in_bundles": rows.bundled,
        "select_seconds": round(select_s, 3),
        "block": 64,
        "local": local,
        "s3": s3,
        "targets": {"loader_over_raw_ge": TARGET_LOADER_OVER_RAW},
        "targets_met": met,
        "target_met": all(met.values()),
        "notes": [
            "one process; round 0 is a warm-up that checks every byte and is not timed; "
            "the sides take turns going first",
            "raw: open + seek + read per image (local) or one ranged GET per image through "
            "s3fs (S3) of the file holding its pack (pack or bundle, located once, untimed), "
            "no hash; the loaders check every image against its blob id",
            "stream: decode='bytes', seed 0, the round's epoch, blocks of 64, one ranged read "
            "per block; raw_stream_order reads the same images in the same order",
            "dataset: ds[i] over a random permutation, a new ImageDataset per round (cold "
            "cache); raw_random_order reads the same images in the same order",
            "local: warm page cache",
            "S3: a repository of s3_images images of its own (same generator, same label run) "
            "pushed to moto, every image read by each side: moto reads a whole object for "
            "each ranged GET (a GET from the 470 MB bundle of the 100,000-image repository "
            "takes ~0.2 s), which real S3 does not",
        ],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
