"""The benchmark suite runs end to end at CI size (a smoke test: figures are
reported, never asserted; targets are judged at full size in RESULTS.md).
It takes minutes, so it is opt-in (``pytest --run-slow``), run before a
benchmark or a performance change lands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_every_benchmark_runs_at_ci_scale():
    from benchmarks.__main__ import ORDER

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scale", "ci", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| benchmark | figure |")
    reported = {line.split("|")[1].strip() for line in table[1:]}
    assert reported == set(ORDER)
    assert "did not run" not in done.stdout
