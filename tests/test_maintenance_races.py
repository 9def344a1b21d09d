"""Maintenance beside writers, readers and gc: a commit whose objects are
bundled (and their loose copies removed) before its branch moves still
lands whole, on a local disk and on S3; a reader holding an old view of the
bundles finds keys a merge moved; gc removes a bundle only when nothing in
it is reachable."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from improv_vcs.maintenance.fsck import fsck
from improv_vcs.maintenance.gc import gc
from improv_vcs.maintenance.repack import maintain
from improv_vcs.repository.repository import Repository
from improv_vcs.storage.bundled_store import PREFIX

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _manual_maintenance(monkeypatch):
    monkeypatch.setenv("IMPROV_AUTO_MAINTENANCE", "0")


def _commit(
    repo: Repository, name: str, n: int = 3, branch: str | None = None, size: int = 30
) -> str:
    ids = [f"{name}-{i}" for i in range(n)]
    table = pa.table({"image_id": ids, "timestamp": [T0 + timedelta(seconds=i) for i in range(n)]})
    with repo.transaction(branch, message=name, author="t") as tx:
        tx.append_bytes("IFCB1", table, [name.encode() + bytes([i]) * size for i in range(n)])
    return tx.commit_id


def _images(repo: Repository, at: str | None = None) -> dict[str, bytes]:
    return {
        i: repo.snapshot(at).read_image(i)
        for i in repo.snapshot(at).images().column("image_id").to_pylist()
    }


def _loose(repo: Repository) -> list[str]:
    return [k for k in repo.store.inner.list("objects/")] + [
        k for k in repo.store.inner.list("packs/")
    ]


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path) -> tuple[str, dict]:
    """Where a repository is, and its storage options."""
    if request.param == "local":
        return str(tmp_path / "r"), {}
    return request.getfixturevalue("s3_url"), request.getfixturevalue("s3_options")


def test_a_commit_lands_whole_when_maintenance_bundles_its_objects_before_its_branch_moves(
    location, monkeypatch
):
    url, options = location
    repo = Repository.init(url, **options)
    for n in range(3):
        _commit(repo, f"before{n}")
    refs = repo.refs
    moved = refs.set_branch
    ran = []

    def maintain_then_move(name, expected, new):
        if not ran:
            ran.append(maintain(Repository.open(url, **options)))
            assert not _loose(repo)  # the commit's own objects are now only in a bundle
        return moved(name, expected, new)

    monkeypatch.setattr(refs, "set_branch", maintain_then_move)
    tip = _commit(repo, "racing")
    assert ran and ran[0].bundled > 0
    fresh = Repository.open(url, **options)
    assert fresh.resolve() == tip
    assert set(_images(fresh)) == {
        f"{name}-{i}" for name in ("before0", "before1", "before2", "racing") for i in range(3)
    }
    assert fsck(fresh, full=True).ok


def test_a_reader_with_an_old_view_of_the_bundles_finds_what_a_merge_moved(tmp_path):
    writer = Repository.init(tmp_path / "r")
    _commit(writer, "a")
    maintain(writer)
    reader = Repository.open(tmp_path / "r")
    before = reader.store.bundles()
    expected = _images(Repository.open(tmp_path / "r"))
    _commit(writer, "b")
    report = maintain(writer)  # merges the only bundle with the new loose values, and removes it
    assert report.merged_bundles == 1 and not set(before) & set(writer.store.bundles(refresh=True))
    assert reader.store.bundles() is not None and set(reader.store.bundles()) == set(
        before
    )  # stale view
    assert _images(reader, at=writer.resolve("main~1")) == expected


def test_gc_keeps_a_bundle_that_holds_anything_reachable(tmp_path):
    repo = Repository.init(tmp_path / "r")
    _commit(repo, "kept")
    repo.create_branch("side")
    _commit(repo, "side-only", branch="side")
    maintain(repo)  # one bundle: values that stay reachable and values that will not
    _commit(repo, "later")
    repo.delete_branch("side")
    bundles = set(repo.store.bundles(refresh=True))
    report = gc(repo, grace=0, clock=lambda: 2e9)
    assert report.kept_in_bundles > 0 and not [k for k in report.removed if k.startswith(PREFIX)]
    assert bundles <= set(repo.store.bundles(refresh=True))
    assert set(_images(repo)) == {f"{n}-{i}" for n in ("kept", "later") for i in range(3)}
    assert fsck(repo, full=True).ok


def test_gc_deletes_a_bundle_whose_every_value_is_unreachable(tmp_path):
    repo = Repository.init(tmp_path / "r")
    _commit(repo, "kept", n=60, size=20_000)
    maintain(repo)
    repo.create_branch("side")
    _commit(repo, "gone", branch="side")
    kept_bundles = set(repo.store.bundles(refresh=True))
    report = maintain(repo)  # the side branch's few values: too small to merge into the big bundle
    assert report.merged_bundles == 0
    repo.delete_branch("side")
    result = gc(repo, grace=0, clock=lambda: 2e9)
    gone = f"bundles/{report.bundle}"
    assert {f"{gone}.idx", f"{gone}.bundle"} <= set(result.removed)
    assert set(repo.store.bundles(refresh=True)) == kept_bundles
    assert not [k for k in repo.store.inner.list(PREFIX) if report.bundle in k]
    assert set(_images(repo)) == {f"kept-{i}" for i in range(60)}
    assert fsck(repo, full=True).ok


@settings(max_examples=5, deadline=None)
@given(
    st.lists(
        st.sampled_from(["commit", "commit", "commit", "branch", "maintain"]),
        min_size=5,
        max_size=40,
    )
)
def test_every_commit_reads_the_same_across_maintenance(tmp_path_factory, steps):
    repo = Repository.init(tmp_path_factory.mktemp("m") / "r")
    commits = []
    for number, step in enumerate(steps):
        if step == "maintain":
            maintain(repo)
        elif step == "branch" and commits:
            repo.create_branch(f"b{number}", at=commits[-1])
        else:
            commits.append(_commit(repo, f"c{number}", n=1 + number % 3))
    seen = {oid: (_images(repo, oid), repo.snapshot(oid).cite().identifier) for oid in commits}
    maintain(repo)
    assert not _loose(repo)
    again = Repository.open(repo.url)
    assert {
        oid: (_images(again, oid), again.snapshot(oid).cite().identifier) for oid in commits
    } == seen
    assert fsck(again, full=True).ok
