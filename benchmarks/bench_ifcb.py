"""IFCB raw-bin ingest benchmark: ROIs per second of ``improv commit
--format ifcb`` on bins in the instrument's own format.

Bins are synthesized by :func:`improv_vcs.ingest.synthetic.generate_tree` with
``raw=True``: ``.hdr`` (key: value lines with ``ADCFileFormat``), ``.adc``
(24 columns, about one trigger in three without an image) and ``.roi`` (the
ROIs' uint8 pixels back to back) in a dated tree, ``per_bin`` ROIs per bin,
realistic ROI sizes (mean ~140 x 86 px). They are cached in
``benchmarks/out/ifcb/n<N>-s<seed>/raw`` (git-ignored).

Then, warm page cache, in one process, rounds interleaving the sides (the
order alternates every round), it times:

* ``ingest``: a fresh local repository, then the ``ifcb`` adapter's plan
  (find bins, parse headers and ADC files), every ROI decoded and
  PNG-encoded, hashed and packed, the raw files hashed and packed, and the
  commit (what ``improv commit --format ifcb ROOT`` does, without the
  process start);
* ``decode_encode``: the baseline, doing only the unavoidable work with the
  same tools: read each bin's ``.adc`` and ``.roi``, cut the ROIs, PNG-encode
  them with the same libpng on the same 2 threads, keep nothing.

Prints one JSON object: medians, ROIs/s, the target (>= 5,000 ROIs/s) and
whether it is met, and ingest time / baseline time.

    python benchmarks/bench_ifcb.py                  # CI size: 5,000 ROIs
    python benchmarks/bench_ifcb.py --scale full     # 100,000 ROIs
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.csv as csv

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from improv_vcs.ingest.adapters import apply_plan, get_adapter  # noqa: E402
from improv_vcs.ingest.adapters.ifcb import encode_png  # noqa: E402
from improv_vcs.ingest.synthetic import generate_tree  # noqa: E402
from improv_vcs.repository.repository import Repository  # noqa: E402

SCALES = {"ci": (5_000, 3), "full": (100_000, 3)}  # ROIs, timed rounds
PER_BIN = 1_000
TARGET_ROIS_PER_S = 5_000


def raw_tree(rois: int, seed: int) -> Path:
    """The cached synthetic tree of raw bins (built once)."""
    path = ROOT / "out" / "ifcb" / f"n{rois}-s{seed}" / "raw"
    if not (path.parent / "complete").exists():
        shutil.rmtree(path, ignore_errors=True)
        generate_tree(path, rois, per_bin=PER_BIN, seed=seed, raw=True)
        (path.parent / "complete").touch()
    return path


def ingest(tree: Path, work: Path) -> tuple[float, int]:
    target = work / "repo"
    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    repo = Repository.init(target)
    with repo.transaction(message="ingest") as tx:
        images, _ = apply_plan(tx, get_adapter("ifcb").plan(tree, None, {}))
    return time.perf_counter() - started, images


def decode_encode(tree: Path) -> tuple[float, int]:
    started = time.perf_counter()
    count = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for adc in sorted(tree.rglob("*.adc")):
            table = csv.read_csv(adc, read_options=csv.ReadOptions(autogenerate_column_names=True))
            width, height, start = (table.column(i).to_numpy() for i in (15, 16, 17))
            pixels = np.frombuffer(adc.with_suffix(".roi").read_bytes(), np.uint8)
            arrays = [
                pixels[s : s + w * h].reshape(h, w)
                for w, h, s in zip(width, height, start)
                if w and h
            ]
            runs = [arrays[i : i + 64] for i in range(0, len(arrays), 64)]
            count += sum(len(r) for r in pool.map(lambda run: [encode_png(a) for a in run], runs))
    return time.perf_counter() - started, count


def warm(tree: Path) -> int:
    return sum(len(p.read_bytes()) for p in tree.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", choices=SCALES, default="ci", help="ci: 5,000 ROIs; full: 100,000"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rois, rounds = SCALES[args.scale]
    tree = raw_tree(rois, args.seed)
    raw_bytes = warm(tree)
    times: dict[str, list[float]] = {"ingest": [], "decode_encode": []}
    with tempfile.TemporaryDirectory(prefix="bench-ifcb-") as tmp:
        work = Path(tmp)
        for round_ in range(rounds):
            sides = ["ingest", "decode_encode"] if round_ % 2 == 0 else ["decode_encode", "ingest"]
            for side in sides:
                seconds, count = ingest(tree, work) if side == "ingest" else decode_encode(tree)
                if count != rois:
                    raise SystemExit(f"{side} handled {count} ROIs, expected {rois}")
                times[side].append(seconds)
        stored = sum(p.stat().st_size for p in (work / "repo").rglob("*") if p.is_file())
    ingest_s = statistics.median(times["ingest"])
    baseline_s = statistics.median(times["decode_encode"])
    report = {
        "benchmark": "ifcb_ingest",
        "scale": args.scale,
        "rois": rois,
        "bins": -(-rois // PER_BIN),
        "raw_mb": round(raw_bytes / 1e6, 1),
        "repository_mb": round(stored / 1e6, 1),
        "ingest_s": round(ingest_s, 3),
        "decode_encode_s": round(baseline_s, 3),
        "ingest_rois_per_s": round(rois / ingest_s),
        "decode_encode_rois_per_s": round(rois / baseline_s),
        "ingest_over_decode_encode": round(ingest_s / baseline_s, 2),
        "target_rois_per_s": TARGET_ROIS_PER_S,
        "target_met": rois / ingest_s >= TARGET_ROIS_PER_S,
        "rounds": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
