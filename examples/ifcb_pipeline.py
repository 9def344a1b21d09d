"""An IFCB pipeline: raw bins in, features and classifications attached, a bloom found.

    python examples/ifcb_pipeline.py [DIRECTORY]

Ingests raw IFCB bins (.hdr/.adc/.roi) with the ``ifcb`` adapter: the real
bins the repository keeps under tests/data (the iRfcb bin
D20220522T003051_IFCB134 and pyifcb's "white" bin), plus two generated bins
of the same instrument later that day, so there is a bloom to find. Then it
attaches morphometric features (``ifcb_features``, from the real
``_fea_v2.csv`` file) and classifier output (``classification``, from the real
``_class.csv`` file and from a generated run over the other images), defines
a dataset for the day, queries the bloom inside it, and exports the raw files
of one bin byte for byte. Run from a copy outside the repository, where
tests/data is absent, it uses generated bins only.

The command-line equivalent of the provenance steps is

    improv provenance add ifcb_features D20220522T003051_IFCB134_fea_v2.csv --source ifcb-analysis
    --run-id v2
    improv provenance add classification D20220522T003051_IFCB134_class.csv \\
        --source ifcb-classifier --run-id cnn-2022 --set model=cnn --set model_version=2022
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from improv_vcs import (
    ProvenanceWhere,
    Repository,
    Run,
    add_dataset_span,
    add_provenance,
    apply_plan,
    get_adapter,
    read_records,
    synthetic,
)

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
REAL_BIN = DATA / "irfcb" / "D20220522T003051_IFCB134"
WHITE_BIN = DATA / "pyifcb" / "white" / "D20130526T095207_IFCB013"
DAY = datetime(2022, 5, 22, tzinfo=timezone.utc)
CLASSES = ("Mesodinium_rubrum", "Dinophysis_acuminata", "Skeletonema", "detritus")
BLOOM_CLASS = "Mesodinium_rubrum"


def real_data() -> bool:
    return all(REAL_BIN.with_suffix(s).is_file() for s in (".hdr", ".adc", ".roi"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def classify(image_ids: list[str], seed: int = 2022) -> pa.Table:
    """A stand-in classifier: per image, a score for every class (rows sum to 1).

    Two thirds of the images lean strongly towards the bloom class."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, image_id in enumerate(image_ids):
        weights = rng.random(len(CLASSES))
        if index % 3 != 2:
            weights[0] += 4 + 8 * rng.random()
        scores = weights / weights.sum()
        best = int(scores.argmax())
        rows.append(
            {
                "image_id": image_id,
                "model": "cnn",
                "model_version": "2022",
                "winner": CLASSES[best],
                "score": round(float(scores[best]), 4),
                "scores": {name: round(float(s), 4) for name, s in zip(CLASSES, scores)},
            }
        )
    return pa.Table.from_pylist(rows)


def main(directory: Path) -> None:
    repo = Repository.init(directory / "ifcb-repo")
    adapter = get_adapter("ifcb")
    use_real = real_data()
    print(f"real data: {'yes, from ' + str(DATA) if use_real else 'no, generated bins only'}")

    # 1. Ingest: each ROI becomes a PNG image <bin>_<roi:05d>; the bin is the sample.
    sources = [REAL_BIN, WHITE_BIN] if use_real else []
    generated = directory / "generated-bins"
    synthetic.generate_tree(
        generated,
        40,
        instruments=("IFCB134",),
        start=DAY.replace(hour=6),
        days=1,
        per_bin=20,
        seed=3,
        workers=1,
        raw=True,
    )
    sources.append(generated)
    for source in sources:
        plan = adapter.plan(source, None, {})
        with repo.transaction(message=f"IFCB bins from {source.name}") as tx:
            images, files = apply_plan(tx, plan)
        print(
            f"committed {tx.commit_id[:12]}: {images} ROIs and {files} raw files "
            f"({', '.join(plan.instruments)}) from {source.name}"
        )
    table = repo.snapshot().images()
    print(f"{table.num_rows} images in {len(table.column('sample_id').unique())} bins")

    # 2. Features: the real bin's feature file, keyed by roi_number in a file named after the bin.
    ids_134 = (
        repo.snapshot()
        .query(instruments=["IFCB134"], columns=("image_id",))
        .column("image_id")
        .to_pylist()
    )
    if use_real:
        features = read_records(DATA / "irfcb" / "D20220522T003051_IFCB134_fea_v2.csv")
        add_provenance(repo, "ifcb_features", features, source="ifcb-analysis", run_id="v2")
        print(
            f"features: {features.num_rows} records, {features.num_columns - 1} columns "
            f"(Area of {features.column('image_id')[0]}: {features.column('Area')[0]})"
        )

    # 3. Classifications: the real class file (file_name, class_name -> label,
    #    class_name_auto -> winner, score) and a generated run for the other images.
    with repo.transaction(message="Classifier run cnn-2022") as tx:
        classified = 0
        if use_real:
            real = read_records(
                DATA / "irfcb" / "D20220522T003051_IFCB134_class.csv",
                {"model": "cnn", "model_version": "2022"},
            )
            classified += tx.add_provenance(
                "classification", real, source="ifcb-classifier", run_id="cnn-2022"
            )
            done = set(real.column("image_id").to_pylist())
            ids_134 = [i for i in ids_134 if i not in done]
        classified += tx.add_provenance(
            "classification", classify(ids_134), source="ifcb-classifier", run_id="cnn-2022"
        )
    print(f"classifications: {classified} records (run cnn-2022)")

    # 4. A dataset: IFCB134 on 22 May 2022 (half-open span).
    add_dataset_span(
        repo, "may22", "IFCB134", DAY, DAY.replace(day=23), description="IFCB134, 22 May 2022"
    )
    in_dataset = repo.snapshot().count(dataset="may22")
    print(f"dataset may22: {in_dataset} images")

    # 5. The bloom: images of the dataset whose latest classification is the
    #    bloom class with a score above 0.8.
    bloom = repo.snapshot().query(
        dataset="may22",
        provenance=(
            ProvenanceWhere("classification", "winner", "=", BLOOM_CLASS),
            ProvenanceWhere("classification", "score", ">", 0.8),
        ),
        runs=(Run("latest"),),
        provenance_columns=("classification.winner", "classification.score"),
    )
    winners = repo.snapshot().query(
        dataset="may22",
        runs=(Run("latest"),),
        kinds=("classification",),
        provenance_columns=("classification.winner",),
    )
    same_class = pc.sum(pc.equal(winners.column("classification.winner"), BLOOM_CLASS)).as_py() or 0
    print(
        f"bloom: {bloom.num_rows} of {in_dataset} images are {BLOOM_CLASS} with score > 0.8 "
        f"({same_class} have it as winner at any score)"
    )
    scores = bloom.column("classification.score").to_pylist()
    for row in bloom.slice(0, 3).to_pylist():
        print(
            f"  {row['image_id']}  {row['timestamp']:%H:%M:%S}  score "
            f"{row['classification.score']:.3f}"
        )
    assert all(s > 0.8 for s in scores)

    # 6. The raw files of one bin, back byte for byte.
    sample = REAL_BIN.name if use_real else table.column("sample_id")[0].as_py()
    dest = directory / "raw-export"
    repo.snapshot().export_sources(dest, samples=[sample])
    originals = {
        p.name: p for p in (REAL_BIN.parent if use_real else generated).rglob(f"{sample}.*")
    }
    exported = sorted(p for p in dest.rglob(f"{sample}.*"))
    for path in exported:
        assert sha256(path.read_bytes()) == sha256(originals[path.name].read_bytes()), path
    print(
        f"exported {len(exported)} raw files of {sample}, byte-identical: "
        + ", ".join(f"{p.name} ({p.stat().st_size} B)" for p in exported)
    )

    # The history: one commit per step.
    print(f"{sum(1 for _ in repo.log())} commits on main")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
