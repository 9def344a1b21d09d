"""Build a small demo repository from generated IFCB-like images."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..core.progress import progress_bar
from ..ingest.folders import scan_directory
from ..ingest.synthetic import generate_tree
from ..repository.repository import Repository

INSTRUMENTS = ("IFCB107", "IFCB110")
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
BINS_PER_DAY = 3


def build_demo(path: str | Path, images_per_bin: int = 200, quiet: bool = False) -> Repository:
    """Create a repository at ``path`` with one commit per instrument and day
    (two instruments, two days), and a tag on the first day's state."""
    repo = Repository.init(path)
    for day in range(2):
        for number, instrument in enumerate(INSTRUMENTS):
            with tempfile.TemporaryDirectory(prefix="improv-demo-") as tree:
                generate_tree(
                    tree,
                    images=images_per_bin * BINS_PER_DAY,
                    instruments=(instrument,),
                    start=START + timedelta(days=day),
                    days=1,
                    per_bin=images_per_bin,
                    seed=day * len(INSTRUMENTS) + number,
                )
                metadata, paths = scan_directory(tree)
                label = f"{instrument} {(START + timedelta(days=day)).date()}"
                with progress_bar(label, total=len(paths), disable=quiet) as advance:
                    with repo.transaction(
                        message=f"{instrument}: bins of {label.split()[1]}", progress=advance
                    ) as tx:
                        tx.append_files(instrument, metadata, paths)
        if day == 0:
            repo.create_tag("day-1", message="Both instruments, first day")
    return repo
