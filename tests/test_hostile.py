"""Hostile and broken input: each fails with a clear error (type or CLI exit
code plus a message naming the culprit) and leaves the repository unchanged.

Covered: corrupted or truncated packs, pack indexes and loose objects
(detected on read and by fsck); hostile ref names; malformed object ids; a
remote serving bytes that do not match their ids or refs to missing commits;
hostile metadata (NaN, naive timestamps, latitude out of range, non-UTF-8 names,
duplicate columns); symlinks inside a commit SOURCE; a 2 GB file (slow)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_error, images, invoke, ok

from improv_vcs import IntegrityError, InvalidInputError, NotFoundError, Repository, StorageError
from improv_vcs.ingest.folders import scan_directory
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.storage.objects import object_key
from improv_vcs.storage.packs import index_key, pack_key
from improv_vcs.sync.sites import clone, fetch, pull

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
A1 = "D20240101T120000_IFCB107_00001"
A2 = "D20240101T120000_IFCB107_00002"


# -- helpers ---------------------------------------------------------------------


def blob(image_id: str) -> bytes:
    return f"pixels of {image_id}|".encode() * 20


def commit(repo: Repository, ids, day: int = 0) -> str:
    rows = [
        {"image_id": i, "timestamp": T0 + timedelta(days=day, seconds=n)} for n, i in enumerate(ids)
    ]
    with repo.transaction(message="add") as tx:
        tx.append_bytes("IFCB1", rows, [blob(i) for i in ids])
    assert tx.commit_id is not None
    return tx.commit_id


def state(url) -> tuple[dict[str, bytes], set[str]]:
    """Every ref's bytes and the set of every store key: what must not change."""
    store = Repository.open(url).store
    keys = set(store.list(""))
    return {k: store.get(k) for k in keys if k.startswith("refs/")}, keys


def flip(path: Path, offset: int) -> bytes:
    """Flip one byte; returns the original bytes to restore later."""
    original = path.read_bytes()
    data = bytearray(original)
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))
    return original


def truncate(path: Path, by: int = 5) -> bytes:
    original = path.read_bytes()
    path.write_bytes(original[:-by])
    return original


@pytest.fixture
def two(tmp_path) -> Repository:
    """A local repository with two commits: x1, x2 (day 0) then x3 (day 1)."""
    repo = Repository.init(tmp_path / "repo")
    commit(repo, ["x1", "x2"], day=0)
    commit(repo, ["x3"], day=1)
    return repo


def reopen(repo: Repository) -> Repository:
    return Repository.open(repo.url)  # no cached objects


def assert_fsck_names(repo: Repository, oid: str, what: str, full: bool = False) -> None:
    report = fsck(reopen(repo), full=full)
    assert not report.ok
    assert any(p.object_id == oid and p.what == what for p in report.problems), report.problems


def assert_fsck_cli(runner, repo: Repository, oid: str, full: bool = False) -> None:
    result = invoke(runner, "--repo", repo.url, "fsck", "-q", *(["--full"] if full else []))
    assert result.exit_code == 5, result.output
    assert oid in result.stdout and "problem" in result.stdout


# -- 1. corrupted or truncated packs, pack indexes and loose objects ------------------


@pytest.mark.parametrize("damage", [flip, truncate], ids=["flipped", "truncated"])
def test_damaged_pack_data_is_detected_on_read_and_by_fsck(runner, two, damage):
    row = two.snapshot().record("x2")  # the last blob of the first pack
    pack = row["pack"]
    path = Path(two.url) / pack_key(pack)
    before = state(two.url)
    original = damage(path, row["offset"] + 3) if damage is flip else damage(path)

    expected, words = (
        (IntegrityError, "corrupt") if damage is flip else (StorageError, "past the end")
    )
    with pytest.raises(expected, match=words) as info:
        reopen(two).snapshot().read_image("x2")
    assert pack in str(info.value)
    assert reopen(two).snapshot().read_image("x3") == blob("x3")  # other packs unaffected
    assert_error(
        invoke(runner, "--repo", two.url, "get", "x2", "-o", Path(two.url).parent / "x2.out"),
        5 if damage is flip else 7,
        pack,
    )
    assert not (Path(two.url).parent / "x2.out").exists()
    # a truncation shows without --full (size check), a flipped byte needs --full
    assert_fsck_names(two, pack, "pack", full=True)
    assert_fsck_cli(runner, two, pack, full=True)
    if damage is truncate:
        assert_fsck_names(two, pack, "pack", full=False)
    assert state(two.url) == before

    path.write_bytes(original)  # nothing was lost: repaired, everything reads again
    assert fsck(reopen(two), full=True).ok
    assert reopen(two).snapshot().read_image("x2") == blob("x2")


@pytest.mark.parametrize("damage", [flip, truncate], ids=["flipped", "truncated"])
def test_damaged_pack_index_is_detected_by_fsck(runner, two, damage):
    pack = two.snapshot().record("x1")["pack"]
    path = Path(two.url) / index_key(pack)
    before = state(two.url)
    original = damage(path, 40) if damage is flip else damage(path)

    with pytest.raises(IntegrityError, match=f"pack index {pack} is corrupt"):
        reopen(two).odb.pack_index(pack)
    # image reads use the manifest's locations and re-hash the blob: still correct
    assert reopen(two).snapshot().read_image("x1") == blob("x1")
    assert_fsck_names(two, pack, "pack")
    assert_fsck_cli(runner, two, pack)
    assert state(two.url) == before
    path.write_bytes(original)
    assert fsck(reopen(two), full=True).ok


@pytest.mark.parametrize("damage", [flip, truncate], ids=["flipped", "truncated"])
def test_damaged_manifest_is_detected_on_read_and_by_fsck(runner, two, damage):
    manifest = two.odb.get_commit(two.resolve()).batches[0].manifest
    path = Path(two.url) / object_key(manifest)
    before = state(two.url)
    original = damage(path, 10) if damage is flip else damage(path)

    for read in (lambda r: r.snapshot().images(), lambda r: r.snapshot().read_image("x3")):
        with pytest.raises(IntegrityError, match=f"object {manifest} is corrupt"):
            read(reopen(two))
    assert_error(
        invoke(runner, "--repo", two.url, "get", "x3", "-o", Path(two.url).parent / "x3.out"),
        5,
        manifest,
        "corrupt",
    )
    assert_fsck_names(two, manifest, "manifest")
    assert_fsck_cli(runner, two, manifest)
    assert state(two.url) == before
    path.write_bytes(original)
    assert fsck(reopen(two), full=True).ok and reopen(two).snapshot().images().num_rows == 3


@pytest.mark.parametrize("damage", [flip, truncate], ids=["flipped", "truncated"])
@pytest.mark.parametrize("which", ["tip", "parent"])
def test_damaged_commit_is_detected_on_read_and_by_fsck(runner, two, damage, which):
    tip = two.resolve()
    oid = tip if which == "tip" else two.odb.get_commit(tip).parents[0]
    path = Path(two.url) / object_key(oid)
    before = state(two.url)
    original = damage(path, 3) if damage is flip else damage(path)

    with pytest.raises(IntegrityError, match=f"object {oid} is corrupt"):
        list(reopen(two).log())
    if which == "tip":
        with pytest.raises(IntegrityError, match=f"object {oid} is corrupt"):
            reopen(two).snapshot().images()
    assert_error(invoke(runner, "--repo", two.url, "log"), 5, oid, "corrupt")
    assert_fsck_names(two, oid, "commit")
    assert_fsck_cli(runner, two, oid)
    assert state(two.url) == before
    path.write_bytes(original)
    assert fsck(reopen(two), full=True).ok and len(list(reopen(two).log())) == 2


# -- 2. hostile ref names ------------------------------------------------------------------

BAD_REFS = ["../x", "a/../b", "/abs", "a\x00b", "a\nb", "a\tb", "a" * 300]


@pytest.mark.parametrize(
    "name",
    BAD_REFS,
    ids=["dotdot", "inner-dotdot", "absolute", "nul", "newline", "tab", "300-chars"],
)
def test_hostile_ref_names_are_refused_everywhere(runner, two, name):
    before = state(two.url)
    for attempt in (
        lambda: two.create_branch(name),
        lambda: two.create_tag(name),
        lambda: two.create_tag(name, message="annotated"),
        lambda: two.transaction(branch=name),
        lambda: two.refs.branch(name),
        lambda: two.refs.set_branch(name, None, two.resolve()),
    ):
        with pytest.raises(InvalidInputError, match="invalid ref name"):
            attempt()
    with pytest.raises(NotFoundError, match="no branch, tag or commit named"):
        two.resolve(name)  # a lookup: it names nothing
    src = images(Path(two.url).parent / "src", A1)
    for args in (
        ["branch", name],
        ["tag", name],
        ["tag", name, "-m", "x"],
        ["commit", src, "-i", "IFCB107", "-b", name, "-q"],
    ):
        assert_error(invoke(runner, "--repo", two.url, *args), 2, "invalid ref name")
    assert state(two.url) == before


# -- 3. malformed object ids ----------------------------------------------------------------


def _bad_ids(good: str) -> dict[str, str]:
    return {
        "upper-case": good.upper(),
        "too long": good + "a",
        "too short": good[:3],
        "non-hex": "g" + good[1:],
        "empty": "",
        "path": "../" + good[3:],
    }


def test_malformed_object_ids_in_the_object_database(two):
    tip = two.resolve()
    row = two.snapshot().record("x1")
    before = state(two.url)
    for bad in _bad_ids(tip).values():
        with pytest.raises(InvalidInputError, match="not an object id"):
            two.odb.get_bytes(bad)
        with pytest.raises(InvalidInputError, match="not an object id"):
            two.odb.get_object(bad)
        with pytest.raises(InvalidInputError, match="not an object id"):
            two.odb.has(bad)
    for bad in _bad_ids(row["pack"]).values():
        with pytest.raises(InvalidInputError, match="not an object id"):
            two.odb.read_blob(bad, row["offset"], row["size"], row["blob_id"])
        with pytest.raises(InvalidInputError, match="not an object id"):
            two.odb.pack_index(bad)
    assert state(two.url) == before
    assert two.odb.read_blob(row["pack"], row["offset"], row["size"], row["blob_id"]) == blob("x1")


def test_read_blob_refuses_a_malformed_blob_id(two):
    row = two.snapshot().record("x1")
    for bad in (row["blob_id"].upper(), row["blob_id"][:10], "zz" * 32):
        with pytest.raises(InvalidInputError, match="not an object id"):
            two.odb.read_blob(row["pack"], row["offset"], row["size"], bad)


def test_malformed_object_ids_in_resolve_and_cli_show(runner, two):
    tip = two.resolve()
    before = state(two.url)
    for label, bad in _bad_ids(tip).items():
        if bad == "":
            continue  # "" means the default branch
        with pytest.raises(NotFoundError) as info:
            two.resolve(bad)
        assert "no branch, tag or commit named" in str(info.value), (label, info.value)
        assert_error(
            invoke(runner, "--repo", two.url, "show", bad), 3, "no branch, tag or commit named"
        )
        assert_error(
            invoke(runner, "--repo", two.url, "log", bad), 3, "no branch, tag or commit named"
        )
    # a valid id that names no object, and a blob-sized one naming a manifest
    with pytest.raises(NotFoundError):
        two.resolve("ab" * 32)
    manifest = two.odb.get_commit(tip).batches[0].manifest
    assert_error(invoke(runner, "--repo", two.url, "show", manifest), 3, "not a commit")
    assert state(two.url) == before


# -- 4. a remote serving bad bytes or dangling refs ----------------------------------------


@pytest.fixture
def origin_and_site(tmp_path):
    origin = Repository.init(tmp_path / "origin")
    commit(origin, ["o1", "o2"])
    site, _ = clone(origin.url, tmp_path / "site")
    new = commit(origin, ["o3"], day=1)
    return origin, site, new


def _assert_site_untouched(site: Repository, before, tip: str) -> None:
    assert state(site.url) == before
    again = reopen(site)
    assert again.resolve() == tip and again.remotes.tracking("origin") == {"main": tip}
    assert fsck(again, full=True).ok


def test_remote_commit_whose_bytes_do_not_match_its_id(runner, origin_and_site, tmp_path):
    origin, site, new = origin_and_site
    tip = site.resolve()
    before = state(site.url)
    original = flip(Path(origin.url) / object_key(new), 5)

    for sync in (pull, fetch):
        with pytest.raises(IntegrityError, match=f"object {new} .*corrupt"):
            sync(reopen(site))
    for command in ("pull", "fetch"):
        assert_error(invoke(runner, "--repo", site.url, command, "-q"), 5, new, "corrupt")
    _assert_site_untouched(site, before, tip)
    with pytest.raises(IntegrityError, match=f"object {new} .*corrupt"):
        clone(origin.url, tmp_path / "clone")
    assert_error(invoke(runner, "clone", origin.url, tmp_path / "cli-clone", "-q"), 5, "corrupt")
    for dest in ("clone", "cli-clone"):
        assert not (tmp_path / dest).exists()  # a failed clone leaves nothing behind

    (Path(origin.url) / object_key(new)).write_bytes(original)
    assert pull(reopen(site)).commit == new


def test_remote_manifest_whose_bytes_do_not_match_its_id_on_pull(runner, origin_and_site):
    origin, site, new = origin_and_site
    tip = site.resolve()
    manifest = origin.odb.get_commit(new).batches[0].manifest
    refs_before = state(site.url)[0]
    flip(Path(origin.url) / object_key(manifest), 0)

    with pytest.raises(IntegrityError, match=f"object {manifest} .*corrupt"):
        pull(reopen(site))
    assert_error(invoke(runner, "--repo", site.url, "pull", "-q"), 5, manifest, "corrupt")
    again = reopen(site)
    # verified packs may have been copied ahead; refs, commits and manifest are not
    assert state(site.url)[0] == refs_before and again.resolve() == tip
    assert not again.odb.has(new) and not again.odb.has(manifest)
    assert fsck(again, full=True).ok


def test_remote_branch_pointing_at_a_missing_commit(runner, origin_and_site, tmp_path):
    origin, site, _ = origin_and_site
    tip = site.resolve()
    before = state(site.url)
    ghost = "ab" * 32
    (Path(origin.url) / "refs" / "heads" / "main").write_text(ghost + "\n")

    for sync in (pull, fetch):
        with pytest.raises(NotFoundError, match=f"{ghost} is missing"):
            sync(reopen(site))
    for command in ("pull", "fetch"):
        assert_error(invoke(runner, "--repo", site.url, command, "-q"), 3, ghost, "missing")
    _assert_site_untouched(site, before, tip)
    with pytest.raises(NotFoundError, match=f"{ghost} is missing"):
        clone(origin.url, tmp_path / "clone")
    assert not (tmp_path / "clone").exists()
    assert_error(invoke(runner, "clone", origin.url, tmp_path / "cli-clone", "-q"), 3, ghost)
    # the origin's own fsck names the dangling ref
    assert_fsck_names(origin, ghost, "ref")


def test_remote_ref_holding_garbage(runner, origin_and_site):
    origin, site, _ = origin_and_site
    tip = site.resolve()
    before = state(site.url)
    (Path(origin.url) / "refs" / "heads" / "main").write_bytes(b"../../etc/passwd\n")
    with pytest.raises(IntegrityError, match="does not hold an object id"):
        fetch(reopen(site))
    assert_error(invoke(runner, "--repo", site.url, "pull", "-q"), 5, "does not hold an object id")
    _assert_site_untouched(site, before, tip)


# -- 5. hostile metadata and file names in a SOURCE directory --------------------------------


@pytest.fixture
def base(runner, tmp_path):
    """A repository with one CLI commit, and its state."""
    path = tmp_path / "repo"
    ok(invoke(runner, "init", path))
    ok(
        invoke(
            runner, "--repo", path, "commit", images(tmp_path / "day1", A1), "-i", "IFCB107", "-q"
        )
    )
    return path, state(path)


def _csv_source(tmp_path: Path, text: str) -> Path:
    src = images(tmp_path / "src", "b1")
    (src / "metadata.csv").write_text(text)
    return src


def _bytes_csv_source(tmp_path: Path, data: bytes) -> Path:
    src = images(tmp_path / "src", "b1")
    (src / "metadata.csv").write_bytes(data)
    return src


def _parquet_source(tmp_path: Path, table: pa.Table) -> Path:
    src = images(tmp_path / "src", "b1")
    pq.write_table(table, src / "metadata.parquet")
    return src


def _ts(naive: bool = False) -> pa.Array:
    return pa.array([datetime(2024, 1, 2, 6)], pa.timestamp("us", tz=None if naive else "UTC"))


HOSTILE_SOURCES = {
    "lat 95 (csv)": (
        lambda p: _csv_source(p, "image_id,timestamp,lat,lon\nb1,2024-01-02T06:00:00Z,95,0\n"),
        "lat",
    ),
    "lat -90.5 (csv)": (
        lambda p: _csv_source(p, "image_id,timestamp,lat,lon\nb1,2024-01-02T06:00:00Z,-90.5,0\n"),
        "lat",
    ),
    "lat NaN (parquet)": (
        lambda p: _parquet_source(
            p,
            pa.table({"image_id": ["b1"], "timestamp": _ts(), "lat": [float("nan")], "lon": [0.0]}),
        ),
        "lat",
    ),
    "lon inf (parquet)": (
        lambda p: _parquet_source(
            p,
            pa.table({"image_id": ["b1"], "timestamp": _ts(), "lat": [0.0], "lon": [float("inf")]}),
        ),
        "lon",
    ),
    "duplicate columns (csv)": (
        lambda p: _csv_source(p, "image_id,timestamp,lat,lat\nb1,2024-01-02T06:00:00Z,1,2\n"),
        "duplicate",
    ),
    "duplicate columns (parquet)": (
        lambda p: _parquet_source(
            p,
            pa.Table.from_arrays(
                [pa.array(["b1"]), _ts(), pa.array([1.0]), pa.array([2.0])],
                names=["image_id", "timestamp", "lat", "lat"],
            ),
        ),
        "duplicate",
    ),
    "non-UTF-8 name in metadata.csv": (
        lambda p: _bytes_csv_source(
            p, b"filename,timestamp\nb1.png,2024-01-02T06:00:00Z\nb\xff.png,2024-01-02T06:00:00Z\n"
        ),
        "metadata.csv",
    ),
}


@pytest.mark.parametrize("case", HOSTILE_SOURCES)
def test_hostile_metadata_is_refused_and_nothing_is_written(runner, base, tmp_path, case):
    repo, before = base
    build, fragment = HOSTILE_SOURCES[case]
    src = build(tmp_path)
    assert_error(invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB107", "-q"), 2, fragment)
    with pytest.raises(InvalidInputError, match=fragment):
        metadata, paths = scan_directory(src)
        with Repository.open(repo).transaction(message="x") as tx:
            tx.append_files("IFCB107", metadata, paths)
    assert state(repo) == before


def test_hostile_metadata_through_the_api(tmp_path):
    repo = Repository.init(tmp_path / "r")
    commit(repo, ["x1"])
    before = state(repo.url)
    cases = {
        "lat": [{"image_id": "b1", "timestamp": T0, "lat": float("nan"), "lon": 0.0}],
        "lat ": [{"image_id": "b1", "timestamp": T0, "lat": 95.0, "lon": 0.0}],
        "duplicate": pa.Table.from_arrays(
            [pa.array(["b1"]), pa.array([T0]), pa.array([1.0]), pa.array([2.0])],
            names=["image_id", "timestamp", "lat", "lat"],
        ),
    }
    for fragment, rows in cases.items():
        with pytest.raises(InvalidInputError, match=fragment.strip()):
            with repo.transaction(message="x") as tx:
                tx.append_bytes("IFCB1", rows, [b"bytes"])
        assert tx.commit_id is None
    assert state(repo.url) == before


def _non_utf8_source(tmp_path: Path) -> Path:
    src = images(tmp_path / "src", A2)
    with open(os.path.join(os.fsencode(src), b"D20240102T060000_IFCB107_0000\xff.png"), "wb") as f:
        f.write(b"hostile name")
    return src


@pytest.mark.skipif(
    sys.platform != "linux", reason="needs a file system that takes arbitrary bytes as names"
)
def test_non_utf8_file_name_in_source_is_a_clear_error(runner, base, tmp_path):
    repo, before = base
    src = _non_utf8_source(tmp_path)
    try:
        with pytest.raises(InvalidInputError, match="UTF-8"):
            scan_directory(src)
        assert_error(
            invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB107", "-q"), 2, "UTF-8"
        )
    finally:
        assert state(repo) == before  # holds today too: the failure happens before any write


# -- 6. symlinks inside a SOURCE directory -------------------------------------------------------


def test_symlink_to_a_file_outside_source_is_not_followed(runner, base, tmp_path):
    repo, before = base
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(b"not yours")
    src = images(tmp_path / "src", A2)
    (src / "D20240102T060000_IFCB107_00009.png").symlink_to(secret)

    result = invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB107", "-q")
    if result.exit_code == 0:  # skipping the link is fine; ingesting its target is not
        ids = Repository.open(repo).snapshot().images().column("image_id").to_pylist()
        assert "D20240102T060000_IFCB107_00009" not in ids and A2 in ids
    else:
        assert_error(result, 2, "D20240102T060000_IFCB107_00009")
        assert state(repo) == before


def test_symlinked_directory_pointing_outside_source_is_not_followed(runner, base, tmp_path):
    repo, _ = base
    outside = images(tmp_path / "outside", "D20240103T060000_IFCB107_00001")
    src = images(tmp_path / "src", A2)
    (src / "elsewhere").symlink_to(outside, target_is_directory=True)
    _, paths = scan_directory(src)
    assert paths == [str(src / f"{A2}.png")]
    ok(invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB107", "-q"))
    ids = Repository.open(repo).snapshot().images().column("image_id").to_pylist()
    assert "D20240103T060000_IFCB107_00001" not in ids and A2 in ids


def test_symlink_to_a_file_inside_source_commits_its_bytes(runner, base, tmp_path):
    repo, _ = base
    src = images(tmp_path / "src", A2)
    alias = "D20240102T060000_IFCB107_00003"
    (src / f"{alias}.png").symlink_to(src / f"{A2}.png")
    ok(invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB107", "-q"))
    opened = Repository.open(repo)
    assert (
        opened.snapshot().read_image(alias)
        == opened.snapshot().read_image(A2)
        == (src / f"{A2}.png").read_bytes()
    )
    assert fsck(opened, full=True).ok


def test_symlink_loop_in_source_is_a_clear_error(runner, base, tmp_path):
    repo, before = base
    src = images(tmp_path / "src", A2)
    (src / "D20240102T060000_IFCB107_00004.png").symlink_to(
        src / "D20240102T060000_IFCB107_00004.png"
    )
    assert_error(
        invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB107", "-q"), 2, "cannot read"
    )
    assert state(repo) == before


# -- 7. a 2 GB file: streamed, memory bounded --------------------------------------------------

_BIG = textwrap.dedent(
    """
    import os, resource, sys
    from pathlib import Path
    os.environ["IMPROV_MAX_IMAGE_BYTES"] = "3G"  # over the default limit of one image
    from improv_vcs import Repository
    from improv_vcs.ingest.folders import scan_directory

    base = Path(sys.argv[1])
    src = base / "src"
    src.mkdir()
    with open(src / "D20240101T120000_IFCB107_00001.png", "wb") as f:
        f.truncate(2 * 2**30)  # sparse: 2 GiB of zeros, no disk used
    repo = Repository.init(base / "repo")
    metadata, paths = scan_directory(src)
    with repo.transaction(message="big") as tx:
        tx.append_files("IFCB107", metadata, paths)
    print(tx.commit_id, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """
)


@pytest.mark.slow
def test_a_2gb_file_is_committed_with_bounded_memory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _BIG, str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    commit_id, peak = result.stdout.split()
    peak_mib = int(peak) / 2**20
    assert peak_mib < 512, f"peak RSS {peak_mib:.0f} MiB for a 2048 MiB file"
    repo = Repository.open(tmp_path / "repo")
    assert repo.resolve() == commit_id
    assert repo.snapshot().images().column("size").to_pylist() == [2 * 2**30]
