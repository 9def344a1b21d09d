"""Run every benchmark, print a table, write JSON, and regenerate
``benchmarks/RESULTS.md`` (with plots when matplotlib is installed: the
``bench`` extra).

    python -m benchmarks                         # CI size, every benchmark
    python -m benchmarks --scale full            # full size (under 45 min on 2 cores)
    python -m benchmarks --only ifcb service     # some of them (the others' last results are kept)
    python -m benchmarks --no-write              # print only (CI smoke test)

Each benchmark is a script printing one JSON object; it measures its own
baselines in the same run (sha256sum, cp -r, git, tar, DuckDB over one
Parquet file, a static file server, …) and takes medians of repeated runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import summary

HERE = Path(__file__).resolve().parent
ORDER = [
    "startup",
    "ingest",
    "ifcb",
    "query",
    "provenance",
    "classifiers",
    "sync",
    "fsck",
    "service",
    "web",
    "growth",
    "history",
    "tasks",
    "loader",
    "cluster",
]


def run_one(name: str, scale: str) -> dict:
    """Run ``bench_<name>.py`` and return its JSON report (or the failure)."""
    command = [sys.executable, str(HERE / f"bench_{name}.py"), "--scale", scale]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = round(time.perf_counter() - began, 1)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {
            "name": name,
            "ok": False,
            "seconds": seconds,
            "error": "\n".join(tail),
            "command": command,
        }
    report = json.loads(done.stdout[done.stdout.index("{") :])
    return {"name": name, "ok": True, "seconds": seconds, "report": report, "command": command}


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": _memory_gb(),
        "tools": {
            tool: shutil.which(tool) is not None for tool in ("git", "tar", "sha256sum", "dvc")
        },
    }
    try:
        from importlib.metadata import version

        info["versions"] = {
            p: version(p)
            for p in ("improv_vcs", "pyarrow", "duckdb", "zstandard", "fastapi", "imagecodecs")
        }
    except Exception:  # a package missing: versions are informational
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scale", choices=("ci", "full"), default="ci")
    parser.add_argument("--only", nargs="+", choices=ORDER, help="run only these benchmarks")
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print the table only; write no JSON, RESULTS.md or plots",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite RESULTS.md and the plots from the last saved results; run nothing",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        data = json.loads((HERE / "out" / f"results-{args.scale}.json").read_text())
        (HERE / "RESULTS.md").write_text(
            summary.results_md(data, summary.plots(data["results"], HERE / "plots"))
        )
        print(summary.table(data["rows"]))
        return 0
    names = [n for n in ORDER if not args.only or n in args.only]
    started = datetime.now(timezone.utc)
    results = []
    for name in names:
        print(f"running {name} ({args.scale}) …", file=sys.stderr, flush=True)
        results.append(run_one(name, args.scale))
    print(summary.table([row for r in results for row in summary.rows(r)]))
    failed = [r["name"] for r in results if not r["ok"]]
    if not args.no_write:
        out = HERE / "out" / f"results-{args.scale}.json"
        if args.only and out.is_file():  # keep the other benchmarks' latest results
            fresh = {r["name"] for r in results}
            kept = [r for r in json.loads(out.read_text())["results"] if r["name"] not in fresh]
            results = sorted([*kept, *results], key=lambda r: ORDER.index(r["name"]))
        rows = [row for r in results for row in summary.rows(r)]
        data = {
            "scale": args.scale,
            "started": started.isoformat(),
            "machine": machine(),
            "results": results,
            "rows": rows,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2, default=str))
        plots = summary.plots(results, HERE / "plots")
        (HERE / "RESULTS.md").write_text(summary.results_md(data, plots))
        print(f"wrote {out.relative_to(HERE.parent)} and benchmarks/RESULTS.md", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
