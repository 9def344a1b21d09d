"""Ingest-task benchmark: is a task already committed, on a long history?

A site commits one bin per commit, each under its ingest task id, and
re-runs its ingest over folders where most bins are done. Builds the same
history of N commits (one tiny image and one task each) twice: in a
format-2 repository, where finding a task walks the history, and in a
format-3 one, where the tasks index answers. For each, with a freshly
opened repository every time (cold object cache, warm page cache), it
times (median of 5):

* ``task_commit`` of the oldest task (the walk's worst case);
* a transaction re-running a done task (what ``improv commit --task-id``
  does: the check, then nothing written);
* ``tasks()``, listing every task of the history;

and reports the format-2 time over the format-3 time for each.

    python benchmarks/bench_tasks.py                 # CI size: 300 commits
    python benchmarks/bench_tasks.py --scale full    # 5,000 commits
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from improv_vcs.repository.repository import Repository  # noqa: E402

SCALES = {"ci": 300, "full": 5_000}
REPEAT = 5
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def build(path: Path, repository_format: int, commits: int) -> float:
    """A repository of ``repository_format`` with ``commits`` one-bin commits; seconds taken."""
    repo = Repository.init(path)
    if repository_format != repo.config.format:
        old = (path / "improv.json").read_bytes()
        config = {**json.loads(old), "format": repository_format}
        new = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        repo.store.compare_and_swap("improv.json", old, new)
        repo = Repository.open(path)
    began = time.perf_counter()
    for n in range(commits):
        bin_id = f"D{(T0 + timedelta(minutes=20 * n)):%Y%m%dT%H%M%S}_IFCB999"
        row = {"image_id": f"{bin_id}_00001", "timestamp": T0 + timedelta(minutes=20 * n)}
        with repo.transaction(message=bin_id, task=bin_id) as tx:
            tx.append_bytes("IFCB999", [row], [f"pixels {n}".encode() * 64])
    return time.perf_counter() - began


def timed(action: Callable[[], object]) -> float:
    runs = []
    for _ in range(REPEAT):
        began = time.perf_counter()
        action()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs)


def measure(path: Path, first_task: str) -> dict[str, float]:
    def find() -> None:
        assert Repository.open(path).snapshot().task_commit(first_task) is not None

    def rerun() -> None:
        repo = Repository.open(path)
        row = {"image_id": f"{first_task}_00001", "timestamp": T0}
        with repo.transaction(message="again", task=first_task) as tx:
            tx.append_bytes("IFCB999", [row], [b"pixels 0" * 64])
        assert tx.commit_id is None and tx.task_done is not None

    def listing() -> None:
        Repository.open(path).snapshot().tasks()

    return {"task_commit": timed(find), "rerun_done_task": timed(rerun), "tasks": timed(listing)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="ci")
    commits = SCALES[parser.parse_args().scale]
    first_task = f"D{T0:%Y%m%dT%H%M%S}_IFCB999"
    with tempfile.TemporaryDirectory() as scratch:
        walked, indexed = Path(scratch) / "format2", Path(scratch) / "format3"
        build_s = {"format2": build(walked, 2, commits), "format3": build(indexed, 3, commits)}
        before, after = measure(walked, first_task), measure(indexed, first_task)
    ratios = {name: round(before[name] / after[name], 1) for name in before}
    print(
        json.dumps(
            {
                "commits": commits,
                "build_seconds": {k: round(v, 2) for k, v in build_s.items()},
                "format2_seconds": {k: round(v, 4) for k, v in before.items()},
                "format3_seconds": {k: round(v, 4) for k, v in after.items()},
                "format2_over_format3": ratios,
                "target": "a done task is found at least 10x faster than by walking the history",
                "target_met": ratios["rerun_done_task"] >= 10,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
