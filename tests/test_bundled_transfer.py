"""Transfers of a bundled history: a clone copies the source's bundles whole
(hard links on one disk, streamed ranged reads otherwise, from S3 too), a
push of many small commits sends them as bundles, and every value is
verified on the way."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from improv_vcs.core.errors import IntegrityError
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.maintenance.repack import maintain
from improv_vcs.repository.repository import Repository
from improv_vcs.storage.bundled_store import PREFIX
from improv_vcs.sync.sites import clone, push

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _manual_maintenance(monkeypatch):
    monkeypatch.setenv("IMPROV_AUTO_MAINTENANCE", "0")


def _history(repo: Repository, commits: int, start: int = 0) -> None:
    for c in range(start, start + commits):
        ids = [f"c{c:03d}-{i}" for i in range(3)]
        table = pa.table(
            {"image_id": ids, "timestamp": [T0 + timedelta(minutes=c, seconds=i) for i in range(3)]}
        )
        with repo.transaction(message=f"c{c}", author="t") as tx:
            tx.append_bytes("IFCB1", table, [os.urandom(50) for _ in ids])


def _images(repo: Repository) -> dict[str, bytes]:
    return {
        i: repo.snapshot().read_image(i)
        for i in repo.snapshot().images().column("image_id").to_pylist()
    }


@pytest.fixture
def origin(tmp_path: Path) -> Repository:
    repo = Repository.init(tmp_path / "origin")
    _history(repo, 30)
    maintain(repo)
    _history(repo, 5, start=30)  # a loose tail after the bundles
    return repo


@pytest.mark.parametrize("hardlinks", [True, False])
def test_a_clone_copies_the_bundles_whole_and_the_tail_as_values(origin, tmp_path, hardlinks):
    repo, result = clone(origin.url, str(tmp_path / "copy"), hardlinks=hardlinks)
    bundle = next(iter(origin.store.bundles()))
    assert result.transfer.bundles == 1 and result.transfer.commits == 5
    copied = tmp_path / "copy" / "bundles" / f"{bundle}.bundle"
    assert copied.read_bytes() == (Path(origin.url) / "bundles" / f"{bundle}.bundle").read_bytes()
    assert (
        os.stat(copied).st_ino == os.stat(Path(origin.url) / "bundles" / f"{bundle}.bundle").st_ino
    ) == hardlinks
    assert repo.resolve() == origin.resolve() and _images(repo) == _images(origin)
    assert fsck(repo, full=True).ok


def test_a_push_sends_bundles_and_a_clone_from_s3_copies_them(origin, tmp_path, s3_url, s3_options):
    pushed = push(origin, s3_url, endpoint_url=s3_options["endpoint_url"])
    assert pushed.transfer.commits == 35
    remote = Repository.open(s3_url, **s3_options)
    bundles = set(remote.store.bundles(refresh=True))
    assert (
        set(origin.store.bundles()) < bundles and len(bundles) == 2
    )  # the history's bundle whole, the tail in one
    assert not list(remote.store.inner.list("objects/")) and not list(
        remote.store.inner.list("packs/")
    )
    repo, result = clone(s3_url, str(tmp_path / "copy"), endpoint_url=s3_options["endpoint_url"])
    assert (result.transfer.bundles, result.transfer.commits) == (2, 0)
    assert repo.resolve() == origin.resolve() and _images(repo) == _images(origin)
    assert fsck(repo, full=True).ok


def test_a_damaged_source_bundle_fails_the_clone_and_leaves_nothing(origin, tmp_path):
    bundle = next(iter(origin.store.bundles()))
    data = Path(origin.url) / PREFIX / f"{bundle}.bundle"
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    data.write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError):
        clone(origin.url, str(tmp_path / "copy"), hardlinks=False)
    assert not (tmp_path / "copy").exists()
