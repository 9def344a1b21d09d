"""``fsck`` finds what is missing or corrupt; ``gc`` removes only old,
unreachable objects."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone

import pytest
from conftest import invoke, ok

from improv_vcs import Repository, add_provenance
from improv_vcs.core.errors import InvalidInputError
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.maintenance.gc import gc, parse_duration
from improv_vcs.storage.fence import STATE_KEY
from improv_vcs.storage.objects import object_key
from improv_vcs.storage.packs import index_key, pack_key
from improv_vcs.sync.sites import clone

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def _repo(path, commits: int = 2) -> Repository:
    repo = Repository.init(path)
    for n in range(commits):
        with repo.transaction(message=f"c{n}") as tx:
            tx.append_bytes(
                "CAM",
                [{"image_id": f"c{n}i{k}", "timestamp": T0} for k in range(3)],
                [f"image {n} {k}".encode() * 50 for k in range(3)],
            )
    add_provenance(
        repo, "classification", [{"image_id": "c0i0", "winner": "A", "model": "m"}], source="s"
    )
    return repo


def _flip(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _first_pack(repo: Repository) -> str:
    return repo.snapshot().reader.batches.column("packs")[0].as_py()[0]


def test_a_healthy_repository_is_clean(tmp_path, runner):
    repo = _repo(tmp_path / "repo")
    report = fsck(repo, full=True)
    assert report.ok, report.problems
    assert (report.commits, report.packs) == (3, 2)
    assert report.bytes_hashed == sum(
        repo.store.size(pack_key(p))
        for p in {_first_pack(repo), *repo.snapshot().reader.batches.column("packs")[1].as_py()}
    )
    out = json.loads(ok(invoke(runner, "--repo", repo.url, "fsck", "--full", "--json")).stdout)
    assert out["ok"] is True and out["commits"] == 3


def test_corrupt_pack_bytes_are_found_only_by_a_full_check(tmp_path, runner):
    repo = _repo(tmp_path / "repo")
    pack = _first_pack(repo)
    _flip(tmp_path / "repo" / pack_key(pack))
    assert fsck(repo).ok  # presence and sizes are right
    problems = fsck(repo, full=True).problems
    assert [(p.what, p.object_id) for p in problems] == [("pack", pack)]
    result = invoke(runner, "--repo", repo.url, "fsck", "--full")
    assert result.exit_code == 5 and pack in result.stdout


@pytest.mark.parametrize("victim", ["manifest", "pack index", "commit"])
def test_missing_objects_are_named(tmp_path, victim):
    repo = _repo(tmp_path / "repo")
    tip = repo.odb.get_commit(repo.resolve())
    first = repo.odb.get_commit(tip.parents[0])
    oids = {
        "manifest": first.batches[0].manifest,
        "pack index": first.batches[0].packs[0],
        "commit": tip.parents[0],
    }
    key = index_key(oids[victim]) if victim == "pack index" else object_key(oids[victim])
    os.remove(tmp_path / "repo" / key)
    problems = fsck(repo).problems
    assert problems, victim
    assert oids[victim] in {p.object_id for p in problems}, problems


def test_a_truncated_manifest_and_a_dangling_ref_are_reported(tmp_path):
    repo = _repo(tmp_path / "repo")
    manifest = repo.snapshot().reader.batches.column("manifest")[0].as_py()
    path = tmp_path / "repo" / object_key(manifest)
    path.write_bytes(path.read_bytes()[:100])
    repo.refs.set_branch("ghost", None, "ab" * 32)
    found = {(p.what, p.object_id) for p in fsck(repo).problems}
    assert ("manifest", manifest) in found
    assert ("ref", "ab" * 32) in found


def test_a_metadata_only_clone_is_clean_without_packs(tmp_path):
    _repo(tmp_path / "origin")
    partial, _ = clone(str(tmp_path / "origin"), tmp_path / "partial", metadata_only=True)
    report = fsck(partial, full=True)
    assert report.ok and report.packs == 0 and report.packs_remote == 2


def _keys(repo) -> set[str]:
    """Every key but gc's own state."""
    return set(repo.store.list("")) - {STATE_KEY}


def test_gc_removes_only_old_unreachable_objects(tmp_path, runner):
    repo = _repo(tmp_path / "repo")
    tx = repo.transaction(message="abandoned", pack_size=1)
    tx.append_bytes("CAM", [{"image_id": "lost", "timestamp": T0}], [b"lost image" * 100])
    orphan = tx._packer.finish()[0]  # published, never referenced
    tx.abort()
    stale = tmp_path / "repo" / "objects" / ".tmp-stale"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    before = _keys(repo)

    young = gc(repo)  # default grace 24 h: the orphan is too young to touch
    assert young.removed == [] and young.kept_young == 2
    assert gc(repo, grace=3600, dry_run=True).temporaries == ["objects/.tmp-stale"]
    assert stale.exists() and _keys(repo) == before

    preview = json.loads(
        ok(invoke(runner, "--repo", repo.url, "gc", "--grace", "0", "--dry-run", "--json")).stdout
    )
    assert preview["removed"] == [index_key(orphan), pack_key(orphan)]
    assert _keys(repo) == before

    done = gc(repo, grace=0)
    assert done.removed == [index_key(orphan), pack_key(orphan)]
    assert not stale.exists()
    assert _keys(repo) == before - {index_key(orphan), pack_key(orphan)}
    assert fsck(repo, full=True).ok
    assert sorted(repo.snapshot().images().column("image_id").to_pylist()) == sorted(
        f"c{n}i{k}" for n in range(2) for k in range(3)
    )
    assert gc(repo, grace=0).removed == []


def test_gc_keeps_what_tags_and_other_branches_reach(tmp_path):
    repo = _repo(tmp_path / "repo")
    first = list(repo.log())[-1][0]
    repo.create_tag("old", first, message="the first commit")
    repo.create_branch("side", first)
    with repo.transaction(branch="side", message="side work") as tx:
        tx.append_bytes("CAM", [{"image_id": "side", "timestamp": T0}], [b"side"])
    assert gc(repo, grace=0).removed == []
    assert fsck(repo, full=True).ok


@pytest.mark.parametrize(
    "text, seconds", [("0", 0), ("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1h", "h"])
def test_bad_durations(text):
    with pytest.raises(InvalidInputError, match="grace"):
        parse_duration(text)
