"""Ref names never shadow revisions: no new branch or tag may be named
``HEAD`` or like a commit id (or a prefix of one), a branch and a tag never
share a name, and a full commit id always names that commit even where a
legacy ref of that name was written directly into the store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from conftest import assert_error, invoke, ok

from improv_vcs import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    Repository,
    cite,
)
from improv_vcs.core.ids import new_ref_name, ref_name
from improv_vcs.service.app import create_app
from improv_vcs.service.auth import Access
from improv_vcs.service.server import BackgroundServer
from improv_vcs.storage.refs import HEADS, TAGS

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)


def blob(image_id: str) -> bytes:
    return f"pixels of {image_id}|".encode() * 20


def commit(repo: Repository, ids, day: int) -> str:
    rows = [
        {"image_id": i, "timestamp": T0 + timedelta(days=day, seconds=n)} for n, i in enumerate(ids)
    ]
    with repo.transaction(message=f"day {day}") as tx:
        tx.append_bytes("IFCB1", rows, [blob(i) for i in ids])
    assert tx.commit_id is not None
    return tx.commit_id


@pytest.fixture
def three(tmp_path):
    """A local repository with three commits on main: c1 (x1), c2 (+x2), c3 (+x3)."""
    repo = Repository.init(tmp_path / "repo")
    ids = [commit(repo, [f"x{n}"], day=n) for n in (1, 2, 3)]
    return repo, ids


def state(repo: Repository) -> tuple[dict[str, bytes], set[str]]:
    """Every ref's bytes and every store key: what a refused command must not change."""
    keys = set(repo.store.list(""))
    return {k: repo.store.get(k) for k in keys if k.startswith("refs/")}, keys


def legacy_ref(repo: Repository, key: str, target: str) -> None:
    """A ref an older version could have written: straight into the store."""
    repo.store.compare_and_swap(key, None, f"{target}\n".encode())


def image_ids(repo: Repository, at: str) -> list[str]:
    return sorted(repo.snapshot(at).images().column("image_id").to_pylist())


def shadowing_names(ids: list[str]) -> list[str]:
    c1 = ids[0]
    return ["HEAD", "head", "Head", c1, c1[:4], c1[:12], "deadbeef", "0123"]


# -- the validator ---------------------------------------------------------------------


def test_new_ref_name_refuses_names_that_read_as_revisions():
    for name in ("HEAD", "head", "HeAd"):
        with pytest.raises(
            InvalidInputError, match=r"invalid ref name .*HEAD names the default branch"
        ):
            new_ref_name(name)
    for name in ("abcd", "0123", "deadbeef", "ab" * 32, "0" * 40):
        with pytest.raises(
            InvalidInputError,
            match=r"invalid ref name .*4 to 64 hex digits would be read as a commit id",
        ):
            new_ref_name(name)
    for name in ("main~1", "v1~", "a" * 201, "../x", "a..b", ""):
        with pytest.raises(InvalidInputError, match="invalid ref name"):
            new_ref_name(name)
    # not revisions: too short, too long, upper case, not hex, or with a '/' or other character
    for name in (
        "main",
        "v1.0",
        "abc",
        "ab" * 32 + "a",
        "ABCD",
        "DeadBeef",
        "abcg",
        "abcd/x",
        "x/abcd",
        "cafe-1",
        "HEADS",
        "HEAD-1",
        "_abcd",
    ):
        assert new_ref_name(name) == name
    # reading an existing ref is not restricted
    for name in ("HEAD", "abcd", "ab" * 32):
        assert ref_name(name) == name


def test_check_new_name_refuses_the_other_kinds_name(three):
    repo, (c1, c2, c3) = three
    repo.create_branch("dev", c1)
    repo.create_tag("v1", c2)
    assert repo.refs.check_new_name("branch", "feature") == "feature"
    assert repo.refs.check_new_name("tag", "v2") == "v2"
    assert repo.refs.check_new_name("branch", "dev") == "dev"  # same kind: the write itself decides
    with pytest.raises(
        InvalidInputError, match=r"^a tag named 'v1' exists; branch and tag names must differ$"
    ):
        repo.refs.check_new_name("branch", "v1")
    with pytest.raises(
        InvalidInputError, match=r"^a branch named 'dev' exists; branch and tag names must differ$"
    ):
        repo.refs.check_new_name("tag", "dev")
    with pytest.raises(InvalidInputError, match="commit id"):
        repo.refs.check_new_name("tag", c1[:8])
    with pytest.raises(InvalidInputError, match="kind"):
        repo.refs.check_new_name("remote", "x")  # type: ignore[arg-type]


# -- refused through the Python API ------------------------------------------------------


def test_shadowing_names_are_refused_by_the_python_api(three):
    repo, ids = three
    before = state(repo)
    tip = repo.resolve()
    for name in shadowing_names(ids):
        for attempt in (
            lambda name=name: repo.create_branch(name),
            lambda name=name: repo.create_branch(name, ids[0]),
            lambda name=name: repo.create_tag(name),
            lambda name=name: repo.create_tag(name, message="annotated"),
            lambda name=name: repo.create_tag(name, title="A release", authors=("A. Author",)),
            lambda name=name: repo.refs.set_branch(name, None, tip),
            lambda name=name: repo.refs.create_tag(name, tip),
        ):
            with pytest.raises(InvalidInputError, match="invalid ref name"):
                attempt()
    assert state(repo) == before  # no ref, and no tag object either


def test_a_tag_and_a_branch_never_share_a_name(three):
    repo, (c1, c2, c3) = three
    repo.create_branch("dev", c1)
    repo.create_tag("v1", c2)
    repo.create_tag("v2", c2, message="release")
    before = state(repo)
    for attempt in (
        lambda: repo.create_tag("dev"),
        lambda: repo.create_tag("dev", message="x"),
        lambda: repo.refs.create_tag("dev", c3),
    ):
        with pytest.raises(
            InvalidInputError,
            match=r"^a branch named 'dev' exists; branch and tag names must differ$",
        ):
            attempt()
    for name in ("v1", "v2"):
        for attempt in (
            lambda name=name: repo.create_branch(name),
            lambda name=name: repo.refs.set_branch(name, None, c3),
        ):
            with pytest.raises(
                InvalidInputError,
                match=rf"^a tag named '{name}' exists; branch and tag names must differ$",
            ):
                attempt()
    assert state(repo) == before
    # the same kind keeps its own errors
    with pytest.raises(ConflictError, match="already exists"):
        repo.create_branch("dev")
    with pytest.raises(ReadOnlyError, match="tags never move"):
        repo.create_tag("v1", c3)
    assert repo.resolve("dev") == c1 and repo.resolve("v1") == c2 and repo.resolve("v2") == c2


def test_an_existing_legacy_branch_still_moves(three):
    repo, (c1, c2, c3) = three
    legacy_ref(repo, HEADS + "abcd1234", c1)
    assert repo.refs.branch("abcd1234") == c1
    repo.refs.set_branch("abcd1234", c1, c2)  # a move is not re-validated
    assert repo.refs.branch("abcd1234") == c2
    assert repo.branches() == {"main": c3, "abcd1234": c2}


# -- refused through the CLI -------------------------------------------------------------


def test_shadowing_names_are_refused_by_the_cli(runner, three):
    repo, ids = three
    url = repo.url
    ok(invoke(runner, "--repo", url, "branch", "dev", ids[0]))
    ok(invoke(runner, "--repo", url, "tag", "v1", ids[1]))
    before = state(repo)
    for name in shadowing_names(ids):
        hint = (
            "HEAD names the default branch"
            if name.upper() == "HEAD"
            else "would be read as a commit id"
        )
        for args in (
            ["branch", name],
            ["branch", name, ids[0]],
            ["tag", name],
            ["tag", name, "-m", "release"],
        ):
            assert_error(invoke(runner, "--repo", url, *args), 2, "invalid ref name", hint)
    assert_error(
        invoke(runner, "--repo", url, "tag", "dev"), 2, "a branch named 'dev' exists", "must differ"
    )
    assert_error(
        invoke(runner, "--repo", url, "tag", "dev", "-m", "x"), 2, "a branch named 'dev' exists"
    )
    assert_error(
        invoke(runner, "--repo", url, "branch", "v1"), 2, "a tag named 'v1' exists", "must differ"
    )
    assert state(repo) == before


# -- revision precedence ---------------------------------------------------------------------


def test_a_full_commit_id_is_never_shadowed_by_a_legacy_ref(three):
    repo, (c1, c2, c3) = three
    legacy_ref(repo, HEADS + c1, c3)  # a branch named like c1, pointing at c3
    legacy_ref(repo, TAGS + c2, c3)  # a tag named like c2, pointing at c3
    assert repo.refs.branch(c1) == c3 and repo.refs.tag(c2) == c3  # still readable by name
    assert repo.resolve(c1) == c1
    assert repo.resolve(c2) == c2
    assert repo.resolve(f"{c2}~1") == c1
    assert image_ids(repo, c1) == ["x1"]
    assert image_ids(repo, c2) == ["x1", "x2"]
    assert repo.snapshot(c1).count() == 1


def test_head_is_the_default_branch_then_branches_before_tags_before_prefixes(three):
    repo, (c1, c2, c3) = three
    legacy_ref(repo, HEADS + "HEAD", c1)
    legacy_ref(repo, TAGS + "HEAD", c2)
    legacy_ref(repo, TAGS + "main", c1)
    legacy_ref(repo, HEADS + c3[:8], c1)
    legacy_ref(repo, TAGS + c2[:8], c1)
    legacy_ref(repo, HEADS + "both", c1)
    legacy_ref(repo, TAGS + "both", c2)
    assert repo.resolve("HEAD") == repo.resolve() == repo.resolve("main") == c3
    assert repo.resolve("HEAD~1") == c2
    assert repo.resolve("both") == c1  # a branch before a tag
    assert repo.resolve(c3[:8]) == c1  # a (legacy) branch before a prefix
    assert repo.resolve(c2[:8]) == c1  # a (legacy) tag before a prefix
    assert repo.resolve(c3[:9]) == c3  # no ref of that name: the prefix


def test_head_names_the_default_branch_only(three):
    repo, (c1, c2, c3) = three
    repo.create_branch("dev", c2)
    repo.store.delete(HEADS + "main")
    legacy_ref(repo, TAGS + "main", c1)
    with pytest.raises(NotFoundError, match="no branch, tag or commit named 'main'"):
        repo.resolve("HEAD")  # a tag named like the default branch is not HEAD
    assert repo.resolve("main") == c1 and repo.resolve("dev") == c2


def test_query_at_a_commit_id_under_a_legacy_ref_via_the_cli(runner, three):
    repo, (c1, c2, c3) = three
    legacy_ref(repo, HEADS + c1, c3)
    assert ok(invoke(runner, "--repo", repo.url, "query", "--count", "--at", c1)).stdout == "1\n"
    assert ok(invoke(runner, "--repo", repo.url, "query", "--count", "--at", c2)).stdout == "2\n"


def test_a_citation_verifies_under_a_legacy_ref_named_like_its_commit(three):
    repo, (c1, c2, c3) = three
    pinned = repo.snapshot(c1).cite().pinned
    assert pinned.commit == c1 and pinned.count == 1
    legacy_ref(repo, HEADS + c1, c3)
    verified = cite.verify(Repository.open(repo.url), pinned)
    assert (verified.commit, verified.count) == (c1, 1)


def test_http_answers_at_a_full_id_for_that_commit(three):
    repo, (c1, c2, c3) = three
    legacy_ref(repo, HEADS + c1, c3)
    legacy_ref(repo, TAGS + c2, c3)
    app = create_app(repo.url, Access((), anonymous_read=True))
    with BackgroundServer(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        found = client.get("/v1/images", params={"at": c1, "count": "true"})
        assert found.status_code == 200 and found.json() == {"count": 1}
        assert client.get("/v1/images", params={"at": c2, "count": "true"}).json() == {"count": 2}
        assert client.get("/v1/images/x3", params={"at": c1}).status_code == 404
        data = client.get("/v1/images/x1/data", params={"at": c1})
        assert data.status_code == 200 and data.content == blob("x1")
        assert data.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert (
            client.get("/v1/images/x1/data", params={"at": c1[:12]}).headers["cache-control"]
            == "no-cache"
        )
        assert (
            client.get("/v1/images/x1/data", params={"at": f"{c2}~1"}).headers["cache-control"]
            == "no-cache"
        )
        assert client.get("/v1/images/x3/data", params={"at": c1}).status_code == 404


def test_http_refuses_creating_a_shadowing_ref(three):
    from improv_vcs.storage.http_store import HttpStore

    repo, (c1, c2, c3) = three
    token = "write-token-0123456789abcdef"
    from improv_vcs.service.auth import TokenEntry

    app = create_app(repo.url, Access((TokenEntry(name="w", token=token, scopes=("write",)),)))
    before = state(repo)
    with BackgroundServer(app) as base:
        store = HttpStore(base, token=token)
        for key in (HEADS + c1[:8], HEADS + "HEAD", TAGS + c2, TAGS + "main"):
            with pytest.raises(InvalidInputError):
                store.compare_and_swap(key, None, f"{c1}\n".encode())
    assert state(repo) == before


def test_refs_from_an_older_site_that_could_shadow_are_left_out_with_a_note(three, tmp_path):
    from improv_vcs.sync.sites import clone, fetch

    repo, (c1, c2, c3) = three
    legacy_ref(repo, TAGS + "abcd", c2)
    legacy_ref(repo, HEADS + "HEAD", c1)
    copy, result = clone(repo.url, tmp_path / "copy")
    assert copy.refs.branches() == {"main": c3} and copy.refs.tags() == {}
    assert sorted(n.split(" was")[0] for n in result.notes) == ["'HEAD'", "'abcd'"]
    again = fetch(copy, "origin")
    assert [n.split(" was")[0] for n in again.notes] == ["'abcd'"] and copy.refs.tags() == {}


def test_a_repository_cannot_be_created_with_a_shadowing_default_branch(tmp_path):
    for name in ("HEAD", "cafe"):
        with pytest.raises(InvalidInputError):
            Repository.init(tmp_path / name, default_branch=name)
        assert not (tmp_path / name / "improv.json").exists()
