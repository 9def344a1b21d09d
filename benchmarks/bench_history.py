"""History benchmark: a real site's history, thousands of small commits.

Builds one repository through the Python API: N commits of K tiny random
blobs (~2 KB) each (``Repository.transaction`` + ``append_bytes``, the commit
included, so any maintenance a commit triggers is timed with it), one
instrument per commit in turn (three), timestamps 20 minutes apart per commit,
and lat, lon and an integer depth 0..9 per image. It records each commit's
time and compares the median (and mean) of the last 200 commits with the
first 200.

Then, warm page cache, it times (wall clock; median of 3 runs, or fewer once
they took 2 s so that the CI size stays short) the ``improv`` CLI next to
``sys.executable``, each in a fresh process, with the peak memory (``wait4``
rusage) of every improv process:

* ``log -n 10``, against ``python -c pass`` (the start-up floor);
* a one-day query (every column, rows as CSV);
* a full-table query of 3 columns to a Parquet file, against DuckDB reading
  the same 3 columns from ONE Parquet file of the repository's rows (written
  from ``Repository.query()``), in a fresh process and in this process;
* ``query --where "depth = 3" --count`` against DuckDB's ``count(*)`` (fresh);
* ``fsck`` against ``git fsck`` of a bare git repository holding the same
  history (``git fast-import``: one git commit per improv commit adding its K
  blobs as files), and ``fsck --full`` against ``sha256sum`` of every file of
  the repository (throughput of the repository's bytes);
* ``clone --no-hardlinks`` to a local path (every byte copied, not hard
  links as by default) against ``git clone --no-local --no-checkout`` and
  ``cp -r`` (MB/s of each source's bytes); ``clone --metadata-only``;
* over S3 (a moto server on 127.0.0.1 in a child process, every HTTP request
  counted by a WSGI middleware), once each: ``push`` of the last 100 commits
  onto a copy pushed at ``main~100`` (a branch), then a full ``clone``
  (requests per 1,000 images);
* ``gc --dry-run``; the repository's file count, and after ``improv
  maintenance`` when that command exists.

Prints one JSON object: the figures, the ratios against the baselines, the
targets and whether each is met. Git baselines are null without git.

    python benchmarks/bench_history.py                 # CI size: 500 commits x 20 images
    python benchmarks/bench_history.py --scale full    # 20,000 commits x 50 images
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

import bench_sync  # noqa: E402  (after the path set-up above: git settings, moto server)

from improv_vcs.repository.repository import Repository  # noqa: E402

SCALES = {"ci": (500, 20), "full": (20_000, 50)}  # commits, images per commit
EDGE = 200  # commits compared at each end of the history
PUSH_TAIL = 100  # commits pushed onto an S3 copy of main~PUSH_TAIL
REPEAT = 3  # runs of each fresh-process command (median) ...
REPEAT_BUDGET_S = 2.0  # ... while they take less than this in total
INSTRUMENTS = {"IFCB107": (41.5, -70.7), "IFCB110": (42.3, -71.0), "IFCB121": (40.9, -69.9)}
BLOB_BYTES = (1_536, 2_560)  # uniform sizes, ~2 KB mean
STEP = timedelta(minutes=20)
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
TIMESTAMP = pa.timestamp("us", tz="UTC")
IMPROV = str(Path(sys.executable).with_name("improv"))
COLUMNS = "image_id,timestamp,depth"

TARGETS = {
    "query_full_fresh_over_duckdb_fresh_le": 2.0,
    "query_one_day_seconds_le": 0.3,
    "clone_over_git_clone_le": 1.0,
    "clone_mb_per_s_over_cp_r_ge": 0.5,
    "clone_metadata_only_seconds_le": 2.0,
    "s3_clone_requests_per_1000_images_le": 1.0,
    "s3_clone_requests_constant": 50,
    "fsck_over_git_fsck_le": 1.0,
    "fsck_full_mb_per_s_over_sha256sum_ge": 0.7,
    "files_per_50_commits_le": 1.0,
    "commit_last_over_first_le": 1.3,
    "peak_rss_mb_lt": 500,
    "log_n10_seconds_le": 0.15,
}


# -- the history -----------------------------------------------------------------------
def commit_batch(seed: int, k: int, size: int) -> tuple[str, pa.Table, list[bytes]]:
    """Commit ``k``: its instrument, metadata and blobs (a pure function of the arguments)."""
    rng = np.random.default_rng([seed, k])
    instrument = list(INSTRUMENTS)[k % len(INSTRUMENTS)]
    lat, lon = INSTRUMENTS[instrument]
    start = T0 + k * STEP
    name = f"D{start:%Y%m%dT%H%M%S}_{instrument}"
    start_us = int(start.timestamp() * 1_000_000)
    step_us = int(STEP.total_seconds() * 1_000_000) // size
    blobs = [rng.bytes(int(n)) for n in rng.integers(*BLOB_BYTES, size)]
    table = pa.table(
        {
            "image_id": pa.array([f"{name}_{i:05d}" for i in range(1, size + 1)], pa.string()),
            "timestamp": pa.array([start_us + step_us * i for i in range(size)], TIMESTAMP),
            "lat": pa.array(lat + rng.normal(0, 0.01, size)),
            "lon": pa.array(lon + rng.normal(0, 0.01, size)),
            "depth": pa.array(rng.integers(0, 10, size).astype(float)),
        }
    )
    return instrument, table, blobs


def build(path: Path, seed: int, commits: int, size: int) -> list[float]:
    """Create the repository; returns each commit's seconds."""
    repo = Repository.init(path)
    seconds = []
    for k in range(commits):
        instrument, table, blobs = commit_batch(seed, k, size)
        began = time.perf_counter()
        with repo.transaction(message=f"bench: commit {k}", author="bench") as tx:
            tx.append_bytes(instrument, table, blobs)
        seconds.append(time.perf_counter() - began)
        if (k + 1) % 1000 == 0:
            print(f"  built {k + 1:,}/{commits:,} commits", file=sys.stderr)
    return seconds


def fast_import_stream(seed: int, commits: int, size: int) -> Iterator[bytes]:
    """``git fast-import`` input: one commit per improv commit, adding its blobs
    as ``YYYY/MM/DD/<bin>/<image_id>.bin``."""
    for k in range(commits):
        _, table, blobs = commit_batch(seed, k, size)
        start = T0 + k * STEP
        message = f"bench: commit {k}".encode()
        head = (
            f"commit refs/heads/main\ncommitter bench <bench@example.invalid> "
            f"{int(start.timestamp())} +0000\ndata {len(message)}\n"
        ).encode()
        parts = [head, message, b"\n"]
        for image_id, blob in zip(table.column("image_id").to_pylist(), blobs):
            path = f"{start:%Y/%m/%d}/{image_id.rsplit('_', 1)[0]}/{image_id}.bin"
            parts += [f"M 100644 inline {path}\ndata {len(blob)}\n".encode(), blob, b"\n"]
        yield b"".join(parts)


def build_git(path: Path, seed: int, commits: int, size: int) -> None:
    bench_sync.git("init", "-q", "--bare", "-b", "main", path)
    with subprocess.Popen(
        [*bench_sync.GIT, "fast-import", "--quiet"],
        cwd=path,
        env=bench_sync.GIT_ENV,
        stdin=subprocess.PIPE,
    ) as child:
        assert child.stdin is not None
        for chunk in fast_import_stream(seed, commits, size):
            child.stdin.write(chunk)
        child.stdin.close()
    if child.returncode:
        sys.exit(f"git fast-import failed ({child.returncode})")


# -- timing fresh processes -----------------------------------------------------------------
# A child exec'd straight from this process inherits its high-water RSS (Linux
# records the forked mm's peak at exec): a small launcher spawns the command,
# and reports its wall time and its own peak RSS.
LAUNCHER = (
    "import json, os, sys, time\n"
    "report, argv = sys.argv[1], sys.argv[2:]\n"
    "began = time.perf_counter()\n"
    "pid = os.posix_spawnp(argv[0], argv, os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "seconds = time.perf_counter() - began\n"
    "with open(report, 'w') as f:\n"
    "    json.dump([seconds, usage.ru_maxrss], f)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


@dataclass
class Timings:
    """Runs and peak RSS of the timed commands, by name."""

    runs: dict[str, list[float]] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, command: list[str], capture: bool = True) -> str:
        """Run ``command`` once, timed; its stdout when ``capture`` (else /dev/null)."""
        with tempfile.TemporaryDirectory() as tmp:
            report, out, err = Path(tmp) / "report", Path(tmp) / "out", Path(tmp) / "err"
            with open(out, "wb") as stdout, open(err, "wb") as stderr:
                done = subprocess.run(
                    [sys.executable, "-c", LAUNCHER, str(report), *command],
                    check=False,
                    stdout=stdout if capture else subprocess.DEVNULL,
                    stderr=stderr,
                )
            if done.returncode:
                sys.exit(
                    f"{' '.join(command)} failed "
                    f"({done.returncode}):\n{err.read_text(errors='replace')}"
                )
            seconds, rss_kb = json.loads(report.read_text())
            self.runs.setdefault(name, []).append(seconds)
            if Path(command[0]).name == "improv":
                self.rss_mb[name] = max(self.rss_mb.get(name, 0.0), round(rss_kb / 1024, 1))
            return out.read_text()

    def repeat(
        self,
        name: str,
        command: list[str],
        capture: bool = True,
        before: Callable[[], None] | None = None,
    ) -> str:
        """Up to :data:`REPEAT` runs, fewer once they took :data:`REPEAT_BUDGET_S`
        (``before`` runs untimed before each); the last run's stdout."""
        while True:
            if before is not None:
                before()
            output = self.run(name, command, capture)
            runs = self.runs[name]
            if len(runs) == REPEAT or sum(runs) >= REPEAT_BUDGET_S:
                return output

    def median(self, name: str) -> float:
        return bench_sync.median(self.runs[name])


def in_process(fn: Callable[[], object]) -> float:
    fn()  # warm
    runs = []
    for _ in range(REPEAT):
        began = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - began)
    return bench_sync.median(runs)


def fresh_dir(path: Path) -> Callable[[], None]:
    """Remove ``path`` and flush writes: before each clone or copy into it."""

    def reset() -> None:
        bench_sync.remove(path)
        os.sync()

    return reset


class CountingMotoServer(bench_sync.MotoServer):
    """bench_sync's moto child, behind a WSGI middleware counting every HTTP
    request by method; each line written to its stdin prints the counts."""

    SCRIPT = (
        "import json, sys, threading\n"
        "from collections import Counter\n"
        "from moto.server import DomainDispatcherApplication, MotoRequestHandler, "
        "create_backend_app\n"
        "from werkzeug.serving import make_server\n"
        "counts, lock = Counter(), threading.Lock()\n"
        "backend = DomainDispatcherApplication(create_backend_app)\n"
        "def app(environ, start_response):\n"
        "    with lock:\n"
        "        counts[environ['REQUEST_METHOD']] += 1\n"
        "    return backend(environ, start_response)\n"
        "server = make_server('127.0.0.1', 0, app, True, request_handler=MotoRequestHandler)\n"
        "threading.Thread(target=server.serve_forever, daemon=True).start()\n"
        "print(f'http://127.0.0.1:{server.server_port}', flush=True)\n"
        "for _ in sys.stdin:\n"
        "    with lock:\n"
        "        print(json.dumps(counts), flush=True)\n"
        "server.shutdown()\n"
    )

    def counts(self) -> dict[str, int]:
        assert self.child.stdin is not None and self.child.stdout is not None
        self.child.stdin.write("\n")
        self.child.stdin.flush()
        return json.loads(self.child.stdout.readline())


def requests_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {m: after[m] - before.get(m, 0) for m in sorted(after) if after[m] > before.get(m, 0)}


def time_s3(t: Timings, repo_dir: Path, work: Path, images: int) -> dict:
    """Push main~PUSH_TAIL (as a branch) to moto, then time and count the push
    of the last PUSH_TAIL commits of main, and a full clone."""
    import boto3

    bench_sync.s3_environment()
    base = "bench-base"
    t.run("branch", [IMPROV, "branch", base, f"main~{PUSH_TAIL}", "--repo", str(repo_dir)])
    server = CountingMotoServer(work / "moto.log")
    with server as endpoint:
        bucket = f"bench-history-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/repo"
        push = [IMPROV, "push", url, "--endpoint-url", endpoint, "--quiet", "--repo", str(repo_dir)]
        t.run("s3_push_base", [*push, base])
        before = server.counts()
        t.run("s3_push_last_100", [*push, "main"])
        pushed = server.counts()
        dest = work / "clone-s3"
        fresh_dir(dest)()
        t.run("s3_clone", [IMPROV, "clone", url, str(dest), "--endpoint-url", endpoint, "--quiet"])
        cloned = server.counts()
    clone_bytes = sum(bench_sync.files_under(dest).values())
    bench_sync.remove(dest)
    push_requests = requests_between(before, pushed)
    clone_requests = requests_between(pushed, cloned)
    clone_s = t.median("s3_clone")
    return {
        "server": "moto ThreadedMotoServer's app in a child process on 127.0.0.1, requests "
        "counted by a WSGI middleware",
        "moto": bench_sync._version("moto"),
        "push_last_100": {
            "commits": PUSH_TAIL,
            "seconds": t.median("s3_push_last_100"),
            "requests": sum(push_requests.values()),
            "requests_by_method": push_requests,
        },
        "clone": {
            "seconds": clone_s,
            "bytes": clone_bytes,
            "mb_per_s": bench_sync.mb_per_s(clone_bytes, clone_s),
            "requests": sum(clone_requests.values()),
            "requests_by_method": clone_requests,
            "requests_per_1000_images": round(1000 * sum(clone_requests.values()) / images, 2),
        },
    }


def maintenance(t: Timings, repo_dir: Path) -> dict | None:
    """Run ``improv maintenance`` when the command exists: its time and the file count after."""
    probe = subprocess.run([IMPROV, "maintenance", "--help"], capture_output=True, check=False)
    if probe.returncode:
        return None
    t.run("maintenance", [IMPROV, "maintenance", "--repo", str(repo_dir)])
    return {"seconds": t.median("maintenance"), "files": len(bench_sync.files_under(repo_dir))}


# -- main --------------------------------------------------------------------------------
def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return None if a is None or b is None else round(a / b, digits)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", choices=SCALES, default="ci", help="ci: 500 x 20 images; full: 20,000 x 50"
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    args = parser.parse_args(argv)
    commits, size = SCALES[args.scale]
    images = commits * size
    with_git = shutil.which("git") is not None
    t = Timings()
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        work = Path(tmp)
        repo_dir, git_dir = work / "repo", work / "git.git"
        print(f"building {commits:,} commits x {size} images ...", file=sys.stderr)
        began = time.perf_counter()
        commit_s = build(repo_dir, args.seed, commits, size)
        build_s = time.perf_counter() - began
        build_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if with_git:
            build_git(git_dir, args.seed, commits, size)
        repo_files = bench_sync.files_under(repo_dir)
        repo_bytes = sum(repo_files.values())
        git_bytes = sum(bench_sync.files_under(git_dir).values()) if with_git else None
        bench_sync.read_all(repo_dir)  # warm the page cache
        if with_git:
            bench_sync.read_all(git_dir)
        at = ["--repo", str(repo_dir)]

        # -- log and queries --------------------------------------------------------------
        t.repeat("python_pass", [sys.executable, "-c", "pass"])
        t.repeat("log_n10", [IMPROV, "log", "-n", "10", *at], capture=False)
        day = (T0 + commits * STEP / 2).replace(hour=0, minute=0)
        one_day = t.repeat(
            "query_one_day",
            [
                IMPROV,
                "query",
                "--start",
                day.isoformat(),
                "--end",
                (day + timedelta(days=1)).isoformat(),
                "-c",
                "*",
                "-f",
                "csv",
                *at,
            ],
        )
        one_day_rows = one_day.count("\n") - 1  # less the header
        if one_day_rows != round(timedelta(days=1) / STEP) * size:
            sys.exit(f"the one-day query returned {one_day_rows} rows")
        parquet, out = work / "rows.parquet", work / "out.parquet"
        pq.write_table(Repository.open(repo_dir).snapshot().query(), parquet)
        t.repeat("query_full_3_columns", [IMPROV, "query", "-c", COLUMNS, "-o", str(out), *at])
        if pq.read_metadata(out).num_rows != images:
            sys.exit(
                f"the full query returned {pq.read_metadata(out).num_rows} rows, expected {images}"
            )
        full_sql = f"select {COLUMNS} from '{parquet}'"
        where_sql = f"select count(*) from '{parquet}' where depth = 3"
        t.repeat(
            "duckdb_full_fresh",
            [sys.executable, "-c", f"import duckdb; duckdb.sql({full_sql!r}).arrow()"],
        )
        duckdb_full_in_process = in_process(lambda: duckdb.sql(full_sql).arrow())
        where = int(
            t.repeat("query_where_count", [IMPROV, "query", "--where", "depth = 3", "--count", *at])
        )
        theirs = int(
            t.repeat(
                "duckdb_where_count_fresh",
                [
                    sys.executable,
                    "-c",
                    f"import duckdb; print(duckdb.sql({where_sql!r}).fetchall()[0][0])",
                ],
            )
        )
        if where != theirs:
            sys.exit(f"depth = 3: improv counted {where}, DuckDB {theirs}")

        # -- fsck ----------------------------------------------------------------------
        t.repeat("fsck", [IMPROV, "fsck", "--quiet", *at])
        t.repeat("fsck_full", [IMPROV, "fsck", "--full", "--quiet", *at])
        listing = work / "files.txt"
        listing.write_text("".join(f"{repo_dir / p}\0" for p in repo_files))
        t.repeat("sha256sum", ["sh", "-c", f"xargs -0 sha256sum < '{listing}'"], capture=False)
        if with_git:
            t.repeat("git_fsck", [*bench_sync.GIT, "-C", str(git_dir), "fsck", "--no-progress"])

        # -- clones --------------------------------------------------------------------
        dest = work / "dest"
        t.repeat(
            "clone",
            [IMPROV, "clone", "--no-hardlinks", "--quiet", str(repo_dir), str(dest)],
            before=fresh_dir(dest),
        )
        t.repeat(
            "clone_metadata_only",
            [IMPROV, "clone", "--metadata-only", "--quiet", str(repo_dir), str(dest)],
            before=fresh_dir(dest),
        )
        t.repeat("cp_r", ["cp", "-r", str(repo_dir), str(dest)], before=fresh_dir(dest))
        if with_git:
            t.repeat(
                "git_clone_no_local",
                [
                    *bench_sync.GIT,
                    "clone",
                    "-q",
                    "--no-local",
                    "--no-checkout",
                    str(git_dir),
                    str(dest),
                ],
                before=fresh_dir(dest),
            )
        bench_sync.remove(dest)
        t.repeat("gc_dry_run", [IMPROV, "gc", "--dry-run", *at])

        s3 = time_s3(t, repo_dir, work, images)
        after_maintenance = maintenance(t, repo_dir)

    seconds = {name: t.median(name) for name in t.runs if name not in ("branch", "s3_push_base")}
    seconds["duckdb_full_in_process"] = duckdb_full_in_process
    git_s = seconds.get("git_clone_no_local")
    mbps = {
        "clone": bench_sync.mb_per_s(repo_bytes, seconds["clone"]),
        "cp_r": bench_sync.mb_per_s(repo_bytes, seconds["cp_r"]),
        "git_clone_no_local": bench_sync.mb_per_s(git_bytes, git_s)
        if git_bytes and git_s
        else None,
        "fsck_full": bench_sync.mb_per_s(repo_bytes, seconds["fsck_full"]),
        "sha256sum": bench_sync.mb_per_s(repo_bytes, seconds["sha256sum"]),
    }
    first = statistics.median(commit_s[:EDGE]) * 1000
    last = statistics.median(commit_s[-EDGE:]) * 1000
    first_mean = statistics.fmean(commit_s[:EDGE]) * 1000  # means and max: what medians hide of
    last_mean = statistics.fmean(commit_s[-EDGE:]) * 1000  # maintenance run every few commits
    files_per_50 = round(len(repo_files) * 50 / commits, 2)
    peak_rss = max([build_rss_mb, *t.rss_mb.values()])
    ratios = {
        "query_full_fresh_over_duckdb_fresh": ratio(
            seconds["query_full_3_columns"], seconds["duckdb_full_fresh"]
        ),
        "query_full_fresh_over_duckdb_in_process": ratio(
            seconds["query_full_3_columns"], duckdb_full_in_process
        ),
        "where_count_fresh_over_duckdb_fresh": ratio(
            seconds["query_where_count"], seconds["duckdb_where_count_fresh"]
        ),
        "clone_over_git_clone": ratio(seconds["clone"], git_s),
        "clone_mb_per_s_over_cp_r": ratio(mbps["clone"], mbps["cp_r"]),
        "fsck_over_git_fsck": ratio(seconds["fsck"], seconds.get("git_fsck")),
        "fsck_full_mb_per_s_over_sha256sum": ratio(mbps["fsck_full"], mbps["sha256sum"]),
        "log_n10_over_python_pass": ratio(seconds["log_n10"], seconds["python_pass"], 2),
        "commit_last_over_first": round(last / first, 3),
        "commit_last_over_first_mean": round(last_mean / first_mean, 3),
        "files_per_50_commits": files_per_50,
        "log_n10_seconds": seconds["log_n10"],
        "s3_clone_requests_per_1000_images": s3["clone"]["requests_per_1000_images"],
    }
    s3_allowed = (
        TARGETS["s3_clone_requests_per_1000_images_le"] * images / 1000
        + TARGETS["s3_clone_requests_constant"]
    )

    def at_most(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    targets_met = {
        "query_full_fresh_le_2x_duckdb_fresh": at_most(
            ratios["query_full_fresh_over_duckdb_fresh"],
            TARGETS["query_full_fresh_over_duckdb_fresh_le"],
        ),
        "query_one_day_le_0_3s": at_most(
            seconds["query_one_day"], TARGETS["query_one_day_seconds_le"]
        ),
        "clone_le_1x_git_clone": at_most(
            ratios["clone_over_git_clone"], TARGETS["clone_over_git_clone_le"]
        ),
        "clone_ge_0_5x_cp_r": ratios["clone_mb_per_s_over_cp_r"]
        >= TARGETS["clone_mb_per_s_over_cp_r_ge"],
        "clone_metadata_only_le_2s": at_most(
            seconds["clone_metadata_only"], TARGETS["clone_metadata_only_seconds_le"]
        ),
        "s3_clone_requests_le_1_per_1000_images_plus_constant": s3["clone"]["requests"]
        <= s3_allowed,
        "fsck_le_git_fsck": at_most(ratios["fsck_over_git_fsck"], TARGETS["fsck_over_git_fsck_le"]),
        "fsck_full_ge_0_7x_sha256sum": ratios["fsck_full_mb_per_s_over_sha256sum"]
        >= TARGETS["fsck_full_mb_per_s_over_sha256sum_ge"],
        "files_le_1_per_50_commits": files_per_50 <= TARGETS["files_per_50_commits_le"],
        "commit_last_le_1_3x_first": at_most(
            ratios["commit_last_over_first"], TARGETS["commit_last_over_first_le"]
        ),
        "peak_rss_lt_500mb": peak_rss < TARGETS["peak_rss_mb_lt"],
        "log_n10_le_0_15s": at_most(seconds["log_n10"], TARGETS["log_n10_seconds_le"]),
    }
    report = {
        "benchmark": "history",
        "scale": args.scale,
        "seed": args.seed,
        "commits": commits,
        "images_per_commit": size,
        "images": images,
        "build": {
            "seconds": round(build_s, 2),
            "commit_ms_first_median": round(first, 2),
            "commit_ms_last_median": round(last, 2),
            "commit_ms_first_mean": round(first_mean, 2),
            "commit_ms_last_mean": round(last_mean, 2),
            "commit_ms_max": round(max(commit_s) * 1000, 2),
            "edge_commits": EDGE,
            "peak_rss_mb": build_rss_mb,
        },
        "repository": {
            "bytes": repo_bytes,
            "files": len(repo_files),
            "files_per_50_commits": files_per_50,
            "after_maintenance": after_maintenance,
            "git_bytes": git_bytes,
        },
        "rows": {"one_day": one_day_rows, "where_depth_3": where, "all": images},
        "median_seconds": seconds,
        "runs_seconds": {name: [round(x, 4) for x in v] for name, v in t.runs.items()},
        "mb_per_s": mbps,
        "s3": s3,
        "peak_rss_mb": {**t.rss_mb, "build (this process)": build_rss_mb, "max": peak_rss},
        "ratios": ratios,
        "targets": {**TARGETS, "s3_clone_requests_allowed": s3_allowed},
        "targets_met": targets_met,
        "versions": {
            "python": sys.version.split()[0],
            "improv_vcs": __import__("improv_vcs").__version__,
            "git": bench_sync.run(["git", "--version"]).stdout.split()[-1] if with_git else None,
            "pyarrow": pa.__version__,
            "duckdb": duckdb.__version__,
            "moto": bench_sync._version("moto"),
        },
        "source": bench_sync.source_state(),
        "notes": [
            "commit time: Repository.transaction + append_bytes + commit, in this process (any "
            "maintenance a commit triggers included)",
            (
                f"every other figure: a fresh process (improv CLI, python -c, git, cp, "
                f"sha256sum), warm page cache, "
                f"median of {REPEAT} runs or fewer once they took {REPEAT_BUDGET_S:g} s (see "
                f"runs_seconds); S3 push "
                "and clone once each; destinations removed and `sync` run before each clone or copy"
            ),
            (
                "clone = `improv clone --no-hardlinks` (copies every byte, like cp -r and git "
                "clone --no-local, "
                "not hard links as by default); MB/s of the source repository's bytes (git's own "
                "for git clone)"
            ),
            "fsck_full and sha256sum MB/s: the improv repository's bytes (every file) over each "
            "side's seconds",
            "peak_rss_mb: maximum resident set of each improv process (wait4 in a small "
            "launcher), and of this process after building",
            *([] if with_git else ["git not installed: git baselines are null"]),
            *(
                []
                if after_maintenance is not None
                else ["no `improv maintenance` command: no file count after it"]
            ),
        ],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
