"""A repository written by the format-1 writer (``tests/data/golden-format1``,
made by ``tests/data/golden-tools/``) reads exactly as it did when written,
with every later reader: commits, refs, counts, image digests, provenance,
datasets, original files and a citation made then."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from improv_vcs import cite
from improv_vcs.fsck import fsck
from improv_vcs.repository import Repository

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "golden-format1.expected.json").read_text())


@pytest.fixture
def golden(tmp_path: Path) -> Repository:
    """A private copy of the golden repository (tests never write to tests/data)."""
    shutil.copytree(DATA / "golden-format1", tmp_path / "golden")
    return Repository.open(tmp_path / "golden")


def _digest(table) -> str:  # type: ignore[no-untyped-def]
    rows = sorted(zip(table.column("image_id").to_pylist(), table.column("blob_id").to_pylist()))
    return hashlib.sha256("".join(f"{a}\t{b}\n" for a, b in rows).encode()).hexdigest()


def observed(repo: Repository) -> dict:
    """The figures ``tests/data/golden-tools/expected_values.py`` recorded."""
    day = datetime(2024, 5, 1, tzinfo=timezone.utc), datetime(2024, 5, 2, tzinfo=timezone.utc)
    ids = sorted(repo.images().column("image_id").to_pylist())
    return {
        "head": repo.resolve(),
        "log": [[oid, c.message] for oid, c in repo.log()],
        "branches": repo.branches(),
        "tags": repo.tags(),
        "images": repo.count(),
        "images_digest": _digest(repo.images()),
        "images_at_day1": repo.count(at="day-1"),
        "images_day1_digest": _digest(repo.images(at="day-1")),
        "ifcb107_first_day": repo.count(instruments=["IFCB107"], start=day[0], end=day[1]),
        "dataset_spring": repo.count(dataset="spring"),
        "classification_records": repo.provenance_records("classification").num_rows,
        "classification_run2": repo.provenance_records("classification", run="run-2").num_rows,
        "annotation_on_curation": repo.provenance_records("annotation", at="curation").num_rows,
        "sources": [[r["sample_id"], r["name"], r["blob_id"]] for r in repo.source_files().to_pylist()],
        "first_image_sha256": hashlib.sha256(repo.read_image(ids[0])).hexdigest(),
        "instruments": sorted(repo.registry().instruments),
        "citation": repo.cite(at="day-1").identifier,
    }


def test_golden_format1_reads_as_written(golden: Repository):
    assert golden.config.format == 1
    assert observed(golden) == EXPECTED


def test_golden_format1_is_whole_and_its_citation_verifies(golden: Repository):
    report = fsck(golden, full=True)
    assert report.ok, report.problems
    verified = cite.verify(golden, cite.load(EXPECTED["citation"]))
    assert (verified.count, verified.images_checked) == (EXPECTED["images_at_day1"], EXPECTED["images_at_day1"])
    for sample, name, blob in EXPECTED["sources"]:
        assert hashlib.sha256(golden.read_source(sample, name)).hexdigest() == blob
