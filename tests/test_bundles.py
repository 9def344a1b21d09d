"""Bundles: the bundle format, a BundledStore answering for bundled keys as if
they were loose, maintenance over random histories, the format-1 golden
repository upgraded and bundled, gc of bundles, automatic maintenance,
maintenance racing a commit, and repair of a damaged bundle."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import struct
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from improv_vcs import add_provenance, cite
from improv_vcs.core.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    StorageError,
    UnsupportedFormatError,
)
from improv_vcs.maintenance import repack as maintenance
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.maintenance.gc import gc
from improv_vcs.maintenance.repack import maintain
from improv_vcs.repository.repository import Repository
from improv_vcs.storage import BundledStore, open_store
from improv_vcs.storage.bundled_store import (
    OBJECT,
    PACK_DATA,
    PACK_INDEX,
    BundleIndex,
    BundleWriter,
    build_index,
    data_key,
    entry_of,
    index_key,
    key_of,
)
from improv_vcs.storage.closure import commit_keys
from improv_vcs.storage.fence import Fence
from improv_vcs.sync.sites import clone, push
from improv_vcs.sync.transfer import Transfer

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
LATER = 4e9  # a clock (year 2096) past every grace period
DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "golden-format1.expected.json").read_text())
HEADER, ENTRY = struct.Struct("<8sIIQQ32s"), struct.Struct("<B32sQQ")  # as the format documents


@pytest.fixture(autouse=True)
def _manual_maintenance(monkeypatch):
    monkeypatch.setenv("IMPROV_AUTO_MAINTENANCE", "0")
    monkeypatch.setenv("IMPROV_AUTHOR", "tester")
    monkeypatch.delenv("IMPROV_REPO", raising=False)


def _commit(
    repo: Repository, name: str, n: int = 3, branch: str | None = None, size: int = 40
) -> str:
    rows = [
        {"image_id": f"{name}-{i}", "timestamp": T0 + timedelta(minutes=i), "depth": float(i)}
        for i in range(n)
    ]
    with repo.transaction(branch, message=name, author="t") as tx:
        tx.append_bytes("CAM", rows, [f"{name}/{i};".encode() * size for i in range(n)])
    return tx.commit_id


def _loose(repo: Repository) -> set[str]:
    return {*repo.store.inner.list("objects/"), *repo.store.inner.list("packs/")}


def _images(repo: Repository, at: str | None = None) -> dict[str, bytes]:
    return {
        i: repo.snapshot(at).read_image(i)
        for i in repo.snapshot(at).images().column("image_id").to_pylist()
    }


def _keys(repo: Repository, oid: str) -> set[str]:
    return commit_keys(repo.odb, oid, repo.odb.get_commit(oid))


def _cli(*args: object):
    from improv_vcs.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _obj(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"objects/{digest[:2]}/{digest[2:]}"


# -- 1. the format and the store --------------------------------------------------
def test_a_bundle_round_trips_its_values_and_is_named_by_its_index(tmp_path):
    inner = open_store(str(tmp_path / "s"))
    values = {
        _obj(f"object {i}".encode() * (i + 1)): f"object {i}".encode() * (i + 1) for i in range(6)
    }
    values |= {
        f"packs/{'ab' * 32}.idx": b"pack index",
        f"packs/{'ab' * 32}.pack": b"pack data" * 9,
        _obj(b""): b"",
    }
    writer = BundleWriter(inner)
    for key, value in values.items():
        writer.add(key, value)
    writer.add(next(iter(values)), b"a second value for a key already added is skipped")
    assert writer.count == len(values) and len(writer) == sum(map(len, values.values()))
    assert next(iter(values)) in writer and _obj(b"absent") not in writer
    with pytest.raises(ValueError, match="cannot be bundled"):
        writer.add("refs/heads/main", b"x")
    bundle_id = writer.finish()
    raw = inner.get(index_key(bundle_id))
    assert hashlib.sha256(raw).hexdigest() == bundle_id
    index = BundleIndex(raw)
    index.check()
    assert (index.count, index.data_length) == (len(values), inner.size(data_key(bundle_id)))
    assert index.key_names() == sorted(values, key=entry_of)  # sorted by (role, digest)
    data = inner.get(data_key(bundle_id))
    for key, value in values.items():
        offset, length = index.locate(*entry_of(key))
        assert data[offset : offset + length] == value
    assert index.locate(OBJECT, b"\x00" * 32) is None and index.locate(
        PACK_DATA, bytes.fromhex("ab" * 32)
    )


@pytest.mark.parametrize(
    "key, role",
    [
        (f"objects/0a/{'c' * 62}", OBJECT),
        (f"packs/{'d' * 64}.idx", PACK_INDEX),
        (f"packs/{'e' * 64}.pack", PACK_DATA),
        *[
            (k, None)
            for k in [
                "refs/heads/main",
                "improv.json",
                f"objects/ab/{'c' * 61}",
                f"objects/AB/{'c' * 62}",
                f"objects/ab/{'c' * 62}\n",
                f"objects/ab/{'c' * 62}/x",
                f"packs/{'d' * 63}.idx",
                f"packs/{'d' * 64}.tmp",
                f"bundles/{'d' * 64}.idx",
                f"x/objects/ab/{'c' * 62}",
            ]
        ],
    ],
)
def test_only_content_addressed_keys_are_bundlable_and_their_names_round_trip(key, role, tmp_path):
    if role is not None:
        assert entry_of(key)[0] == role and key_of(*entry_of(key)) == key
        return
    assert entry_of(key) is None
    with pytest.raises(ValueError):
        BundleWriter(open_store(str(tmp_path / "s"))).add(key, b"x")


def _raw_index(
    entries: list[tuple[int, bytes, int, int]],
    data_length: int = 100,
    magic: bytes = b"IMPRVBDL",
    version: int = 1,
) -> bytes:
    return HEADER.pack(magic, version, 0, data_length, len(entries), bytes(32)) + b"".join(
        ENTRY.pack(*e) for e in entries
    )


def test_an_index_check_finds_unsorted_duplicate_unknown_and_overlong_entries():
    a, b = (0, b"\x01" * 32, 0, 10), (0, b"\x02" * 32, 10, 10)
    BundleIndex(_raw_index([a, b])).check()
    assert (
        BundleIndex(build_index([b, a], 100, bytes(32))).key_names()
        == BundleIndex(_raw_index([a, b])).key_names()
    )
    assert BundleIndex(_raw_index([a, b])).locate(0, b"\x02" * 32) == (10, 10)
    for bad in ([b, a], [a, a], [a, (3, b"\x03" * 32, 20, 1)], [a, (1, b"\x00" * 32, 95, 6)]):
        with pytest.raises(IntegrityError):
            BundleIndex(_raw_index(bad)).check()
    for raw in (
        b"IMPRV",
        _raw_index([a], magic=b"NOTABDL!"),
        _raw_index([a], version=2),
        _raw_index([a, b])[:-1],
    ):
        with pytest.raises(IntegrityError):
            BundleIndex(raw)


_digest = st.one_of(
    st.binary(min_size=32, max_size=32),  # uniform, as SHA-256 digests are
    st.binary(min_size=1, max_size=3).map(
        lambda tail: b"\x7f" * (32 - len(tail)) + tail
    ),  # skewed: one long prefix
)


@given(
    names=st.sets(st.tuples(st.integers(0, 2), _digest), max_size=300),
    probes=st.lists(st.tuples(st.integers(0, 2), _digest), max_size=20),
)
def test_an_index_finds_exactly_its_entries_however_their_digests_spread(names, probes):
    """The index's search agrees with a dict."""
    entries = [(role, digest, i * 7, i) for i, (role, digest) in enumerate(sorted(names))]
    index = BundleIndex(build_index(entries, 7 * len(entries), bytes(32)))
    model = {(role, digest): (offset, length) for role, digest, offset, length in entries}
    for role, digest in [*model, *probes]:
        assert index.locate(role, digest) == model.get((role, digest))


def test_a_bundled_store_answers_for_bundled_keys_as_if_loose(tmp_path):
    inner = open_store(str(tmp_path / "s"))
    stale = BundledStore(inner)
    assert stale.bundles() == {}  # this view is taken before any bundle exists
    a, b, c = b"loose only", b"bundled only" * 7, b"loose and bundled"
    inner.put_if_absent(_obj(a), a)
    inner.put_if_absent(_obj(c), c)
    writer = BundleWriter(inner)
    writer.add(_obj(b), b)
    writer.add(_obj(c), c)
    bundle_id = writer.finish()
    for store in (
        stale,
        BundledStore(inner),
    ):  # a stale view lists the bundles again before giving up
        assert store.get(_obj(b)) == b and bytes(store.get_view(_obj(b))) == b
        assert store.get_range(_obj(b), 3, 5) == b[3:8] and store.get(_obj(c)) == c
        assert store.exists(_obj(b)) and store.size(_obj(b)) == len(b)
        assert store.modified(_obj(b)) == inner.modified(
            index_key(bundle_id)
        )  # a bundle's age is its index's
        with pytest.raises(StorageError):
            store.get_range(_obj(b), len(b) - 2, 5)
        assert list(store.list("objects/")) == sorted({_obj(a), _obj(b), _obj(c)})
        everything = list(store.list())
        assert everything == sorted(set(everything)) and {_obj(b), data_key(bundle_id)} <= set(
            everything
        )
        assert not store.is_loose(_obj(b)) and store.is_loose(_obj(c))
    os.utime(tmp_path / "s" / _obj(c), (1e9, 1e9))  # the younger of its loose file and its bundle
    assert stale.modified(_obj(c)) == inner.modified(index_key(bundle_id)) > 1e9
    os.utime(tmp_path / "s" / index_key(bundle_id), (5e8, 5e8))
    assert stale.modified(_obj(c)) == 1e9 and stale.modified(_obj(b)) == 5e8
    assert not stale.put_if_absent(_obj(b), b) and not inner.exists(_obj(b))
    assert stale.put_if_absent(_obj(b"new"), b"new") and inner.exists(_obj(b"new"))
    stale.delete(_obj(b))  # a bundled key stays until its bundle goes
    stale.delete(_obj(c))  # only the loose copy goes
    assert stale.get(_obj(b)) == b and stale.get(_obj(c)) == c and not inner.exists(_obj(c))
    missing = _obj(b"missing")
    assert not stale.exists(missing)
    for read in (stale.get, stale.size, stale.modified):
        with pytest.raises(NotFoundError):
            read(missing)


def test_a_reader_with_a_stale_view_finds_keys_another_instance_merged(tmp_path):
    url = tmp_path / "r"
    writer = Repository.init(url)
    first = _commit(writer, "a")
    maintain(writer)
    reader = Repository.open(url)
    old_view = set(reader.store.bundles())
    keys = sorted(_keys(reader, first))
    expected = {k: reader.store.get(k) for k in keys}
    second = _commit(writer, "b")
    report = maintain(Repository.open(url))  # another instance merges the bundle the reader knows
    assert report.merged_bundles == 1 and not old_view & set(Repository.open(url).store.bundles())
    assert set(reader.store.bundles()) == old_view  # still the old view
    assert {k: reader.store.get(k) for k in keys} == expected
    for key in keys:
        assert reader.store.exists(key) and reader.store.size(key) == len(expected[key])
        assert (
            reader.store.get_range(key, 0, 1) == expected[key][:1]
            and reader.store.modified(key) > 0
        )
    assert reader.resolve() == second  # and the other commit's keys, never seen loose by the reader
    assert _images(reader) == _images(Repository.open(url)) and len(_images(reader)) == 6


def test_existence_as_listed_does_not_list_again_and_a_push_past_it_stays_whole(tmp_path):
    """A push asks the destination about many keys it lacks: those answers
    come from the bundles as last listed. A key another instance bundled
    since then reads as absent there (and is sent again, harmlessly), while
    ``exists`` lists again and finds it."""
    source = Repository.init(tmp_path / "src")
    first = _commit(source, "a")
    clone_keys = sorted(_keys(source, first))
    clone(str(tmp_path / "src"), str(tmp_path / "dst"))
    dest = Repository.open(tmp_path / "dst")
    assert dest.store.bundles() == {}  # listed once, before another instance bundles
    maintain(Repository.open(tmp_path / "dst"))
    assert [dest.store.exists_as_listed(k) for k in clone_keys] == [False] * len(clone_keys)
    assert all(dest.store.exists(k) for k in clone_keys)  # listed again
    dest.store.bundles(refresh=True)
    assert all(dest.store.exists_as_listed(k) for k in clone_keys)
    second = _commit(source, "b")
    push(source, str(tmp_path / "dst"), "main")
    stale = Repository.open(tmp_path / "dst")
    stale.store.bundles()
    third = _commit(source, "c")
    maintain(
        Repository.open(tmp_path / "dst")
    )  # "b" moves into a bundle the stale view does not know
    report = Transfer(source, stale).send([third])
    assert report.commits == 2 and stale.odb.has(second)  # "b" sent again beside its bundled copy
    assert fsck(Repository.open(tmp_path / "dst")).ok
    push(source, str(tmp_path / "dst"), "main")
    assert Repository.open(tmp_path / "dst").resolve() == third
    assert _images(Repository.open(tmp_path / "dst")) == _images(source)
    assert fsck(Repository.open(tmp_path / "dst")).ok


# -- 2. random histories read the same across maintenance ---------------------------

_image = st.tuples(
    st.sampled_from(["CAM", "IFCB1"]),
    st.integers(0, 72),
    st.sampled_from([0.5, 3.0, 40.0]),
    st.sampled_from([1, 30, 700, 9000]),
)
_step = st.one_of(
    st.tuples(st.just("commit"), st.integers(0, 3), st.lists(_image, min_size=1, max_size=5)),
    st.tuples(st.just("provenance"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("branch"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("maintain"), st.integers(0, 1), st.just(0)),
    st.tuples(st.just("maintain"), st.integers(0, 1), st.just(0)),
)


def _view(repo: Repository, oid: str) -> tuple:
    table = repo.snapshot(oid).images().sort_by("image_id")
    ids = table.column("image_id").to_pylist()
    return (
        table.to_pylist(),
        repo.snapshot(oid).count(instruments=["CAM"], depth=(0.0, 5.0)),
        repo.snapshot(oid).count(kinds=["classification"]),
        repo.snapshot(oid).cite().identifier,
        {i: repo.snapshot(oid).read_image(i) for i in ids},
    )


@settings(max_examples=max(1, settings.default.max_examples // 2))
@given(
    first=st.lists(_image, min_size=1, max_size=5), steps=st.lists(_step, min_size=2, max_size=14)
)
def test_every_commit_of_a_random_history_reads_the_same_across_maintenance(first, steps):
    url = f"memory://bundles-{uuid.uuid4().hex}"
    repo = Repository.init(url)
    branches, images, seen, runs = ["main"], {"main": []}, {}, 0
    for number, (kind, which, arg) in enumerate([("commit", 0, first), *steps]):
        branch = branches[which % len(branches)]
        oid = None
        if kind == "commit":
            rows = [
                (
                    inst,
                    {
                        "image_id": f"s{number}-{k}",
                        "timestamp": T0 + timedelta(hours=h),
                        "depth": depth,
                    },
                    f"s{number}-{k}|".encode() * size,
                )
                for k, (inst, h, depth, size) in enumerate(arg)
            ]
            with repo.transaction(branch, message=f"step {number}", author="t") as tx:
                for instrument in sorted({r[0] for r in rows}):
                    tx.append_bytes(
                        instrument,
                        [r[1] for r in rows if r[0] == instrument],
                        [r[2] for r in rows if r[0] == instrument],
                    )
            oid = tx.commit_id
            images[branch] += [r[1]["image_id"] for r in rows]
        elif kind == "provenance" and images[branch]:
            target = images[branch][arg % len(images[branch])]
            oid = add_provenance(
                repo,
                "classification",
                [{"image_id": target, "winner": f"w{number}", "model": "m"}],
                source="s",
                run_id=f"r{number}",
                branch=branch,
                author="t",
            )
        elif kind == "branch":
            at = list(seen)[arg % len(seen)]
            branches.append(f"b{number}")
            repo.create_branch(f"b{number}", at=at)
            images[f"b{number}"] = repo.snapshot(at).images().column("image_id").to_pylist()
        elif (
            kind == "maintain"
        ):  # by this instance, or by another one (the writer's view goes stale)
            maintain(repo if which else Repository.open(url))
            runs += 1
        if oid is not None:
            seen[oid] = _view(repo, oid)
    assert {oid: _view(Repository.open(url), oid) for oid in seen} == seen
    maintain(repo)
    runs += 1
    again = Repository.open(url)
    assert {oid: _view(again, oid) for oid in seen} == seen
    report = fsck(again, full=True)
    assert report.ok, report.problems
    assert not _loose(again)
    # The guarantee of the geometric rule: a run leaves every other bundle at
    # least GROWTH times the one it writes, so sizes at least double from the
    # smallest up, and no run adds more than one bundle.
    sizes = sorted(index.data_length for index in again.store.bundles(refresh=True).values())
    assert 1 <= len(sizes) <= runs
    assert all(big >= maintenance.GROWTH * small for small, big in itertools.pairwise(sizes)), sizes
    assert len(sizes) <= 1 + math.log2(sizes[-1] / sizes[0])


# -- 3. formats ----------------------------------------------------------------------
@pytest.fixture
def golden(tmp_path: Path) -> Path:
    shutil.copytree(DATA / "golden-format1", tmp_path / "golden")
    return tmp_path / "golden"


def test_the_golden_format1_repository_upgraded_and_bundled_reads_as_written(golden, observed):
    repo = Repository.open(golden)
    config = json.loads((golden / "improv.json").read_text())
    loose = _loose(repo)
    with pytest.raises(InvalidInputError, match="upgrade"):
        maintain(repo)
    assert _loose(repo) == loose and not list(repo.store.inner.list("bundles/"))
    assert repo.upgrade() is True and repo.config.format == 3 and repo.upgrade() is False
    assert json.loads((golden / "improv.json").read_text()) == {**config, "format": 3}
    report = maintain(Repository.open(golden))
    assert report.bundled == len(loose) and not report.skipped and not _loose(repo)
    fresh = Repository.open(golden)
    assert fresh.config.format == 3 and observed(fresh) == EXPECTED
    verified = cite.verify(fresh, cite.load(EXPECTED["citation"]))
    assert (verified.count, verified.images_checked) == (
        EXPECTED["images_at_day1"],
        EXPECTED["images_at_day1"],
    )
    assert fsck(fresh, full=True).ok


def test_the_cli_upgrades_then_maintains(golden, observed):
    refused = _cli("--repo", golden, "maintenance")
    assert refused.exit_code == InvalidInputError.exit_code and "improv upgrade" in refused.stderr
    out = _cli("--repo", golden, "upgrade", "--json")
    assert out.exit_code == 0 and json.loads(out.stdout) == {
        "format": 3,
        "previous": 1,
        "upgraded": True,
    }
    assert json.loads((golden / "improv.json").read_text())["format"] == 3
    again = _cli("--repo", golden, "upgrade", "--json")
    assert json.loads(again.stdout) == {"format": 3, "previous": 3, "upgraded": False}
    loose = _loose(Repository.open(golden))
    dry = json.loads(_cli("--repo", golden, "maintenance", "--dry-run", "--json").stdout)
    assert (
        dry["dry_run"]
        and dry["bundled"] == len(loose)
        and dry["bundle"] is None
        and dry["bundles"] == 1
    )
    assert _loose(Repository.open(golden)) == loose and not (golden / "bundles").exists()
    done = json.loads(_cli("--repo", golden, "maintenance", "--json").stdout)
    assert done["bundled"] == len(loose) and (golden / data_key(done["bundle"])).is_file()
    assert json.loads(_cli("--repo", golden, "fsck", "--full", "--json").stdout)["ok"] is True
    assert observed(Repository.open(golden)) == EXPECTED


def test_a_repository_of_a_newer_format_is_refused(tmp_path):
    Repository.init(tmp_path / "r")
    config = json.loads((tmp_path / "r" / "improv.json").read_text())
    (tmp_path / "r" / "improv.json").write_text(json.dumps({**config, "format": 4}))
    with pytest.raises(UnsupportedFormatError, match="format 4"):
        Repository.open(tmp_path / "r")
    result = _cli("--repo", tmp_path / "r", "log")
    assert result.exit_code == 8 and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "format 4" in lines[0]


# -- 4. gc ----------------------------------------------------------------------------
def test_gc_keeps_a_mixed_bundle_whole_and_deletes_a_wholly_unreachable_one(tmp_path):
    repo = Repository.init(tmp_path / "r")
    _commit(repo, "base", n=40, size=500)
    repo.create_branch("mixed")
    lost = _commit(repo, "lost", branch="mixed")
    mixed = maintain(repo).bundle  # the base and a commit that will become unreachable
    repo.create_branch("doomed")
    gone = _commit(repo, "gone", branch="doomed")
    report = maintain(repo)  # the doomed commit alone: too small to merge into the first bundle
    assert report.merged_bundles == 0 and set(repo.store.bundles()) == {mixed, report.bundle}
    assert set(repo.store.bundles()[report.bundle].key_names()) == _keys(repo, gone)
    lost_keys, gone_keys = _keys(repo, lost), _keys(repo, gone)
    repo.delete_branch("mixed")
    repo.delete_branch("doomed")
    files = {index_key(report.bundle), data_key(report.bundle)}
    dry = gc(repo, grace=0, dry_run=True, clock=lambda: LATER)
    assert set(dry.removed) == files and all((tmp_path / "r" / f).exists() for f in files)
    result = gc(repo, grace=0, clock=lambda: LATER)
    assert set(result.removed) == files and result.kept_in_bundles == len(lost_keys) > 0
    assert not any((tmp_path / "r" / f).exists() for f in files) and set(
        repo.store.bundles(refresh=True)
    ) == {mixed}
    assert all(repo.store.exists(k) for k in lost_keys) and not any(
        repo.store.exists(k) for k in gone_keys
    )
    assert set(_images(repo)) == {f"base-{i}" for i in range(40)} and repo.odb.get_commit(lost)
    assert fsck(repo, full=True).ok
    assert gc(repo, grace=0, clock=lambda: LATER).removed == []  # the mixed bundle stays whole


# -- 5. automatic maintenance -----------------------------------------------------------
def test_commits_run_maintenance_every_auto_every_commits(tmp_path, monkeypatch):
    monkeypatch.setattr(maintenance, "AUTO_EVERY", 4)
    monkeypatch.setenv("IMPROV_AUTO_MAINTENANCE", "1")
    repo = Repository.init(tmp_path / "r")
    since: set[str] = set()  # the keys of the commits since the last run
    for n in range(1, 10):
        oid = _commit(repo, f"c{n}", n=2)
        assert repo.odb.get_commit(oid).height == n
        since = set() if n % 4 == 0 else since | _keys(repo, oid)
        assert _loose(repo) <= since and bool(_loose(repo)) == bool(since)
    assert _loose(repo) and _loose(repo) <= _keys(repo, oid)  # only the ninth commit's own
    assert len(repo.store.bundles(refresh=True)) >= 1 and fsck(repo, full=True).ok


def test_automatic_maintenance_can_be_turned_off_and_skips_format1(tmp_path, monkeypatch, golden):
    monkeypatch.setattr(maintenance, "AUTO_EVERY", 4)
    repo = Repository.init(tmp_path / "r")
    for n in range(9):
        _commit(repo, f"c{n}", n=2)
    assert not list(repo.store.inner.list("bundles/")) and len(_loose(repo)) >= 9 * 3
    monkeypatch.setenv("IMPROV_AUTO_MAINTENANCE", "1")
    maintenance.auto(Repository.open(golden), 4)  # format 1: never bundled behind the user's back
    maintenance.auto(repo, 5)  # not a multiple of AUTO_EVERY
    assert not (golden / "bundles").exists() and not list(repo.store.inner.list("bundles/"))
    maintenance.auto(repo, 8)
    assert len(repo.store.bundles(refresh=True)) == 1 and not _loose(repo)


def test_a_failing_automatic_run_is_a_warning_and_the_commit_stands(tmp_path, monkeypatch):
    monkeypatch.setattr(maintenance, "AUTO_EVERY", 1)
    monkeypatch.setenv("IMPROV_AUTO_MAINTENANCE", "1")

    def broken(repo, dry_run=False, progress=None):
        raise StorageError("disk full")

    monkeypatch.setattr(maintenance, "maintain", broken)
    repo = Repository.init(tmp_path / "r")
    with pytest.warns(UserWarning, match="automatic maintenance did not run: disk full"):
        oid = _commit(repo, "a")
    assert repo.resolve() == oid and set(_images(repo)) == {"a-0", "a-1", "a-2"}


# -- 6. maintenance racing a commit ------------------------------------------------------
@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path) -> tuple[str, dict]:
    if request.param == "local":
        return str(tmp_path / "r"), {}
    return request.getfixturevalue("s3_url"), request.getfixturevalue("s3_options")


@pytest.mark.parametrize("hook", ["fence", "ref"])
def test_a_commit_lands_whole_when_maintenance_bundles_its_objects_first(
    location, hook, monkeypatch
):
    url, options = location
    repo = Repository.init(url, **options)
    _commit(repo, "a")
    maintain(repo)
    _commit(repo, "b")
    writers_view = set(repo.store.bundles(refresh=True))
    ran = []

    def maintain_once(pending: set[str]) -> None:
        if ran:
            return
        other = Repository.open(url, **options)
        assert pending <= _loose(other)  # the commit's objects are all written, and loose
        ran.append(maintain(other))
        assert not pending & _loose(other)  # now only in a bundle that the writer has not seen

    if hook == "fence":  # after the objects are written, before the fence check
        check = Fence.check

        def checked(self, keys):
            keys = set(keys)
            maintain_once(keys)
            return check(self, keys)

        monkeypatch.setattr(Fence, "check", checked)
    else:  # after the fence check, before the branch moves
        move = repo.refs.set_branch

        def moved(name, expected, new):
            maintain_once(_keys(repo, new))
            return move(name, expected, new)

        monkeypatch.setattr(repo.refs, "set_branch", moved)
    tip = _commit(repo, "racing")
    assert (
        ran and ran[0].bundled > 0 and ran[0].merged_bundles == 1
    )  # the writer's bundle was merged away
    assert not writers_view & set(Repository.open(url, **options).store.bundles())
    expected = {f"{n}-{i}" for n in ("a", "b", "racing") for i in range(3)}
    for reader in (repo, Repository.open(url, **options)):
        assert reader.resolve() == tip and set(_images(reader)) == expected
    assert _commit(repo, "after") and fsck(Repository.open(url, **options), full=True).ok


# -- 7. repair ---------------------------------------------------------------------------
def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _damaged(tmp_path: Path, victim) -> tuple[Repository, str, str]:  # type: ignore[no-untyped-def]
    """A bundled repository, a clean copy, and one bundled value damaged: (repo, key, expected
    problem)."""
    repo = Repository.init(tmp_path / "r")
    for n in range(3):
        _commit(repo, f"c{n}")
    maintain(repo)
    clone(str(tmp_path / "r"), tmp_path / "clean", hardlinks=False)
    ((bundle_id, index),) = repo.store.bundles(refresh=True).items()
    assert (
        os.stat(tmp_path / "r" / data_key(bundle_id)).st_ino
        != os.stat(tmp_path / "clean" / data_key(bundle_id)).st_ino
    )
    role, digest, offset, length = victim(sorted(index.entries(), key=lambda e: e[2]))
    _flip(tmp_path / "r" / data_key(bundle_id), offset + length // 2)
    what = f"pack {digest.hex()}" if role != OBJECT else f"object {digest.hex()}"
    return Repository.open(tmp_path / "r"), key_of(role, digest), what


def _repair_and_check(tmp_path: Path, repo: Repository, what: str) -> None:
    expected = _images(Repository.open(tmp_path / "clean"))
    broken = fsck(repo, full=True)
    assert not broken.ok and {
        f"{'pack' if p.what == 'pack' else 'object'} {p.object_id}"
        for p in broken.problems
        if p.what != "bundle"
    } == {what}
    assert [p.what for p in broken.problems].count(
        "bundle"
    ) == 1  # its data no longer hashes as its index says
    out = _cli(
        "--repo", tmp_path / "r", "fsck", "--full", "--repair-from", tmp_path / "clean", "--json"
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["ok"] is True and json.loads(out.stdout)["repaired"] == [what]
    healed = Repository.open(tmp_path / "r")
    assert fsck(healed, full=True).ok and _images(healed) == expected and not _loose(healed)
    maintain(healed)
    again = Repository.open(tmp_path / "r")
    assert fsck(again, full=True).ok and _images(again) == expected


@pytest.mark.parametrize(
    "victim",
    [lambda e: next(x for x in e if x[0] == PACK_DATA), lambda e: e[len(e) // 2]],
    ids=["pack-data", "middle-value"],
)
def test_repair_replaces_a_damaged_bundled_value(tmp_path, victim):
    repo, _, what = _damaged(tmp_path, victim)
    _repair_and_check(tmp_path, repo, what)


# -- maintenance never loses a bundle it rewrites, nor leaves a pack half loose --------


class Stopped(BaseException):
    """A run stopped (killed) at this point."""


def test_repair_of_the_first_value_of_a_bundle_keeps_the_repository(tmp_path):
    repo, _, what = _damaged(tmp_path, lambda e: e[0])
    _repair_and_check(tmp_path, repo, what)


@pytest.mark.parametrize("duplicate", ["good", "corrupt"])
def test_a_loose_duplicate_of_a_bundles_first_value_does_not_cost_the_bundle(tmp_path, duplicate):
    repo = Repository.init(tmp_path / "r")
    stale = BundledStore(open_store(str(tmp_path / "r")))
    assert stale.bundles() == {}  # a long-running writer's view, from before any bundle
    _commit(repo, "a")
    maintain(repo)
    expected = _images(repo)
    (index,) = repo.store.bundles(refresh=True).values()
    key = key_of(*min(index.entries(), key=lambda e: e[2])[:2])
    assert stale.put_or_freshen(key, repo.store.get(key)) and stale.is_loose(
        key
    )  # "at worst a loose duplicate"
    if duplicate == "corrupt":
        _flip(tmp_path / "r" / key, 0)
    maintain(Repository.open(tmp_path / "r"))
    fresh = Repository.open(tmp_path / "r")
    assert fsck(fresh, full=True).ok and _images(fresh) == expected


@pytest.mark.parametrize("how", ["stopped-run", "same-pack-again"])
def test_no_pack_half_stays_loose_after_a_completed_run(tmp_path, how):
    repo = Repository.init(tmp_path / "r")
    _commit(repo, "a")
    if how == "stopped-run":
        _commit(repo, "b")
        inner, delete = repo.store.inner, repo.store.inner.delete

        def stop_at_pack_data(key):
            if key.endswith(".pack"):
                raise Stopped
            delete(key)

        inner.delete = stop_at_pack_data
        with pytest.raises(Stopped):
            maintain(repo)
        inner.delete = delete
    else:  # the same images committed on two branches: the second pack is the first one again
        repo.create_branch("side")
        _commit(repo, "x")
        maintain(repo)
        _commit(repo, "x", branch="side")
    maintain(Repository.open(tmp_path / "r"))
    assert fsck(Repository.open(tmp_path / "r"), full=True).ok
    assert not _loose(Repository.open(tmp_path / "r"))
