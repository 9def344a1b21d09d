"""Repair from another site: `fsck --repair-from` replaces corrupt or missing
objects and packs with verified copies; `clone --no-hardlinks` makes copies
that one in-place corruption cannot reach."""

from __future__ import annotations

import json
import os

import pytest
from conftest import add, image_ids, invoke, ok

from improv_vcs import IntegrityError, InvalidInputError, NotFoundError, Repository
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.storage.objects import object_key
from improv_vcs.storage.packs import pack_key
from improv_vcs.sync.sites import clone, repair


def _flip(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _origin(tmp_path) -> tuple[Repository, str]:
    origin = Repository.init(tmp_path / "origin")
    add(origin, "a")
    add(origin, "b")
    return origin, origin.snapshot().reader.batches.column("packs")[0].as_py()[0]


def test_clone_shares_packs_by_default_and_copies_them_on_request(tmp_path, runner):
    origin, pack = _origin(tmp_path)
    clone(str(tmp_path / "origin"), tmp_path / "linked")
    ok(
        invoke(
            runner,
            "clone",
            str(tmp_path / "origin"),
            str(tmp_path / "copied"),
            "--no-hardlinks",
            "-q",
        )
    )

    def inode(name: str) -> int:
        return os.stat(tmp_path / name / pack_key(pack)).st_ino

    assert inode("linked") == inode("origin") != inode("copied")
    _flip(tmp_path / "copied" / pack_key(pack))
    assert fsck(origin, full=True).ok  # the origin is intact
    assert not fsck(Repository.open(tmp_path / "copied"), full=True).ok


def test_fsck_repair_from_replaces_a_corrupt_pack_and_a_missing_manifest(tmp_path, runner):
    origin, pack = _origin(tmp_path)
    copy, _ = clone(str(tmp_path / "origin"), tmp_path / "copy", hardlinks=False)
    _flip(tmp_path / "copy" / pack_key(pack))
    manifest = copy.snapshot().reader.batches.column("manifest")[1].as_py()
    copy.store.delete(object_key(manifest))
    broken = fsck(copy, full=True)
    assert {(p.what, p.object_id) for p in broken.problems} == {
        ("pack", pack),
        ("manifest", manifest),
    }
    out = json.loads(
        ok(
            invoke(
                runner,
                "--repo",
                str(tmp_path / "copy"),
                "fsck",
                "--full",
                "--repair-from",
                "origin",
                "--json",
            )
        ).stdout
    )
    assert out["ok"] is True and sorted(out["repaired"]) == sorted(
        [f"object {manifest}", f"pack {pack}"]
    )
    healed = Repository.open(tmp_path / "copy")
    assert fsck(healed, full=True).ok and image_ids(healed) == image_ids(origin)
    assert [healed.snapshot().read_image(i) for i in image_ids(origin)] == [
        origin.snapshot().read_image(i) for i in image_ids(origin)
    ]


def test_repair_refuses_a_copy_that_is_corrupt_at_the_remote_too(tmp_path):
    origin, pack = _origin(tmp_path)
    copy, _ = clone(str(tmp_path / "origin"), tmp_path / "copy")  # hard-linked: one file, two names
    _flip(tmp_path / "copy" / pack_key(pack))
    with pytest.raises(IntegrityError, match=f"pack {pack} from .* is corrupt"):
        repair(copy, "origin")
    assert not fsck(copy, full=True).ok and not fsck(origin, full=True).ok


def test_clone_refuses_a_folder_that_is_not_empty_and_cleans_up_after_failing(tmp_path, runner):
    _origin(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    result = invoke(runner, "clone", str(tmp_path / "origin"), str(tmp_path / "busy"), "-q")
    assert result.exit_code == 2 and "already exists and is not empty" in result.output
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    clone(str(tmp_path / "origin"), tmp_path / "first")
    with pytest.raises(InvalidInputError, match="not empty"):
        clone(str(tmp_path / "origin"), tmp_path / "first")  # an existing copy is not re-fetched
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no branch 'nope'"):
        clone(str(tmp_path / "origin"), tmp_path / "empty", branch="nope")
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())
    with pytest.raises(NotFoundError):
        clone(str(tmp_path / "origin"), tmp_path / "fresh", branch="nope")
    assert not (tmp_path / "fresh").exists()
