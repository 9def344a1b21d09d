"""Create a repository, commit two batches through the Python API, read back.

python examples/quickstart.py [DIRECTORY]
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from improv_vcs import Repository, synthetic


def main(directory: Path) -> None:
    repo = Repository.init(directory / "survey")
    rng = np.random.default_rng(7)
    start = datetime(2024, 5, 1, tzinfo=timezone.utc)

    for day, instrument in enumerate(["IFCB107", "IFCB110"]):
        rows, images = [], []
        for roi in range(1, 51):
            rows.append(
                {
                    "image_id": f"{instrument}_{day}_{roi:05d}",
                    "timestamp": start + timedelta(days=day, seconds=roi),
                    "lat": 41.5 + day / 10,
                    "lon": -70.7,
                    "depth": 2.0,
                    "sample_id": f"{instrument}-day{day}",
                }
            )
            images.append(synthetic.encode_png(synthetic.roi_pixels(rng)))
        with repo.transaction(message=f"{instrument}, day {day + 1}") as tx:
            tx.append_bytes(instrument, rows, images)
        print(f"committed {tx.commit_id[:12]}: {len(images)} images from {instrument}")

    repo.create_tag("first-release", message="Two instruments, two days")
    for commit_id, commit in repo.log():
        print(commit_id[:12], commit.message, [b.rows for b in commit.batches])

    table = repo.snapshot("first-release").images()
    print(
        f"{table.num_rows} images at first-release; columns: {', '.join(table.column_names[:8])} "
        f"..."
    )
    first = table.column("image_id")[0].as_py()
    data = repo.snapshot("HEAD~1").read_image(first)
    assert data.startswith(b"\x89PNG"), "images round-trip byte for byte"
    print(f"{first}: {len(data)} bytes of PNG, verified against its SHA-256")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
