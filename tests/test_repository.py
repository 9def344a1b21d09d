"""The repository through its public API: round trips, append-only rules,
refs and revisions, and concurrent writers."""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import threading
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from improv_vcs import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotARepositoryError,
    NotFoundError,
    ReadOnlyError,
    Repository,
)
from improv_vcs.core.model import Tag, canonical_json

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def memory_url() -> str:
    return f"memory://repo-{uuid.uuid4().hex}"


def rows(ids, start: datetime = T0, **columns) -> list[dict]:
    """Metadata rows for ``ids``, one second apart, plus constant ``columns``."""
    return [
        {"image_id": i, "timestamp": start + timedelta(seconds=n), **columns}
        for n, i in enumerate(ids)
    ]


def blob(image: str) -> bytes:
    return f"pixels of {image}".encode() * 3


def commit_images(repo, ids, instrument="IFCB1", branch=None, message="add"):
    """Commit ``ids`` (bytes from :func:`blob`) in one transaction; returns the transaction."""
    ids = list(ids)
    with repo.transaction(branch, message=message) as tx:
        tx.append_bytes(instrument, rows(ids), [blob(i) for i in ids])
    return tx


def image_ids(repo, at=None) -> list[str]:
    return sorted(repo.snapshot(at).images().column("image_id").to_pylist())


def log_ids(repo, rev=None) -> list[str]:
    return [oid for oid, _ in repo.log(rev)]


@pytest.fixture
def repo():
    """A memory repository with one commit of images a1, a2, a3 on main."""
    repo = Repository.init(memory_url())
    commit_images(repo, ["a1", "a2", "a3"], message="first")
    return repo


# -- round trip (property) ---------------------------------------------------------

IMAGE_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:+@=-]{0,24}", fullmatch=True)
OFFSETS = st.integers(-(14 * 60), 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
TIMES = st.datetimes(
    min_value=datetime(1950, 1, 1), max_value=datetime(2100, 1, 1), timezones=OFFSETS
)
INSTRUMENTS = ["IFCB107", "scope-a", "UVP6.2"]
LATS = st.none() | st.floats(-90, 90)
LONS = st.none() | st.floats(-180, 180)
DEPTHS = st.none() | st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def plans(draw):
    """Images (unique ids, bytes drawn from a small pool so content repeats and
    the empty blob is likely), spread over 1-3 commits and several instruments."""
    pool = draw(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
    int_column = "n_" + draw(st.from_regex(r"[a-z0-9_]{0,8}", fullmatch=True))
    str_column = "s_" + draw(st.from_regex(r"[a-z0-9_]{0,8}", fullmatch=True))
    images = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "image_id": IMAGE_IDS,
                    "timestamp": TIMES,
                    int_column: st.integers(-(2**63), 2**63 - 1),
                    str_column: st.text(max_size=20),
                },
                optional={
                    "lat": LATS,
                    "lon": LONS,
                    "depth": DEPTHS,
                    "sample_id": st.none() | st.text(min_size=1, max_size=12),
                },
            ),
            min_size=1,
            max_size=12,
            unique_by=lambda r: r["image_id"],
        )
    )
    placed = []
    for meta in images:
        placed.append(
            (
                draw(st.integers(0, 2), label="commit"),
                draw(st.sampled_from(INSTRUMENTS), label="instrument"),
                meta,
                draw(st.sampled_from(pool), label="blob"),
            )
        )
    return placed, (int_column, str_column)


def check_round_trip(repo: Repository, placed, extra_columns) -> None:
    """Commit ``placed`` (commit number, instrument, metadata, bytes) and check
    every image and every metadata row reads back, at every commit."""
    commits = defaultdict(lambda: defaultdict(list))
    for number, instrument, meta, data in placed:
        commits[number][instrument].append((meta, data))
    committed_ids: list[set[str]] = []
    commit_ids = []
    so_far: set[str] = set()
    for number in sorted(commits):
        with repo.transaction(message=f"commit {number}") as tx:
            for instrument, items in commits[number].items():
                added = tx.append_bytes(instrument, [m for m, _ in items], [d for _, d in items])
                assert added == len(items)
        assert tx.commit_id is not None
        assert len(tx.batches) == len(commits[number])
        commit_ids.append(tx.commit_id)
        so_far |= {m["image_id"] for items in commits[number].values() for m, _ in items}
        committed_ids.append(set(so_far))

    # every image's bytes, by id
    for _, _, meta, data in placed:
        assert repo.snapshot().read_image(meta["image_id"]) == data

    # every metadata row, exactly
    table = repo.snapshot().images()
    assert table.num_rows == len(placed)
    got = sorted(table.to_pylist(), key=lambda r: r["image_id"])
    want = sorted(placed, key=lambda p: p[2]["image_id"])
    for row, (_, instrument, meta, data) in zip(got, want):
        assert row["image_id"] == meta["image_id"]
        assert row["instrument"] == instrument
        assert row["timestamp"] == meta["timestamp"]
        assert row["timestamp"].utcoffset() == timedelta(0)
        for name in ("lat", "lon", "depth", "sample_id"):
            assert row[name] == meta.get(name), name
        for name in extra_columns:
            assert row[name] == meta[name], name
        assert row["size"] == len(data)
        assert row["blob_id"] == hashlib.sha256(data).hexdigest()

    # each commit is a reproducible snapshot of what was committed up to it
    assert log_ids(repo) == list(reversed(commit_ids))
    for commit_id, expected in zip(commit_ids, committed_ids):
        assert set(image_ids(repo, commit_id)) == expected


@given(plans())
def test_round_trip_property_memory(plan):
    placed, extra_columns = plan
    check_round_trip(Repository.init(memory_url()), placed, extra_columns)


def test_round_trip_local_directory(tmp_path):
    plus2 = timezone(timedelta(hours=2))
    extra = ("n_rois", "s_note")

    def meta(i, **more):
        base = {
            "image_id": i,
            "timestamp": T0 + timedelta(minutes=i2n(i)),
            "n_rois": i2n(i),
            "s_note": f"é{i}",
        }
        return {**base, **more}

    def i2n(i):
        return int(hashlib.sha256(i.encode()).hexdigest()[:4], 16)

    placed = [
        (
            0,
            "IFCB107",
            meta("D2024_001", lat=41.5, lon=-70.7, depth=3.0, sample_id="S1"),
            b"\x89PNG" + b"\0" * 100,
        ),
        (0, "IFCB107", meta("D2024_002", lat=-0.0, lon=180.0), b""),
        (
            0,
            "scope-a",
            meta("scope:1", timestamp=datetime(2024, 5, 1, 14, tzinfo=plus2)),
            b"\x89PNG" + b"\0" * 100,
        ),
        (1, "IFCB107", meta("D2024_003", depth=-12.5), b"x" * 5000),
        (1, "scope-a", meta("scope:2", sample_id=None), b""),
        (2, "UVP6.2", meta("u@1=2+3"), bytes(range(256))),
    ]
    repo = Repository.init(tmp_path / "repo")
    check_round_trip(repo, placed, extra)
    reopened = Repository.open(tmp_path / "repo")
    assert reopened.id == repo.id
    for _, _, m, data in placed:
        assert reopened.snapshot().read_image(m["image_id"]) == data


def test_empty_repository_reads():
    repo = Repository.init(memory_url())
    assert repo.snapshot().images().num_rows == 0
    assert list(repo.log()) == []
    with pytest.raises(NotFoundError):
        repo.snapshot().read_image("nothing")


# -- append-only rules -------------------------------------------------------------


def test_same_id_same_bytes_is_a_no_op(repo):
    tip = repo.resolve("main")
    with repo.transaction(message="again") as tx:
        assert tx.append_bytes("IFCB1", rows(["a1", "a2"]), [blob("a1"), blob("a2")]) == 0
    assert tx.commit_id is None
    assert repo.resolve("main") == tip
    assert len(log_ids(repo)) == 1
    assert image_ids(repo) == ["a1", "a2", "a3"]


def test_known_images_are_skipped_new_ones_kept(repo):
    with repo.transaction(message="mixed") as tx:
        assert tx.append_bytes("IFCB1", rows(["a1", "b1"]), [blob("a1"), blob("b1")]) == 1
    assert tx.commit_id is not None
    commit = repo.odb.get_commit(tx.commit_id)
    assert [b.rows for b in commit.batches] == [1]
    assert image_ids(repo) == ["a1", "a2", "a3", "b1"]
    assert repo.snapshot().images().num_rows == 4


def test_same_id_different_bytes_is_a_conflict(repo):
    tip = repo.resolve("main")
    with pytest.raises(ConflictError, match="a2"):
        with repo.transaction(message="clash") as tx:
            tx.append_bytes("IFCB1", rows(["b1"]), [blob("b1")])
            tx.append_bytes("IFCB1", rows(["b2", "a2"]), [blob("b2"), b"other bytes"])
    assert repo.resolve("main") == tip
    assert image_ids(repo) == ["a1", "a2", "a3"]
    assert repo.snapshot().read_image("a2") == blob("a2")


def test_same_id_twice_in_one_transaction(repo):
    with repo.transaction(message="twice") as tx:
        assert tx.append_bytes("IFCB1", rows(["c1"]), [b"c"]) == 1
        assert tx.append_bytes("scope-a", rows(["c1", "c2"]), [b"c", b"d"]) == 1
    assert image_ids(repo).count("c1") == 1
    tip = repo.resolve()
    with pytest.raises(ConflictError, match="d1"):
        with repo.transaction(message="twice, differently") as tx:
            tx.append_bytes("IFCB1", rows(["d1"]), [b"d"])
            tx.append_bytes("IFCB1", rows(["d1"]), [b"e"])
    assert repo.resolve() == tip


def test_duplicate_ids_in_a_batch_are_invalid(repo):
    tip = repo.resolve()
    with pytest.raises(InvalidInputError, match="b1"):
        with repo.transaction(message="dup") as tx:
            tx.append_bytes("IFCB1", rows(["b1", "b2", "b1"]), [b"1", b"2", b"3"])
    assert repo.resolve() == tip


def _bad(ids=("b1",), **columns):
    return rows(list(ids), **columns)


INVALID_BATCHES = {
    "missing timestamp": ([{"image_id": "b1"}], [b"x"]),
    "missing image_id": ([{"timestamp": T0}], [b"x"]),
    "unparsable timestamp": ([{"image_id": "b1", "timestamp": "yesterday"}], [b"x"]),
    "null timestamp": (
        [{"image_id": "b1", "timestamp": T0}, {"image_id": "b2", "timestamp": None}],
        [b"x", b"y"],
    ),
    "lat out of range": (_bad(lat=90.5), [b"x"]),
    "lat below range": (_bad(lat=-91.0), [b"x"]),
    "lon out of range": (_bad(lon=181.0), [b"x"]),
    "lat nan": (_bad(lat=math.nan), [b"x"]),
    "depth nan": (_bad(depth=math.nan), [b"x"]),
    "depth infinite": (_bad(depth=math.inf), [b"x"]),
    "lat not a number": (_bad(lat="north"), [b"x"]),
    "bad image id (path)": (_bad(["../etc"]), [b"x"]),
    "bad image id (space)": (_bad(["a b"]), [b"x"]),
    "bad image id (hidden)": (_bad([".x"]), [b"x"]),
    "bad image id (newline)": (_bad(["abc\n"]), [b"x"]),
    "bad image id (too long)": (_bad(["a" * 256]), [b"x"]),
    "null image id": ([{"image_id": None, "timestamp": T0}], [b"x"]),
    "reserved column pack": (_bad(pack="p"), [b"x"]),
    "reserved column blob_id": (_bad(blob_id="p"), [b"x"]),
    "reserved column offset": (_bad(offset=1), [b"x"]),
    "bad column name": (_bad(**{"bad-name": 1}), [b"x"]),
    "empty batch": ([], []),
    "too few blobs": (_bad(["b1", "b2"]), [b"x"]),
    "blob not bytes": (_bad(), ["text"]),
}


@pytest.mark.parametrize("metadata, blobs", INVALID_BATCHES.values(), ids=INVALID_BATCHES.keys())
def test_invalid_batches_are_rejected_and_move_nothing(repo, metadata, blobs):
    tip = repo.resolve("main")
    with pytest.raises(InvalidInputError):
        with repo.transaction(message="bad") as tx:
            tx.append_bytes("IFCB1", rows(["ok1"]), [b"fine"])
            tx.append_bytes("IFCB1", metadata, blobs)
    assert repo.resolve("main") == tip
    assert len(log_ids(repo)) == 1
    assert image_ids(repo) == ["a1", "a2", "a3"]


def test_failed_append_aborts_the_whole_transaction(repo):
    """A failed append aborts the transaction even if the caller catches the
    error: nothing of it is committed and it accepts no further appends."""
    tip = repo.resolve()
    with repo.transaction(message="partly bad") as tx:
        tx.append_bytes("IFCB1", rows(["b1"]), [b"one"])
        with pytest.raises(InvalidInputError):
            tx.append_bytes("IFCB1", rows(["b2"], lat=100.0), [b"two"])
        with pytest.raises(InvalidInputError):
            tx.append_bytes("IFCB1", rows(["b3"]), [b"three"])
    assert tx.commit_id is None
    assert repo.resolve() == tip
    assert image_ids(repo) == ["a1", "a2", "a3"]


def test_failed_transaction_leaves_no_temporary_files(tmp_path):
    repo = Repository.init(tmp_path / "r")
    commit_images(repo, ["a1"])
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "r").rglob("*") if p.is_file())
    with pytest.raises(ConflictError):
        with repo.transaction(message="clash") as tx:
            tx.append_bytes("IFCB1", rows(["b1", "b2"]), [b"1", b"2"])
            tx.append_bytes("IFCB1", rows(["a1"]), [b"not a1"])
    with pytest.raises(RuntimeError):
        with repo.transaction(message="boom") as tx:
            tx.append_bytes("IFCB1", rows(["c1"]), [b"c"])
            raise RuntimeError
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "r").rglob("*") if p.is_file())
    assert [p for p in after if p.name.startswith(".tmp")] == []
    assert after == before
    assert image_ids(repo) == ["a1"]


@pytest.mark.parametrize("instrument", ["", "a/b", ".x", "a b"])
def test_bad_instrument_is_rejected(repo, instrument):
    tip = repo.resolve()
    with pytest.raises(InvalidInputError):
        with repo.transaction(message="bad") as tx:
            tx.append_bytes(instrument, rows(["b1"]), [b"x"])
    assert repo.resolve() == tip


def test_string_timestamps_with_offsets_are_accepted(repo):
    with repo.transaction(message="strings") as tx:
        tx.append_bytes(
            "IFCB1",
            [
                {"image_id": "s1", "timestamp": "2024-05-01T12:00:00Z"},
                {"image_id": "s2", "timestamp": "2024-05-01T14:00:00+02:00"},
            ],
            [b"1", b"2"],
        )
    table = repo.snapshot().images()
    times = dict(zip(table.column("image_id").to_pylist(), table.column("timestamp").to_pylist()))
    assert times["s1"] == times["s2"] == T0


def test_failed_transaction_moves_no_ref(repo):
    tip = repo.resolve()
    with pytest.raises(RuntimeError):
        with repo.transaction(message="boom", pack_size=1) as tx:
            tx.append_bytes("IFCB1", rows(["b1", "b2"]), [b"one", b"two"])  # packs get flushed
            raise RuntimeError("boom")
    assert tx.commit_id is None
    assert repo.resolve() == tip
    assert image_ids(repo) == ["a1", "a2", "a3"]
    with pytest.raises(NotFoundError):
        repo.snapshot().read_image("b1")


def test_failed_first_transaction_creates_no_branch():
    repo = Repository.init(memory_url())
    with pytest.raises(RuntimeError):
        with repo.transaction(message="boom") as tx:
            tx.append_bytes("IFCB1", rows(["b1"]), [b"one"])
            raise RuntimeError("boom")
    assert repo.branches() == {}
    assert list(repo.log()) == []


def test_transaction_cannot_be_reused(repo):
    tx = commit_images(repo, ["b1"])
    with pytest.raises(InvalidInputError):
        tx.append_bytes("IFCB1", rows(["b2"]), [b"2"])
    with pytest.raises(InvalidInputError):
        tx.commit()


# -- commits, batches and the snapshot index -----------------------------------


def test_several_batches_make_one_commit(repo):
    with repo.transaction(message="multi") as tx:
        tx.append_bytes("IFCB1", rows(["i1", "i2"]), [b"1", b"2"])
        tx.append_bytes("scope-a", rows(["s1"], start=T0 + timedelta(days=1), lat=10.0), [b"3"])
        tx.append_bytes("IFCB1", rows(["i3"]), [b"4"])
    assert len(log_ids(repo)) == 2
    oid, commit = next(repo.log())
    assert oid == tx.commit_id
    assert commit.message == "multi"
    assert commit.batches == tx.batches
    assert [(b.instrument, b.rows) for b in commit.batches] == [
        ("IFCB1", 2),
        ("scope-a", 1),
        ("IFCB1", 1),
    ]
    scope = commit.batches[1]
    assert scope.time_min == scope.time_max == T0 + timedelta(days=1)
    assert scope.lat_min == scope.lat_max == 10.0
    assert scope.image_id_min == scope.image_id_max == "s1"
    assert commit.batches[0].bytes == 2
    assert image_ids(repo) == ["a1", "a2", "a3", "i1", "i2", "i3", "s1"]


def test_snapshot_index_stays_short():
    repo = Repository.init(memory_url())
    for n in range(40):
        tx = commit_images(repo, [f"img{n:03d}"], instrument=f"I{n % 3}")
        commit = repo.odb.get_commit(tx.commit_id)
        assert commit.height == n + 1
        assert len(commit.index) <= 7, (n, [s.level for s in commit.index])
        assert sum(s.entries for s in commit.index) == n + 1
        assert sum(s.rows for s in commit.index) == n + 1
    assert image_ids(repo) == [f"img{n:03d}" for n in range(40)]
    assert image_ids(repo, "main~10") == [f"img{n:03d}" for n in range(30)]
    assert repo.snapshot().read_image("img017") == blob("img017")
    assert repo.snapshot("main~39").read_image("img000") == blob("img000")


# -- revisions, branches and tags ------------------------------------------------


@pytest.fixture
def history():
    """A repository with three commits on main: c1 ← c2 ← c3."""
    repo = Repository.init(memory_url())
    ids = [commit_images(repo, [f"h{n}"], message=f"c{n}").commit_id for n in (1, 2, 3)]
    return repo, ids


def test_resolve_branch_and_ancestry(history):
    repo, (c1, c2, c3) = history
    assert repo.resolve() == repo.resolve("main") == repo.resolve("HEAD") == c3
    assert repo.resolve("main~1") == repo.resolve("main~") == repo.resolve("HEAD~1") == c2
    assert repo.resolve("main~~") == repo.resolve("main~2") == repo.resolve("main~1~1") == c1
    assert repo.resolve(f"{c3}~2") == c1
    assert log_ids(repo) == [c3, c2, c1]
    assert log_ids(repo, "main~1") == [c2, c1]
    assert [c.message for _, c in repo.log()] == ["c3", "c2", "c1"]
    assert [c.parents for _, c in repo.log()] == [(c2,), (c1,), ()]
    with pytest.raises(NotFoundError):
        repo.resolve("main~3")


def test_resolve_full_id_and_prefix(history):
    repo, (c1, c2, c3) = history
    assert repo.resolve(c2) == c2
    assert repo.resolve(c2[:12]) == c2
    assert repo.resolve(c1[:8] + "~0") == c1
    assert image_ids(repo, c2[:10]) == ["h1", "h2"]


def test_lightweight_and_annotated_tags(history):
    repo, (c1, c2, c3) = history
    assert repo.create_tag("v1.0", "main~1") == c2
    assert repo.resolve("v1.0") == c2
    assert repo.resolve("v1.0~1") == c1
    assert repo.create_tag("release/2024", c1[:8], message="first release", tagger="me") == c1
    assert repo.resolve("release/2024") == c1
    pointer = repo.refs.tag("release/2024")
    assert pointer != c1
    tag = repo.odb.get_object(pointer)
    assert isinstance(tag, Tag) and tag.target == c1 and tag.message == "first release"
    assert repo.resolve(pointer) == c1  # an annotated tag object's id peels to its commit
    assert repo.tags() == {"v1.0": c2, "release/2024": c1}
    assert image_ids(repo, "release/2024") == ["h1"]
    commit_images(repo, ["h4"])
    assert repo.resolve("v1.0") == c2  # tags never follow the branch


@pytest.mark.parametrize("message", [None, "annotated"])
def test_tags_cannot_be_recreated(history, message):
    repo, (c1, c2, c3) = history
    repo.create_tag("v1", c1, message=message)
    for again in (None, "again"):
        with pytest.raises(ReadOnlyError):
            repo.create_tag("v1", c3, message=again)
    with pytest.raises(ReadOnlyError):
        repo.create_tag("v1", c1, message=message)
    assert repo.resolve("v1") == c1


def test_bad_tag_and_branch_names(history):
    repo, _ = history
    for name in ["..", "a/../b", "x.lock", ".hidden", "has space", ""]:
        with pytest.raises(InvalidInputError):
            repo.create_tag(name)
        with pytest.raises(InvalidInputError):
            repo.create_branch(name)
        if name:  # an empty branch name means the default branch
            with pytest.raises(InvalidInputError):
                repo.transaction(name)


def test_unknown_revisions(history):
    repo, (c1, _, _) = history
    for rev in ["nope", "deadbeef", "0" * 64, "feature", "v9"]:
        with pytest.raises(NotFoundError):
            repo.resolve(rev)
    for rev in ["main~x", "~1", "main~-1"]:
        with pytest.raises(InvalidInputError, match="invalid revision"):
            repo.resolve(rev)
    with pytest.raises(NotFoundError, match="no branch, tag or commit named 'main\\^'"):
        repo.resolve("main^")
    with pytest.raises(InvalidInputError):
        repo.resolve("main~x")


def test_resolving_a_non_commit_object_is_not_corruption(history):
    """A manifest id names a valid object that is not a commit: that is
    'not found (as a commit)', not an integrity failure."""
    repo, (c1, _, _) = history
    manifest_id = repo.odb.get_commit(c1).batches[0].manifest
    with pytest.raises(NotFoundError, match="is not a commit or tag"):
        repo.resolve(manifest_id)


def test_ambiguous_prefix(history):
    repo, _ = history
    seen: dict[str, Tag] = {}
    for n in range(100_000):
        tag = Tag(name="t", target="ab" * 32, tagger="t", time=T0, message=str(n))
        prefix = hashlib.sha256(canonical_json(tag)).hexdigest()[:4]
        if prefix in seen:
            break
        seen[prefix] = tag
    first, second = repo.odb.put_object(seen[prefix]), repo.odb.put_object(tag)
    assert first[:4] == second[:4] == prefix and first != second
    with pytest.raises(InvalidInputError, match="ambiguous"):
        repo.resolve(prefix)


def test_branch_then_commit_leaves_main_alone(history):
    repo, (c1, c2, c3) = history
    assert repo.create_branch("feature/x", "main~1") == c2
    assert repo.branches() == {"main": c3, "feature/x": c2}
    tx = commit_images(repo, ["f1"], branch="feature/x")
    assert repo.resolve("main") == c3
    assert repo.resolve("feature/x") == tx.commit_id
    assert repo.odb.get_commit(tx.commit_id).parents == (c2,)
    assert image_ids(repo, "feature/x") == ["f1", "h1", "h2"]
    assert image_ids(repo) == ["h1", "h2", "h3"]
    with pytest.raises(NotFoundError):
        repo.snapshot().read_image("f1")
    with pytest.raises(ConflictError):
        repo.create_branch("feature/x")
    assert repo.resolve("feature/x") == tx.commit_id


def test_commit_to_missing_branch_fails(history):
    repo, (_, _, c3) = history
    with pytest.raises(NotFoundError):
        with repo.transaction("nope", message="x") as tx:
            tx.append_bytes("IFCB1", rows(["n1"]), [b"n"])
    assert repo.branches() == {"main": c3}


# -- opening ---------------------------------------------------------------------


def test_open_non_repository(tmp_path):
    for url in [tmp_path, tmp_path / "missing", memory_url()]:
        with pytest.raises(NotARepositoryError):
            Repository.open(url)
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(NotFoundError):
        Repository.open(tmp_path / "file")


def test_init_twice_is_a_conflict(tmp_path):
    for url in [tmp_path / "repo", memory_url()]:
        first = Repository.init(url)
        with pytest.raises(ConflictError):
            Repository.init(url)
        assert Repository.open(url).id == first.id


def test_open_sees_commits_of_another_handle(tmp_path):
    repo = Repository.init(tmp_path / "r")
    commit_images(repo, ["x1"])
    other = Repository.open(tmp_path / "r")
    assert image_ids(other) == ["x1"]
    commit_images(other, ["x2"])
    assert image_ids(repo) == ["x1", "x2"]


def test_corrupt_image_bytes_are_detected(tmp_path):
    repo = Repository.init(tmp_path / "r")
    commit_images(repo, ["x1", "x2"])
    row = repo.snapshot().record("x2")
    path = tmp_path / "r" / "packs" / f"{row['pack']}.pack"
    data = bytearray(path.read_bytes())
    data[row["offset"]] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        Repository.open(tmp_path / "r").snapshot().read_image("x2")
    assert Repository.open(tmp_path / "r").snapshot().read_image("x1") == blob("x1")


# -- concurrent writers ------------------------------------------------------------


def assert_single_chain(repo: Repository, expected_ids: set[str], commits: int) -> None:
    """Every image once, ``commits`` commits on one first-parent chain."""
    table = repo.snapshot().images()
    ids = table.column("image_id").to_pylist()
    assert sorted(ids) == sorted(expected_ids)
    assert len(ids) == len(set(ids))
    history = list(repo.log())
    assert len(history) == commits
    for (_, commit), (parent_id, parent) in zip(history, history[1:]):
        assert commit.parents == (parent_id,)
        assert commit.height == parent.height + 1
    assert history[-1][1].parents == ()
    for _, commit in history:
        assert len(commit.index) <= 7
    # the union of all commits' batches is exactly the image set
    in_batches = sum(b.rows for _, c in history for b in c.batches)
    assert in_batches == len(expected_ids)
    for image in expected_ids:
        assert repo.snapshot().read_image(image) == blob(image)


def _run_threads(targets) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return errors


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_racing_threads_lose_no_commit(tmp_path, kind):
    url = memory_url() if kind == "memory" else str(tmp_path / "repo")
    repo = Repository.init(url)
    commit_images(repo, ["base"])
    writers = 5
    barrier = threading.Barrier(writers)
    ids = {w: [f"w{w}-{n}" for n in range(4)] for w in range(writers)}

    def writer(w):
        def run():
            mine = Repository.open(url)
            with mine.transaction(message=f"writer {w}") as tx:
                tx.append_bytes(f"I{w}", rows(ids[w]), [blob(i) for i in ids[w]])
                barrier.wait(timeout=30)  # everyone commits on the same base
            assert tx.commit_id is not None

        return run

    errors = _run_threads([writer(w) for w in range(writers)])
    assert errors == []
    expected = {"base"} | {i for group in ids.values() for i in group}
    assert_single_chain(Repository.open(url), expected, 1 + writers)


def _process_writer(path: str, writer: int, barrier) -> None:
    repo = Repository.open(path)
    ids = [f"p{writer}-{n}" for n in range(5)]
    with repo.transaction(message=f"process {writer}") as tx:
        tx.append_bytes(f"P{writer}", rows(ids), [blob(i) for i in ids])
        barrier.wait(timeout=60)
    if tx.commit_id is None:
        raise SystemExit(3)


def test_racing_processes_lose_no_commit(tmp_path):
    path = str(tmp_path / "repo")
    repo = Repository.init(path)
    commit_images(repo, ["base"])
    ctx = multiprocessing.get_context("spawn")
    writers = 3
    barrier = ctx.Barrier(writers)
    procs = [ctx.Process(target=_process_writer, args=(path, w, barrier)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * writers
    expected = {"base"} | {f"p{w}-{n}" for w in range(writers) for n in range(5)}
    assert_single_chain(Repository.open(path), expected, 1 + writers)


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_race_same_image_same_bytes(tmp_path, kind):
    url = memory_url() if kind == "memory" else str(tmp_path / "repo")
    repo = Repository.init(url)
    commit_images(repo, ["base"])
    barrier = threading.Barrier(2)
    results = []

    def writer():
        mine = Repository.open(url)
        with mine.transaction(message="same") as tx:
            assert tx.append_bytes("IFCB1", rows(["shared"]), [blob("shared")]) == 1
            barrier.wait(timeout=30)
        results.append(tx.commit_id)

    assert _run_threads([writer, writer]) == []
    assert len(results) == 2
    made = [r for r in results if r is not None]
    assert len(made) >= 1
    assert_single_chain(Repository.open(url), {"base", "shared"}, 1 + len(made))
    assert len(made) == 1  # the loser re-checks on the new tip and becomes a no-op


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_race_same_image_different_bytes(tmp_path, kind):
    url = memory_url() if kind == "memory" else str(tmp_path / "repo")
    repo = Repository.init(url)
    commit_images(repo, ["base"])
    barrier = threading.Barrier(2)
    results: dict[int, object] = {}

    def writer(w):
        def run():
            mine = Repository.open(url)
            try:
                with mine.transaction(message=f"writer {w}") as tx:
                    tx.append_bytes("IFCB1", rows(["shared"]), [f"version {w}".encode()])
                    barrier.wait(timeout=30)
                results[w] = tx.commit_id
            except ConflictError as exc:
                results[w] = exc

        return run

    assert _run_threads([writer(0), writer(1)]) == []
    winners = [w for w, r in results.items() if isinstance(r, str)]
    losers = [w for w, r in results.items() if isinstance(r, ConflictError)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert "shared" in str(results[losers[0]])
    final = Repository.open(url)
    assert final.resolve() == results[winners[0]]
    assert final.snapshot().read_image("shared") == f"version {winners[0]}".encode()
    assert len(list(final.log())) == 2
    assert image_ids(final) == ["base", "shared"]


# -- S3 ------------------------------------------------------------------------------


def test_s3_round_trip(s3_url, s3_options):
    repo = Repository.init(s3_url, **s3_options)
    with pytest.raises(ConflictError):
        Repository.init(s3_url, **s3_options)
    first = commit_images(repo, ["s1", "s2"], message="one")
    with repo.transaction(message="two") as tx:
        tx.append_bytes("scope-a", rows(["s3", "s4"], lat=1.5), [blob("s3"), blob("s1")])
        tx.append_bytes("IFCB1", rows(["s1"]), [blob("s1")])  # known: skipped
    repo.create_tag("v1", first.commit_id[:10], message="first")
    other = Repository.open(s3_url, **s3_options)
    assert other.id == repo.id
    assert image_ids(other) == ["s1", "s2", "s3", "s4"]
    assert image_ids(other, "v1") == ["s1", "s2"]
    assert image_ids(other, "main~1") == ["s1", "s2"]
    assert other.snapshot().read_image("s3") == blob("s3")
    assert other.snapshot().read_image("s4") == blob("s1")
    assert other.snapshot().read_image("s2") == blob("s2")
    assert log_ids(other) == [tx.commit_id, first.commit_id]
    with pytest.raises(ConflictError):
        with other.transaction(message="clash") as clash:
            clash.append_bytes("IFCB1", rows(["s2"]), [b"different"])
    assert other.resolve() == tx.commit_id
    with pytest.raises(NotARepositoryError):
        Repository.open(s3_url.rsplit("/", 1)[0] + "/elsewhere", **s3_options)


def test_s3_empty_image(s3_url, s3_options):
    """A zero-length image is a valid image; reading it back must not fail."""
    repo = Repository.init(s3_url, **s3_options)
    with repo.transaction(message="empty") as tx:
        tx.append_bytes("IFCB1", rows(["e1", "e2"]), [b"", b"not empty"])
    assert repo.snapshot().read_image("e2") == b"not empty"
    assert repo.snapshot().read_image("e1") == b""
