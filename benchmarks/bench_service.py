"""HTTP service load test: concurrent image fetches and searches against
``improv serve``, and image fetch throughput against a plain static file
server serving the same bytes, in the same run. Loopback only.

The repository holds N synthetic IFCB-like PNG ROIs (two instruments, bins
of 500; :func:`improv_vcs.ingest.synthetic.generate_tree`), cached in
``benchmarks/out/service/n<N>`` (git-ignored) together with the same images
exported as files. Each server runs in its own process on 127.0.0.1:

* ``improv serve`` (uvicorn, one worker) with a read token;
* ``python -m http.server`` over the exported image files (the baseline).

Load comes from one asyncio client process with C concurrent connections
(httpx), in phases of T seconds each:

* ``mixed``: 80 % image fetches (random ids, bytes checked against the
  ETag), 20 % searches (one instrument, a random hour, ``limit=100``);
  requests/s, p50/p99 latency and errors;
* ``fetch_improv`` and ``fetch_static``: image fetches only, MB/s of image
  bytes; the target is fetch_improv >= 0.5 x fetch_static.

    python benchmarks/bench_service.py                 # CI size: 2,000 images, 5 s phases
    python benchmarks/bench_service.py --scale full    # 20,000 images, 30 s phases
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from improv_vcs.ingest.synthetic import generate_tree  # noqa: E402
from improv_vcs.repository.repository import Repository  # noqa: E402

SCALES = {"ci": (2_000, 5.0), "full": (20_000, 30.0)}  # images, seconds per phase
CONCURRENCY = 16
TOKEN = "bench-read-token-0123456789"
TARGET_FETCH_RATIO = 0.5


def prepare(images: int) -> tuple[Path, Path, list[str]]:
    """The cached repository, the exported image directory, and the ids."""
    base = ROOT / "out" / "service" / f"n{images}"
    repo_path, files = base / "repo", base / "files"
    if not (base / "complete").exists():
        shutil.rmtree(base, ignore_errors=True)
        tree = base / "tree"
        generate_tree(tree, images, per_bin=500)
        repo = Repository.init(repo_path)
        from improv_vcs.ingest.adapters import apply_plan, get_adapter

        for instrument in sorted(os.listdir(tree)):
            with repo.transaction(message=f"bench {instrument}") as tx:
                apply_plan(tx, get_adapter("files").plan(tree / instrument, instrument, {}))
        repo.snapshot().export(files)
        shutil.rmtree(tree)
        (base / "complete").touch()
    ids = sorted(p.stem for p in files.glob("*.png"))
    return repo_path, files, ids


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(
    command: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"server {command[0]} did not start on port {port}")


async def run_phase(seconds: float, request) -> dict[str, float]:
    """Run ``request(client, rng) -> bytes`` on CONCURRENCY workers for ``seconds``."""
    import httpx

    latencies: list[float] = []
    errors = 0
    moved = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def worker(seed: int) -> None:
            nonlocal errors, moved
            rng = random.Random(seed)
            while time.monotonic() < stop:
                began = time.perf_counter()
                try:
                    size = await request(client, rng)
                    moved += size
                except Exception:  # every failure counts; the phase goes on
                    errors += 1
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "mb_per_s": round(moved / elapsed / 1e6, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="ci",
        help="ci: 2,000 images, 5 s phases; full: 20,000, 30 s",
    )
    args = parser.parse_args(argv)
    images, seconds = SCALES[args.scale]
    repo_path, files, ids = prepare(images)
    repo = Repository.open(repo_path)
    rows = repo.snapshot().images()
    blob_of = dict(zip(rows.column("image_id").to_pylist(), rows.column("blob_id").to_pylist()))
    instruments = sorted(set(rows.column("instrument").to_pylist()))
    times = rows.column("timestamp").to_pylist()
    first, last = min(times), max(times)

    improv_port, static_port = free_port(), free_port()
    tokens = json.dumps({"tokens": [{"name": "bench", "token": TOKEN, "scopes": ["read"]}]})
    env = {**os.environ, "IMPROV_SERVE_TOKENS": tokens}
    improv_bin = str(Path(sys.executable).with_name("improv"))
    servers = [
        start([improv_bin, "serve", str(repo_path), "--port", str(improv_port)], improv_port, env),
        start(
            [sys.executable, "-m", "http.server", str(static_port), "--bind", "127.0.0.1"],
            static_port,
            cwd=files,
        ),
    ]
    improv = f"http://127.0.0.1:{improv_port}/v1"
    static = f"http://127.0.0.1:{static_port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def fetch_improv(client, rng) -> int:
        image = rng.choice(ids)
        response = await client.get(f"{improv}/images/{image}/data", headers=auth)
        response.raise_for_status()
        if hashlib.sha256(response.content).hexdigest() != blob_of[image]:
            raise ValueError("wrong bytes")
        return len(response.content)

    async def fetch_static(client, rng) -> int:
        image = rng.choice(ids)
        response = await client.get(f"{static}/{image}.png")
        response.raise_for_status()
        if hashlib.sha256(response.content).hexdigest() != blob_of[image]:
            raise ValueError("wrong bytes")
        return len(response.content)

    async def mixed(client, rng) -> int:
        if rng.random() < 0.8:
            return await fetch_improv(client, rng)
        hour = first + (last - first) * rng.random()
        params = {
            "instrument": rng.choice(instruments),
            "start": hour.isoformat(),
            "limit": 100,
            "end": (hour + (last - first) / 48).isoformat(),
        }
        response = await client.get(f"{improv}/images", params=params, headers=auth)
        response.raise_for_status()
        return len(response.content)

    try:
        results = {
            name: asyncio.run(run_phase(seconds, request))
            for name, request in (
                ("mixed", mixed),
                ("fetch_improv", fetch_improv),
                ("fetch_static", fetch_static),
            )
        }
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
    ratio = results["fetch_improv"]["mb_per_s"] / results["fetch_static"]["mb_per_s"]
    report = {
        "benchmark": "service",
        "scale": args.scale,
        "images": images,
        "seconds_per_phase": seconds,
        "concurrency": CONCURRENCY,
        **results,
        "fetch_improv_over_static": round(ratio, 2),
        "target_fetch_ratio": TARGET_FETCH_RATIO,
        "target_met": ratio >= TARGET_FETCH_RATIO
        and all(r["errors"] == 0 for r in results.values()),
        "median_image_bytes": int(statistics.median(rows.column("size").to_pylist())),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
