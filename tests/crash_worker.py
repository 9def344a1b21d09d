"""One repository operation, run in a subprocess that the crash harness
(``tests/test_crash.py``) kills with SIGKILL at a random moment.

Usage: ``python tests/crash_worker.py OP DIR`` where ``DIR`` holds the
operation's repositories (``site``, ``remote``, ``export``). Prints
``ready`` once the imports are done (the harness starts its kill delay
then) and ``done`` when the operation has completed.

The data (image ids, bytes, rows, records) is a pure function of the names
below, so the harness can compute every expected state in process.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
PACK_SIZE = 4096  # small packs: many publish points per operation
INSTRUMENT = "IFCB1"

BASE = [f"base-{n:03d}" for n in range(40)]  # in every repository
COMMIT = [f"new-{n:03d}" for n in range(200)]  # the killed commit appends these
REMOTE_SIDE = [f"remote-{n:03d}" for n in range(200)]  # on the remote only (push: on the site only)
SITE_SIDE = [f"site-{n:03d}" for n in range(20)]  # pull: the site's own appends
EXPORTED = [f"exp-{n:03d}" for n in range(260)]  # export: in the repository besides BASE
GARBAGE = [f"junk-{n:03d}" for n in range(120)]  # gc: in an aborted transaction
SMALL_COMMITS = 40  # maintenance and push_bundles: a history of small commits
SMALL = [[f"small-{c:02d}-{n}" for n in range(4)] for c in range(SMALL_COMMITS)]


def blob(image: str) -> bytes:
    """About 300 bytes, distinct per image."""
    seed = hashlib.sha256(image.encode()).digest()
    return image.encode() + b":" + seed * 9


def rows(ids: list[str], offset: int = 0) -> list[dict]:
    return [
        {"image_id": i, "timestamp": T0 + timedelta(seconds=offset + n)} for n, i in enumerate(ids)
    ]


def records(ids: list[str]) -> list[dict]:
    return [
        {"image_id": i, "winner": "Diatom", "score": (n % 100) / 100, "model": "m1"}
        for n, i in enumerate(ids)
    ]


def append(
    repo,
    ids: list[str],
    offset: int = 0,
    message: str = "add",
    branch: str | None = None,
    provenance: bool = False,
):
    """Commit ``ids`` in one transaction, in chunks, with small packs."""
    with repo.transaction(branch, message=message, pack_size=PACK_SIZE) as tx:
        for start in range(0, len(ids), 50):
            chunk = ids[start : start + 50]
            tx.append_bytes(INSTRUMENT, rows(chunk, offset + start), [blob(i) for i in chunk])
        if provenance:
            tx.add_provenance("classification", records(ids), source="clf", run_id="run1")
    return tx


# -- the operations (also called in process, to re-run them to completion) ------


def op_commit(root: Path) -> None:
    from improv_vcs import Repository

    append(Repository.open(root / "site"), COMMIT, 1000, "crash batch", provenance=True)


def op_push(root: Path) -> None:
    from improv_vcs import Repository
    from improv_vcs.sync.sites import push

    push(Repository.open(root / "site"), str(root / "remote"))


def op_pull(root: Path) -> None:
    from improv_vcs import Repository
    from improv_vcs.sync.sites import pull

    pull(Repository.open(root / "site"), str(root / "remote"), author="crash")


def op_export(root: Path) -> None:
    from improv_vcs import Repository

    Repository.open(root / "site").snapshot().export(root / "export")


def op_gc(root: Path) -> None:
    from improv_vcs import Repository
    from improv_vcs.maintenance.gc import gc

    gc(Repository.open(root / "site"), grace=0, force=True)  # takes over from a killed run


def op_maintenance(root: Path) -> None:
    from improv_vcs import Repository
    from improv_vcs.maintenance.repack import maintain

    maintain(Repository.open(root / "site"))


def op_push_bundles(root: Path) -> None:
    op_push(root)


OPS = {
    "commit": op_commit,
    "push": op_push,
    "pull": op_pull,
    "export": op_export,
    "gc": op_gc,
    "maintenance": op_maintenance,
    "push_bundles": op_push_bundles,
}


if __name__ == "__main__":
    import improv_vcs.maintenance.gc
    import improv_vcs.maintenance.repack  # noqa: F401
    import improv_vcs.query.export
    import improv_vcs.repository.repository
    import improv_vcs.sync.sites  # noqa: F401

    op, root = sys.argv[1], Path(sys.argv[2])
    print("ready", flush=True)
    OPS[op](root)
    print("done", flush=True)
