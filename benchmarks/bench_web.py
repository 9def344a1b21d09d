"""Web pages benchmark: the timeline, a 200-image mosaic and concurrent
browsing over loopback, against ``improv serve``'s pages on the query
benchmark's repository.

The repository is bench_query's (built once and cached by it: N image rows in
B batches, two instruments, the year 2024, one sample per batch of 1,000
images, image bytes 16-32 random bytes). The app (:func:`create_app` with one
read token) runs in a :class:`BackgroundServer` (uvicorn in a thread) in a
child process on 127.0.0.1, so the measuring clients do not share its GIL.
Every figure is wall time with ``time.perf_counter``; warm figures are medians
of R rounds after a discarded first one.

1. Timeline: ``GET /c/<id>/`` for the whole year (the default range: daily
   buckets), one month (June: hourly) and one week of one instrument
   (2024-07-15 .. 07-22, IFCB107: per sample), rounds interleaved; the
   target is the whole-year page <= 300 ms at full scale. The same ranges
   through :func:`improv_vcs.query.timeline.timeline` directly give
   ``scanned_batches`` (batches read; the others counted from the index) and
   the handler's query time without HTTP and HTML.
2. Mosaic: the page of one sample with ``per_page=200&size=small``, then
   every ``<img src>`` it names, 6 connections at a time as a browser does
   (httpx); the bytes are checked against the ETag (the blob id). Cold is
   the sample's first load (its manifest not yet read; the server has served
   one other sample's mosaic first, whose time is reported as the server's
   first request); warm the median of R more, no client cache. Target:
   <= 1 s, cold and warm.
3. Concurrency: 16 threads, each its own ``httpx.Client`` and its own
   sample: the year timeline, a week timeline, its sample's mosaic page and
   200 of that sample's images (URLs known beforehand), all started
   together, 120 s timeout per request; errors (must be 0), requests/s and
   p50/p95 latency, overall and for pages and images apart. Also reported:
   the server process's peak RSS.

``--profile`` prints cProfile lists (to stderr) of the year timeline, the
mosaic page and its 200 image handlers, called in-process without HTTP.

    python benchmarks/bench_web.py                  # CI size: 200,000 rows, 200 batches
    python benchmarks/bench_web.py --scale full     # 10,000,000 rows, 10,000 batches
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bench_query import DEFAULT_WORKDIR, INSTRUMENTS, SCALES, prepare, utc  # noqa: E402

TOKEN = "bench-web-read-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MOSAIC_IMAGES = 200
BROWSER_CONNECTIONS = 6
CLIENTS = 16
CLIENT_TIMEOUT_S = 120.0
TARGET_TIMELINE_YEAR_MS = 300.0
TARGET_MOSAIC_S = 1.0
SEED = 0

# name -> (start, end, instruments) of a timeline; None: the page's default range.
RANGES: dict[str, tuple[datetime, datetime, tuple[str, ...]] | None] = {
    "year": None,
    "month": (utc("2024-06-01"), utc("2024-07-01"), ()),
    "week_one_instrument": (utc("2024-07-15"), utc("2024-07-22"), (INSTRUMENTS[0],)),
}
IMG = re.compile(r'<img src="([^"]+)"')
BUCKET = re.compile(r'<strong id="bucket">(\w+)</strong>')
SCANNED = re.compile(r"\((\d+) batch\(es\) scanned")


# -- the server, in a child process ---------------------------------------------------------
def serve(repo_path: str) -> None:
    """Child process: serve the pages until stdin closes; the URL goes to stdout."""
    from improv_vcs.service.app import create_app
    from improv_vcs.service.auth import Access, TokenEntry
    from improv_vcs.service.server import BackgroundServer

    access = Access((TokenEntry(name="bench", token=TOKEN, scopes=("read",)),))
    with BackgroundServer(create_app(repo_path, access)) as url:
        print(url, flush=True)
        sys.stdin.read()
    # The server has stopped. Leave without interpreter teardown: it aborts
    # ("FATAL: exception not rethrown", status 134) when it ends the request
    # threads that hold a DuckDB connection.
    sys.stdout.flush()
    os._exit(0)


class ChildServer:
    """``with ChildServer(repo) as url:`` runs :func:`serve` in a new process."""

    def __init__(self, repo_path: Path):
        self.command = [sys.executable, __file__, "--serve", str(repo_path)]

    def __enter__(self) -> str:
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        url = self.process.stdout.readline().strip()  # type: ignore[union-attr]
        if not url.startswith("http://127.0.0.1:"):
            self.process.kill()
            sys.exit(f"the server did not start: {url!r}")
        return url

    def __exit__(self, *exc: object) -> None:
        self.process.stdin.close()  # type: ignore[union-attr]
        try:
            status = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = "killed after 30 s"
        if status != 0:
            print(f"warning: the server process ended with {status}", file=sys.stderr)
        # ru_maxrss of waited-for children: KiB on Linux; this is the only child.
        self.peak_rss_mb = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


# -- requests -------------------------------------------------------------------------------
def timeline_params(name: str) -> dict[str, object]:
    found = RANGES[name]
    if found is None:
        return {}
    start, end, instruments = found
    return {"start": start.isoformat(), "end": end.isoformat(), "instrument": list(instruments)}


def get_page(client, url: str, params: dict | None = None) -> str:  # type: ignore[no-untyped-def]
    response = client.get(url, params=params, headers=AUTH)
    if response.status_code != 200 or "text/html" not in response.headers.get("content-type", ""):
        raise RuntimeError(f"GET {url} {params}: {response.status_code}")
    return response.text


def get_image(client, url: str) -> int:  # type: ignore[no-untyped-def]
    response = client.get(url, headers=AUTH)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code}")
    if f'"{hashlib.sha256(response.content).hexdigest()}"' != response.headers.get("etag"):
        raise RuntimeError(f"GET {url}: the bytes do not match the ETag")
    return len(response.content)


def image_urls(html: str) -> list[str]:
    return IMG.findall(html)


def mosaic_path(commit: str, sample: str) -> str:
    return f"/c/{commit}/samples/{sample}"


MOSAIC_PARAMS = {"per_page": MOSAIC_IMAGES, "size": "small"}


def load_mosaic(client, pool: ThreadPoolExecutor, base: str, commit: str, sample: str) -> dict:  # type: ignore[no-untyped-def]
    """The page, then all its images on the pool's connections; seconds and sizes."""
    started = time.perf_counter()
    html = get_page(client, base + mosaic_path(commit, sample), MOSAIC_PARAMS)
    paged = time.perf_counter()
    urls = image_urls(html)
    sizes = list(pool.map(lambda u: get_image(client, base + u), urls))
    done = time.perf_counter()
    if len(urls) != MOSAIC_IMAGES:
        raise RuntimeError(f"the mosaic of {sample} shows {len(urls)} images, not {MOSAIC_IMAGES}")
    return {
        "seconds": done - started,
        "page_seconds": paged - started,
        "html_bytes": len(html),
        "image_bytes": sum(sizes),
    }


# -- the three parts ------------------------------------------------------------------------
def time_mosaic(base: str, commit: str, first: str, sample: str, rounds: int) -> dict:
    """The server's very first load (of ``first``'s mosaic), then ``sample``'s:
    cold (its first load) and warm."""
    import httpx

    limits = httpx.Limits(
        max_connections=BROWSER_CONNECTIONS, max_keepalive_connections=BROWSER_CONNECTIONS
    )
    with (
        httpx.Client(limits=limits, timeout=60.0) as client,
        ThreadPoolExecutor(BROWSER_CONNECTIONS) as pool,
    ):
        start_up = load_mosaic(client, pool, base, commit, first)
        loads = [load_mosaic(client, pool, base, commit, sample) for _ in range(rounds + 1)]
    cold, warm = loads[0], loads[1:]
    return {
        "sample": sample,
        "images": MOSAIC_IMAGES,
        "connections": BROWSER_CONNECTIONS,
        "html_bytes": cold["html_bytes"],
        "image_bytes": cold["image_bytes"],
        "server_first_ms": round(start_up["seconds"] * 1e3, 1),
        "server_first_page_ms": round(start_up["page_seconds"] * 1e3, 1),
        "cold_ms": round(cold["seconds"] * 1e3, 1),
        "cold_page_ms": round(cold["page_seconds"] * 1e3, 1),
        "warm_median_ms": round(statistics.median(w["seconds"] for w in warm) * 1e3, 1),
        "warm_page_median_ms": round(statistics.median(w["page_seconds"] for w in warm) * 1e3, 1),
        "warm_runs_ms": [round(w["seconds"] * 1e3, 1) for w in warm],
    }


def time_timelines(base: str, commit: str, rounds: int) -> dict:
    import httpx

    url = f"{base}/c/{commit}/"
    runs: dict[str, list[float]] = {name: [] for name in RANGES}
    shown: dict[str, dict] = {}
    first_ms: dict[str, float] = {}
    with httpx.Client(timeout=60.0) as client:
        for round_index in range(rounds + 1):
            for name in RANGES:
                started = time.perf_counter()
                html = get_page(client, url, timeline_params(name))
                elapsed = time.perf_counter() - started
                if round_index:
                    runs[name].append(elapsed * 1e3)
                else:
                    first_ms[name] = round(elapsed * 1e3, 1)
                    bucket, scanned = BUCKET.search(html), SCANNED.search(html)
                    shown[name] = {
                        "html_bytes": len(html),
                        "page_bucket": bucket.group(1) if bucket else None,
                        "page_scanned_batches": int(scanned.group(1)) if scanned else None,
                    }
    return {
        name: {
            **shown[name],
            "first_ms": first_ms[name],
            "median_ms": round(statistics.median(runs[name]), 1),
            "runs_ms": [round(x, 1) for x in runs[name]],
        }
        for name in RANGES
    }


def direct_timelines(repo_path: Path, commit: str, rounds: int) -> dict:
    """The same ranges through ``timeline()``: bucket, batches in range and
    scanned, buckets and images, warm median ms."""
    from improv_vcs import Repository
    from improv_vcs.query.timeline import overlapping, timeline
    from improv_vcs.service.web.common import time_span
    from improv_vcs.service.web.pages import _after

    snapshot = Repository.open(repo_path).snapshot(commit)
    reader = snapshot.reader
    span = time_span(snapshot)
    assert span is not None
    out: dict[str, dict] = {}
    for name, found in RANGES.items():
        if found is None:  # as the page: from the first image's hour to the last's next hour
            found = (span[0].replace(minute=0, second=0), _after(span[1]), ())
        start, end, instruments = found
        times = []
        for _ in range(rounds + 1):
            began = time.perf_counter()
            result = timeline(reader, start, end, instruments)
            times.append((time.perf_counter() - began) * 1e3)
        out[name] = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "instruments": list(instruments),
            "bucket": result.bucket,
            "buckets_shown": result.table.num_rows,
            "images": sum(result.table.column("images").to_pylist()),
            "batches_in_range": overlapping(reader.batches, start, end, instruments).num_rows,
            "scanned_batches": result.scanned_batches,
            "direct_median_ms": round(statistics.median(times[1:]), 1),
        }
    return out


def pick_samples(repo_path: Path, commit: str, count: int) -> list[tuple[str, list[str]]]:
    """``count`` samples spread over the year (each a batch of >= 200 images),
    each with the ids of its first 200 images (by time, then id)."""
    from improv_vcs import Repository

    reader = Repository.open(repo_path).snapshot(commit).reader
    batches = reader.batches.sort_by([("time_min", "ascending"), ("manifest", "ascending")])
    big = [i for i, n in enumerate(batches.column("rows").to_pylist()) if n >= MOSAIC_IMAGES]
    if len(big) < count:
        sys.exit(f"need {count} batches of >= {MOSAIC_IMAGES} images, found {len(big)}")
    step = len(big) / count
    manifests = batches.column("manifest").to_pylist()
    samples = []
    for k in range(count):
        table = reader.manifest(
            manifests[big[int(k * step + step / 2)]], ["image_id", "timestamp", "sample_id"]
        )
        table = table.sort_by([("timestamp", "ascending"), ("image_id", "ascending")])
        ids = table.column("image_id").slice(0, MOSAIC_IMAGES).to_pylist()
        samples.append((table.column("sample_id")[0].as_py(), ids))
    return samples


def concurrent_clients(base: str, commit: str, samples: list[tuple[str, list[str]]]) -> dict:
    """One thread and one ``httpx.Client`` per sample, all started together:
    two timelines, the sample's mosaic page, then 200 of its images (their
    URLs known beforehand, so a failed page does not stop them)."""
    import httpx

    timed_out: dict[str, list[float]] = {"page": [], "image": []}
    errors: dict[str, list[str]] = {"page": [], "image": []}
    lock = threading.Lock()
    gate = threading.Barrier(len(samples) + 1)

    def client_run(sample: str, ids: list[str]) -> None:
        mine: dict[str, list[float]] = {"page": [], "image": []}
        failed: dict[str, list[str]] = {"page": [], "image": []}

        def timed(kind: str, fn, *args) -> None:  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            try:
                fn(*args)
            except Exception as exc:  # every failure counts; the client goes on
                failed[kind].append(f"{type(exc).__name__}: {exc}"[:200])
            finally:
                mine[kind].append(time.perf_counter() - began)

        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
            gate.wait()
            timed("page", get_page, client, f"{base}/c/{commit}/", {})
            week = timeline_params("week_one_instrument")
            timed("page", get_page, client, f"{base}/c/{commit}/", week)
            timed("page", get_page, client, base + mosaic_path(commit, sample), MOSAIC_PARAMS)
            for image in ids:
                timed("image", get_image, client, f"{base}/c/{commit}/images/{image}/data")
        with lock:
            for kind in mine:
                timed_out[kind].extend(mine[kind])
                errors[kind].extend(failed[kind])

    threads = [threading.Thread(target=client_run, args=s) for s in samples]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    def stats(latencies: list[float]) -> dict:
        ordered = sorted(latencies)

        def at(q: float) -> float:
            return round(1e3 * ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1)

        return {
            "requests": len(ordered),
            "p50_ms": at(0.50),
            "p95_ms": at(0.95),
            "max_ms": round(1e3 * ordered[-1], 1),
        }

    every = timed_out["page"] + timed_out["image"]
    return {
        "clients": len(samples),
        "per_client": f"2 timeline pages, 1 mosaic page, {MOSAIC_IMAGES} of its images",
        "timeout_s": CLIENT_TIMEOUT_S,
        "errors": len(errors["page"]) + len(errors["image"]),
        "page_errors": len(errors["page"]),
        "image_errors": len(errors["image"]),
        "error_examples": (errors["page"] + errors["image"])[:3],
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(every) / elapsed, 1),
        **stats(every),
        "pages": stats(timed_out["page"]),
        "images": stats(timed_out["image"]),
    }


# -- profiling ------------------------------------------------------------------------------
def profile_handlers(repo_path: Path, commit: str, sample: str, rounds: int) -> dict:
    """cProfile (to stderr) of the whole-year timeline handler and of the mosaic's
    handlers (its page and its images), called in this thread without HTTP
    (each once to warm up first); their median ms."""
    import cProfile
    import io
    import pstats

    from starlette.requests import Request

    from improv_vcs.service.app import create_app
    from improv_vcs.service.auth import Access, TokenEntry
    from improv_vcs.service.web import pages

    access = Access((TokenEntry(name="bench", token=TOKEN, scopes=("read",)),))
    app = create_app(str(repo_path), access)

    def request(path: str) -> Request:
        return Request(
            {
                "type": "http",
                "app": app,
                "method": "GET",
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "root_path": "",
                "query_string": b"",
                "headers": [(b"authorization", AUTH["Authorization"].encode())],
                "server": ("127.0.0.1", 80),
                "client": ("127.0.0.1", 1),
            }
        )

    def year() -> None:
        pages.timeline_page(request(f"/c/{commit}/"), commit, "bench", None, None, [], None, None)

    def mosaic_page() -> list[str]:
        html = pages.sample_page(
            request(mosaic_path(commit, sample)), commit, sample, "bench", "small", 200, 0, None
        ).body.decode()
        return [url.split("/")[-2] for url in image_urls(html)]

    ids = mosaic_page()

    def images() -> None:
        for image in ids:
            path = f"/c/{commit}/images/{image}/data"
            pages.image_bytes(request(path), commit, image, "bench")

    medians = {}
    for name, fn in (("timeline_year", year), ("mosaic_page", mosaic_page), ("images", images)):
        fn()
        times = []
        profiler = cProfile.Profile()
        for _ in range(rounds):
            began = time.perf_counter()
            profiler.enable()
            fn()
            profiler.disable()
            times.append((time.perf_counter() - began) * 1e3)
        medians[name] = round(statistics.median(times), 1)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(15)
        print(f"== cProfile: {name} handler, {rounds} calls ==\n{out.getvalue()}", file=sys.stderr)
    return {"handler_profiled_median_ms": medians, "images_per_call": len(ids)}


# -- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="ci",
        help="ci: 200,000 rows in 200 batches, 5 rounds; "
        "full: 10,000,000 rows in 10,000 batches, 7 rounds",
    )
    parser.add_argument("--rounds", type=int, help="warm rounds (a first one is discarded)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"bench_query's cache of built repositories (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print cProfile lists of the year timeline and mosaic handlers to stderr",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the child process
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    rows, batches, rounds = SCALES[args.scale]
    rounds = args.rounds or rounds
    per_commit = max(1, min(100, batches // 4))  # bench_query's default: the same cache
    repo_path, _baseline, build = prepare(args.workdir.resolve(), rows, batches, SEED, per_commit)

    from improv_vcs import Repository

    commit = Repository.open(repo_path).resolve(None)
    # One sample for the server's first request, one for the mosaic, one per client.
    samples = pick_samples(repo_path, commit, CLIENTS + 2)
    (first_sample, _), (mosaic_sample, _) = samples.pop(0), samples.pop(len(samples) // 2)

    server = ChildServer(repo_path)
    with server as base:
        mosaic = time_mosaic(base, commit, first_sample, mosaic_sample, rounds)
        pages = time_timelines(base, commit, rounds)
        concurrent = concurrent_clients(base, commit, samples)
    direct = direct_timelines(repo_path, commit, rounds)
    profiled = profile_handlers(repo_path, commit, mosaic_sample, rounds) if args.profile else None
    timelines = {name: {**direct[name], **pages[name]} for name in RANGES}
    for name, t in timelines.items():
        if t["page_bucket"] != t["bucket"] or t["page_scanned_batches"] != t["scanned_batches"]:
            sys.exit(f"timeline {name}: the page and timeline() disagree: {t}")

    year_ms = timelines["year"]["median_ms"]
    met = {
        "timeline_year_le_300ms": year_ms <= TARGET_TIMELINE_YEAR_MS,
        "mosaic_warm_le_1s": mosaic["warm_median_ms"] <= TARGET_MOSAIC_S * 1e3,
        "mosaic_cold_le_1s": mosaic["cold_ms"] <= TARGET_MOSAIC_S * 1e3,
        "concurrent_zero_errors": concurrent["errors"] == 0,
    }
    report = {
        "benchmark": "web",
        "scale": args.scale,
        "rows": rows,
        "batches": batches,
        "rounds": rounds,
        "build": build,
        "commit": commit,
        "timeline": timelines,
        "mosaic": mosaic,
        "concurrent": concurrent,
        "server_peak_rss_mb": server.peak_rss_mb,
        "profiled": profiled,
        "targets": {
            "timeline_year_ms_le": TARGET_TIMELINE_YEAR_MS,
            "mosaic_page_and_images_s_le": TARGET_MOSAIC_S,
            "concurrent_errors": 0,
        },
        "targets_met": met,
        "target_met": all(met.values()),
        "notes": [
            "server: create_app + BackgroundServer (uvicorn, one thread) in a child process on "
            "127.0.0.1; clients: httpx in this process",
            "timeline: page medians over the rounds after the first (interleaved); "
            "direct_median_ms: timeline() alone in this process, same ranges",
            "mosaic: server_first is the server's very first request (another sample); cold "
            "the first load of this sample after it; warm re-fetches page and images (no "
            "client cache)",
            "the timeline target is stated for the full scale",
        ],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
