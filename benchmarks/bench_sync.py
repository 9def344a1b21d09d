"""Sync benchmark: incremental ``push`` against ``git push``, full ``clone``
against ``cp -r``, and a full clone from S3 (moto).

Builds once (cached in the work directory, keyed by images, seed, the format
version and the generators' source) a local repository of N synthetic IFCB
ROIs (PNG, 3-18 KB, ~7.4 KB mean, from :mod:`improv_vcs.ingest.synthetic`) of one
instrument, one 1,000-image bin per commit (``Repository.transaction`` /
``append_bytes``), and pushes it once to a local remote (a path that is not
yet a repository: the push initializes it).  Alongside, a git repository
holds the same PNG files (``IFCB107/<bin>/<bin>_<roi>.png``, one commit per
bin, then ``git gc``) and a bare clone of it is its remote.  One more bin
(the "next" batch) is generated and kept as files.

Then it times, warm page cache, ``sync`` (flush, never drop) before each
timed step:

* incremental push: on fresh hard-linked copies (``cp -al``) of the
  repository and its remote, commit the next bin (untimed), then time
  ``Repository.open`` + ``sites.push`` to the remote path; the bytes sent
  (``TransferReport.bytes``) are compared with the bin's own bytes (the sum
  of its PNG sizes) and broken down by what the remote gained.  Baseline: on
  fresh ``cp -al`` copies of the git repository and its bare remote, copy the
  same 1,000 files in, ``git add`` + ``git commit`` (untimed), time
  ``git push``.  ``improv push`` in a fresh process (the CLI, imports
  included) is timed too, for information;
* full local clone: ``sites.clone(repo, dest)`` against ``cp -r repo dest``
  (fresh destinations, alternating which goes first), as MB/s of the
  repository's bytes; ``cp -r`` followed by ``sync`` is reported too;
* full clone from S3: a moto server (``ThreadedMotoServer`` in a child
  process, bound to 127.0.0.1, dummy credentials) receives a push of the
  repository (or, with ``--s3-images``, of its first commits), then
  ``sites.clone("s3://...", dest, endpoint_url=...)`` is timed (no target).

Prints one JSON object with the medians, the ratios the targets are stated
in and whether each target is met.  ``--profile`` also prints cProfile top
lists (all threads merged) of one more incremental push and one more local
clone to stderr.

    python benchmarks/bench_sync.py                           # CI size: 5,000 images
    python benchmarks/bench_sync.py --scale full --profile    # 100,000 images
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import inspect
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

# images, timed repetitions (incremental push and local clone), S3 clone repetitions
SCALES = {"ci": (5_000, 3, 3), "full": (100_000, 3, 3)}
BATCH = 1_000
INSTRUMENT = "IFCB107"
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
BIN_SECONDS = 1200  # an IFCB bin samples for ~20 minutes
TIMESTAMP = pa.timestamp("us", tz="UTC")

TARGET_BYTES_FACTOR = 1.05
TARGET_BYTES_SLACK = 64 * 1024
TARGET_PUSH_OVER_GIT = 1.0  # improv push seconds / git push seconds <= 1
TARGET_CLONE_OVER_CP = 0.7  # improv clone MB/s / cp -r MB/s >= 0.7
S3_BUDGET_SECONDS = 300.0
DEFAULT_WORKDIR = Path(__file__).resolve().parent / "out" / "sync"
IMPROV = [sys.executable, "-m", "improv_vcs.cli"]
# gc.auto=0: a detached auto-gc would run into the next measurement (it is
# passed to receive-pack too, through the environment); no reflogs, so
# hard-linked copies never append to the cached repository's files; ctime
# changes with every hard link, so git must not trust it.
GIT = [
    "git",
    "-c",
    "user.name=bench",
    "-c",
    "user.email=bench@example.invalid",
    "-c",
    "gc.auto=0",
    "-c",
    "core.logAllRefUpdates=false",
    "-c",
    "core.trustctime=false",
]
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


# -- synthetic bins ------------------------------------------------------------------
def bin_name(index: int) -> str:
    from improv_vcs.ingest import synthetic

    return synthetic.bin_id(INSTRUMENT, START + timedelta(seconds=BIN_SECONDS * index))


def make_images(seed: int, index: int, count: int) -> list[bytes]:
    """The PNG bytes of bin ``index``: a pure function of the arguments."""
    from improv_vcs.ingest import synthetic

    rng = np.random.default_rng([seed, index])
    return [synthetic.encode_png(synthetic.roi_pixels(rng)) for _ in range(count)]


def bin_table(index: int, count: int) -> pa.Table:
    """Metadata of bin ``index``: IFCB image ids, times spread over the bin."""
    name = bin_name(index)
    start_us = int((START + timedelta(seconds=BIN_SECONDS * index)).timestamp() * 1_000_000)
    step = BIN_SECONDS * 1_000_000 // count
    return pa.table(
        {
            "image_id": pa.array([f"{name}_{roi:05d}" for roi in range(1, count + 1)], pa.string()),
            "timestamp": pa.array([start_us + step * i for i in range(count)], TIMESTAMP),
            "sample_id": pa.array([name] * count, pa.string()),
        }
    )


def bin_dir(root: Path, index: int) -> Path:
    return root / INSTRUMENT / bin_name(index)


def write_bin(root: Path, index: int, images: list[bytes]) -> None:
    directory = bin_dir(root, index)
    directory.mkdir(parents=True, exist_ok=True)
    name = directory.name
    for roi, data in enumerate(images, start=1):
        with open(directory / f"{name}_{roi:05d}.png", "wb") as f:
            f.write(data)


def read_bin(root: Path, index: int) -> list[bytes]:
    directory = bin_dir(root, index)
    return [p.read_bytes() for p in sorted(directory.iterdir())]


def counts(images: int) -> list[int]:
    return [min(BATCH, images - start) for start in range(0, images, BATCH)]


def generator_key() -> str:
    from improv_vcs.ingest import synthetic

    source = inspect.getsource(synthetic) + "".join(
        inspect.getsource(f) for f in (bin_name, make_images, bin_table, write_bin)
    )
    return hashlib.sha256(source.encode()).hexdigest()


# -- helpers -------------------------------------------------------------------------
def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd``; exit with its output if it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode:
        sys.exit(
            f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return result


def git(*args: str | os.PathLike[str], cwd: Path | None = None) -> str:
    return run([*GIT, *map(str, args)], env=GIT_ENV, cwd=cwd).stdout


def link_copy(source: Path, target: Path) -> None:
    """A copy whose files are hard links. improv never rewrites a file in place
    (objects are linked in, refs replaced); git is run without reflogs, and its
    index and refs are replaced through lock files: the source stays as it is."""
    target.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-al", str(source), str(target)])


def files_under(root: Path) -> dict[str, int]:
    """Relative path → size of every file under ``root``."""
    out = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            out[os.path.relpath(path, root)] = os.path.getsize(path)
    return out


def read_all(root: Path) -> int:
    """Read every file under ``root`` (warms the page cache); returns the bytes read."""
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(directory, name), "rb") as f:
                while chunk := f.read(1 << 22):
                    total += len(chunk)
    return total


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def mb_per_s(size: int, seconds: float) -> float:
    return round(size / 1e6 / seconds, 1)


# -- building --------------------------------------------------------------------------
def build(home: Path, images: int, seed: int, with_git: bool) -> dict:
    """Create the cached repository, its remote, the git pair and the next bin."""
    from improv_vcs import Repository
    from improv_vcs.sync import sites

    improv, remote = home / "improv", home / "improv-remote"
    tree, git_remote, nxt = home / "git", home / "git-remote.git", home / "next"
    sizes = counts(images)
    started = time.perf_counter()
    repo = Repository.init(improv)
    if with_git:
        tree.mkdir(parents=True)
        git("init", "-q", "-b", "main", tree)
        git("config", "core.logAllRefUpdates", "false", cwd=tree)
    seconds = {"generate_wait": 0.0, "improv_commits": 0.0, "git_files_add_commit": 0.0}
    total_bytes = 0
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = pool.map(make_images, [seed] * len(sizes), range(len(sizes)), sizes)
        for index, count in enumerate(sizes):
            t0 = time.perf_counter()
            blobs = next(results)
            t1 = time.perf_counter()
            total_bytes += sum(map(len, blobs))
            with repo.transaction(message=f"bench: bin {index}", author="bench") as tx:
                tx.append_bytes(INSTRUMENT, bin_table(index, count), blobs)
            t2 = time.perf_counter()
            if with_git:
                write_bin(tree, index, blobs)
                git("add", bin_dir(tree, index).relative_to(tree), cwd=tree)
                git("commit", "-q", "-m", f"bench: bin {index}", cwd=tree)
            t3 = time.perf_counter()
            seconds["generate_wait"] += t1 - t0
            seconds["improv_commits"] += t2 - t1
            seconds["git_files_add_commit"] += t3 - t2
            if (index + 1) % 10 == 0:
                print(f"  built {index + 1}/{len(sizes)} bins", file=sys.stderr)
    write_bin(nxt, len(sizes), make_images(seed, len(sizes), BATCH))

    t0 = time.perf_counter()
    remote.mkdir()
    first = sites.push(Repository.open(improv), str(remote))
    seconds["improv_initial_push"] = time.perf_counter() - t0
    info: dict = {"images_bytes": total_bytes, "initial_push": first.transfer.to_json()}
    if with_git:
        t0 = time.perf_counter()
        git("gc", "-q", cwd=tree)
        seconds["git_gc"] = time.perf_counter() - t0
        run(["git", "clone", "-q", "--bare", str(tree), str(git_remote)], env=GIT_ENV)
        git("config", "gc.auto", "0", cwd=git_remote)
        info["git_objects_bytes"] = sum(files_under(tree / ".git" / "objects").values())
    seconds["total"] = time.perf_counter() - started
    info["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    repo_files = files_under(improv)
    info["repo_bytes"] = sum(repo_files.values())
    info["repo_files"] = len(repo_files)
    return info


def prepare(workdir: Path, images: int, seed: int, with_git: bool) -> tuple[Path, dict]:
    """The cached build directory and its build info, building it if needed."""
    from improv_vcs.core.model import FORMAT_VERSION

    home = workdir / f"n{images}-s{seed}"
    marker = home / "build.json"
    wanted = {
        "images": images,
        "seed": seed,
        "batch": BATCH,
        "format": FORMAT_VERSION,
        "generator": generator_key(),
        "git": with_git,
    }
    needed = ["improv", "improv-remote", "next"] + (["git", "git-remote.git"] if with_git else [])
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("key") == wanted and all((home / n).is_dir() for n in needed):
            return home, {**info["build"], "cached": True}
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    print(
        f"building {images:,} images in {len(counts(images))} bins under {home} ...",
        file=sys.stderr,
    )
    info = build(home, images, seed, with_git)
    marker.write_text(json.dumps({"key": wanted, "build": info}, indent=2))
    return home, {**info, "cached": False}


# -- incremental push ------------------------------------------------------------------
def classify(path: str, full: Path) -> str:
    """What a file the remote gained is (for the byte breakdown)."""
    if path.startswith("packs/"):
        return "pack_data" if path.endswith(".pack") else "pack_index"
    if path.startswith("objects/"):
        with open(full, "rb") as f:
            head = f.read(4)
        if head != b"PAR1":
            return "commit_json"
        import pyarrow.parquet as pq

        kind = (pq.read_schema(full).metadata or {}).get(b"improv.kind", b"?").decode()
        return {"manifest": "manifest", "snapshot-index": "snapshot_index"}.get(kind, kind)
    return "refs_and_other (not counted as sent)"


def commit_next(repo_dir: Path, nxt_index: int, blobs: list[bytes]) -> None:
    from improv_vcs import Repository

    repo = Repository.open(repo_dir)
    with repo.transaction(message="bench: next bin", author="bench") as tx:
        tx.append_bytes(INSTRUMENT, bin_table(nxt_index, len(blobs)), blobs)
    if tx.commit_id is None:
        sys.exit("the next bin committed nothing")


def improv_push_copy(
    home: Path, scratch: Path, tag: str, nxt_index: int, blobs: list[bytes]
) -> tuple[Path, Path]:
    """Fresh hard-linked copies of the repository (with the next bin committed) and its remote."""
    repo_dir, remote_dir = scratch / f"improv-{tag}", scratch / f"improv-remote-{tag}"
    link_copy(home / "improv", repo_dir)
    link_copy(home / "improv-remote", remote_dir)
    commit_next(repo_dir, nxt_index, blobs)
    return repo_dir, remote_dir


def push_once(repo_dir: Path, remote_dir: Path):  # type: ignore[no-untyped-def]
    from improv_vcs import Repository
    from improv_vcs.sync import sites

    return sites.push(Repository.open(repo_dir), str(remote_dir))


def time_improv_push(
    home: Path, scratch: Path, rep: int, nxt_index: int, blobs: list[bytes]
) -> tuple[float, dict, dict]:
    repo_dir, remote_dir = improv_push_copy(home, scratch, f"push-{rep}", nxt_index, blobs)
    before = files_under(remote_dir)
    os.sync()
    started = time.perf_counter()
    result = push_once(repo_dir, remote_dir)
    elapsed = time.perf_counter() - started
    report = result.transfer.to_json()
    if result.action != "pushed" or report["commits"] != 1 or report["packs"] != 1:
        sys.exit(f"incremental push did not send one commit and one pack: {result.to_json()}")
    breakdown: dict[str, int] = {}
    for path, size in files_under(remote_dir).items():
        if path not in before:
            kind = classify(path, remote_dir / path)
            breakdown[kind] = breakdown.get(kind, 0) + size
    remove(repo_dir)
    remove(remote_dir)
    return elapsed, report, breakdown


def time_improv_cli_push(
    home: Path, scratch: Path, rep: int, nxt_index: int, blobs: list[bytes]
) -> float:
    repo_dir, remote_dir = improv_push_copy(home, scratch, f"cli-{rep}", nxt_index, blobs)
    os.sync()
    started = time.perf_counter()
    run([*IMPROV, "push", str(remote_dir), "--repo", str(repo_dir), "--quiet"])
    elapsed = time.perf_counter() - started
    remove(repo_dir)
    remove(remote_dir)
    return elapsed


def time_git_push(home: Path, scratch: Path, rep: int, nxt_index: int) -> tuple[float, int]:
    """Seconds of ``git push`` of one more bin, and the bytes the remote gained."""
    work, remote = scratch / f"git-{rep}", scratch / f"git-remote-{rep}.git"
    link_copy(home / "git", work)
    link_copy(home / "git-remote.git", remote)
    source = bin_dir(home / "next", nxt_index)
    link_copy(source, bin_dir(work, nxt_index))
    git("add", bin_dir(work, nxt_index).relative_to(work), cwd=work)
    git("commit", "-q", "-m", "bench: next bin", cwd=work)
    before = files_under(remote / "objects")
    os.sync()
    started = time.perf_counter()
    git("push", "-q", remote, "main", cwd=work)
    elapsed = time.perf_counter() - started
    gained = sum(s for p, s in files_under(remote / "objects").items() if p not in before)
    remove(work)
    remove(remote)
    return elapsed, gained


def pack_count(path: Path) -> int:
    from improv_vcs import Repository

    snapshot = Repository.open(path).snapshot()
    return len(set(snapshot.query(columns=["pack"]).column("pack").to_pylist()))


def commit_bins(repo, images: int, seed: int) -> int:  # type: ignore[no-untyped-def]
    """Commit ``images`` generated ROIs to ``repo``, one commit per bin (as
    :func:`build` does, without git); returns their bytes."""
    sizes = counts(images)
    total = 0
    with ProcessPoolExecutor(max_workers=2) as pool:
        made = pool.map(make_images, [seed] * len(sizes), range(len(sizes)), sizes)
        for index, count in enumerate(sizes):
            blobs = next(made)
            total += sum(map(len, blobs))
            with repo.transaction(message=f"bench: bin {index}", author="bench") as tx:
                tx.append_bytes(INSTRUMENT, bin_table(index, count), blobs)
            if (index + 1) % 10 == 0:
                print(f"  built {index + 1}/{len(sizes)} bins", file=sys.stderr)
    return total


def commit_count(path: Path) -> int:
    from improv_vcs import Repository

    return sum(1 for _ in Repository.open(path).log())


# -- clones ----------------------------------------------------------------------------
def clone_once(url: str, dest: Path, endpoint_url: str | None = None):  # type: ignore[no-untyped-def]
    from improv_vcs.sync import sites

    return sites.clone(url, dest, endpoint_url=endpoint_url)[1]


def time_local_clones(
    source: Path, scratch: Path, repeat: int, packs: int
) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {"improv": [], "cp_r": [], "cp_r_then_sync": []}
    for rep in range(repeat):
        sides = ["improv", "cp"] if rep % 2 == 0 else ["cp", "improv"]
        for side in sides:
            dest = scratch / f"clone-{side}-{rep}"
            os.sync()
            started = time.perf_counter()
            if side == "improv":
                result = clone_once(str(source), dest)
                seconds["improv"].append(time.perf_counter() - started)
                if result.transfer.packs != packs:
                    sys.exit(f"local clone copied {result.transfer.packs} packs, expected {packs}")
            else:
                run(["cp", "-r", str(source), str(dest)])
                seconds["cp_r"].append(time.perf_counter() - started)
                os.sync()
                seconds["cp_r_then_sync"].append(time.perf_counter() - started)
            remove(dest)
    return seconds


class MotoServer:
    """moto's ThreadedMotoServer on 127.0.0.1 (a free port) in a child process,
    so the server does not share this process's GIL with the client."""

    SCRIPT = (
        "import sys\n"
        "from moto.server import ThreadedMotoServer\n"
        "server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\n"
        "server.start()\n"
        "host, port = server.get_host_and_port()\n"
        "print(f'http://{host}:{port}', flush=True)\n"
        "sys.stdin.read()\n"
        "server.stop()\n"
    )

    def __init__(self, log: Path):
        self.log = log

    def __enter__(self) -> str:
        with open(self.log, "wb") as log:  # its request log; the child keeps the descriptor
            self.child = subprocess.Popen(
                [sys.executable, "-c", self.SCRIPT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=os.environ.copy(),
            )
        line = self.child.stdout.readline().strip() if self.child.stdout else ""
        if not line.startswith("http://127.0.0.1:"):
            self.__exit__()
            sys.exit(
                f"moto server did not start (said {line!r}):\n"
                f"{self.log.read_text(errors='replace')[-4000:]}"
            )
        return line

    def __exit__(self, *_: object) -> None:
        if self.child.stdin:
            self.child.stdin.close()
        try:
            self.child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.child.terminate()  # this child only, by its own handle
            self.child.wait(timeout=30)


def s3_environment() -> None:
    """Dummy credentials for moto; nothing read from config files; loopback unproxied."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    for key in ("NO_PROXY", "no_proxy"):
        os.environ[key] = ",".join(filter(None, [os.environ.get(key), "127.0.0.1", "localhost"]))
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(key, None)


def time_s3(home: Path, scratch: Path, batches: int, images: int, repeat: int) -> dict:
    """Push the first ``batches`` commits to moto, then time full clones from it."""
    import boto3

    from improv_vcs import Repository
    from improv_vcs.sync import sites

    s3_environment()
    source = home / "improv"
    total = len(list(Repository.open(source).log()))
    branch = None
    if batches < total:  # a subset: a branch at the batches-th commit of a linked copy
        source = scratch / "s3-subset"
        link_copy(home / "improv", source)
        repo = Repository.open(source)
        by_height = sorted(repo.log(), key=lambda item: item[1].height)
        branch = "s3-subset"
        repo.create_branch(branch, at=by_height[batches - 1][0])
    with MotoServer(scratch / "moto.log") as endpoint:
        bucket = f"bench-sync-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/repo"
        started = time.perf_counter()
        pushed = sites.push(Repository.open(source), url, branch=branch, endpoint_url=endpoint)
        push_s = time.perf_counter() - started
        sent = pushed.transfer.bytes
        seconds, received = [], 0
        if push_s * (1 + repeat) > S3_BUDGET_SECONDS:  # clones run about as fast as pushes
            repeat = 1
        for rep in range(repeat):
            dest = scratch / f"clone-s3-{rep}"
            os.sync()
            started = time.perf_counter()
            result = clone_once(url, dest, endpoint_url=endpoint)
            seconds.append(time.perf_counter() - started)
            received = result.transfer.bytes
            cloned = commit_count(dest)  # bundles copied whole are not counted per commit
            if cloned != batches:
                sys.exit(f"the S3 clone holds {cloned} commits, expected {batches}")
            remove(dest)
    if branch:
        remove(source)
    clone_s = median(seconds)
    return {
        "server": "moto ThreadedMotoServer in a child process on 127.0.0.1",
        "moto": _version("moto"),
        "images": images,
        "commits": batches,
        "subset": branch is not None,
        "push_seconds": round(push_s, 3),
        "push_bytes": sent,
        "push_mb_per_s": mb_per_s(sent, push_s),
        "clone_repeat": repeat,
        "clone_bytes": received,
        "clone_seconds": clone_s,
        "clone_runs_seconds": [round(s, 4) for s in seconds],
        "clone_mb_per_s": mb_per_s(received, clone_s),
    }


# -- profiling ---------------------------------------------------------------------------
def profile_call(fn, top: int = 25) -> str:  # type: ignore[no-untyped-def]
    """cProfile top lists of ``fn()``: the main thread and every thread it starts,
    merged (Python 3.11's cProfile sees only the thread that enables it)."""
    profilers: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(*_: object) -> None:
        profiler = cProfile.Profile()
        with lock:
            profilers.append(profiler)
        profiler.enable()

    main = cProfile.Profile()
    threading.setprofile(start_in_thread)
    main.enable()
    try:
        fn()
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    for profiler in profilers:
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(main, stream=out)
    for profiler in profilers:
        stats.add(profiler)
    out.write(f"(main thread + {len(profilers)} worker threads; worker time overlaps)\n")
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- main ----------------------------------------------------------------------------------
def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed
        return None


def source_state() -> dict:
    """The git commit of the improv_vcs source measured, and its locally changed files."""
    import improv_vcs

    root = Path(improv_vcs.__file__).resolve().parent.parent

    def call(*cmd: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *cmd],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    head = call("rev-parse", "HEAD")
    status = call("status", "--porcelain", "--", "improv_vcs")
    return {
        "commit": head.strip() if head else None,
        "changed_files": [line[3:] for line in status.splitlines()] if status else [],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="ci",
        help="ci: 5,000 images; full: 100,000 images (3 timed runs each)",
    )
    parser.add_argument("--images", type=int, help="images in the repository (overrides --scale)")
    parser.add_argument(
        "--repeat", type=int, help="timed runs of the incremental push and of the local clone"
    )
    parser.add_argument("--s3-repeat", type=int, help="timed clones from S3")
    parser.add_argument(
        "--s3-images",
        type=int,
        help="push only the first commits holding this many images to S3 "
        "(default: all, unless the estimate exceeds the time budget)",
    )
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 part")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument(
        "--workdir",
        "--work",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"where the cached repositories go (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print cProfile top lists of one more incremental push and one "
        "more local clone to stderr",
    )
    args = parser.parse_args(argv)
    images, repeat, s3_repeat = SCALES[args.scale]
    args.images = images if args.images is None else args.images
    args.repeat = repeat if args.repeat is None else args.repeat
    args.s3_repeat = s3_repeat if args.s3_repeat is None else args.s3_repeat
    if min(args.images, args.repeat, args.s3_repeat) < 1:
        parser.error("--images, --repeat and --s3-repeat must be positive")
    if args.s3_images is not None and args.s3_images < 1:
        parser.error("--s3-images must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import improv_vcs

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    with_git = shutil.which("git") is not None
    if not with_git:
        notes.append("git not installed: the git push baseline is skipped")
    home, build_info = prepare(workdir, args.images, args.seed, with_git)
    batches = len(counts(args.images))
    nxt_index = batches
    blobs = read_bin(home / "next", nxt_index)
    batch_bytes = sum(map(len, blobs))
    scratch = workdir / f"scratch-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    profiles: dict[str, str] = {}
    try:
        # Warm the page cache: every side reads cached files.
        read_all(home / "improv")
        read_all(home / "improv-remote")
        if with_git:
            read_all(home / "git")

        # -- incremental push --------------------------------------------------
        push_s: dict[str, list[float]] = {"improv": [], "improv_cli": []}
        if with_git:
            push_s["git"] = []
        git_gained: list[int] = []
        reports, breakdowns = [], []
        for rep in range(args.repeat):
            order = (
                ["improv", "git", "improv_cli"] if rep % 2 == 0 else ["git", "improv_cli", "improv"]
            )
            for side in order:
                if side == "improv":
                    elapsed, report, breakdown = time_improv_push(
                        home, scratch, rep, nxt_index, blobs
                    )
                    reports.append(report)
                    breakdowns.append(breakdown)
                elif side == "git":
                    if not with_git:
                        continue
                    elapsed, gained = time_git_push(home, scratch, rep, nxt_index)
                    git_gained.append(gained)
                else:
                    elapsed = time_improv_cli_push(home, scratch, rep, nxt_index, blobs)
                push_s[side].append(elapsed)
        sent = max(r["bytes"] for r in reports)
        allowed = TARGET_BYTES_FACTOR * batch_bytes + TARGET_BYTES_SLACK
        push_median = {side: median(v) for side, v in push_s.items()}
        push_over_git = (
            round(push_median["improv"] / push_median["git"], 3) if "git" in push_median else None
        )
        if args.profile:
            repo_dir, remote_dir = improv_push_copy(home, scratch, "profile", nxt_index, blobs)
            os.sync()
            profiles["incremental push"] = profile_call(lambda: push_once(repo_dir, remote_dir))
            remove(repo_dir)
            remove(remote_dir)

        # -- full local clone ---------------------------------------------------
        source = home / "improv"
        source_files = files_under(source)
        source_bytes = sum(source_files.values())
        packs = pack_count(source)  # loose, or bundled by automatic maintenance
        clone_s = time_local_clones(source, scratch, args.repeat, packs)
        clone_median = {side: median(v) for side, v in clone_s.items()}
        clone_mbps = {side: mb_per_s(source_bytes, s) for side, s in clone_median.items()}
        clone_ratio = round(clone_mbps["improv"] / clone_mbps["cp_r"], 3)
        if args.profile:
            dest = scratch / "clone-profile"
            os.sync()
            profiles["local clone"] = profile_call(lambda: clone_once(str(source), dest))
            remove(dest)

        # -- full clone from S3 ---------------------------------------------------
        s3: dict | None = None
        if args.no_s3:
            notes.append("S3 part skipped (--no-s3)")
        else:
            if args.s3_images is not None:
                s3_batches = min(batches, -(-args.s3_images // BATCH))
            else:
                s3_batches = batches
            s3 = time_s3(
                home, scratch, s3_batches, sum(counts(args.images)[:s3_batches]), args.s3_repeat
            )
            if s3["subset"]:
                notes.append(
                    f"S3: a subset of {s3_batches} of {batches} commits "
                    f"({s3['images']:,} images) was pushed to moto and cloned"
                )
            s3_total = s3["push_seconds"] + s3["clone_seconds"] * s3["clone_repeat"]
            if s3_total > S3_BUDGET_SECONDS and not s3["subset"]:
                notes.append(
                    f"S3 part took {s3_total:.0f} s (> {S3_BUDGET_SECONDS:.0f} s budget); "
                    "use --s3-images for a subset"
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    breakdown = breakdowns[0]
    targets_met = {
        "push_bytes_le_1_05x_batch_plus_64kb": sent <= allowed,
        "push_at_least_as_fast_as_git": (
            None if push_over_git is None else push_over_git <= TARGET_PUSH_OVER_GIT
        ),
        "local_clone_ge_0_7x_cp_r": clone_ratio >= TARGET_CLONE_OVER_CP,
    }
    report = {
        "images": args.images,
        "bins": batches,
        "images_per_bin": BATCH,
        "seed": args.seed,
        "repeat": args.repeat,
        "build": build_info,
        "incremental_push": {
            "onto_images": args.images,
            "batch_images": len(blobs),
            "batch_bytes": batch_bytes,
            "bytes_sent": sent,
            "bytes_sent_runs": [r["bytes"] for r in reports],
            "bytes_allowed": int(allowed),
            "bytes_over_batch": round(sent / batch_bytes, 4),
            "overhead_bytes": sent - batch_bytes,
            "transfer": reports[0],
            "remote_gained_bytes_by_kind": breakdown,
            "git_remote_gained_bytes": git_gained[0] if git_gained else None,
            "median_seconds": push_median,
            "runs_seconds": {s: [round(x, 4) for x in v] for s, v in push_s.items()},
            "ratio_improv_over_git": push_over_git,
            "ratio_improv_cli_over_git": (
                round(push_median["improv_cli"] / push_median["git"], 3)
                if "git" in push_median
                else None
            ),
        },
        "clone_local": {
            "repo_bytes": source_bytes,
            "repo_files": len(source_files),
            "median_seconds": clone_median,
            "runs_seconds": {s: [round(x, 4) for x in v] for s, v in clone_s.items()},
            "mb_per_s": clone_mbps,
            "ratio_improv_over_cp_r": clone_ratio,
            "ratio_improv_over_cp_r_then_sync": round(
                clone_mbps["improv"] / clone_mbps["cp_r_then_sync"], 3
            ),
        },
        "clone_s3": s3,
        "targets": {
            "push_bytes_le": f"{TARGET_BYTES_FACTOR} x batch_bytes + {TARGET_BYTES_SLACK}",
            "push_seconds_improv_over_git_le": TARGET_PUSH_OVER_GIT,
            "clone_mb_per_s_improv_over_cp_r_ge": TARGET_CLONE_OVER_CP,
        },
        "targets_met": targets_met,
        "versions": {
            "python": sys.version.split()[0],
            "improv_vcs": improv_vcs.__version__,
            "git": run(["git", "--version"]).stdout.split()[-1] if with_git else None,
            "pyarrow": pa.__version__,
            "s3fs": _version("s3fs"),
            "boto3": _version("boto3"),
            "moto": _version("moto"),
        },
        "source": source_state(),
        "notes": [
            "warm page cache; `sync` (flush only) before every timed step",
            (
                "incremental push: fresh `cp -al` copies per run, next bin committed untimed; "
                "improv = Repository.open + sites.push in this process; improv_cli = "
                "`python -m improv_vcs.cli push` in a fresh process (imports included); "
                "git = `git push` to a bare local remote (repository gc'd after building)"
            ),
            "local clone: sides alternate which goes first; MB/s of the repository's bytes",
            *notes,
        ],
    }
    for name, text in profiles.items():
        print(f"== cProfile of one {name} ==\n{text}", file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
