"""Builds tests/data/golden-format1 with the format-1 writer (commit cbdb468)."""
import shutil, sys, tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from improv_vcs.repository import Repository
from improv_vcs import registry as reg
from improv_vcs.ingest import scan_directory
from improv_vcs.synthetic import generate_tree
from improv_vcs.sync.merge import merge

dest = Path(sys.argv[1])
shutil.rmtree(dest, ignore_errors=True)
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
repo = Repository.init(dest)
repo.edit_registry(lambda d: reg.add_instrument(d, "IFCB107", serial="107", deployments=(reg.deployment(T0),)), "Register IFCB107", author="golden")
repo.edit_registry(lambda d: reg.add_taxonomy(d, "cnn", "v1", ["diatom", "dino", "other"]), "Taxonomy cnn@v1", author="golden")
for day in range(2):
    for n, inst in enumerate(("IFCB107", "IFCB110")):
        with tempfile.TemporaryDirectory() as tree:
            generate_tree(tree, images=6, instruments=(inst,), start=T0 + timedelta(days=day), days=1, per_bin=3,
                          seed=day * 2 + n, workers=1)
            metadata, paths = scan_directory(tree)
            with repo.transaction(message=f"{inst} day {day + 1}", author="golden", task=f"{inst}-d{day}") as tx:
                tx.append_files(inst, metadata, paths)
    if day == 0:
        repo.create_tag("day-1", message="First day", author="golden") if "author" in Repository.create_tag.__code__.co_varnames else repo.create_tag("day-1", message="First day")
ids = repo.images().column("image_id").to_pylist()
repo.add_provenance("classification", [{"image_id": i, "model": "cnn", "model_version": "v1", "winner": ["diatom", "dino", "other"][k % 3], "score": 0.5 + (k % 5) / 10} for k, i in enumerate(ids)], source="cnn", run_id="run-1", author="golden")
repo.add_dataset_span("spring", "IFCB107", T0, T0 + timedelta(days=1), description="First day of IFCB107", author="golden")
repo.create_branch("curation")
repo.add_provenance("annotation", [{"image_id": ids[0], "label": "dino", "annotator": "expert"}], source="expert", run_id="a1", branch="curation", author="golden")
repo.add_provenance("classification", [{"image_id": i, "model": "cnn", "model_version": "v1", "winner": "other", "score": 0.9} for i in ids[:5]], source="cnn", run_id="run-2", author="golden")

import subprocess
with tempfile.TemporaryDirectory() as tree:
    generate_tree(tree, images=4, instruments=("IFCB110",), start=T0 + timedelta(days=3), days=1, per_bin=4, seed=9, workers=1, raw=True)
    subprocess.run([str(Path(sys.executable).with_name("improv")), "-R", str(dest), "commit", "--format", "ifcb", "-m", "IFCB110 raw bin", tree], check=True, env={**__import__("os").environ, "IMPROV_AUTHOR": "golden"})
print(repo.resolve())
