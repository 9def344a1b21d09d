"""Organizing metadata versioned with the commits: instruments and their
deployment windows, samples, taxonomies and positional scores, ingest tasks;
across sync, gc, fsck and IFCB ingest; and a stateful check that every past
commit keeps answering exactly as it did."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_error, images, invoke, ok, sample_images
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from typer.testing import CliRunner

from improv_vcs import ConflictError, InvalidInputError, Repository, add_provenance, edit_registry
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.maintenance.gc import gc
from improv_vcs.snapshot import registry as reg
from improv_vcs.storage.objects import object_key
from improv_vcs.sync.sites import clone, pull, push

UTC = timezone.utc
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("IMPROV_REPO", raising=False)
    monkeypatch.setenv("IMPROV_AUTHOR", "tester")


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def repo(runner, tmp_path):
    path = tmp_path / "repo"
    ok(invoke(runner, "init", path))
    return path


def cli(runner, repo, *args):
    return invoke(runner, "--repo", repo, *args)


def state(path) -> tuple[dict, set, set]:
    """Branches, object keys and pack keys: what a refused write must not change."""
    repository = Repository.open(path)
    return (
        repository.branches(),
        set(repository.store.list("objects/")),
        set(repository.store.list("packs/")),
    )


def iid(day: str, n: int = 1, instrument: str = "IFCB107") -> str:
    """An IFCB-style image id (its timestamp is in the name)."""
    return f"D{day}_{instrument}_{n:05d}"


def blob(image_id: str) -> bytes:
    return f"pixels of {image_id}|".encode() * 8


def append(repository: Repository, instrument: str, rows: list[tuple[str, datetime]], **tx_options):
    with repository.transaction(message="add", **tx_options) as tx:
        tx.append_bytes(
            instrument,
            [{"image_id": i, "timestamp": t} for i, t in rows],
            [blob(i) for i, _ in rows],
        )
    return tx


def t(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- 1. deployment windows -----------------------------------------------------------


def test_commits_outside_deployments_are_refused_and_write_nothing(runner, repo, tmp_path):
    ok(
        cli(
            runner,
            repo,
            "instrument",
            "add",
            "IFCB107",
            "--type",
            "IFCB",
            "--serial",
            "107",
            "--deployed",
            "2024-01-01T00:00:00Z..2024-01-10T00:00:00Z",
            "--deployed",
            "2024-02-01T00:00:00Z..2024-02-10T00:00:00Z",
        )
    )
    v1_commit = Repository.open(repo).resolve()
    inside = [iid("20240105T000000", 1), iid("20240201T000000", 1), iid("20240209T235959", 1)]
    ok(cli(runner, repo, "commit", images(tmp_path / "inside", *inside), "-i", "IFCB107", "-q"))
    assert Repository.open(repo).snapshot().count() == 3

    cases = {
        "before": [iid("20231231T235959", 1)],
        "after": [iid("20240210T000000", 1)],  # end is exclusive
        "gap": [iid("20240105T000000", 2), iid("20240115T000000", 1), iid("20240301T000000", 1)],
        "future": [iid("20240105T000000", 3), iid("20990101T000000", 1)],
    }
    for name, ids in cases.items():
        before = state(repo)
        result = cli(runner, repo, "commit", images(tmp_path / name, *ids), "-i", "IFCB107", "-q")
        first_bad = ids[-1] if name in ("before", "after", "future") else ids[1]
        line = assert_error(result, 2, repr(first_bad))
        if name == "gap":
            assert repr(ids[2]) not in line and "outside every deployment of IFCB107" in line
        if name == "future":
            assert "in the future" in line
        assert state(repo) == before, name
    assert Repository.open(repo).snapshot().count() == 3

    # the CLI override
    ok(
        cli(
            runner,
            repo,
            "commit",
            tmp_path / "gap",
            "-i",
            "IFCB107",
            "-q",
            "--allow-outside-deployment",
        )
    )
    assert Repository.open(repo).snapshot().count() == 6
    # the API: refused, then accepted with allow_outside_deployment=True
    repository = Repository.open(repo)
    before = state(repo)
    with pytest.raises(InvalidInputError, match="D20240301T000000_IFCB107_00002"):
        append(repository, "IFCB107", [(iid("20240301T000000", 2), t(2024, 3, 1))])
    assert state(repo) == before
    tx = append(
        repository,
        "IFCB107",
        [(iid("20240301T000000", 2), t(2024, 3, 1))],
        allow_outside_deployment=True,
    )
    assert tx.commit_id is not None and repository.snapshot().count() == 7

    # an open-ended window accepts later images, but not future ones
    ok(cli(runner, repo, "instrument", "add", "IFCB9", "--deployed", "2024-01-01.."))
    later = images(
        tmp_path / "later", iid("20260101T000000", 1, "IFCB9"), iid("20240101T000000", 1, "IFCB9")
    )
    ok(cli(runner, repo, "commit", later, "-i", "IFCB9", "-q"))
    assert Repository.open(repo).snapshot().count(instruments=["IFCB9"]) == 2
    before = state(repo)
    assert_error(
        cli(
            runner,
            repo,
            "commit",
            images(tmp_path / "later_future", iid("20990101T000000", 1, "IFCB9")),
            "-i",
            "IFCB9",
            "-q",
        ),
        2,
        "in the future",
    )
    assert state(repo) == before
    assert_error(
        cli(
            runner,
            repo,
            "commit",
            images(tmp_path / "early9", iid("20231231T000000", 1, "IFCB9")),
            "-i",
            "IFCB9",
            "-q",
        ),
        2,
        "outside every deployment of IFCB9",
    )
    assert state(repo) == before

    # update: a new version, which changes what is accepted
    shown = json.loads(
        ok(
            cli(
                runner,
                repo,
                "instrument",
                "update",
                "IFCB107",
                "--deployed",
                "2023-06-01T00:00:00Z..2023-07-01T00:00:00Z",
                "--json",
            )
        ).stdout
    )
    assert shown["version"] == 2 and shown["type"] == "IFCB" and shown["serial"] == "107"
    assert shown["deployments"] == [
        {"start": "2023-06-01T00:00:00Z", "end": "2023-07-01T00:00:00Z"}
    ]
    before = state(repo)
    assert_error(
        cli(
            runner,
            repo,
            "commit",
            images(tmp_path / "jan", iid("20240106T000000", 1)),
            "-i",
            "IFCB107",
            "-q",
        ),
        2,
        repr(iid("20240106T000000", 1)),
    )
    assert state(repo) == before
    ok(
        cli(
            runner,
            repo,
            "commit",
            images(tmp_path / "june", iid("20230615T000000", 1)),
            "-i",
            "IFCB107",
            "-q",
        )
    )
    ok(cli(runner, repo, "instrument", "update", "IFCB107", "--description", "moved"))
    now = json.loads(ok(cli(runner, repo, "instrument", "show", "IFCB107", "--json")).stdout)
    assert now["version"] == 3 and now["description"] == "moved" and len(now["deployments"]) == 1

    old = json.loads(
        ok(cli(runner, repo, "instrument", "show", "IFCB107", "--at", v1_commit, "--json")).stdout
    )
    assert old == {
        "name": "IFCB107",
        "type": "IFCB",
        "serial": "107",
        "description": None,
        "version": 1,
        "deployments": [
            {"start": "2024-01-01T00:00:00Z", "end": "2024-01-10T00:00:00Z"},
            {"start": "2024-02-01T00:00:00Z", "end": "2024-02-10T00:00:00Z"},
        ],
    }
    text = ok(cli(runner, repo, "instrument", "show", "IFCB107", "--at", v1_commit)).stdout
    assert " v1 " in text and "2024-01-01 00:00..2024-01-10 00:00" in text
    assert_error(cli(runner, repo, "instrument", "show", "IFCB9", "--at", v1_commit), 3, "IFCB9")
    assert Repository.open(repo).snapshot(v1_commit).registry().instruments["IFCB107"].version == 1


def test_instrument_add_errors_write_nothing(runner, repo):
    ok(cli(runner, repo, "instrument", "add", "IFCB1", "--deployed", "2024-01-01.."))
    before = state(repo)
    assert_error(cli(runner, repo, "instrument", "add", "IFCB1"), 4, "exists")
    assert_error(cli(runner, repo, "instrument", "update", "IFCB2", "--serial", "x"), 3, "IFCB2")
    assert_error(
        cli(runner, repo, "instrument", "add", "IFCB3", "--deployed", "2024-02-01..2024-01-01"),
        2,
        "not before its end",
    )
    assert_error(
        cli(runner, repo, "instrument", "add", "IFCB3", "--deployed", "..2024-01-01"),
        2,
        "--deployed",
    )
    assert state(repo) == before


# -- 2. unregistered instruments -------------------------------------------------------


def test_unregistered_instrument_warns_once_then_strict_refuses(runner, repo, tmp_path):
    src = tmp_path / "many"
    images(src / "a", *(iid("20240101T000000", n, "IFCB5") for n in range(1, 6)))
    images(src / "b", *(iid("20240102T000000", n, "IFCB5") for n in range(1, 6)))
    result = ok(cli(runner, repo, "commit", src, "-i", "IFCB5"))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: instrument 'IFCB5' is not registered (`improv instrument add` records its "
        "deployments)"
    ]
    assert Repository.open(repo).snapshot().count() == 10

    repository = Repository.open(repo)
    with repository.transaction(message="two batches") as tx:
        for n in range(3):
            tx.append_bytes(
                "IFCB6", [{"image_id": f"x{n}", "timestamp": t(2024, 1, 1)}], [blob(f"x{n}")]
            )
    assert len(tx.warnings) == 1 and "'IFCB6'" in tx.warnings[0]

    before = state(repo)
    assert_error(
        cli(
            runner,
            repo,
            "commit",
            images(tmp_path / "s", iid("20240103T000000", 1, "IFCB5")),
            "-i",
            "IFCB5",
            "-q",
            "--strict",
        ),
        2,
        "'IFCB5'",
        "not registered",
    )
    assert state(repo) == before

    ok(cli(runner, repo, "instrument", "strict", "on"))
    assert Repository.open(repo).snapshot().registry().strict_instruments is True
    listed = json.loads(ok(cli(runner, repo, "instrument", "list", "--json")).stdout)
    assert listed == {"strict": True, "instruments": []}
    before = state(repo)
    assert_error(
        cli(runner, repo, "commit", tmp_path / "s", "-i", "IFCB5", "-q"), 2, "'IFCB5'", "strict"
    )
    assert state(repo) == before
    with pytest.raises(InvalidInputError, match="strict"):
        append(Repository.open(repo), "IFCB6", [("y1", t(2024, 1, 1))])
    assert state(repo) == before
    ok(
        cli(runner, repo, "instrument", "add", "IFCB5")
    )  # registered without deployments: nothing fits
    assert_error(
        cli(runner, repo, "commit", tmp_path / "s", "-i", "IFCB5", "-q"),
        2,
        "outside every deployment",
    )
    ok(cli(runner, repo, "instrument", "update", "IFCB5", "--deployed", "2024-01-01.."))
    result = ok(cli(runner, repo, "commit", tmp_path / "s", "-i", "IFCB5", "-q"))
    assert "warning" not in result.stderr
    assert Repository.open(repo).snapshot().count() == 14


# -- 3. samples ----------------------------------------------------------------------


def query_json(runner, repo, *args) -> list[dict]:
    return json.loads(ok(cli(runner, repo, "query", "-f", "json", *args)).stdout)


def test_sample_versions_answer_per_commit(runner, repo, tmp_path):
    ok(cli(runner, repo, "instrument", "add", "IFCB1", "--deployed", "2024-01-01.."))
    src = sample_images(
        tmp_path / "img",
        [
            ("a1", "2024-05-01T10:00:00Z", "S1"),
            ("a2", "2024-05-01T10:00:01Z", "S1"),
            ("b1", "2024-05-02T10:00:00Z", "S2"),
            ("c1", "2024-05-03T10:00:00Z", "S3"),
        ],
    )
    ok(cli(runner, repo, "commit", src, "-i", "IFCB1", "-q"))
    out = ok(
        cli(
            runner,
            repo,
            "sample",
            "add",
            "S1",
            "-i",
            "IFCB1",
            "--start",
            "2024-05-01T10:00:00Z",
            "--end",
            "2024-05-01T10:20:00Z",
            "--quality",
            "good",
            "--alt-id",
            "cast-7",
            "--alt-id",
            "niskin-3",
            "--meta",
            "station=A",
            "--meta",
            "depth=5",
        )
    )
    assert out.stdout.startswith("Recorded sample S1 in ")
    ok(
        cli(
            runner,
            repo,
            "sample",
            "add",
            "S2",
            "-i",
            "IFCB1",
            "--start",
            "2024-05-02T10:00:00Z",
            "--end",
            "2024-05-02T10:20:00Z",
            "--quality",
            "good",
        )
    )
    old = Repository.open(repo).resolve()
    ok(
        cli(
            runner,
            repo,
            "sample",
            "add",
            "S1",
            "-i",
            "IFCB1",
            "--start",
            "2024-05-01T10:00:00Z",
            "--end",
            "2024-05-01T10:20:00Z",
            "--quality",
            "bad",
            "--alt-id",
            "cast-7",
            "--alt-id",
            "niskin-3",
            "--meta",
            "station=A",
            "--meta",
            "depth=5",
        )
    )
    new = Repository.open(repo).resolve()
    assert new != old

    def count(at, *quality):
        args = [a for q in quality for a in ("--sample-quality", q)]
        return int(ok(cli(runner, repo, "query", "--count", "--at", at, *args)).stdout)

    assert (count(old, "good"), count(new, "good")) == (3, 1)
    assert (count(old, "bad"), count(new, "bad")) == (0, 2)
    assert (count(old, "good", "bad"), count(new, "good", "bad")) == (3, 3)
    assert count(new, "questionable") == 0
    with_old = query_json(
        runner,
        repo,
        "--at",
        old,
        "--with",
        "sample.quality",
        "--with",
        "sample.alt_ids",
        "-c",
        "image_id",
    )
    with_new = query_json(runner, repo, "--at", new, "--with", "sample.quality", "-c", "image_id")
    assert sorted((r["image_id"], r["sample.quality"]) for r in with_old) == [
        ("a1", "good"),
        ("a2", "good"),
        ("b1", "good"),
        ("c1", None),
    ]
    assert sorted((r["image_id"], r["sample.quality"]) for r in with_new) == [
        ("a1", "bad"),
        ("a2", "bad"),
        ("b1", "good"),
        ("c1", None),
    ]
    assert {r["image_id"]: r["sample.alt_ids"] for r in with_old}["a1"] == ["cast-7", "niskin-3"]
    api = Repository.open(repo)
    assert (
        api.snapshot(old).count(sample_quality=["good"]) == 3
        and api.snapshot().count(sample_quality=["good"]) == 1
    )

    shown = json.loads(ok(cli(runner, repo, "sample", "show", "S1", "--json")).stdout)
    assert [r["quality"] for r in shown] == ["good", "bad"]
    assert shown[0]["recorded_at"] <= shown[1]["recorded_at"]
    assert all(
        r["alt_ids"] == ["cast-7", "niskin-3"]
        and json.loads(r["meta"]) == {"depth": "5", "station": "A"}
        for r in shown
    )
    text = ok(cli(runner, repo, "sample", "show", "S1")).stdout.splitlines()
    assert (
        len(text) == 2
        and "quality good" in text[0]
        and "quality bad" in text[1]
        and "alt cast-7, niskin-3" in text[0]
    )
    assert [
        r["quality"]
        for r in json.loads(
            ok(cli(runner, repo, "sample", "show", "S1", "--at", old, "--json")).stdout
        )
    ] == ["good"]
    assert_error(cli(runner, repo, "sample", "show", "S9"), 3, "S9")
    listed = json.loads(ok(cli(runner, repo, "sample", "list", "--json")).stdout)
    assert [(r["sample_id"], r["quality"]) for r in listed] == [("S1", "bad"), ("S2", "good")]
    listed = json.loads(
        ok(cli(runner, repo, "sample", "list", "--quality", "good", "--at", old, "--json")).stdout
    )
    assert [r["sample_id"] for r in listed] == ["S1", "S2"]

    # the same record again: nothing new, no commit
    before = state(repo)
    again = ok(
        cli(
            runner,
            repo,
            "sample",
            "add",
            "S2",
            "-i",
            "IFCB1",
            "--start",
            "2024-05-02T10:00:00Z",
            "--end",
            "2024-05-02T10:20:00Z",
            "--quality",
            "good",
            "--json",
        )
    )
    assert json.loads(again.stdout)["commit"] is None
    assert state(repo) == before
    assert Repository.open(repo).snapshot().samples(history=True).num_rows == 3


def test_sample_import_csv_and_parquet_and_errors(runner, repo, tmp_path):
    csv_file = tmp_path / "samples.csv"
    csv_file.write_text(
        "sample_id,instrument,start,end,quality,alt_ids,station,cruise\n"
        "C1,IFCB1,2024-05-01T00:00:00Z,2024-05-01T00:20:00Z,good,x1;x2 ; x3,A,EN700\n"
        "C2,IFCB1,2024-05-02T00:00:00Z,2024-05-02T00:20:00Z,questionable,,B,EN700\n"
    )
    result = json.loads(ok(cli(runner, repo, "sample", "import", csv_file, "--json")).stdout)
    assert result["samples"] == 2 and result["commit"] == Repository.open(repo).resolve()
    rows = {r["sample_id"]: r for r in Repository.open(repo).snapshot().samples().to_pylist()}
    assert set(rows) == {"C1", "C2"}
    assert rows["C1"]["alt_ids"] == ["x1", "x2", "x3"] and rows["C1"]["quality"] == "good"
    assert json.loads(rows["C1"]["meta"]) == {"cruise": "EN700", "station": "A"}
    assert rows["C2"]["quality"] == "questionable" and rows["C2"]["alt_ids"] == []
    assert rows["C1"]["start"] == t(2024, 5, 1) and rows["C1"]["end"] == t(2024, 5, 1, 0, 20)

    parquet_file = tmp_path / "samples.parquet"
    pq.write_table(
        pa.table(
            {
                "sample_id": ["P1", "C2"],
                "instrument": ["IFCB2", "IFCB1"],
                "start": pa.array([t(2024, 6, 1), t(2024, 5, 2)], pa.timestamp("us", tz="UTC")),
                "end": pa.array(
                    [t(2024, 6, 1, 1), t(2024, 5, 2, 0, 20)], pa.timestamp("us", tz="UTC")
                ),
                "quality": ["questionable", "bad"],
                "alt_ids": pa.array([["p"], []], pa.list_(pa.string())),
                "volume": [4.5, 5.0],
            }
        ),
        parquet_file,
    )
    ok(cli(runner, repo, "sample", "import", parquet_file))
    rows = {r["sample_id"]: r for r in Repository.open(repo).snapshot().samples().to_pylist()}
    assert sorted(rows) == ["C1", "C2", "P1"]
    assert (rows["P1"]["instrument"], rows["P1"]["quality"], rows["P1"]["alt_ids"]) == (
        "IFCB2",
        "questionable",
        ["p"],
    )
    assert json.loads(rows["P1"]["meta"]) == {"volume": 4.5}
    assert rows["C2"]["quality"] == "bad"
    assert Repository.open(repo).snapshot().samples(history=True).num_rows == 4

    before = state(repo)
    ok(cli(runner, repo, "sample", "import", parquet_file))  # identical: no commit
    ok(
        cli(runner, repo, "sample", "import", csv_file.with_name("samples.csv"))
    )  # C1 same; C2 back to questionable: a new version
    assert Repository.open(repo).snapshot().samples(history=True).num_rows == 5
    before = state(repo)
    bad = {
        "quality": (
            "sample_id,instrument,start,end,quality\nQ1,IFCB1,2024-05-01T00:00:00Z,2024-05-01T01:00:00Z,great\n",
            "quality must be one of",
        ),
        "order": (
            "sample_id,instrument,start,end\nQ1,IFCB1,2024-05-01T02:00:00Z,2024-05-01T01:00:00Z\n",
            "not before its end",
        ),
        "missing": ("sample_id,instrument,start\nQ1,IFCB1,2024-05-01T02:00:00Z\n", "end"),
        "half": (
            "sample_id,instrument,start,end,quality\nQ1,IFCB1,2024-05-01T00:00:00Z,2024-05-01T01:00:00Z,good\n"
            "Q2,IFCB1,2024-05-01T00:00:00Z,2024-05-01T01:00:00Z,nope\n",
            "'Q2'",
        ),
    }
    for name, (text, fragment) in bad.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        assert_error(cli(runner, repo, "sample", "import", path), 2, fragment)
        assert state(repo) == before, name
    assert_error(
        cli(
            runner,
            repo,
            "sample",
            "add",
            "Q1",
            "-i",
            "IFCB1",
            "--start",
            "2024-05-01T00:00:00Z",
            "--end",
            "2024-05-01T01:00:00Z",
            "--quality",
            "fine",
        ),
        2,
        "quality must be one of good, questionable, bad",
    )
    assert_error(
        cli(
            runner,
            repo,
            "sample",
            "add",
            "Q1",
            "-i",
            "IFCB1",
            "--start",
            "2024-05-01T00:00:00Z",
            "--end",
            "2024-05-01T01:00:00Z",
            "--quality",
            "fine",
        ),
        2,
        "quality must be one of good, questionable, bad",
    )
    assert_error(
        cli(
            runner,
            repo,
            "sample",
            "add",
            "Q1",
            "-i",
            "IFCB1",
            "--start",
            "2024-05-01T01:00:00Z",
            "--end",
            "2024-05-01T01:00:00Z",
        ),
        2,
        "not before its end",
    )
    assert state(repo) == before
    with pytest.raises(InvalidInputError, match="missing 'end'"):
        with Repository.open(repo).transaction(message="x") as tx:
            tx.add_samples([{"sample_id": "Q1", "instrument": "IFCB1", "start": t(2024, 1, 1)}])
    assert state(repo) == before


def test_sample_import_csv_empty_optional_quality_means_none(runner, repo, tmp_path):
    csv_file = tmp_path / "samples.csv"
    csv_file.write_text(
        "sample_id,instrument,start,end,quality,station\n"
        "E1,IFCB1,2024-05-01T00:00:00Z,2024-05-01T00:20:00Z,good,A\n"
        "E2,IFCB1,2024-05-02T00:00:00Z,2024-05-02T00:20:00Z,,B\n"
    )
    ok(cli(runner, repo, "sample", "import", csv_file))
    rows = {
        r["sample_id"]: r["quality"] for r in Repository.open(repo).snapshot().samples().to_pylist()
    }
    assert rows == {"E1": "good", "E2": None}


# -- 4. tasks ------------------------------------------------------------------------


def test_tasks_are_idempotent_and_listed(runner, repo, tmp_path):
    ok(
        cli(
            runner,
            repo,
            "commit",
            images(tmp_path / "pre", iid("20240101T000000", 1, "IFCB3")),
            "-i",
            "IFCB3",
            "-q",
        )
    )
    first = ok(
        cli(
            runner,
            repo,
            "commit",
            images(tmp_path / "t1", iid("20240102T000000", 1), iid("20240102T000000", 2)),
            "-i",
            "IFCB107",
            "--task-id",
            "bin-2024-01-02",
            "--json",
        )
    )
    done = json.loads(first.stdout)
    assert done["task"] == "bin-2024-01-02" and done["new_images"] == 2
    task1 = done["commit"]
    head = Repository.open(repo).resolve()
    assert head == task1
    # the same task again, even with other files: a no-op that prints the commit
    again = ok(
        cli(
            runner,
            repo,
            "commit",
            images(tmp_path / "t1b", iid("20240102T000000", 3)),
            "-i",
            "IFCB107",
            "--task-id",
            "bin-2024-01-02",
        )
    )
    assert (
        again.stdout.strip()
        == f"Task bin-2024-01-02 is already committed as {task1[:12]}; nothing to do"
    )
    again = ok(
        cli(
            runner,
            repo,
            "commit",
            tmp_path / "t1b",
            "-i",
            "IFCB107",
            "--task-id",
            "bin-2024-01-02",
            "--json",
        )
    )
    assert json.loads(again.stdout) == {
        "commit": task1,
        "task": "bin-2024-01-02",
        "already_done": True,
    }
    assert Repository.open(repo).resolve() == head and Repository.open(repo).snapshot().count() == 3

    ok(
        cli(
            runner,
            repo,
            "commit",
            images(tmp_path / "t2", iid("20240103T000000", 1, "IFCB3")),
            "-i",
            "IFCB3",
            "--task-id",
            "bin-2024-01-03",
            "-q",
        )
    )
    task2 = Repository.open(repo).resolve()
    ok(
        cli(
            runner,
            repo,
            "commit",
            images(tmp_path / "plain", iid("20240104T000000", 1, "IFCB3")),
            "-i",
            "IFCB3",
            "-q",
        )
    )

    logged = json.loads(
        ok(cli(runner, repo, "log", "--task-id", "bin-2024-01-02", "--json")).stdout
    )
    assert [(e["id"], e["task"]) for e in logged] == [(task1, "bin-2024-01-02")]
    assert json.loads(ok(cli(runner, repo, "log", "--task-id", "nope", "--json")).stdout) == []

    listed = json.loads(ok(cli(runner, repo, "tasks", "--json")).stdout)
    assert [(r["task"], r["commit"], r["images"], r["instruments"]) for r in listed] == [
        ("bin-2024-01-03", task2, 1, ["IFCB3"]),
        ("bin-2024-01-02", task1, 2, ["IFCB107"]),
    ]
    assert all(r["author"] == "tester" for r in listed)
    only = json.loads(ok(cli(runner, repo, "tasks", "--instrument", "IFCB107", "--json")).stdout)
    assert [r["task"] for r in only] == ["bin-2024-01-02"]
    text = ok(cli(runner, repo, "tasks")).stdout.splitlines()
    assert len(text) == 2 and "bin-2024-01-03" in text[0] and "1 image(s)" in text[0]
    repository = Repository.open(repo)
    second_time = repository.odb.get_commit(task2).time
    since = json.loads(
        ok(cli(runner, repo, "tasks", "--since", second_time.isoformat(), "--json")).stdout
    )
    assert [r["task"] for r in since] == ["bin-2024-01-03"]
    future = json.loads(
        ok(cli(runner, repo, "tasks", "--since", "2099-01-01T00:00:00Z", "--json")).stdout
    )
    assert future == []
    assert repository.snapshot().task_commit("bin-2024-01-02") == task1
    assert repository.snapshot().task_commit("bin-2024-01-03") == task2
    assert repository.snapshot(task1).task_commit("bin-2024-01-03") is None
    assert repository.snapshot().task_commit("never") is None
    assert Repository.init(tmp_path / "empty").snapshot().task_commit("x") is None
    # the API records tasks too
    with repository.transaction(message="api", task="api-1") as tx:
        tx.append_bytes("IFCB3", [{"image_id": "api1", "timestamp": t(2024, 1, 5)}], [blob("api1")])
    assert repository.snapshot().task_commit("api-1") == tx.commit_id
    assert repository.odb.get_commit(tx.commit_id).task == "api-1"


# -- 5. taxonomies and positional scores ----------------------------------------------


def classified(
    image: str, version: str | None, vector: list[float] | None, model: str = "cnn"
) -> dict:
    row = {"image_id": image, "model": model, "winner": "diatom", "score": 0.5}
    if version is not None:
        row["model_version"] = version
    if vector is not None:
        row["score_vector"] = json.dumps(vector)
    return row


def test_taxonomy_decodes_score_vectors_per_commit(runner, repo, tmp_path):
    repository = Repository.open(repo)
    append(
        repository,
        "IFCB1",
        [
            ("i1", t(2024, 1, 1)),
            ("i2", t(2024, 1, 2)),
            ("i3", t(2024, 1, 3)),
            ("i4", t(2024, 1, 4)),
        ],
    )
    add_provenance(
        repository,
        "classification",
        [
            classified("i1", "v3", [0.7, 0.2, 0.1]),
            classified("i2", "v2", [0.1, 0.9]),  # a version without taxonomy
            classified("i3", "v3", [0.5, 0.5]),  # the wrong length
            classified("i4", None, None),
        ],
        source="lab",
        run_id="r1",
    )
    before_taxonomy = repository.resolve()
    classes = tmp_path / "classes.txt"
    classes.write_text("diatom\n  ciliate \n\ndetritus\n")
    out = json.loads(
        ok(cli(runner, repo, "taxonomy", "add", "cnn", "v3", "--classes", classes, "--json")).stdout
    )
    assert out["classes"] == 3 and out["commit"] == Repository.open(repo).resolve()
    with_taxonomy = out["commit"]
    assert json.loads(ok(cli(runner, repo, "taxonomy", "list", "--json")).stdout) == {
        "cnn@v3": ["diatom", "ciliate", "detritus"]
    }
    assert (
        json.loads(
            ok(cli(runner, repo, "taxonomy", "list", "--at", before_taxonomy, "--json")).stdout
        )
        == {}
    )

    repository = Repository.open(repo)
    decoded = {
        r["image_id"]: r["class_scores"]
        for r in repository.snapshot().provenance_records("classification").to_pylist()
    }
    assert decoded == {
        "i1": [("diatom", 0.7), ("ciliate", 0.2), ("detritus", 0.1)],
        "i2": None,
        "i3": None,
        "i4": None,
    }
    old = {
        r["image_id"]: r["class_scores"]
        for r in repository.snapshot(before_taxonomy)
        .provenance_records("classification")
        .to_pylist()
    }
    assert old == {"i1": None, "i2": None, "i3": None, "i4": None}
    # records committed after the taxonomy decode too; a vector needs model_version
    append(repository, "IFCB1", [("i5", t(2024, 1, 5))])
    before = state(repo)
    with pytest.raises(InvalidInputError, match="needs model_version"):
        add_provenance(
            repository, "classification", [classified("i5", None, [0.1, 0.1, 0.8])], source="lab"
        )
    with pytest.raises(InvalidInputError, match="JSON array of numbers"):
        add_provenance(
            repository,
            "classification",
            [{**classified("i5", "v3", None), "score_vector": '{"a": 1}'}],
            source="lab",
        )
    assert state(repo) == before
    add_provenance(
        repository,
        "classification",
        [classified("i5", "v3", [0, 0.25, 0.75])],
        source="lab",
        run_id="r2",
    )
    decoded = {
        r["image_id"]: r["class_scores"]
        for r in repository.snapshot().provenance_records("classification", run="r2").to_pylist()
    }
    assert decoded == {"i5": [("diatom", 0.0), ("ciliate", 0.25), ("detritus", 0.75)]}

    # the same list again: no-op; another list for the same version: conflict
    before = state(repo)
    again = ok(cli(runner, repo, "taxonomy", "add", "cnn", "v3", "--classes", classes))
    assert "(already there)" in again.stdout
    assert state(repo) == before
    other = tmp_path / "other.txt"
    other.write_text("diatom\ndetritus\nciliate\n")
    assert_error(
        cli(runner, repo, "taxonomy", "add", "cnn", "v3", "--classes", other),
        4,
        "cnn@v3",
        "different class list",
    )
    with pytest.raises(ConflictError):
        edit_registry(repository, lambda d: reg.add_taxonomy(d, "cnn", "v3", ["a", "b", "c"]), "x")
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("a\nb\na\n")
    assert_error(
        cli(runner, repo, "taxonomy", "add", "cnn", "v4", "--classes", repeated), 2, "repeat"
    )
    assert_error(
        cli(runner, repo, "taxonomy", "add", "cnn", "v5", "--classes", tmp_path / "missing.txt"),
        2,
        "cannot read",
    )
    assert state(repo) == before
    assert Repository.open(repo).snapshot(with_taxonomy).registry().taxonomies[
        "cnn@v3"
    ].classes == ("diatom", "ciliate", "detritus")


def test_pure_registry_edits():
    doc = reg.add_instrument(
        reg.Registry(), "IFCB1", deployments=(reg.deployment(t(2024, 1, 1), t(2024, 2, 1)),)
    )
    assert doc.instruments["IFCB1"].version == 1
    updated = reg.update_instrument(doc, "IFCB1", serial="s")
    assert (
        updated.instruments["IFCB1"].version == 2
        and updated.instruments["IFCB1"].deployments == doc.instruments["IFCB1"].deployments
    )
    assert doc.instruments["IFCB1"].serial is None  # pure: the input is unchanged
    found = reg.outside_deployment(
        doc.instruments["IFCB1"], ["a", "b", "c"], [t(2024, 1, 5), t(2024, 2, 1), t(2023, 1, 1)]
    )
    assert found == ("b", t(2024, 2, 1))
    tax = reg.add_taxonomy(reg.Registry(), "m", "1", ["x", "y"]).taxonomies["m@1"]
    assert reg.decode_scores(tax, "[1, 0]") == {"x": 1.0, "y": 0.0}
    with pytest.raises(InvalidInputError):
        reg.decode_scores(tax, [1, 2, 3])
    rows = reg.sample_rows(
        [
            {
                "sample_id": "s",
                "instrument": "I1",
                "start": t(2024, 1, 1),
                "end": t(2024, 1, 2),
                "alt_ids": "one",
            }
        ],
        t(2024, 3, 1),
    )
    assert rows.to_pylist()[0]["alt_ids"] == ["one"] and rows.to_pylist()[0]["meta"] == "{}"
    assert reg.changed(rows, rows).num_rows == 0
    assert reg.decode_samples(reg.encode_samples(rows)).equals(rows)
    with pytest.raises(InvalidInputError, match="unknown field 'colour'"):
        reg.sample_rows(
            [
                {
                    "sample_id": "s",
                    "instrument": "I1",
                    "start": t(2024, 1, 1),
                    "end": t(2024, 1, 2),
                    "colour": 1,
                }
            ],
            t(2024, 3, 1),
        )
    with pytest.raises(InvalidInputError, match="no samples"):
        reg.sample_rows([], t(2024, 3, 1))


# -- 6. versioning and sync ----------------------------------------------------------


def add_samples(repository: Repository, *rows: tuple[str, str, str | None]) -> str | None:
    """Record samples (sample_id, instrument, quality) on fixed windows."""
    with repository.transaction(message="samples") as tx:
        tx.add_samples(
            [
                {
                    "sample_id": s,
                    "instrument": i,
                    "start": t(2024, 5, 1),
                    "end": t(2024, 5, 2),
                    "quality": q,
                }
                for s, i, q in rows
            ]
        )
    return tx.commit_id


def test_push_clone_pull_gc_carry_registry_and_samples(tmp_path):
    origin = Repository.init(tmp_path / "origin")
    edit_registry(
        origin,
        lambda d: reg.add_instrument(d, "IFCB1", deployments=(reg.deployment(t(2024, 1, 1)),)),
        "instrument",
    )
    append(origin, "IFCB1", [("o1", t(2024, 5, 1))])
    add_samples(origin, ("S1", "IFCB1", "good"), ("S2", "IFCB1", None))
    add_samples(origin, ("S1", "IFCB1", "bad"))
    edit_registry(origin, lambda d: reg.add_taxonomy(d, "cnn", "1", ["a", "b"]), "taxonomy")
    site, _ = clone(origin.url, tmp_path / "site")
    for repository in (origin, site):
        report = fsck(repository, full=True)
        assert report.problems == [], report.problems
    assert site.snapshot().registry() == origin.snapshot().registry()
    assert (
        site.snapshot().samples().equals(origin.snapshot().samples())
        and site.snapshot().samples(history=True).num_rows == 3
    )
    for oid, _ in origin.log():
        assert site.snapshot(oid).registry() == origin.snapshot(oid).registry()
        assert (
            site.snapshot(oid)
            .samples(history=True)
            .equals(origin.snapshot(oid).samples(history=True))
        )

    # gc with no grace keeps every sample segment
    segments = {
        object_key(s) for oid, _ in site.log() for s in site.snapshot(oid).registry().samples
    }
    assert len(segments) == 2 and segments <= set(site.store.list("objects/"))
    report = gc(site, grace=0)
    assert segments.isdisjoint(report.removed) and segments <= set(site.store.list("objects/"))
    assert fsck(site, full=True).problems == []
    assert site.snapshot().samples(history=True).num_rows == 3

    # the site adds a sample, pushes; the origin pulls it after its own, divergent edits
    add_samples(site, ("S3", "IFCB1", "questionable"))
    edit_registry(site, lambda d: reg.add_instrument(d, "IFCB2"), "instrument 2")
    add_samples(origin, ("S4", "IFCB1", "good"))
    edit_registry(origin, lambda d: reg.add_instrument(d, "IFCB3", serial="3"), "instrument 3")
    result = pull(site)
    assert result.action == "merge"
    merged = site.snapshot().registry()
    assert sorted(merged.instruments) == ["IFCB1", "IFCB2", "IFCB3"]
    assert merged.instruments["IFCB3"].serial == "3"
    assert {r["sample_id"]: r["quality"] for r in site.snapshot().samples().to_pylist()} == {
        "S1": "bad",
        "S2": None,
        "S3": "questionable",
        "S4": "good",
    }
    assert merged.taxonomies == origin.snapshot().registry().taxonomies
    assert push(site).action == "pushed"
    origin = Repository.open(origin.url)
    assert (
        origin.snapshot().registry() == site.snapshot().registry()
        and origin.snapshot().samples().equals(site.snapshot().samples())
    )
    for repository in (origin, site):
        assert fsck(repository, full=True).problems == []
    assert gc(origin, grace=0) is not None and fsck(origin, full=True).problems == []
    assert origin.snapshot().samples().num_rows == 4


def test_same_instrument_changed_on_both_sides_conflicts_and_nothing_moves(tmp_path):
    origin = Repository.init(tmp_path / "origin")
    edit_registry(origin, lambda d: reg.add_instrument(d, "IFCB1"), "instrument")
    site, _ = clone(origin.url, tmp_path / "site")
    edit_registry(origin, lambda d: reg.update_instrument(d, "IFCB1", serial="A"), "A")
    add_samples(origin, ("S1", "IFCB1", "good"))
    mine = edit_registry(site, lambda d: reg.update_instrument(d, "IFCB1", serial="B"), "B")
    with pytest.raises(ConflictError, match="IFCB1"):
        pull(site)
    assert site.resolve() == mine
    assert (
        site.snapshot().registry().instruments["IFCB1"].serial == "B"
        and site.snapshot().samples().num_rows == 0
    )
    # the same change on both sides is no conflict
    site2, _ = clone(origin.url, tmp_path / "site2")
    edit_registry(origin, lambda d: reg.update_instrument(d, "IFCB1", description="same"), "same")
    edit_registry(
        site2, lambda d: reg.update_instrument(d, "IFCB1", description="same"), "same too"
    )
    assert pull(site2).action == "merge"
    assert site2.snapshot().registry().instruments["IFCB1"].description == "same"


def test_fsck_reports_a_corrupt_sample_segment(tmp_path):
    repository = Repository.init(tmp_path / "repo")
    add_samples(repository, ("S1", "IFCB1", "good"))
    segment = repository.snapshot().registry().samples[0]
    assert fsck(repository, full=True).problems == []
    path = tmp_path / "repo" / "objects" / segment[:2] / segment[2:]
    assert path.exists()
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-7] + b"garbage")
    problems = fsck(Repository.open(tmp_path / "repo")).problems
    assert [(p.object_id, p.what) for p in problems] == [(segment, "samples segment")], problems


# -- 7. IFCB bins register their samples ------------------------------------------------


def test_ifcb_bins_register_their_samples(runner, repo, tmp_path):
    src = tmp_path / "bins"
    bins = {
        "D20220522T003051_IFCB134": DATA / "irfcb",
        "D20130526T095207_IFCB013": DATA / "pyifcb" / "white",
    }
    for bin_id, where in bins.items():
        for suffix in (".adc", ".hdr", ".roi"):
            (src / bin_id[:9]).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(where / f"{bin_id}{suffix}", src / bin_id[:9] / f"{bin_id}{suffix}")
    ok(cli(runner, repo, "commit", "--format", "ifcb", src, "-q"))
    repository = Repository.open(repo)
    rows = {r["sample_id"]: r for r in repository.snapshot().samples().to_pylist()}
    assert sorted(rows) == sorted(bins)
    expected = {
        "D20220522T003051_IFCB134": (
            "IFCB134",
            t(2022, 5, 22, 0, 30, 51),
            715.6575,
            0.15215060763888888,
        ),
        "D20130526T095207_IFCB013": ("IFCB013", t(2013, 5, 26, 9, 52, 7), 1231.024861, 11.622980),
    }
    for bin_id, (instrument, start, run, inhibit) in expected.items():
        row = rows[bin_id]
        assert row["instrument"] == instrument and row["start"] == start
        assert row["end"] == start + timedelta(seconds=run)
        meta = json.loads(row["meta"])
        assert meta["run_time"] == pytest.approx(run) and meta["ml_analyzed"] > 0
        assert meta["ml_analyzed"] / (run - inhibit) == pytest.approx(
            json.loads(rows["D20220522T003051_IFCB134"]["meta"])["ml_analyzed"]
            / (715.6575 - 0.15215060763888888)
        )
        assert row["quality"] is None
    head = repository.resolve()
    again = ok(cli(runner, repo, "commit", "--format", "ifcb", src, "--json"))
    assert json.loads(again.stdout)["commit"] is None
    assert (
        Repository.open(repo).resolve() == head
        and Repository.open(repo).snapshot().samples(history=True).num_rows == 2
    )
    # images of a bin join their sample record
    ok(
        cli(
            runner,
            repo,
            "sample",
            "add",
            "D20220522T003051_IFCB134",
            "-i",
            "IFCB134",
            "--start",
            "2022-05-22T00:30:51Z",
            "--end",
            "2022-05-22T00:42:47Z",
            "--quality",
            "good",
        )
    )
    n134 = Repository.open(repo).snapshot().count(instruments=["IFCB134"])
    assert n134 > 0 and Repository.open(repo).snapshot().count(sample_quality=["good"]) == n134
    assert Repository.open(repo).snapshot(head).count(sample_quality=["good"]) == 0


# -- 8. every past commit keeps its answers ----------------------------------------------

WINDOWS = {"jan": (t(2024, 1, 1), t(2024, 2, 1)), "open": (t(2024, 3, 1), None)}
TIMES = {"in-jan": t(2024, 1, 15), "gap": t(2024, 2, 15), "late": t(2024, 6, 1)}
SAMPLE_IDS = ("S1", "S2", "S3")
TASKS = ("T1", "T2")
QUALITY_SETS = (("good",), ("questionable", "bad"))


class RegistryHistory(RuleBasedStateMachine):
    """Random edits; after every commit the answers of that commit are
    recorded, and every recorded commit must keep answering the same."""

    @initialize()
    def start(self):
        import uuid

        self.repo = Repository.init(f"memory://registry-{uuid.uuid4().hex}")
        self.instruments: dict[
            str, tuple[int, tuple[str, ...], str | None]
        ] = {}  # name -> (version, windows, serial)
        self.taxonomies: dict[str, tuple[str, ...]] = {}
        self.samples: dict[str, tuple[str, str | None]] = {}  # id -> (instrument, quality)
        self.versions = 0
        self.images: list[str] = []  # sample id of every committed image
        self.tasks: dict[str, str] = {}
        self.recorded: dict[str, dict] = {}
        self.serial = 0

    def answers(self, at: str) -> dict:
        return {
            "registry": self.repo.snapshot(at).registry(),
            "samples": self.repo.snapshot(at).samples().to_pylist(),
            "history": self.repo.snapshot(at).samples(history=True).num_rows,
            "counts": [self.repo.snapshot(at).count(sample_quality=list(q)) for q in QUALITY_SETS],
            "tasks": [self.repo.snapshot(at).task_commit(task) for task in TASKS],
        }

    def expected(self) -> dict:
        quality = {s: q for s, (_, q) in self.samples.items()}
        return {
            "instruments": {n: (v, w, s) for n, (v, w, s) in self.instruments.items()},
            "taxonomies": dict(self.taxonomies),
            "samples": {s: self.samples[s] for s in sorted(self.samples)},
            "history": self.versions,
            "counts": [sum(quality.get(s) in q for s in self.images) for q in QUALITY_SETS],
            "tasks": [self.tasks.get(task) for task in TASKS],
        }

    def committed(self, commit_id: str | None) -> None:
        """A new commit must be the head; record its answers and check them against the model."""
        assert commit_id is not None and self.repo.resolve() == commit_id
        found = self.answers(commit_id)
        doc = found["registry"]
        inverse = {w: k for k, w in WINDOWS.items()}
        got = {
            "instruments": {
                n: (i.version, tuple(inverse[(d.start, d.end)] for d in i.deployments), i.serial)
                for n, i in doc.instruments.items()
            },
            "taxonomies": {k: tx.classes for k, tx in doc.taxonomies.items()},
            "samples": {r["sample_id"]: (r["instrument"], r["quality"]) for r in found["samples"]},
            "history": found["history"],
            "counts": found["counts"],
            "tasks": found["tasks"],
        }
        assert got == self.expected()
        self.recorded[commit_id] = found

    def unchanged(self, before: str | None) -> None:
        assert (self.repo.resolve() if self.repo.branches() else None) == before

    def head(self) -> str | None:
        return self.repo.resolve() if self.repo.branches() else None

    @rule(
        name=st.sampled_from(["I1", "I2"]),
        windows=st.lists(st.sampled_from(sorted(WINDOWS)), unique=True, max_size=2),
    )
    def add_instrument(self, name, windows):
        before = self.head()
        deployments = tuple(reg.deployment(*WINDOWS[w]) for w in windows)

        def edit(d):
            return reg.add_instrument(d, name, deployments=deployments)

        if name in self.instruments:
            with pytest.raises(ConflictError):
                edit_registry(self.repo, edit, "add")
            self.unchanged(before)
            return
        commit_id = edit_registry(self.repo, edit, "add")
        self.instruments[name] = (1, tuple(windows), None)
        self.committed(commit_id)

    @rule(
        name=st.sampled_from(["I1", "I2"]),
        windows=st.none() | st.lists(st.sampled_from(sorted(WINDOWS)), unique=True, max_size=2),
    )
    def update_instrument(self, name, windows):
        before = self.head()
        self.serial += 1
        fields = {"serial": f"s{self.serial}"}
        if windows is not None:
            fields["deployments"] = tuple(reg.deployment(*WINDOWS[w]) for w in windows)
        edit = lambda d: reg.update_instrument(d, name, **fields)  # noqa: E731
        if name not in self.instruments:
            with pytest.raises(Exception, match=name):
                edit_registry(self.repo, edit, "update")
            self.unchanged(before)
            return
        commit_id = edit_registry(self.repo, edit, "update")
        version, old, _ = self.instruments[name]
        self.instruments[name] = (
            version + 1,
            old if windows is None else tuple(windows),
            fields["serial"],
        )
        self.committed(commit_id)

    @rule(
        sample=st.sampled_from(SAMPLE_IDS),
        instrument=st.sampled_from(["I1", "I2"]),
        quality=st.sampled_from([None, "good", "questionable", "bad"]),
    )
    def add_sample(self, sample, instrument, quality):
        before = self.head()
        with self.repo.transaction(message="sample") as tx:
            new = tx.add_samples(
                [
                    {
                        "sample_id": sample,
                        "instrument": instrument,
                        "start": t(2024, 1, 1),
                        "end": t(2024, 1, 2),
                        "quality": quality,
                    }
                ]
            )
        if self.samples.get(sample) == (instrument, quality):
            assert new == 0 and tx.commit_id is None
            self.unchanged(before)
            return
        assert new == 1
        self.samples[sample] = (instrument, quality)
        self.versions += 1
        self.committed(tx.commit_id)

    @rule(
        version=st.sampled_from(["v1", "v2"]),
        classes=st.sampled_from([("a", "b"), ("b", "a", "c")]),
    )
    def add_taxonomy(self, version, classes):
        before = self.head()
        key = f"cnn@{version}"
        edit = lambda d: reg.add_taxonomy(d, "cnn", version, classes)  # noqa: E731
        if key in self.taxonomies:
            if self.taxonomies[key] != classes:
                with pytest.raises(ConflictError):
                    edit_registry(self.repo, edit, "taxonomy")
            else:
                assert edit_registry(self.repo, edit, "taxonomy") is None
            self.unchanged(before)
            return
        commit_id = edit_registry(self.repo, edit, "taxonomy")
        self.taxonomies[key] = classes
        self.committed(commit_id)

    @rule(
        instrument=st.sampled_from(["I1", "I2", "I3"]),
        when=st.sampled_from(sorted(TIMES)),
        samples=st.lists(st.sampled_from(SAMPLE_IDS), min_size=1, max_size=3),
        task=st.none() | st.sampled_from(TASKS),
    )
    def commit_images(self, instrument, when, samples, task):
        before = self.head()
        if task is not None and task in self.tasks:
            assert (
                self.repo.snapshot().task_commit(task) == self.tasks[task]
            )  # the CLI's no-op check
            return
        ids = [f"img{len(self.images) + n}" for n in range(len(samples))]
        rows = [
            {"image_id": i, "timestamp": TIMES[when] + timedelta(seconds=n), "sample_id": s}
            for n, (i, s) in enumerate(zip(ids, samples))
        ]
        found = self.instruments.get(instrument)
        fits = found is None or any(
            WINDOWS[w][0] <= TIMES[when]
            and (WINDOWS[w][1] is None or TIMES[when] + timedelta(seconds=len(ids)) < WINDOWS[w][1])
            for w in found[1]
        )
        tx = self.repo.transaction(message="images", task=task)
        if not fits:
            with pytest.raises(InvalidInputError, match="outside every deployment"):
                with tx:
                    tx.append_bytes(instrument, rows, [blob(i) for i in ids])
            self.unchanged(before)
            return
        with tx:
            tx.append_bytes(instrument, rows, [blob(i) for i in ids])
        assert tx.warnings == (
            []
            if found is not None
            else [
                f"instrument {instrument!r} is not registered (`improv instrument add` records "
                f"its deployments)"
            ]
        )
        self.images += samples
        if task is not None:
            self.tasks[task] = tx.commit_id
        self.committed(tx.commit_id)

    @invariant()
    def past_commits_answer_as_recorded(self):
        if not hasattr(self, "recorded"):
            return
        for commit_id, found in self.recorded.items():
            assert self.answers(commit_id) == found, commit_id


TestRegistryHistory = RegistryHistory.TestCase
TestRegistryHistory.settings = settings(
    max_examples=10,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
