"""CLI start-up benchmark: wall time of ``improv --help``, of ``improv log``
on an empty repository (which opens one) and of ``improv log -n 10`` on the
``improv demo`` repository (four commits, a tag) against ``python -c pass``,
the interpreter's own floor, in the same run. Median of N runs each, the
sides interleaved. Targets: ``improv --help`` under 0.3 s, ``improv log -n
10`` under 0.15 s.

    python benchmarks/bench_startup.py                 # 7 runs each
    python benchmarks/bench_startup.py --scale full    # 21 runs each
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCALES = {"ci": 7, "full": 21}
TARGET_HELP_S = 0.3
TARGET_LOG_N10_S = 0.15
DEMO_IMAGES_PER_BIN = 5


def wall(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="ci")
    args = parser.parse_args(argv)
    improv = str(Path(sys.executable).with_name("improv"))
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        empty, demo = str(Path(tmp) / "empty"), str(Path(tmp) / "demo")
        subprocess.run([improv, "init", empty], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [improv, "demo", demo, "--images-per-bin", str(DEMO_IMAGES_PER_BIN), "--quiet"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        sides = {
            "python_pass": [sys.executable, "-c", "pass"],
            "improv_help": [improv, "--help"],
            "improv_log_empty": [improv, "--repo", empty, "log"],
            "improv_log_n10": [improv, "--repo", demo, "log", "-n", "10"],
        }
        for command in sides.values():
            wall(command)  # warm the page cache
        runs: dict[str, list[float]] = {name: [] for name in sides}
        for n in range(SCALES[args.scale]):
            order = list(sides) if n % 2 == 0 else list(reversed(sides))
            for name in order:
                runs[name].append(wall(sides[name]))
    medians = {name: round(statistics.median(v), 4) for name, v in runs.items()}
    report = {
        "benchmark": "startup",
        "scale": args.scale,
        "median_seconds": medians,
        "help_over_python": round(medians["improv_help"] / medians["python_pass"], 2),
        "log_n10_over_python": round(medians["improv_log_n10"] / medians["python_pass"], 2),
        "target_help_s_lt": TARGET_HELP_S,
        "target_met": medians["improv_help"] < TARGET_HELP_S,
        "target_log_n10_s_lt": TARGET_LOG_N10_S,
        "target_log_n10_met": medians["improv_log_n10"] < TARGET_LOG_N10_S,
        "runs_seconds": {name: [round(x, 4) for x in v] for name, v in runs.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
