"""Manifest parts: every snapshot of a long history reads the same rows
through parts as through its manifests, parts are built as segments merge,
and fsck checks them."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from improv_vcs.maintenance.fsck import fsck
from improv_vcs.query.filters import build_query
from improv_vcs.query.text import parse_where
from improv_vcs.repository.repository import Repository
from improv_vcs.snapshot import manifest, parts

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _no_auto_maintenance(monkeypatch):
    monkeypatch.setenv("IMPROV_AUTO_MAINTENANCE", "0")


def _commit(repo: Repository, n: int, size: int, extra: str | None) -> None:
    ids = [f"c{n:04d}_{i:02d}" for i in range(size)]
    columns = {
        "image_id": ids,
        "timestamp": [T0 + timedelta(minutes=20 * n, seconds=i) for i in range(size)],
        "depth": [float((n + i) % 4) for i in range(size)],
    }
    if extra == "int":
        columns["count"] = list(range(size))
    elif extra == "text":
        columns["note"] = [f"n{n}"] * size
    with repo.transaction(message=f"c{n}", author="t") as tx:
        tx.append_bytes(
            f"IFCB{n % 3}",
            pa.table(columns),
            [os.urandom(40) + bytes([n % 256, i]) for i in range(size)],
        )


def _from_manifests(repo: Repository, oid: str) -> pa.Table:
    snapshot = repo.snapshot(oid).reader
    ids = snapshot.batches.column("manifest").to_pylist()
    return pa.concat_tables(
        [manifest.decode(repo.odb.get_bytes(m)) for m in ids], promote_options="permissive"
    )


@settings(max_examples=4)
@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.sampled_from([None, None, "int", "text"])),
        min_size=16,
        max_size=40,
    )
)
def test_every_snapshot_reads_the_same_rows_through_parts(tmp_path_factory, history):
    repo = Repository.init(tmp_path_factory.mktemp("parts"))
    for n, (size, extra) in enumerate(history):
        _commit(repo, n, size, extra)
    head = repo.odb.get_commit(repo.resolve())
    assert head.format == 3 and any(s.parts for s in head.index)
    for oid, commit in repo.log():
        for segment in commit.index:
            assert sum(p.entries for p in segment.parts) == (
                segment.entries if segment.entries >= parts.MIN_ENTRIES else 0
            )
            assert sum(p.rows for p in segment.parts) == (segment.rows if segment.parts else 0)
        assert repo.snapshot(oid).images().equals(_from_manifests(repo, oid))
        assert (
            repo.snapshot(oid).count(where=[parse_where("depth = 1")])
            == _from_manifests(repo, oid).filter(pc.equal(pc.field("depth"), 1.0)).num_rows
        )
    report = fsck(repo, full=True)
    assert report.ok, report.problems


def test_a_full_scan_reads_parts_and_a_pruned_query_reads_manifests(tmp_path):
    repo = Repository.init(tmp_path / "r")
    for n in range(40):
        _commit(repo, n, 3, None)
    snapshot = repo.snapshot().reader
    every = snapshot.batches.column("manifest").to_pylist()
    reads = snapshot._reads(every)
    assert len(reads) == 1 + 40 - 32  # the level-5 segment's part, then 8 manifests
    assert [r.func for r in reads[:1]] == [parts.read]
    assert len(snapshot._reads(every[3:10])) == 7
    result = repo.snapshot().select(build_query(), count=False)
    assert result.manifests_scanned == 40 and result.table.num_rows == 120


def test_format1_repositories_write_no_parts(tmp_path):
    import json

    repo = Repository.init(tmp_path / "r")
    config = json.loads((tmp_path / "r" / "improv.json").read_bytes())
    old = dict(config, format=1)
    repo.store.compare_and_swap(
        "improv.json",
        (tmp_path / "r" / "improv.json").read_bytes(),
        json.dumps(old, sort_keys=True, separators=(",", ":")).encode(),
    )
    repo = Repository.open(tmp_path / "r")
    for n in range(20):
        _commit(repo, n, 2, None)
    for _, commit in repo.log():
        assert commit.format == 1 and not any(s.parts for s in commit.index)
        assert b'"parts"' not in repo.odb.get_bytes(repo.resolve())


def test_fsck_full_finds_a_part_that_differs_from_its_manifests(tmp_path):
    repo = Repository.init(tmp_path / "r")
    for n in range(16):
        _commit(repo, n, 2, None)
    part = next(p for s in repo.odb.get_commit(repo.resolve()).index for p in s.parts)
    rows = parts.read(repo.odb, part.id)
    forged = rows.set_column(
        0, "image_id", pa.array(sorted(rows.column("image_id").to_pylist(), reverse=True))
    )
    from improv_vcs.core.parquet import to_parquet
    from improv_vcs.storage.objects import object_key

    repo.store.replace(object_key(part.id), to_parquet(forged, parts.KIND))
    report = fsck(Repository.open(tmp_path / "r"), full=True)
    assert [p.what for p in report.problems] == ["part"]


def test_plain_fsck_hash_checks_the_manifests_a_part_stands_for(tmp_path):
    repo = Repository.init(tmp_path / "r")
    for n in range(16):
        _commit(repo, n, 2, None)
    from improv_vcs.storage.objects import object_key

    first = repo.snapshot().reader.batches.column("manifest")[0].as_py()
    data = bytearray(repo.store.get(object_key(first)))
    data[len(data) // 2] ^= 0xFF
    repo.store.replace(object_key(first), bytes(data))
    report = fsck(Repository.open(tmp_path / "r"))
    assert [(p.what, p.object_id) for p in report.problems] == [("manifest", first)]
