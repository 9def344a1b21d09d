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
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from test_cli import assert_error, images, invoke, ok
from typer.testing import CliRunner

from improv_vcs import ConflictError, InvalidInputError, Repository
from improv_vcs import registry as reg
from improv_vcs.fsck import fsck
from improv_vcs.gc import gc
from improv_vcs.sync.sites import clone, pull, push

UTC = timezone.utc
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
    return repository.branches(), set(repository.store.list("objects/")), set(repository.store.list("packs/"))


def iid(day: str, n: int = 1, instrument: str = "IFCB107") -> str:
    """An IFCB-style image id (its timestamp is in the name)."""
    return f"D{day}_{instrument}_{n:05d}"


def blob(image_id: str) -> bytes:
    return f"pixels of {image_id}|".encode() * 8


def append(repository: Repository, instrument: str, rows: list[tuple[str, datetime]], **tx_options):
    with repository.transaction(message="add", **tx_options) as tx:
        tx.append_bytes(instrument, [{"image_id": i, "timestamp": t} for i, t in rows], [blob(i) for i, _ in rows])
    return tx


def t(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- 1. deployment windows -----------------------------------------------------------


def test_commits_outside_deployments_are_refused_and_write_nothing(runner, repo, tmp_path):
    ok(cli(runner, repo, "instrument", "add", "IFCB107", "--type", "IFCB", "--serial", "107",
           "--deployed", "2024-01-01T00:00:00Z..2024-01-10T00:00:00Z",
           "--deployed", "2024-02-01T00:00:00Z..2024-02-10T00:00:00Z"))
    v1_commit = Repository.open(repo).resolve()
    inside = [iid("20240105T000000", 1), iid("20240201T000000", 1), iid("20240209T235959", 1)]
    ok(cli(runner, repo, "commit", images(tmp_path / "inside", *inside), "-i", "IFCB107", "-q"))
    assert Repository.open(repo).count() == 3

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
    assert Repository.open(repo).count() == 3

    # the CLI override
    ok(cli(runner, repo, "commit", tmp_path / "gap", "-i", "IFCB107", "-q", "--allow-outside-deployment"))
    assert Repository.open(repo).count() == 6
    # the API: refused, then accepted with allow_outside_deployment=True
    repository = Repository.open(repo)
    before = state(repo)
    with pytest.raises(InvalidInputError, match="D20240301T000000_IFCB107_00002"):
        append(repository, "IFCB107", [(iid("20240301T000000", 2), t(2024, 3, 1))])
    assert state(repo) == before
    tx = append(repository, "IFCB107", [(iid("20240301T000000", 2), t(2024, 3, 1))], allow_outside_deployment=True)
    assert tx.commit_id is not None and repository.count() == 7

    # an open-ended window accepts later images, but not future ones
    ok(cli(runner, repo, "instrument", "add", "IFCB9", "--deployed", "2024-01-01.."))
    later = images(tmp_path / "later", iid("20260101T000000", 1, "IFCB9"), iid("20240101T000000", 1, "IFCB9"))
    ok(cli(runner, repo, "commit", later, "-i", "IFCB9", "-q"))
    assert Repository.open(repo).count(instruments=["IFCB9"]) == 2
    before = state(repo)
    assert_error(cli(runner, repo, "commit", images(tmp_path / "later_future", iid("20990101T000000", 1, "IFCB9")), "-i", "IFCB9", "-q"),
                 2, "in the future")
    assert state(repo) == before
    assert_error(cli(runner, repo, "commit", images(tmp_path / "early9", iid("20231231T000000", 1, "IFCB9")), "-i", "IFCB9", "-q"),
                 2, "outside every deployment of IFCB9")
    assert state(repo) == before

    # update: a new version, which changes what is accepted
    shown = json.loads(ok(cli(runner, repo, "instrument", "update", "IFCB107", "--deployed", "2023-06-01T00:00:00Z..2023-07-01T00:00:00Z", "--json")).stdout)
    assert shown["version"] == 2 and shown["type"] == "IFCB" and shown["serial"] == "107"
    assert shown["deployments"] == [{"start": "2023-06-01T00:00:00Z", "end": "2023-07-01T00:00:00Z"}]
    before = state(repo)
    assert_error(cli(runner, repo, "commit", images(tmp_path / "jan", iid("20240106T000000", 1)), "-i", "IFCB107", "-q"),
                 2, repr(iid("20240106T000000", 1)))
    assert state(repo) == before
    ok(cli(runner, repo, "commit", images(tmp_path / "june", iid("20230615T000000", 1)), "-i", "IFCB107", "-q"))
    ok(cli(runner, repo, "instrument", "update", "IFCB107", "--description", "moved"))
    now = json.loads(ok(cli(runner, repo, "instrument", "show", "IFCB107", "--json")).stdout)
    assert now["version"] == 3 and now["description"] == "moved" and len(now["deployments"]) == 1

    old = json.loads(ok(cli(runner, repo, "instrument", "show", "IFCB107", "--at", v1_commit, "--json")).stdout)
    assert old == {"name": "IFCB107", "type": "IFCB", "serial": "107", "description": None, "version": 1, "deployments": [
        {"start": "2024-01-01T00:00:00Z", "end": "2024-01-10T00:00:00Z"},
        {"start": "2024-02-01T00:00:00Z", "end": "2024-02-10T00:00:00Z"}]}
    text = ok(cli(runner, repo, "instrument", "show", "IFCB107", "--at", v1_commit)).stdout
    assert " v1 " in text and "2024-01-01 00:00..2024-01-10 00:00" in text
    assert_error(cli(runner, repo, "instrument", "show", "IFCB9", "--at", v1_commit), 3, "IFCB9")
    assert Repository.open(repo).registry(v1_commit).instruments["IFCB107"].version == 1


def test_instrument_add_errors_write_nothing(runner, repo):
    ok(cli(runner, repo, "instrument", "add", "IFCB1", "--deployed", "2024-01-01.."))
    before = state(repo)
    assert_error(cli(runner, repo, "instrument", "add", "IFCB1"), 4, "exists")
    assert_error(cli(runner, repo, "instrument", "update", "IFCB2", "--serial", "x"), 3, "IFCB2")
    assert_error(cli(runner, repo, "instrument", "add", "IFCB3", "--deployed", "2024-02-01..2024-01-01"), 2, "not before its end")
    assert_error(cli(runner, repo, "instrument", "add", "IFCB3", "--deployed", "..2024-01-01"), 2, "--deployed")
    assert state(repo) == before


# -- 2. unregistered instruments -------------------------------------------------------


def test_unregistered_instrument_warns_once_then_strict_refuses(runner, repo, tmp_path):
    src = tmp_path / "many"
    images(src / "a", *(iid("20240101T000000", n, "IFCB5") for n in range(1, 6)))
    images(src / "b", *(iid("20240102T000000", n, "IFCB5") for n in range(1, 6)))
    result = ok(cli(runner, repo, "commit", src, "-i", "IFCB5", "-q"))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: instrument 'IFCB5' is not registered (`improv instrument add` records its deployments)"]
    assert Repository.open(repo).count() == 10

    repository = Repository.open(repo)
    with repository.transaction(message="two batches") as tx:
        for n in range(3):
            tx.append_bytes("IFCB6", [{"image_id": f"x{n}", "timestamp": t(2024, 1, 1)}], [blob(f"x{n}")])
    assert len(tx.warnings) == 1 and "'IFCB6'" in tx.warnings[0]

    before = state(repo)
    assert_error(cli(runner, repo, "commit", images(tmp_path / "s", iid("20240103T000000", 1, "IFCB5")), "-i", "IFCB5", "-q", "--strict"),
                 2, "'IFCB5'", "not registered")
    assert state(repo) == before

    ok(cli(runner, repo, "instrument", "strict", "on"))
    assert Repository.open(repo).registry().strict_instruments is True
    listed = json.loads(ok(cli(runner, repo, "instrument", "list", "--json")).stdout)
    assert listed == {"strict": True, "instruments": []}
    before = state(repo)
    assert_error(cli(runner, repo, "commit", tmp_path / "s", "-i", "IFCB5", "-q"), 2, "'IFCB5'", "strict")
    assert state(repo) == before
    with pytest.raises(InvalidInputError, match="strict"):
        append(Repository.open(repo), "IFCB6", [("y1", t(2024, 1, 1))])
    assert state(repo) == before
    ok(cli(runner, repo, "instrument", "add", "IFCB5"))  # registered without deployments: nothing fits
    assert_error(cli(runner, repo, "commit", tmp_path / "s", "-i", "IFCB5", "-q"), 2, "outside every deployment")
    ok(cli(runner, repo, "instrument", "update", "IFCB5", "--deployed", "2024-01-01.."))
    result = ok(cli(runner, repo, "commit", tmp_path / "s", "-i", "IFCB5", "-q"))
    assert "warning" not in result.stderr
    assert Repository.open(repo).count() == 14
