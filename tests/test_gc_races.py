"""Nothing lost: gc against writers that reuse old objects (deterministic
interleavings through gc's step hook and the writer's ref move), a gc killed
at every deletion followed by push and pull, transfers that repair what a
site lacks, ref moves over HTTP checked against what the server holds, and
one commit per ingest task however many writers race."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import T0, add, blobs, image_ids, rows

from improv_vcs import ConflictError, Repository
from improv_vcs.core.ids import hash_bytes
from improv_vcs.core.model import Commit, canonical_json
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.maintenance.gc import gc
from improv_vcs.storage.closure import commit_keys
from improv_vcs.storage.fence import STATE_KEY, read_state
from improv_vcs.storage.http_store import HttpStore
from improv_vcs.storage.objects import object_key
from improv_vcs.sync.sites import pull, push

DAY = 86400.0


class Killed(BaseException):
    """Stands for SIGKILL: nothing of the process runs after it."""


def abandoned_side(repo: Repository) -> str:
    """Images ``x*`` committed on a branch that was then deleted: their
    pack, manifest and index segment are garbage a later commit can reuse."""
    repo.create_branch("side")
    side = add(repo, "x", branch="side")
    repo.store.delete("refs/heads/side")
    return side


def age_everything(root: Path, seconds: float) -> None:
    """Make every object and pack of a local repository look ``seconds`` old."""
    when = time.time() - seconds
    for folder in ("objects", "packs"):
        for path in (root / folder).rglob("*"):
            if path.is_file():
                os.utime(path, (when, when))


def readable_everywhere(repo: Repository) -> None:
    report = fsck(repo, full=True)
    assert report.ok, report.problems
    for image in image_ids(repo):
        repo.snapshot().read_image(image)


@pytest.fixture(params=["local", "s3"])
def site(request, tmp_path):
    """A repository with one commit on main and abandoned ``x*`` images, and
    a gc clock under which every object looks old (local: backdated files;
    S3: a clock two days ahead)."""
    if request.param == "local":
        repo = Repository.init(tmp_path / "repo")
    else:
        repo = Repository.init(
            request.getfixturevalue("s3_url"), **request.getfixturevalue("s3_options")
        )
    add(repo, "a")
    abandoned_side(repo)
    if request.param == "local":
        age_everything(tmp_path / "repo", 2 * DAY)
        clock = time.time
    else:

        def clock() -> float:
            return time.time() + 2 * DAY

    return repo, clock


def test_a_commit_landing_while_gc_plans_keeps_what_it_reuses(site):
    repo, clock = site
    landed = []

    def step(name, key):
        if name == "planned":
            landed.append(add(repo, "x"))  # same images: same pack, manifest, segment

    report = gc(repo, grace=DAY, clock=clock, on_step=step)
    assert repo.refs.branch("main") == landed[0]
    assert image_ids(repo) == [f"{p}{k}" for p in "ax" for k in range(4)]
    assert not set(report.removed) & commit_keys(
        repo.odb, landed[0], repo.odb.get_commit(landed[0])
    )
    readable_everywhere(repo)
    assert not read_state(repo.store)[1].doomed


def test_a_commit_that_would_reuse_doomed_objects_is_refused_then_succeeds(site):
    repo, clock = site
    main = repo.refs.branch("main")
    refused = []

    def step(name, key):
        if name == "published":
            with pytest.raises(ConflictError, match="is removing"):
                add(repo, "x")
            refused.append(repo.refs.branch("main"))

    gc(repo, grace=DAY, clock=clock, on_step=step)
    assert refused == [main] and repo.refs.branch("main") == main
    readable_everywhere(repo)
    add(repo, "x")  # after gc: written anew (or reused, freshened) and whole
    assert image_ids(repo) == [f"{p}{k}" for p in "ax" for k in range(4)]
    readable_everywhere(repo)


def test_a_commit_reusing_objects_during_deletion_is_refused(site):
    repo, clock = site
    main = repo.refs.branch("main")
    seen = []

    def step(name, key):
        if name == "delete" and not seen:
            seen.append(key)
            with pytest.raises(ConflictError):
                add(repo, "x")

    report = gc(repo, grace=DAY, clock=clock, on_step=step)
    assert seen and report.removed and repo.refs.branch("main") == main
    readable_everywhere(repo)


def test_reused_objects_are_freshened_before_the_ref_moves(tmp_path):
    """A gc that runs whole between a commit's writes and its ref move finds
    the reused objects young (without freshening they were 2 days old)."""
    repo = Repository.init(tmp_path / "repo")
    add(repo, "a")
    abandoned_side(repo)
    age_everything(tmp_path / "repo", 2 * DAY)
    move = repo.refs.set_branch
    reports = []

    def gc_then_move(name, old, new):
        reports.append(gc(repo, grace=DAY))
        move(name, old, new)

    repo.refs.set_branch = gc_then_move
    landed = add(repo, "x")
    needed = commit_keys(repo.odb, landed, repo.odb.get_commit(landed))
    assert (
        reports[0].removed and not set(reports[0].removed) & needed
    )  # the side commit went, not its objects
    readable_everywhere(repo)


def test_a_gc_that_finds_another_running_refuses_unless_forced(tmp_path):
    repo = Repository.init(tmp_path / "repo")
    add(repo, "a")

    def killed(name, key):
        raise Killed

    with pytest.raises(Killed):
        gc(
            repo,
            grace=0,
            on_step=lambda name, key: killed(name, key) if name == "published" else None,
        )
    assert read_state(repo.store)[1].collecting
    with pytest.raises(ConflictError, match="another gc"):
        gc(repo, grace=0)
    gc(repo, grace=0, force=True)
    assert not read_state(repo.store)[1].collecting
    assert (
        gc(repo, grace=0, clock=lambda: time.time() + 7200).removed == []
    )  # lease over: no --force needed


@pytest.mark.parametrize("stop", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_gc_stopped_by_an_error_or_ctrl_c_withdraws_its_doomed_keys(tmp_path, stop):
    repo = Repository.init(tmp_path / "repo")
    add(repo, "a")
    abandoned_side(repo)
    age_everything(tmp_path / "repo", 2 * DAY)

    def step(name, key):
        if name == "delete":
            raise stop

    with pytest.raises(type(stop)):
        gc(repo, grace=DAY, on_step=step)
    state = read_state(repo.store)[1]
    assert not state.collecting and not state.doomed and state.generation == 2
    add(repo, "x")  # reuses what gc had doomed: no refusal
    readable_everywhere(repo)


# -- a gc killed at every deletion, then transfers -------------------------------------


def _garbage_site(tmp_path: Path) -> tuple[Repository, Repository, list[str]]:
    """``origin`` with main = a, x1, x2, and ``site``, which had x1, x2 on a
    branch it deleted (garbage there, two days old); and gc's deletion order."""
    origin = Repository.init(tmp_path / "origin")
    a = add(origin, "a")
    shutil.copytree(tmp_path / "origin", tmp_path / "site")
    site = Repository.open(tmp_path / "site")
    site.create_branch("side")
    add(site, "x1", branch="side")
    x2 = add(site, "x2", branch="side")
    push(site, str(tmp_path / "origin"), branch="side")
    origin.refs.set_branch("main", a, x2)
    for repo in (origin, site):
        repo.store.delete("refs/heads/side")
    age_everything(tmp_path / "site", 2 * DAY)
    order = gc(site, grace=DAY, dry_run=True).removed
    return origin, site, order


def test_a_gc_killed_at_any_deletion_leaves_transfers_whole(tmp_path):
    origin, _, order = _garbage_site(tmp_path / "plan")
    assert len(order) >= 8 and order[0].startswith("objects/")
    commits = [
        k for k in order if k.startswith("objects/") and origin.odb.is_json_object(k[8:10] + k[11:])
    ]
    assert order[: len(commits)] == commits  # commits go first, children before parents
    assert [k.endswith(".pack") for k in order][-1]
    for kill_after in range(len(order) + 1):
        work = tmp_path / f"kill{kill_after}"
        origin, site, _ = _garbage_site(work)
        done = []

        def step(name, key, done=done, kill_after=kill_after):
            if name == "delete":
                if len(done) == kill_after:
                    raise Killed  # the process dies here
                done.append(key)

        if kill_after < len(order):
            with pytest.raises(Killed):
                gc(site, grace=DAY, on_step=step)
        else:
            gc(site, grace=DAY, on_step=step)
        assert fsck(site).ok
        if kill_after < len(order):  # its doomed keys stand until a gc finishes the work
            with pytest.raises(ConflictError, match="improv gc --force"):
                pull(site, str(work / "origin"))
            assert site.refs.branch("main") != origin.refs.branch("main") and fsck(site).ok
            gc(site, grace=DAY, force=True)
        # pull the same history back: what the killed gc took is sent again
        pulled = pull(site, str(work / "origin"))
        assert pulled.commit == origin.refs.branch("main")
        assert image_ids(site) == image_ids(origin)
        readable_everywhere(site)
        # and push it: the remote is already there; nothing breaks
        assert push(site, str(work / "origin")).action == "up-to-date"
        readable_everywhere(origin)


def test_a_transfer_resends_what_a_damaged_site_lacks(tmp_path):
    origin = Repository.init(tmp_path / "origin")
    add(origin, "a")
    tip = add(origin, "b")
    shutil.copytree(tmp_path / "origin", tmp_path / "copy")
    copy = Repository.open(tmp_path / "copy")
    manifest = origin.odb.get_commit(tip).batches[0].manifest
    copy.store.delete(object_key(manifest))
    copy.store.delete("refs/heads/main")
    copy.refs.set_branch("main", None, origin.odb.get_commit(tip).parents[0])
    result = pull(copy, str(tmp_path / "origin"))
    assert result.commit == tip and result.transfer.objects >= 1
    readable_everywhere(copy)


# -- ingest tasks -----------------------------------------------------------------------


def test_writers_racing_with_one_task_id_make_one_commit(tmp_path):
    repo = Repository.init(tmp_path / "repo")
    add(repo, "a")
    writers = [repo.transaction(message=f"w{n}", task="bin-0001") for n in range(4)]
    for n, tx in enumerate(writers):  # all opened on the same base, before any commits
        tx.append_bytes("CAM", rows(f"t{n}"), blobs(f"t{n}"))
    results = [tx.commit() for tx in writers]
    assert results[0] is not None and results[1:] == [None, None, None]
    assert [tx.task_done for tx in writers] == [None, results[0], results[0], results[0]]
    assert [c.task for _, c in repo.log()].count("bin-0001") == 1
    assert image_ids(repo) == [f"a{k}" for k in range(4)] + [f"t0{k}" for k in range(4)]
    later = repo.transaction(message="again", task="bin-0001")
    later.append_bytes("CAM", rows("u"), blobs("u"))
    assert later.commit() is None and later.task_done == results[0]


# -- ref moves over HTTP ----------------------------------------------------------------


@pytest.fixture
def served(tmp_path):
    from improv_vcs.service.app import create_app
    from improv_vcs.service.auth import Access, TokenEntry
    from improv_vcs.service.server import BackgroundServer

    repo = Repository.init(tmp_path / "served")
    add(repo, "a")
    access = Access(
        (TokenEntry(name="w", token="write-token-0123456789abcdef", scopes=("write",)),)
    )
    with BackgroundServer(create_app(str(tmp_path / "served"), access)) as base:
        yield repo, HttpStore(base, token="write-token-0123456789abcdef")


def _fake_commit(repo: Repository, parents: tuple[str, ...]) -> bytes:
    tip = repo.odb.get_commit(repo.refs.branch("main"))
    commit = Commit(
        parents=parents,
        height=tip.height + 1,
        author="m",
        message="forged",
        time=T0,
        batches=tip.batches,
        index=tip.index,
    )
    return canonical_json(commit)


def test_the_service_refuses_ref_moves_it_cannot_back(served):
    repo, store = served
    main = repo.refs.branch("main")
    manifest = repo.odb.get_commit(main).batches[0].manifest
    expected = f"{main}\n".encode()
    with pytest.raises(ConflictError, match="not a commit"):
        store.compare_and_swap("refs/heads/main", expected, f"{manifest}\n".encode())
    with pytest.raises(ConflictError, match="not a commit or tag"):
        store.compare_and_swap("refs/tags/t", None, f"{manifest}\n".encode())
    orphan = _fake_commit(repo, ("ab" * 32,))

    orphan_id = hash_bytes(orphan)
    assert store.put_if_absent(object_key(orphan_id), orphan)
    with pytest.raises(ConflictError, match="lacks commit"):
        store.compare_and_swap("refs/heads/main", expected, f"{orphan_id}\n".encode())
    with pytest.raises(ConflictError, match="lacks commit"):
        store.compare_and_swap("refs/heads/new", None, f"{orphan_id}\n".encode())
    assert repo.refs.branches() == {"main": main} and repo.refs.tags() == {}
    whole = _fake_commit(repo, (main,))
    whole_id = hash_bytes(whole)
    store.put_if_absent(object_key(whole_id), whole)
    store.compare_and_swap("refs/heads/main", expected, f"{whole_id}\n".encode())
    assert repo.refs.branch("main") == whole_id
    assert fsck(repo).ok


def test_the_service_refuses_a_commit_missing_a_manifest(served, tmp_path):
    repo, store = served
    main = repo.refs.branch("main")
    other = Repository.init(tmp_path / "elsewhere")
    tip = add(other, "z")
    commit = other.odb.get_commit(tip).model_copy(update={"parents": (main,), "height": 2})
    data = canonical_json(commit)

    store.put_if_absent(object_key(hash_bytes(data)), data)
    with pytest.raises(ConflictError, match="lacks"):
        store.compare_and_swap(
            "refs/heads/main", f"{main}\n".encode(), f"{hash_bytes(data)}\n".encode()
        )
    assert repo.refs.branch("main") == main
    assert read_state(repo.store)[1].generation == 0 and not repo.store.exists(STATE_KEY)


# -- new refs at old, unreachable commits ---------------------------------------------


def test_a_branch_at_a_doomed_commit_is_refused_and_at_a_freshened_one_is_whole(tmp_path):
    repo = Repository.init(tmp_path / "repo")
    add(repo, "a")
    side = abandoned_side(repo)
    age_everything(tmp_path / "repo", 2 * DAY)

    def step(name, key):
        if name == "published":
            with pytest.raises(ConflictError, match="is removing"):
                repo.create_branch("revived", side)
            with pytest.raises(ConflictError, match="is removing"):
                repo.create_tag("revived-tag", side, message="too late")

    gc(repo, grace=DAY, on_step=step)
    assert set(repo.refs.branches()) == {"main"} and repo.refs.tags() == {}
    readable_everywhere(repo)

    other = Repository.init(tmp_path / "other")
    add(other, "a")
    dangling = abandoned_side(other)
    age_everything(tmp_path / "other", 2 * DAY)
    move = other.refs.set_branch

    def gc_then_move(name, old, new):
        gc(other, grace=DAY)  # runs whole after the commit was freshened
        move(name, old, new)

    other.refs.set_branch = gc_then_move
    other.create_branch("revived", dangling)
    assert sorted(other.snapshot("revived").images().column("image_id").to_pylist()) == [
        f"{p}{k}" for p in "ax" for k in range(4)
    ]
    readable_everywhere(other)
