"""README.md's "A tour" runs as written: its ``sh`` block is executed top to
bottom, in one bash shell with ``set -euo pipefail``, in an empty directory
that is also ``$HOME``, after :func:`make_inputs` has put there the example
inputs the README says the tour assumes. Then the result is checked through
the Python API.

``python tests/test_readme.py DIR`` builds those inputs in DIR (e.g. ``~``)
for a reader who wants to follow the tour by hand."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DATA = ROOT / "tests" / "data"
IFCB_BIN = "D20220522T003051_IFCB134"  # a real bin of 2 ROIs (tests/data/irfcb)
STACK = "s_1_t_1_c_1_z_1.ome.tiff"  # a real OME-TIFF of one plane (tests/data/aicsimageio)
CRUISE_BINS = ("D20240501T001500_IFCB107", "D20240501T004500_IFCB107")
ROIS_PER_BIN = 10


def make_inputs(home: Path) -> None:
    """The inputs the tour assumes, in ``home``:

    - ``cruise/day1/``: 10 generated PNGs for each of two IFCB107 bins of
      2024-05-01 (``D20240501T001500_IFCB107_00001.png`` …) and a
      ``metadata.csv`` (filename, timestamp, lat, lon, depth, sample_id):
      ROI n is taken n minutes after its bin starts, at depth 2n m; the
      first bin at 41.5 N, the second at 42.1 N;
    - ``ifcb/``: the raw bin D20220522T003051_IFCB134 (.adc, .hdr, .roi);
    - ``scope/plate1/``: one OME-TIFF stack;
    - ``cnn.csv``: a classifier's output for the cruise images (image_id,
      winner, score), every second one a Diatom."""
    import numpy as np

    from improv_vcs.ingest.synthetic import encode_png, roi_pixels

    home = Path(home)
    targets = [home / "cruise" / "day1", home / "ifcb", home / "scope" / "plate1", home / "cnn.csv"]
    there = [str(t) for t in targets if t.exists()]
    if there:
        raise FileExistsError(f"already there, not overwritten: {', '.join(there)}")
    day1, ifcb, plate = targets[:3]
    for folder in (day1, ifcb, plate):
        folder.mkdir(parents=True)

    rng = np.random.default_rng(2024)
    rows = []
    for lat, name in zip((41.5, 42.1), CRUISE_BINS):
        start = datetime.strptime(name[1:16], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
        for n in range(1, ROIS_PER_BIN + 1):
            filename = f"{name}_{n:05d}.png"
            (day1 / filename).write_bytes(encode_png(roi_pixels(rng)))
            rows.append(
                [filename, (start + timedelta(minutes=n)).isoformat(), lat, -70.7, 2 * n, name]
            )
    with open(day1 / "metadata.csv", "w", newline="", encoding="utf-8") as table:
        out = csv.writer(table)
        out.writerow(["filename", "timestamp", "lat", "lon", "depth", "sample_id"])
        out.writerows(rows)

    for extension in ("adc", "hdr", "roi"):
        shutil.copyfile(
            DATA / "irfcb" / f"{IFCB_BIN}.{extension}", ifcb / f"{IFCB_BIN}.{extension}"
        )
    shutil.copyfile(DATA / "aicsimageio" / STACK, plate / STACK)

    with open(home / "cnn.csv", "w", newline="", encoding="utf-8") as table:
        out = csv.writer(table)
        out.writerow(["image_id", "winner", "score"])
        for n, row in enumerate(rows):
            out.writerow(
                [
                    row[0].removesuffix(".png"),
                    "Diatom" if n % 2 else "Ciliate",
                    round(0.6 + n / 100, 2),
                ]
            )


def tour_block() -> str:
    """The ``sh`` block of README.md's "A tour" section."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## A tour\n(.*?)(?=^## )", text, re.DOTALL | re.MULTILINE)
    assert section, "README.md has no '## A tour' section"
    blocks = re.findall(r"^```sh\n(.*?)^```\n", section.group(1), re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, f"'A tour' should hold one sh block, found {len(blocks)}"
    return blocks[0]


def run_tour(home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "IMPROV_AUTHOR": "Ada Lovelace <ada@example.org>",
        "HOME": str(home),
    }
    env.pop("IMPROV_REPO", None)
    # set -e spares a failing command on the left of `&&`: every improv
    # command that fails stops the tour, naming itself.
    stop = (
        'improv() { command improv "$@" || '
        '{ s=$?; echo "failed (exit $s): improv $*" >&2; exit "$s"; }; }'
    )
    script = f"set -euo pipefail\n{stop}\n{tour_block()}"
    return subprocess.run(
        ["bash", "-c", script],
        check=False,
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_readme_tour_runs_as_written(tmp_path):
    from improv_vcs import Repository, cite

    make_inputs(tmp_path)
    done = run_tour(tmp_path)
    assert done.returncode == 0, (
        f"the tour failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    )

    # What the tour printed: the time/box/depth query finds the first bin's
    # ROIs 1-5 (depth 2..10 m; the second bin is north of the box), half of
    # the classified images are Diatoms, and five commits back (before the
    # IFCB bin, the stack, the dataset, the instrument and the classifier)
    # there were day 1's images only.
    assert "\n(5 image(s))\n" in done.stdout, done.stdout
    assert re.search(r"^10\n20\n", done.stdout, re.MULTILINE), done.stdout
    assert f"Exported 3 original file(s) to {tmp_path / 'raw'}: 3 written" in done.stdout, (
        done.stdout
    )

    survey = Repository.open(tmp_path / "survey")
    messages = [commit.message for _, commit in survey.log("main")]
    assert len(messages) == 7, messages  # 3 ingests, dataset, instrument, provenance, sample
    assert messages[-1] == "Day 1"
    assert survey.snapshot().count() == 2 * ROIS_PER_BIN + 2 + 1
    assert survey.snapshot().count(instruments=["IFCB134"]) == 2
    assert survey.snapshot().count(instruments=["scope-a"]) == 1
    assert survey.snapshot().count(dataset="spring-bloom") == 2 * ROIS_PER_BIN
    assert survey.snapshot().count(sample_quality=("bad",)) == ROIS_PER_BIN
    assert (
        survey.snapshot("HEAD~6").count() == 2 * ROIS_PER_BIN
    )  # the tour's HEAD~5, before `sample add`
    assert survey.tags() == {"v1.0": survey.resolve("main")}

    pinned = cite.load(str(tmp_path / "survey" / "citation.txt"))
    checked = cite.verify(survey, pinned)
    assert checked.count == 2 * ROIS_PER_BIN and checked.images_checked == 2 * ROIS_PER_BIN

    raw = tmp_path / "raw"
    assert sorted(p.name for p in raw.rglob("*") if p.is_file()) == [
        f"{IFCB_BIN}.{e}" for e in ("adc", "hdr", "roi")
    ]
    for extension in ("adc", "hdr", "roi"):
        exported = next(raw.rglob(f"{IFCB_BIN}.{extension}"))
        assert exported.read_bytes() == (DATA / "irfcb" / f"{IFCB_BIN}.{extension}").read_bytes()

    for copy in ("archive", "copy"):
        other = Repository.open(tmp_path / copy)
        assert other.resolve("main") == survey.resolve("main"), copy
        assert other.tags() == survey.tags(), copy
        assert cite.verify(other, pinned).digest == checked.digest, copy


def test_query_results_to_pandas(tmp_path):
    import numpy as np
    import pandas as pd

    from improv_vcs import Repository
    from improv_vcs.ingest.synthetic import encode_png

    repo = Repository.init(tmp_path / "survey")
    t0 = datetime(2024, 5, 1, 8, tzinfo=timezone.utc)
    rows = [
        {"image_id": f"roi_{i:03d}", "timestamp": t0 + timedelta(minutes=i), "depth": float(i)}
        for i in range(12)
    ]
    pixels = np.full((8, 8), 7, dtype=np.uint8)
    with repo.transaction(message="a dozen", author="Ada <ada@example.org>") as tx:
        tx.append_bytes("IFCB107", rows, [encode_png(pixels + i) for i in range(12)])

    frame = (
        repo.snapshot()
        .query(depth=(0, 4.5), columns=["image_id", "timestamp", "depth"])
        .to_pandas()
    )
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 5
    assert list(frame.columns) == ["image_id", "timestamp", "depth"]
    assert frame["image_id"].tolist() == [f"roi_{i:03d}" for i in range(5)]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(
            f"usage: python {sys.argv[0]} DIR   (builds the README tour's inputs in DIR, e.g. ~)"
        )
    try:
        make_inputs(Path(sys.argv[1]).expanduser())
    except FileExistsError as exc:
        sys.exit(str(exc))
    print(f"Wrote cruise/day1/, ifcb/, scope/plate1/ and cnn.csv in {sys.argv[1]}")
