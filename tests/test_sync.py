"""Sync between sites: remotes, push, fetch, pull and clone (local and S3),
only-missing transfers, merges of divergent histories, racing pushers,
interrupted and resumed transfers, corrupt remotes and metadata-only clones.

Every site is a real repository (local directories, moto's S3 server);
failures are injected only into the destination store's writes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import assert_error, images, invoke, ok
from typer.testing import CliRunner

from improv_vcs import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    Repository,
    StorageError,
    add_dataset_span,
    add_provenance,
)
from improv_vcs.core.model import Commit, Tag
from improv_vcs.storage import LocalStore
from improv_vcs.storage.closure import commit_objects
from improv_vcs.storage.objects import blob_cache_key, object_key
from improv_vcs.storage.packs import index_key, pack_key
from improv_vcs.sync.sites import clone, fetch, fetch_blobs, pull, push

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
REPORT_FIELDS = {
    "remote",
    "commits",
    "objects",
    "packs",
    "bytes",
    "skipped",
    "bundles",
    "refs",
    "action",
    "commit",
    "notes",
}
I1 = "D20240101T120000_IFCB107_00001"
I2 = "D20240101T120000_IFCB107_00002"
I3 = "D20240102T060000_IFCB107_00001"
I4 = "D20240103T060000_IFCB107_00001"


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("IMPROV_REPO", raising=False)
    monkeypatch.setenv("IMPROV_AUTHOR", "tester")


# -- helpers ---------------------------------------------------------------------


def blob(image_id: str, salt: str = "") -> bytes:
    return f"{salt}pixels of {image_id}|".encode() * 40


def commit(
    repo: Repository,
    ids,
    day: int = 0,
    salt: str = "",
    instrument: str = "IFCB1",
    message: str = "add",
) -> str:
    """Commit ``ids`` (bytes from :func:`blob`) one second apart from ``T0 + day``."""
    ids = list(ids)
    start = T0 + timedelta(days=day)
    rows = [{"image_id": i, "timestamp": start + timedelta(seconds=n)} for n, i in enumerate(ids)]
    with repo.transaction(message=message) as tx:
        tx.append_bytes(instrument, rows, [blob(i, salt) for i in ids])
    assert tx.commit_id is not None
    return tx.commit_id


def reopen(repo: Repository) -> Repository:
    return Repository.open(repo.url)


def table(repo: Repository) -> list[dict]:
    return repo.snapshot().images().sort_by("image_id").to_pylist()


def ids(repo: Repository) -> list[str]:
    return sorted(repo.snapshot().images().column("image_id").to_pylist())


def contents(repo: Repository) -> dict[str, bytes]:
    return {i: repo.snapshot().read_image(i) for i in ids(repo)}


def keys(repo: Repository, prefix: str = "") -> set[str]:
    return set(repo.store.list(prefix))


def data_keys(repo: Repository) -> set[str]:
    """Immutable content: objects and packs."""
    return keys(repo, "objects/") | keys(repo, "packs/")


def reachable_keys(repo: Repository) -> set[str]:
    """The objects and packs the commits of every branch and tag need."""
    found = set()
    tips = [*repo.branches().values(), *repo.tags().values()]
    seen = set(tips)
    while tips:
        oid = tips.pop()
        current = repo.odb.get_commit(oid)
        loose, packs = commit_objects(current)
        found |= {object_key(oid), *(object_key(o) for o in loose)}
        found |= {pack_key(p) for p in packs} | {index_key(p) for p in packs}
        tips += [p for p in current.parents if p not in seen]
        seen.update(current.parents)
    return found


def refs_of(repo: Repository) -> dict[str, bytes]:
    return {k: repo.store.get(k) for k in keys(repo, "refs/")}


def size_of(repo: Repository, found: set[str]) -> int:
    return sum(repo.store.size(k) for k in found)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def stored_commits(repo: Repository) -> dict[str, Commit]:
    """Every commit object the store holds (reachable or not)."""
    found = {}
    for key in keys(repo, "objects/"):
        oid = key[8:10] + key[11:]
        if repo.odb.is_json_object(oid):
            obj = repo.odb.get_object(oid)
            if isinstance(obj, Commit):
                found[oid] = obj
    return found


def assert_consistent(repo: Repository, expected: dict[str, bytes]) -> None:
    """Every commit present has its parents, loose objects and packs, and
    every image of its snapshot reads back (verified) as ``expected``."""
    for oid, found in stored_commits(repo).items():
        for parent in found.parents:
            assert repo.odb.has(parent), (oid, parent)
        loose, packs = commit_objects(found)
        for other in loose:
            assert repo.odb.has(other), (oid, other)
        for pack in packs:
            assert repo.store.exists(index_key(pack)) and repo.store.exists(pack_key(pack)), (
                oid,
                pack,
            )
        snapshot = repo.snapshot(oid)
        for image in snapshot.images().column("image_id").to_pylist():
            assert snapshot.read_image(image) == expected[image]


@pytest.fixture
def origin(tmp_path) -> Repository:
    """A local repository with two commits on main: o1, o2 (day 0) and o3 (day 1)."""
    repo = Repository.init(tmp_path / "origin")
    commit(repo, ["o1", "o2"], day=0)
    commit(repo, ["o3"], day=1)
    return repo


# -- 1. local <-> local ------------------------------------------------------------


def test_clone_pull_fast_forward_and_push_back(origin, tmp_path):
    site, result = clone(origin.url, tmp_path / "site")
    assert result.action == "cloned" and result.commit == origin.resolve()
    assert result.transfer.commits == 2 and result.transfer.packs == 2
    assert site.id == origin.id
    assert site.remotes.all()["origin"].url == origin.url
    assert site.branches() == origin.branches()
    assert site.remotes.tracking("origin") == {"main": origin.resolve()}
    assert table(site) == table(origin)
    assert contents(site) == contents(origin) == {i: blob(i) for i in ["o1", "o2", "o3"]}

    new = commit(origin, ["o4", "o5"], day=2)
    result = pull(site)
    assert (result.action, result.commit) == ("fast-forward", new)
    assert result.refs == {"refs/heads/main": new, "refs/remotes/origin/main": new}
    assert (result.transfer.commits, result.transfer.packs) == (1, 1)
    assert site.resolve() == new
    assert [c for c, _ in site.log()] == [c for c, _ in origin.log()]
    assert table(site) == table(origin)
    assert contents(site) == contents(origin)

    mine = commit(site, ["s1"], day=3)
    result = push(site)
    assert (result.action, result.commit) == ("pushed", mine)
    assert result.refs == {"refs/heads/main": mine}
    assert reopen(origin).resolve() == mine
    assert site.remotes.tracking("origin") == {"main": mine}
    assert origin.snapshot().read_image("s1") == blob("s1")
    assert table(reopen(origin)) == table(site)


def test_tags_travel_with_push_and_fetch(origin, tmp_path):
    origin.create_tag("v1", message="first release")
    site, _ = clone(origin.url, tmp_path / "site")
    assert site.tags() == {"v1": origin.resolve()}
    pointer = site.refs.tag("v1")
    assert pointer == origin.refs.tag("v1") and isinstance(site.odb.get_object(pointer), Tag)

    mine = commit(site, ["s1"], day=3)
    site.create_tag("v2", message="from the site")
    result = push(site, tags=True)
    assert set(result.refs) == {"refs/heads/main", "refs/tags/v2"}
    assert reopen(origin).tags() == {"v1": origin.resolve("v1"), "v2": mine}


def test_cli_remote_add_list_remove(runner, origin, tmp_path):
    site, _ = clone(origin.url, tmp_path / "site")
    backup, _ = clone(origin.url, tmp_path / "backup")
    base = ["--repo", site.url]

    added = json.loads(
        ok(invoke(runner, *base, "remote", "add", "backup", backup.url, "--json")).stdout
    )
    assert added == {"name": "backup", "url": backup.url, "options": {}}
    listed = json.loads(ok(invoke(runner, *base, "remote", "list", "--json")).stdout)
    assert listed == {
        "origin": {"url": origin.url, "options": {}, "image_bytes_from_here": False},
        "backup": {"url": backup.url, "options": {}, "image_bytes_from_here": False},
    }
    text = ok(invoke(runner, *base, "remote", "list")).stdout
    assert "backup" in text and backup.url in text
    assert_error(invoke(runner, *base, "remote", "add", "backup", backup.url), 4, "already exists")

    commit(backup, ["b1"], day=4)
    commit(backup, ["b2"], day=5)
    backup.create_branch("side")
    fetched = json.loads(ok(invoke(runner, *base, "fetch", "backup", "--json", "-q")).stdout)
    assert set(fetched) == REPORT_FIELDS and fetched["action"] == "fetched"
    assert fetched["commits"] == 2
    assert set(fetched["refs"]) == {"refs/remotes/backup/main", "refs/remotes/backup/side"}
    assert keys(site, "refs/remotes/") == {
        "refs/remotes/origin/main",
        "refs/remotes/backup/main",
        "refs/remotes/backup/side",
    }
    assert site.resolve() == origin.resolve()  # fetch moves no local branch

    removed = json.loads(ok(invoke(runner, *base, "remote", "remove", "backup", "--json")).stdout)
    assert removed == {"removed": "backup"}
    assert set(reopen(site).remotes.all()) == {"origin"}
    assert keys(site, "refs/remotes/") == {"refs/remotes/origin/main"}
    assert_error(invoke(runner, *base, "remote", "remove", "backup"), 3, "no remote named 'backup'")
    assert reopen(backup).resolve() == backup.resolve()  # nothing deleted there


def test_cli_push_refuses_non_fast_forward_then_force(runner, tmp_path):
    origin_path, site_path = tmp_path / "origin", tmp_path / "site"
    ok(invoke(runner, "init", origin_path))
    ok(
        invoke(
            runner,
            "--repo",
            origin_path,
            "commit",
            images(tmp_path / "day1", I1, I2),
            "-i",
            "IFCB107",
            "-q",
        )
    )
    cloned = json.loads(ok(invoke(runner, "clone", origin_path, site_path, "--json")).stdout)
    first = Repository.open(origin_path).resolve()
    site = Repository.open(site_path)
    assert cloned == {
        "remote": "origin",
        "commits": 1,
        "objects": len(keys(site, "objects/")),
        "packs": 1,
        "bytes": size_of(site, data_keys(site)),
        "skipped": 0,
        "bundles": 0,
        "refs": {"refs/heads/main": first, "refs/remotes/origin/main": first},
        "action": "cloned",
        "commit": first,
        "notes": [],
    }

    ok(
        invoke(
            runner,
            "--repo",
            origin_path,
            "commit",
            images(tmp_path / "day2", I3),
            "-i",
            "IFCB107",
            "-q",
        )
    )
    ok(
        invoke(
            runner,
            "--repo",
            site_path,
            "commit",
            images(tmp_path / "day3", I4),
            "-i",
            "IFCB107",
            "-q",
        )
    )
    theirs, mine = Repository.open(origin_path).resolve(), Repository.open(site_path).resolve()
    before = data_keys(Repository.open(origin_path))

    line = assert_error(
        invoke(runner, "--repo", site_path, "push", "-q"), 4, "not a fast-forward", "improv pull"
    )
    assert "push --force" in line
    assert Repository.open(origin_path).resolve() == theirs
    assert data_keys(Repository.open(origin_path)) == before  # refused before anything travelled

    forced = json.loads(ok(invoke(runner, "--repo", site_path, "push", "--force", "--json")).stdout)
    assert set(forced) == REPORT_FIELDS
    assert (forced["action"], forced["commit"], forced["commits"], forced["packs"]) == (
        "forced",
        mine,
        1,
        1,
    )
    assert forced["refs"] == {"refs/heads/main": mine}
    assert Repository.open(origin_path).resolve() == mine
    again = json.loads(ok(invoke(runner, "--repo", site_path, "push", "--json")).stdout)
    assert (
        again["action"],
        again["commits"],
        again["objects"],
        again["packs"],
        again["bytes"],
    ) == ("up-to-date", 0, 0, 0, 0)
    text = ok(invoke(runner, "--repo", site_path, "pull", "-q")).stdout
    assert f"up-to-date: {mine[:12]}" in text


# -- 2. only missing objects travel ------------------------------------------------


def test_only_missing_objects_travel(origin, tmp_path):
    site, _ = clone(origin.url, tmp_path / "site")
    for result in (push(site), pull(site), fetch(site)):
        moved = result.transfer
        assert (moved.commits, moved.objects, moved.packs, moved.bytes) == (0, 0, 0, 0), result
    assert push(site).action == "up-to-date" and pull(site).action == "up-to-date"

    before = data_keys(origin)
    mine = commit(site, ["s1", "s2"], day=3)
    new_pack = site.odb.get_commit(mine).batches[0].packs
    assert len(new_pack) == 1
    result = push(site)
    arrived = data_keys(origin) - before
    pack_keys = {k for k in arrived if k.startswith("packs/")}
    loose = {k for k in arrived if k.startswith("objects/")}
    assert pack_keys == {pack_key(new_pack[0]), index_key(new_pack[0])}
    assert object_key(mine) in loose
    moved = result.transfer
    assert (moved.commits, moved.packs, moved.objects) == (1, 1, len(loose))
    assert moved.bytes == size_of(origin, arrived)
    needed, _ = commit_objects(site.odb.get_commit(mine))
    assert (
        loose == ({object_key(mine)} | {object_key(o) for o in needed}) - before
    )  # the commit's own objects only
    assert site.odb.get_commit(mine).batches[0].manifest in {k[8:10] + k[11:] for k in loose}
    assert size_of(origin, pack_keys) > len(blob("s1")) + len(blob("s2"))

    again = push(site).transfer
    assert (again.commits, again.objects, again.packs, again.bytes) == (0, 0, 0, 0)
    other, _ = clone(origin.url, tmp_path / "other")
    theirs = commit(other, ["t1"], day=4)
    push(other)
    pulled = pull(site)
    assert pulled.action == "fast-forward" and pulled.commit == theirs
    assert (pulled.transfer.commits, pulled.transfer.packs) == (1, 1)
    assert pull(site).transfer.commits == 0


# -- 3. local <-> S3 ------------------------------------------------------------------


def test_push_to_empty_s3_clone_from_s3_and_pull(runner, origin, tmp_path, s3_url, s3_options):
    endpoint = s3_options["endpoint_url"]
    base = ["--repo", origin.url]
    ok(invoke(runner, *base, "remote", "add", "cloud", s3_url, "--endpoint-url", endpoint))
    pushed = json.loads(ok(invoke(runner, *base, "push", "cloud", "--json")).stdout)
    assert (pushed["action"], pushed["commit"], pushed["commits"], pushed["packs"]) == (
        "pushed",
        origin.resolve(),
        2,
        2,
    )
    cloud = Repository.open(s3_url, **s3_options)
    assert cloud.id == origin.id and cloud.config == origin.config
    assert cloud.branches() == origin.branches()
    assert data_keys(cloud) == reachable_keys(origin)  # everything needed, no unreferenced object
    assert origin.remotes.tracking("cloud") == {"main": origin.resolve()}

    dest = tmp_path / "from-s3"
    cloned = json.loads(
        ok(invoke(runner, "clone", s3_url, dest, "--endpoint-url", endpoint, "--json")).stdout
    )
    assert (cloned["action"], cloned["commit"], cloned["commits"]) == (
        "cloned",
        origin.resolve(),
        2,
    )
    site = Repository.open(dest)
    assert site.remotes.all()["origin"].model_dump() == {
        "url": s3_url,
        "options": {"endpoint_url": endpoint},
    }
    assert table(site) == table(origin) and contents(site) == contents(origin)
    assert data_keys(site) == data_keys(cloud)

    new = commit(Repository.open(s3_url, endpoint_url=endpoint), ["c1", "c2"], day=6)
    pulled = json.loads(ok(invoke(runner, "--repo", dest, "pull", "--json")).stdout)
    assert (pulled["action"], pulled["commit"], pulled["commits"], pulled["packs"]) == (
        "fast-forward",
        new,
        1,
        1,
    )
    assert site.snapshot().read_image("c2") == blob("c2")
    assert table(site) == table(cloud)

    mine = commit(site, ["l1"], day=7)
    assert push(site).transfer.commits == 1
    assert Repository.open(s3_url, **s3_options).resolve() == mine

    light, _ = clone(s3_url, tmp_path / "light", metadata_only=True, endpoint_url=endpoint)
    assert keys(light, "packs/") == set()
    assert light.snapshot().read_image("l1") == blob("l1") and light.snapshot().read_image(
        "o2"
    ) == blob("o2")
    assert len(keys(light, "blobs/")) == 2
    assert_error(invoke(runner, *base, "push", "cloud", "-q"), 4, "not a fast-forward")
    assert pull(origin, "cloud").action == "fast-forward"
    assert table(origin) == table(site)


# -- 4. a chain of three sites -----------------------------------------------------


def test_chain_of_three_sites(origin, tmp_path):
    a = origin
    b, _ = clone(a.url, tmp_path / "b")
    c, _ = clone(b.url, tmp_path / "c")
    assert c.remotes.all()["origin"].url == b.url

    commit(a, ["a1"], day=2)
    assert pull(b).action == "fast-forward" and pull(c).action == "fast-forward"
    commit(c, ["c1", "c2"], day=3)
    assert push(c).action == "pushed"  # into b
    assert push(b).action == "pushed"  # on into a
    commit(b, ["b1"], day=4)
    assert push(b).commit == reopen(a).resolve()
    assert pull(c).action == "fast-forward"

    expected = ["a1", "b1", "c1", "c2", "o1", "o2", "o3"]
    tips = {reopen(site).resolve() for site in (a, b, c)}
    assert len(tips) == 1
    answers = [reopen(site).snapshot().query().to_pylist() for site in (a, b, c)]
    assert answers[0] == answers[1] == answers[2]
    assert sorted(row["image_id"] for row in answers[0]) == expected
    assert reopen(a).snapshot().read_image("c2") == c.snapshot().read_image("c2") == blob("c2")
    assert c.snapshot().read_image("a1") == blob("a1")


# -- 5. divergent histories ---------------------------------------------------------


def test_divergent_histories_merge_then_fast_forward(origin, tmp_path):
    a = origin
    b, _ = clone(a.url, tmp_path / "b")
    base = a.resolve()
    spring = (T0 + timedelta(days=2), T0 + timedelta(days=3))  # a1, b1, same
    early = (T0, T0 + timedelta(days=1))  # o1, o2
    add_dataset_span(a, "spring", "IFCB1", *spring, description="spring bloom")
    ours_a = commit(a, ["a1", "same"], day=2)
    add_dataset_span(b, "early", "IFCB1", *early, description="first day")
    ours_b = commit(b, ["b1", "same"], day=2)  # "same": the same row and bytes on both sides

    result = pull(b)
    assert result.action == "merge"
    merged = b.odb.get_commit(result.commit)
    assert merged.parents == (ours_b, ours_a)
    assert merged.message == "Merge origin/main into main"
    assert b.resolve() == result.commit
    assert ids(b) == ["a1", "b1", "o1", "o2", "o3", "same"]  # "same" kept once
    assert b.snapshot().images().num_rows == 6
    assert contents(b) == {i: blob(i) for i in ids(b)}
    datasets = b.snapshot().datasets()
    assert set(datasets) == {"spring", "early"}
    assert [(s.start, s.end) for s in datasets["spring"].spans] == [spring]
    assert datasets["spring"].description == "spring bloom"
    assert [(s.start, s.end) for s in datasets["early"].spans] == [early]
    spring_ids = sorted(b.snapshot().query(dataset="spring").column("image_id").to_pylist())
    assert spring_ids == ["a1", "b1", "same"]
    assert sorted(b.snapshot().query(dataset="early").column("image_id").to_pylist()) == [
        "o1",
        "o2",
    ]

    a.remotes.add("b", b.url)
    back = pull(a, "b")
    assert (back.action, back.commit) == ("fast-forward", result.commit)
    assert a.resolve() == b.resolve() == result.commit
    assert a.snapshot().query().to_pylist() == b.snapshot().query().to_pylist()
    assert a.snapshot().datasets() == b.snapshot().datasets()
    assert a.resolve(base) == base and base in {oid for oid, _ in a.log()}
    assert pull(b).action == "up-to-date"
    assert push(b).action == "up-to-date"


def test_same_id_different_bytes_is_a_conflict_and_nothing_moves(runner, origin, tmp_path):
    a = origin
    b, _ = clone(a.url, tmp_path / "b")
    commit(a, ["x1", "clash"], day=2, salt="A:")
    mine = commit(b, ["clash"], day=2, salt="B:")
    before = table(b)
    with pytest.raises(ConflictError) as info:
        pull(b)
    assert "1 image id(s) hold different bytes" in str(info.value) and "clash" in str(info.value)
    assert b.resolve() == mine
    assert table(reopen(b)) == before and b.snapshot().read_image("clash") == blob("clash", "B:")
    assert b.remotes.tracking("origin") == {"main": a.resolve()}  # the fetch half did happen
    assert_error(invoke(runner, "--repo", b.url, "pull", "-q"), 4, "clash", "different bytes")
    assert reopen(b).resolve() == mine
    assert_error(invoke(runner, "--repo", b.url, "push", "-q"), 4, "not a fast-forward")


def test_a_conflicting_merge_writes_no_object(origin, tmp_path):
    a = origin
    b, _ = clone(a.url, tmp_path / "b")
    commit(a, ["clash", "fresh"], day=2, salt="A:")  # one batch: a conflict and a new image
    commit(b, ["clash"], day=2, salt="B:")
    fetch(b)
    before = keys(b, "objects/")
    with pytest.raises(ConflictError):
        pull(b)
    assert keys(b, "objects/") == before


def _classified(image: str, winner: str, score: float) -> dict:
    return {"image_id": image, "winner": winner, "score": score, "model": "m"}


def test_provenance_from_both_sides_merges_once(origin, tmp_path):
    a = origin
    b, _ = clone(a.url, tmp_path / "b")
    shared = _classified("o1", "Diatom", 0.9)
    add_provenance(
        a, "classification", [shared, _classified("o2", "Ciliate", 0.7)], source="clf", run_id="r1"
    )
    add_provenance(
        b, "classification", [shared, _classified("o3", "Dino", 0.6)], source="clf", run_id="r1"
    )
    assert (
        add_provenance(b, "classification", [shared], source="clf", run_id="r1") is None
    )  # nothing new
    a_tip, b_tip = a.resolve(), b.resolve()

    result = pull(b)
    assert result.action == "merge"
    assert b.odb.get_commit(result.commit).parents == (b_tip, a_tip)
    records = b.snapshot().provenance_records("classification").sort_by("image_id")
    assert records.column("image_id").to_pylist() == ["o1", "o2", "o3"]
    assert records.column("winner").to_pylist() == ["Diatom", "Ciliate", "Dino"]
    assert len(set(records.column("record_id").to_pylist())) == 3
    assert [r.values["winner"] for r in b.snapshot().provenance("o1")] == ["Diatom"]
    assert ids(b) == ["o1", "o2", "o3"]

    assert pull(a, b.url).action == "fast-forward"
    again = a.snapshot().provenance_records("classification").sort_by("image_id")
    assert again.column("record_id").to_pylist() == records.column("record_id").to_pylist()


# -- 6. two sites pushing to one remote ----------------------------------------------


def test_second_pusher_is_refused_pulls_and_pushes(origin, tmp_path):
    b, _ = clone(origin.url, tmp_path / "b")
    c, _ = clone(origin.url, tmp_path / "c")
    b_tip = commit(b, ["b1"], day=2)
    c_tip = commit(c, ["c1"], day=3)
    assert push(b).action == "pushed"
    with pytest.raises(ConflictError) as info:
        push(c)
    assert "not a fast-forward" in str(info.value) and "improv pull origin main" in str(info.value)
    assert reopen(origin).resolve() == b_tip
    merged = pull(c)
    assert merged.action == "merge"
    assert push(c).action == "pushed"
    assert reopen(origin).resolve() == merged.commit
    assert pull(b).action == "fast-forward"
    history = {oid for oid, _ in reopen(origin).log()}
    assert {b_tip, c_tip, merged.commit} <= history
    assert ids(reopen(origin)) == ids(b) == ids(c) == ["b1", "c1", "o1", "o2", "o3"]


def test_racing_pushers_one_wins_no_commit_lost(origin, tmp_path, monkeypatch):
    """Both pushers pass the fast-forward check and send their objects; a
    barrier holds them just before the compare-and-swap of the remote branch."""
    b, _ = clone(origin.url, tmp_path / "b")
    c, _ = clone(origin.url, tmp_path / "c")
    tips = {"b": commit(b, ["b1", "b2"], day=2), "c": commit(c, ["c1"], day=3)}
    barrier = threading.Barrier(2, timeout=20)
    cas = LocalStore.compare_and_swap

    def held(self, key, expected, new):
        if str(self.root) == origin.url and key == "refs/heads/main":
            barrier.wait()
        return cas(self, key, expected, new)

    monkeypatch.setattr(LocalStore, "compare_and_swap", held)
    outcome: dict[str, object] = {}

    def run(name, site):
        try:
            outcome[name] = push(site).action
        except Exception as exc:  # noqa: BLE001 - recorded and checked below
            outcome[name] = exc

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("b", b), ("c", c))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    monkeypatch.setattr(LocalStore, "compare_and_swap", cas)
    winners = [n for n, r in outcome.items() if r == "pushed"]
    losers = [n for n, r in outcome.items() if isinstance(r, ConflictError)]
    assert len(winners) == 1 and len(losers) == 1, outcome
    winner, loser = winners[0], losers[0]
    assert "moved concurrently" in str(outcome[loser])
    assert reopen(origin).resolve() == tips[winner]

    site = {"b": b, "c": c}[loser]
    assert pull(site).action == "merge"
    assert push(site).action == "pushed"
    history = {oid for oid, _ in reopen(origin).log()}
    assert set(tips.values()) <= history
    assert ids(reopen(origin)) == ["b1", "b2", "c1", "o1", "o2", "o3"]
    assert contents(reopen(origin)) == {i: blob(i) for i in ["b1", "b2", "c1", "o1", "o2", "o3"]}


# -- 7. an interrupted transfer, resumed ------------------------------------------------


def _failing_writes(monkeypatch, root: str, allowed: int, spare=lambda key: False):
    """Make writes (``put_if_absent``, and ``adopt``: a hard link) to the local
    store at ``root`` fail (StorageError) after ``allowed`` of them, except
    for keys ``spare`` accepts."""
    put, adopt = LocalStore.put_if_absent, LocalStore.adopt
    lock = threading.Lock()
    count = [0]

    def check(self, key):
        if str(self.root) == root and not spare(key):
            with lock:
                count[0] += 1
                over = count[0] > allowed
            if over:
                raise StorageError(f"injected failure writing {key}")

    def failing_put(self, key, data):
        check(self, key)
        return put(self, key, data)

    def failing_adopt(self, source, key):
        check(self, key)
        return adopt(self, source, key)

    monkeypatch.setattr(LocalStore, "put_if_absent", failing_put)
    monkeypatch.setattr(LocalStore, "adopt", failing_adopt)
    return count


def test_interrupted_push_leaves_a_consistent_remote_and_resumes(origin, tmp_path, monkeypatch):
    site, _ = clone(origin.url, tmp_path / "site")
    for day in range(3):
        commit(site, [f"s{day}a", f"s{day}b"], day=10 + day)
    expected = {i: blob(i) for i in ids(site)}
    pristine = tmp_path / "pristine"
    shutil.copytree(origin.url, pristine)
    base_tip = origin.resolve()

    # the reference: an uninterrupted push
    reference = push(site, origin.url)
    full_refs, full_keys = refs_of(origin), keys(origin)
    sent_commits = {object_key(c) for c in stored_commits(origin)} - keys(
        Repository.open(pristine), "objects/"
    )
    assert len(sent_commits) == 3
    writes = (
        reference.transfer.objects + reference.transfer.packs
    )  # one data write per object / pack
    assert (reference.transfer.commits, reference.transfer.packs) == (3, 3)

    for allowed in range(writes):
        shutil.rmtree(origin.url)
        shutil.copytree(pristine, origin.url)
        # index writes are spared here; a pack left without its index is covered below
        with monkeypatch.context() as patch:
            _failing_writes(patch, origin.url, allowed, spare=lambda key: key.endswith(".idx"))
            with pytest.raises(StorageError, match="injected failure"):
                push(site, origin.url)
        remote = Repository.open(origin.url)
        assert remote.resolve() == base_tip, allowed  # the ref did not move
        assert_consistent(remote, expected)
        before = data_keys(remote)

        resumed = push(site, origin.url)
        remote = Repository.open(origin.url)
        arrived = data_keys(remote) - before
        moved = resumed.transfer
        assert moved.commits == len(sent_commits - before), allowed
        assert moved.objects == len({k for k in arrived if k.startswith("objects/")}), allowed
        assert moved.packs == len({k for k in arrived if k.endswith(".idx")}), allowed
        assert moved.bytes == size_of(remote, arrived), allowed
        assert refs_of(remote) == full_refs and keys(remote) == full_keys, allowed
        assert_consistent(remote, expected)


def test_resumed_push_reports_the_pack_it_publishes(origin, tmp_path, monkeypatch):
    site, _ = clone(origin.url, tmp_path / "site")
    mine = commit(site, ["s1"], day=10)
    (pack,) = site.odb.get_commit(mine).batches[0].packs
    with monkeypatch.context() as patch:
        _failing_writes(patch, origin.url, 0, spare=lambda key: not key.endswith(".idx"))
        with pytest.raises(StorageError):
            push(site)
    assert origin.store.exists(pack_key(pack)) and not origin.store.exists(index_key(pack))
    needed, _ = commit_objects(site.odb.get_commit(mine))
    already = [o for o in needed if origin.odb.has(o)]  # loose objects: truly already there
    resumed = push(site).transfer
    assert origin.store.exists(index_key(pack)) and reopen(origin).snapshot().read_image(
        "s1"
    ) == blob("s1")
    assert (resumed.commits, resumed.packs, resumed.skipped) == (1, 1, len(already))
    assert resumed.bytes >= origin.store.size(index_key(pack)) + origin.store.size(object_key(mine))


# -- 8. a remote serving corrupt bytes ---------------------------------------------------


def test_pull_of_a_corrupt_pack_fails_and_moves_nothing(runner, origin, tmp_path):
    site, _ = clone(origin.url, tmp_path / "site")
    tip = site.resolve()
    new = commit(origin, ["n1", "n2"], day=4)
    (pack,) = origin.odb.get_commit(new).batches[0].packs
    flip_byte(Path(origin.url) / pack_key(pack), 5)

    with pytest.raises(IntegrityError, match=f"pack {pack} .* is corrupt"):
        pull(site)
    assert site.resolve() == tip
    assert site.remotes.tracking("origin") == {"main": tip}
    assert not site.odb.has(new)
    assert not site.store.exists(index_key(pack))
    assert_error(invoke(runner, "--repo", site.url, "pull", "-q"), 5, "corrupt")
    assert_error(invoke(runner, "--repo", site.url, "fetch", "-q"), 5, "corrupt")
    assert reopen(site).resolve() == tip and not site.odb.has(new)
    assert_consistent(site, {i: blob(i) for i in ["o1", "o2", "o3"]})

    flip_byte(Path(origin.url) / pack_key(pack), 5)  # repaired: the pull now completes
    assert pull(site).commit == new
    assert site.snapshot().read_image("n2") == blob("n2")


def test_clone_of_a_corrupt_manifest_fails_and_references_nothing(runner, origin, tmp_path):
    manifest = origin.odb.get_commit(origin.resolve()).batches[0].manifest
    path = Path(origin.url) / object_key(manifest)
    flip_byte(path, 0)

    dest = tmp_path / "clone"
    with pytest.raises(IntegrityError, match=f"object {manifest} .* is corrupt"):
        clone(origin.url, dest)
    assert not dest.exists()  # nothing left behind
    assert_error(invoke(runner, "clone", origin.url, tmp_path / "cli-clone", "-q"), 5, "corrupt")
    assert not (tmp_path / "cli-clone").exists()

    flip_byte(path, 0)  # repaired: cloning again into the same place completes
    again, result = clone(origin.url, dest)
    assert result.action == "cloned" and again.resolve() == origin.resolve()
    assert contents(again) == contents(origin)


# -- 9. metadata-only clones ----------------------------------------------------------------


def test_metadata_only_clone_reads_on_demand_and_caches(runner, origin, tmp_path):
    commit(origin, ["d2"], day=2)
    dest = tmp_path / "light"
    cloned = json.loads(
        ok(invoke(runner, "clone", origin.url, dest, "--metadata-only", "--json")).stdout
    )
    assert (cloned["commits"], cloned["packs"]) == (3, 0)
    site = Repository.open(dest)
    assert keys(site, "packs/") == set() and keys(site, "blobs/") == set()
    assert site.remotes.promisor == "origin"
    listed = json.loads(ok(invoke(runner, "--repo", dest, "remote", "list", "--json")).stdout)
    assert listed["origin"]["image_bytes_from_here"] is True
    assert table(site) == table(origin)
    assert site.snapshot().query().to_pylist() == origin.snapshot().query().to_pylist()

    row = {r["image_id"]: r for r in table(site)}["o2"]
    assert site.snapshot().read_image("o2") == blob("o2")
    assert keys(site, "blobs/") == {blob_cache_key(row["blob_id"])}
    assert site.store.get(blob_cache_key(row["blob_id"])) == blob("o2")
    assert keys(site, "packs/") == set()

    new = commit(origin, ["d3"], day=3)
    assert pull(site).commit == new
    assert keys(site, "packs/") == set()
    assert site.snapshot().read_image("d3") == blob("d3")
    mine = commit(site, ["l1"], day=4)  # a commit made here pushes its own pack
    (pack,) = site.odb.get_commit(mine).batches[0].packs
    assert keys(site, "packs/") == {pack_key(pack), index_key(pack)}
    assert push(site).transfer.packs == 1
    assert reopen(origin).snapshot().read_image("l1") == blob("l1")

    shutil.move(origin.url, tmp_path / "gone")  # the origin becomes unreachable
    offline = Repository.open(dest)
    assert offline.snapshot().read_image("o2") == blob("o2")
    assert offline.snapshot().read_image("d3") == blob("d3")
    with pytest.raises(NotFoundError):
        offline.snapshot().read_image("o1")
    assert_error(invoke(runner, "--repo", dest, "remote", "remove", "origin"), 4, "metadata-only")


def test_fetch_blobs_copies_only_the_selected_packs(runner, origin, tmp_path):
    day2 = commit(origin, ["d2a", "d2b"], day=2)
    day4 = commit(origin, ["d4"], day=4)
    site, _ = clone(origin.url, tmp_path / "light", metadata_only=True)
    packs = {oid: origin.odb.get_commit(oid).batches[0].packs[0] for oid in (day2, day4)}

    rows = site.snapshot().query(start=T0 + timedelta(days=2), end=T0 + timedelta(days=3))
    assert sorted(rows.column("image_id").to_pylist()) == ["d2a", "d2b"]
    moved = fetch_blobs(site, rows)
    assert (moved.packs, moved.skipped) == (1, 0)
    assert keys(site, "packs/") == {pack_key(packs[day2]), index_key(packs[day2])}
    assert moved.bytes == size_of(site, keys(site, "packs/"))
    assert fetch_blobs(site, rows).packs == 0

    out = json.loads(
        ok(
            invoke(
                runner,
                "--repo",
                site.url,
                "fetch",
                "--blobs",
                "--start",
                "2024-05-05T00:00:00Z",
                "--end",
                "2024-05-06T00:00:00Z",
                "--json",
            )
        ).stdout
    )
    assert out == {
        "commits": 0,
        "objects": 0,
        "packs": 1,
        "bytes": out["bytes"],
        "skipped": 0,
        "bundles": 0,
    }
    assert keys(site, "packs/") == {pack_key(p) for p in packs.values()} | {
        index_key(p) for p in packs.values()
    }
    assert out["bytes"] == size_of(site, {pack_key(packs[day4]), index_key(packs[day4])})

    shutil.move(origin.url, tmp_path / "gone")
    offline = Repository.open(site.url)
    assert offline.snapshot().read_image("d2b") == blob("d2b") and offline.snapshot().read_image(
        "d4"
    ) == blob("d4")
    assert keys(offline, "blobs/") == set()  # read from the fetched packs, not the cache
    with pytest.raises(NotFoundError):
        offline.snapshot().read_image("o1")

    full, _ = clone(str(tmp_path / "gone"), tmp_path / "full")
    with pytest.raises(InvalidInputError, match="not a metadata-only clone"):
        fetch_blobs(full, full.snapshot().query())


def test_metadata_only_clone_refuses_corrupt_remote_bytes(origin, tmp_path):
    site, _ = clone(origin.url, tmp_path / "light", metadata_only=True)
    row = {r["image_id"]: r for r in table(origin)}["o2"]
    flip_byte(Path(origin.url) / pack_key(row["pack"]), row["offset"] + 3)

    with pytest.raises(IntegrityError, match="from the remote is corrupt"):
        site.snapshot().read_image("o2")
    assert keys(site, "blobs/") == set()
    rows = site.snapshot().query(end=T0 + timedelta(days=1))  # o1, o2: the corrupt pack
    assert sorted(rows.column("image_id").to_pylist()) == ["o1", "o2"]
    with pytest.raises(IntegrityError, match=f"pack {row['pack']} .* is corrupt"):
        fetch_blobs(site, rows)
    assert keys(site, "packs/") == set()
    assert site.snapshot().read_image("o3") == blob("o3")  # another pack, intact
    assert keys(site, "blobs/") == {blob_cache_key(hashlib.sha256(blob("o3")).hexdigest())}


# -- 10. validation ------------------------------------------------------------------------


def test_another_repository_is_refused_and_nothing_travels(runner, origin, tmp_path):
    stranger = Repository.init(tmp_path / "stranger")
    commit(stranger, ["x1"], day=9)
    mine, theirs = data_keys(origin), data_keys(stranger)
    tip, their_tip = origin.resolve(), stranger.resolve()

    for run in (
        lambda: push(origin, stranger.url),
        lambda: pull(origin, stranger.url),
        lambda: fetch(origin, stranger.url),
    ):
        with pytest.raises(ConflictError, match=f"holds another repository .*{stranger.id}"):
            run()
    origin.remotes.add("wrong", stranger.url)
    with pytest.raises(ConflictError, match="nothing was transferred"):
        push(origin, "wrong")
    assert_error(
        invoke(runner, "--repo", origin.url, "push", "wrong", "-q"), 4, "another repository"
    )
    assert_error(
        invoke(runner, "--repo", origin.url, "pull", stranger.url, "-q"), 4, "another repository"
    )
    assert data_keys(origin) == mine and data_keys(stranger) == theirs
    assert origin.resolve() == tip and stranger.resolve() == their_tip
    assert keys(origin, "refs/remotes/") == set()

    site, _ = clone(origin.url, tmp_path / "site")
    cloned = keys(site)
    with pytest.raises(InvalidInputError, match="not empty"):
        clone(stranger.url, site.url)
    assert site.resolve() == tip and keys(site) == cloned


def test_push_initializes_an_empty_local_directory(origin, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = push(origin, str(empty))
    assert (result.action, result.transfer.commits) == ("pushed", 2)
    copy = Repository.open(empty)
    assert copy.id == origin.id and copy.branches() == origin.branches()
    assert contents(copy) == contents(origin)


def test_push_refuses_a_non_empty_directory_that_is_not_a_repository(origin, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("not a repository")
    with pytest.raises(InvalidInputError, match="neither an improv repository nor empty"):
        push(origin, str(data))
    assert sorted(os.listdir(data)) == ["notes.txt"]


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "", "x y"])
def test_invalid_remote_names_are_refused(runner, origin, tmp_path, name):
    with pytest.raises(InvalidInputError):
        origin.remotes.add(name, str(tmp_path))
    assert origin.remotes.all() == {}
    if name:
        assert_error(
            invoke(runner, "--repo", origin.url, "remote", "add", name, tmp_path), 2, "invalid"
        )
    assert not origin.store.exists("remotes.json")


@pytest.mark.parametrize("url", ["ftp://host/repo", "gs://bucket/repo", "sftp://host/repo"])
def test_unsupported_url_schemes_are_refused(runner, origin, tmp_path, url):
    with pytest.raises(InvalidInputError, match="unsupported remote URL"):
        origin.remotes.add("web", url)
    for run in (lambda: push(origin, url), lambda: pull(origin, url), lambda: fetch(origin, url)):
        with pytest.raises(InvalidInputError, match="unsupported remote URL"):
            run()
    with pytest.raises(InvalidInputError, match="unsupported remote URL"):
        clone(url, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert_error(
        invoke(runner, "--repo", origin.url, "remote", "add", "web", url),
        2,
        "unsupported remote URL",
    )
    assert_error(
        invoke(runner, "--repo", origin.url, "push", url, "-q"), 2, "unsupported remote URL"
    )
    assert_error(invoke(runner, "clone", url, tmp_path / "cli"), 2, "unsupported remote URL")
    assert origin.remotes.all() == {}


def test_unknown_remote_and_missing_branch(origin, tmp_path):
    with pytest.raises(NotFoundError, match="no remote named 'origin'"):
        push(origin)
    with pytest.raises(NotFoundError, match="neither a remote"):
        pull(origin, "nowhere")
    site, _ = clone(origin.url, tmp_path / "site")
    with pytest.raises(NotFoundError, match="no branch 'nope'"):
        pull(site, branch="nope")
    with pytest.raises(NotFoundError, match="has no branch 'nope'"):
        clone(origin.url, tmp_path / "other", branch="nope")
