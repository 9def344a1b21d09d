"""A repository written by the format-1 writer (``tests/data/golden-format1``,
made by ``tests/data/golden-tools/``; its figures are
``golden_figures`` in ``tests/conftest.py``) reads exactly as it did when written,
with every later reader: commits, refs, counts, image digests, provenance,
datasets, original files and a citation made then."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from improv_vcs import cite
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.repository.repository import Repository

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "golden-format1.expected.json").read_text())


@pytest.fixture
def golden(tmp_path: Path) -> Repository:
    """A private copy of the golden repository (tests never write to tests/data)."""
    shutil.copytree(DATA / "golden-format1", tmp_path / "golden")
    return Repository.open(tmp_path / "golden")


def test_golden_format1_reads_as_written(golden: Repository, observed):
    assert golden.config.format == 1
    assert observed(golden) == EXPECTED


def test_golden_format1_is_whole_and_its_citation_verifies(golden: Repository):
    report = fsck(golden, full=True)
    assert report.ok, report.problems
    verified = cite.verify(golden, cite.load(EXPECTED["citation"]))
    assert (verified.count, verified.images_checked) == (
        EXPECTED["images_at_day1"],
        EXPECTED["images_at_day1"],
    )
    for sample, name, blob in EXPECTED["sources"]:
        assert hashlib.sha256(golden.snapshot().read_source(sample, name)).hexdigest() == blob
