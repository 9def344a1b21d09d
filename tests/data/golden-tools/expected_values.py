import hashlib, json, sys
from datetime import datetime, timezone
from improv_vcs.repository import Repository
repo = Repository.open(sys.argv[1])
def digest(table):
    rows = sorted(zip(table.column("image_id").to_pylist(), table.column("blob_id").to_pylist()))
    return hashlib.sha256("".join(f"{a}\t{b}\n" for a, b in rows).encode()).hexdigest()
out = {
    "head": repo.resolve(),
    "log": [[oid, c.message] for oid, c in repo.log()],
    "branches": repo.branches(),
    "tags": repo.tags(),
    "images": repo.count(),
    "images_digest": digest(repo.images()),
    "images_at_day1": repo.count(at="day-1"),
    "images_day1_digest": digest(repo.images(at="day-1")),
    "ifcb107_first_day": repo.count(instruments=["IFCB107"], start=datetime(2024,5,1,tzinfo=timezone.utc), end=datetime(2024,5,2,tzinfo=timezone.utc)),
    "dataset_spring": repo.count(dataset="spring"),
    "classification_records": repo.provenance_records("classification").num_rows,
    "classification_run2": repo.provenance_records("classification", run="run-2").num_rows,
    "annotation_on_curation": repo.provenance_records("annotation", at="curation").num_rows,
    "sources": [[r["sample_id"], r["name"], r["blob_id"]] for r in repo.source_files().to_pylist()],
    "first_image_sha256": hashlib.sha256(repo.read_image(sorted(repo.images().column("image_id").to_pylist())[0])).hexdigest(),
    "instruments": sorted(repo.registry().instruments),
    "citation": repo.cite(at="day-1").identifier,
}
print(json.dumps(out, indent=1, sort_keys=True))
