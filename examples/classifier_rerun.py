"""A classifier re-run: two runs over the same images, side by side, the old one still answering.

    python examples/classifier_rerun.py [DIRECTORY]

Commits 60 generated ROI images, attaches a first classification run
(``cnn-2022``), tags that state, then attaches a re-run with a newer model
(``cnn-2024``) that changes its mind about some images. Provenance is
append-only: both runs stay, one image's history shows both, a query can ask
for the latest run or a named one, and the tagged commit answers exactly as
it did before the re-run.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from improv_vcs import ProvenanceWhere, Repository, Run, add_provenance, synthetic

CLASSES = ("Mesodinium_rubrum", "Dinophysis_acuminata", "Skeletonema", "detritus")
IMAGES = 60


def run(image_ids: list[str], model_version: str, seed: int, flip_every: int | None) -> pa.Table:
    """A deterministic stand-in classifier. The re-run (``flip_every``) agrees
    with the first run except on every ``flip_every``-th image, which it calls
    Mesodinium_rubrum (or, when the first run did, Dinophysis_acuminata)."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, image_id in enumerate(image_ids):
        best = index % len(CLASSES)
        if flip_every and index % flip_every == 0:
            best = 1 if best == 0 else 0
        scores = rng.random(len(CLASSES)) * 0.1
        scores[best] = 0.55 + 0.4 * rng.random()
        rows.append(
            {
                "image_id": image_id,
                "model": "cnn",
                "model_version": model_version,
                "winner": CLASSES[best],
                "score": round(float(scores[best]), 4),
                "scores": {name: round(float(s), 4) for name, s in zip(CLASSES, scores)},
            }
        )
    return pa.Table.from_pylist(rows)


def main(directory: Path) -> None:
    repo = Repository.init(directory / "rerun-repo")
    rng = np.random.default_rng(11)
    start = datetime(2024, 5, 1, tzinfo=timezone.utc)
    rows = [
        {
            "image_id": f"D20240501T000000_IFCB107_{roi:05d}",
            "timestamp": start + timedelta(seconds=roi),
            "sample_id": "D20240501T000000_IFCB107",
        }
        for roi in range(1, IMAGES + 1)
    ]
    with repo.transaction(message="One bin of IFCB107") as tx:
        tx.append_bytes(
            "IFCB107", rows, [synthetic.encode_png(synthetic.roi_pixels(rng)) for _ in rows]
        )
    ids = [r["image_id"] for r in rows]
    print(f"committed {IMAGES} images")

    first = add_provenance(
        repo,
        "classification",
        run(ids, "2022", seed=1, flip_every=None),
        source="ifcb-classifier",
        run_id="cnn-2022",
    )
    repo.create_tag("classified-2022", message="Before the re-run")
    second = add_provenance(
        repo,
        "classification",
        run(ids, "2024", seed=2, flip_every=3),
        source="ifcb-classifier",
        run_id="cnn-2024",
    )
    print(
        f"run cnn-2022 in commit {first[:12]} (tagged classified-2022), run cnn-2024 in commit "
        f"{second[:12]}"
    )

    # Both runs, side by side.
    old = repo.snapshot().provenance_records("classification", run="cnn-2022")
    new = repo.snapshot().provenance_records("classification", run="cnn-2024")
    print(
        f"records: {old.num_rows} in cnn-2022, {new.num_rows} in cnn-2024, "
        f"{repo.snapshot().provenance_records('classification').num_rows} in all"
    )
    before = dict(zip(old.column("image_id").to_pylist(), old.column("winner").to_pylist()))
    after = dict(zip(new.column("image_id").to_pylist(), new.column("winner").to_pylist()))
    changed = sorted(i for i in ids if before[i] != after[i])
    print(f"winners changed between runs: {len(changed)} of {IMAGES}")

    # One image's history: every record, every run, oldest first.
    image = changed[0]
    history = repo.snapshot().provenance(image, kind="classification")
    print(f"history of {image}: {len(history)} records")
    for record in history:
        print(
            f"  {record.run_id}: winner {record.values['winner']}, score "
            f"{record.values['score']:.3f} "
            f"(model_version {record.values['model_version']})"
        )

    # Queries: the latest run per image, or a named run.
    meso = ProvenanceWhere("classification", "winner", "=", CLASSES[0])
    latest = repo.snapshot().count(provenance=(meso,), runs=(Run("latest"),))
    named = repo.snapshot().count(
        provenance=(meso,), runs=(Run("cnn-2022", kind="classification"),)
    )
    print(f"{CLASSES[0]}: {latest} images with run latest, {named} with run cnn-2022")
    table = repo.snapshot().query(
        samples=["D20240501T000000_IFCB107"],
        runs=(Run("latest"),),
        provenance_columns=("classification.winner",),
        limit=1,
    )
    print(
        f"  latest winner of {table.column('image_id')[0]}: "
        f"{table.column('classification.winner')[0]}"
    )

    # The tagged commit predates the re-run: its latest run is cnn-2022, as it was.
    then = repo.snapshot("classified-2022").count(provenance=(meso,), runs=(Run("latest"),))
    assert then == named
    old_history = repo.snapshot("classified-2022").provenance(image, kind="classification")
    print(
        f"at classified-2022: {then} {CLASSES[0]} with run latest, "
        f"history of {image} has {len(old_history)} record ({old_history[0].run_id})"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
