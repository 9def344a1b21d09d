"""The tasks index (format 3): which commits of a history record an ingest
task, read without walking the history, equal to the walk on any DAG of
branches and merges, built once over a history written before format 3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import blobs, rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from improv_vcs.core.errors import InvalidInputError
from improv_vcs.repository.repository import Repository
from improv_vcs.snapshot import tasks
from improv_vcs.storage import graph
from improv_vcs.sync.merge import merge
from improv_vcs.sync.sites import push


def _walked(repo: Repository, oid: str) -> list[tuple[str, str]]:
    """(task, commit) of every commit of the history that records a task, by walking it."""
    return [(c.task, o) for o, c in graph.history(repo.odb, oid) if c.task is not None]


def _indexed(repo: Repository, oid: str) -> list[tuple[str, str]]:
    table = tasks.history(repo.odb, oid, repo.odb.get_commit(oid))
    return list(zip(table.column("task").to_pylist(), table.column("commit").to_pylist()))


def _commit(repo: Repository, name: str, task: str | None, branch: str = "main") -> str | None:
    with repo.transaction(branch=branch, message=name, task=task) as tx:
        tx.append_bytes("CAM", rows(name, 1), blobs(name, 1))
    return tx.commit_id


def _as_format(repo_path: Path, number: int) -> Repository:
    """The repository at ``repo_path`` rewritten to claim ``number`` as its format."""
    repo = Repository.open(repo_path)
    old = (repo_path / "improv.json").read_bytes()
    new = json.dumps({**json.loads(old), "format": number}, sort_keys=True, separators=(",", ":"))
    repo.store.compare_and_swap("improv.json", old, new.encode())
    return Repository.open(repo_path)


steps = st.lists(
    st.tuples(
        st.sampled_from(["main", "side", "merge"]),
        st.none() | st.sampled_from(["t1", "t2", "t3", "t4", "t5"]),
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps, upgrade_at=st.integers(0, 14))
def test_the_index_lists_what_a_walk_finds_on_any_history(tmp_path_factory, steps, upgrade_at):
    """Commits on two branches with repeated tasks and merges both ways,
    the repository upgraded from format 2 part way: at every commit the
    index equals the walk, and task_commit names the highest commit."""
    path = tmp_path_factory.mktemp("r") / "repo"
    Repository.init(path)
    repo = _as_format(path, 2)
    _commit(repo, "root", None)
    repo.create_branch("side")
    for number, (where, task) in enumerate(steps):
        if number == upgrade_at:
            repo.upgrade()
        if where == "merge":
            ours, theirs = repo.resolve("main"), repo.resolve("side")
            if not graph.is_ancestor(repo.odb, theirs, ours):
                merged = merge(repo, ours, theirs, "t", "merge side")
                repo.refs.set_branch("main", ours, merged)
                repo.refs.set_branch("side", theirs, merged)
            continue
        done_before = repo.snapshot(where).task_commit(task) if task else None
        made = _commit(repo, f"c{number}-", task, where)
        assert (made is None) == (done_before is not None)
    for oid, commit in graph.history(repo.odb, repo.resolve("main")):
        assert _indexed(repo, oid) == _walked(repo, oid)
        assert commit.format == (3 if commit.tasks_index is not None else 1)
        for task in {"t1", "t2", "t3", "t4", "t5"}:
            expected = next((o for t, o in _walked(repo, oid) if t == task), None)
            assert repo.snapshot(oid).task_commit(task) == expected


def test_a_task_is_found_reading_the_tip_alone(tmp_path, monkeypatch):
    repo = Repository.init(tmp_path / "r")
    made = [_commit(repo, f"bin{n}-", f"bin-{n:04}") for n in range(40)]
    fresh = Repository.open(tmp_path / "r")
    read: list[str] = []
    get_commit = fresh.odb.get_commit
    monkeypatch.setattr(fresh.odb, "get_commit", lambda oid: read.append(oid) or get_commit(oid))
    assert fresh.snapshot().task_commit("bin-0003") == made[3]
    assert set(read) == {made[-1]}
    listed = fresh.snapshot().tasks()
    assert [t["task"] for t in listed] == [f"bin-{n:04}" for n in reversed(range(40))]
    assert [t["commit"] for t in listed] == made[::-1]
    assert {(t["images"], tuple(t["instruments"])) for t in listed} == {(1, ("CAM",))}
    assert set(read) == {made[-1]}
    with fresh.transaction(message="again", task="bin-0007") as tx:
        tx.append_bytes("CAM", rows("again", 1), blobs("again", 1))
    assert tx.commit_id is None and tx.task_done == made[7]
    with fresh.transaction(message="the same bin again", task="bin-0009") as tx:
        tx.append_bytes("CAM", rows("bin9-", 1), blobs("bin9-", 1))  # nothing new to stage
    assert tx.commit_id is None and tx.task_done == made[9]


def test_an_upgraded_repository_indexes_its_older_history_once(tmp_path):
    Repository.init(tmp_path / "r")
    repo = _as_format(tmp_path / "r", 2)
    older = [_commit(repo, f"old{n}-", f"old-{n}") for n in range(5)]
    assert all(repo.odb.get_commit(c).tasks_index is None for c in older)
    assert repo.upgrade() is True
    first = _commit(repo, "new0-", "new-0")
    index = repo.odb.get_commit(first).tasks_index
    assert sum(s.entries for s in index) == 5
    assert _indexed(repo, first) == _walked(repo, first)
    assert repo.snapshot().task_commit("old-2") == older[2]


def test_format3_commits_are_not_pushed_to_an_older_repository(tmp_path):
    repo = Repository.init(tmp_path / "new")
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    _as_format(tmp_path / "old", 2)
    _commit(repo, "a", "task-a")
    with pytest.raises(
        InvalidInputError, match="format-2 repository and these commits are format 3"
    ):
        push(repo, str(tmp_path / "old"), "main")
    assert Repository.open(tmp_path / "old").branches() == {}
