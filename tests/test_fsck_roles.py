"""fsck checks each object in the role it is reached in: a branch (or a
remote-tracking ref) must point at a commit, a tag at a tag object or a
commit, a tag object at a commit, and a commit's parents must be commits,
even when the same object was already checked as a manifest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from conftest import invoke

from improv_vcs import Repository
from improv_vcs.core.model import Tag
from improv_vcs.maintenance.fsck import Problem, fsck
from improv_vcs.storage.refs import HEADS, TAGS

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)


def commit(repo: Repository, ids, day: int) -> str:
    rows = [
        {"image_id": i, "timestamp": T0 + timedelta(days=day, seconds=n)} for n, i in enumerate(ids)
    ]
    with repo.transaction(message=f"day {day}") as tx:
        tx.append_bytes("IFCB1", rows, [f"pixels of {i}".encode() * 9 for i in ids])
    assert tx.commit_id is not None
    return tx.commit_id


@pytest.fixture
def two(tmp_path):
    """Two commits on main, a lightweight and an annotated tag; fsck is clean."""
    repo = Repository.init(tmp_path / "repo")
    c1 = commit(repo, ["x1"], day=1)
    c2 = commit(repo, ["x2"], day=2)
    repo.create_tag("v1", c1)
    repo.create_tag("v2", c2, message="release")
    assert fsck(Repository.open(repo.url)).ok
    return repo, c1, c2


def manifest_of(repo: Repository, oid: str) -> str:
    return repo.odb.get_commit(oid).batches[0].manifest


def write_ref(repo: Repository, key: str, target: str) -> None:
    repo.store.compare_and_swap(key, None, f"{target}\n".encode())


def problems(repo: Repository) -> list[Problem]:
    report = fsck(Repository.open(repo.url))
    assert not report.ok
    return report.problems


def test_a_branch_pointing_at_a_manifest(runner, two):
    repo, c1, c2 = two
    manifest = manifest_of(repo, c2)  # also met as c2's manifest
    write_ref(repo, HEADS + "bad", manifest)
    assert problems(repo) == [
        Problem(
            manifest,
            "ref",
            "refs/heads/bad points at a data object (manifest, segment or table), not a commit",
        )
    ]
    result = invoke(runner, "--repo", repo.url, "fsck", "-q")
    assert result.exit_code == 5 and "refs/heads/bad" in result.stdout and manifest in result.stdout


def test_a_branch_pointing_at_a_tag_object_and_a_tag_at_a_manifest(two):
    repo, c1, c2 = two
    tag_object = repo.refs.tag("v2")
    manifest = manifest_of(repo, c1)
    write_ref(repo, HEADS + "peeled", tag_object)
    write_ref(repo, TAGS + "light", manifest)
    assert sorted(problems(repo), key=str) == sorted(
        [
            Problem(tag_object, "ref", "refs/heads/peeled points at a tag, not a commit"),
            Problem(
                manifest,
                "ref",
                "refs/tags/light points at a data object (manifest, segment or table), not a tag "
                "or a commit",
            ),
        ],
        key=str,
    )


def test_a_remote_tracking_ref_pointing_at_a_manifest(two):
    repo, c1, c2 = two
    manifest = manifest_of(repo, c2)
    repo.remotes.add("origin", str(repo.url) + "-elsewhere", {})
    repo.remotes.set_tracking("origin", "main", manifest)
    assert problems(repo) == [
        Problem(
            manifest,
            "ref",
            "refs/remotes/origin/main points at a data object (manifest, segment or table), not a "
            "commit",
        )
    ]


def test_a_tag_object_whose_target_is_a_manifest(two):
    repo, c1, c2 = two
    manifest = manifest_of(repo, c2)
    bad = repo.odb.put_object(
        Tag(name="bad", target=manifest, tagger="t", time=T0, message="points at a manifest")
    )
    write_ref(repo, TAGS + "bad", bad)
    nested = repo.odb.put_object(
        Tag(
            name="nested", target=repo.refs.tag("v2"), tagger="t", time=T0, message="a tag of a tag"
        )
    )
    write_ref(repo, TAGS + "nested", nested)
    assert sorted(problems(repo), key=str) == sorted(
        [
            Problem(
                bad,
                "tag",
                f"the tag object of refs/tags/bad targets a data object {manifest[:12]}, not a "
                f"commit",
            ),
            Problem(
                nested,
                "tag",
                f"the tag object of refs/tags/nested targets a tag {repo.refs.tag('v2')[:12]}, "
                f"not a commit",
            ),
        ],
        key=str,
    )


def test_a_commit_whose_parent_is_not_a_commit(two):
    repo, c1, c2 = two
    tip = repo.odb.get_commit(c2)
    manifest = manifest_of(repo, c2)  # met first as this commit's own manifest
    forged = repo.odb.put_object(
        tip.model_copy(update={"parents": (manifest,), "message": "forged"})
    )
    write_ref(repo, HEADS + "forged", forged)
    tag_parent = repo.odb.put_object(
        tip.model_copy(update={"parents": (repo.refs.tag("v2"),), "message": "tag parent"})
    )
    write_ref(repo, HEADS + "tagged", tag_parent)
    assert sorted(problems(repo), key=str) == sorted(
        [
            Problem(manifest, "commit", f"parent of {forged[:12]} is a data object, not a commit"),
            Problem(
                repo.refs.tag("v2"), "commit", f"parent of {tag_parent[:12]} is a tag, not a commit"
            ),
        ],
        key=str,
    )


def test_a_clean_repository_counts_commits_once(two):
    repo, c1, c2 = two
    repo.create_branch("dev", c1)
    report = fsck(Repository.open(repo.url))
    assert report.ok and report.commits == 2 and report.refs == 4
