"""Many OS processes committing to one branch at once lose no commit and
duplicate none: 8 processes x 20 commits, on local disk and on S3 (moto).

Every commit's compare-and-swap on ``main`` races the seven other processes;
a loser re-parents on the new tip and retries (``improv_vcs.write.transaction``).
At the end the branch holds every batch exactly once, on one first-parent
chain, and ``fsck --full`` finds nothing wrong.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
import traceback
from datetime import datetime, timedelta, timezone

import pytest

from improv_vcs import Repository
from improv_vcs.maintenance.fsck import fsck

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
PROCESSES = 8
IMAGES_PER_BATCH = 2
INSTRUMENT = "IFCB1"


def batch_ids(proc: int, commit: int) -> list[str]:
    return [f"p{proc}_c{commit}_i{k}" for k in range(IMAGES_PER_BATCH)]


def batch_rows(proc: int, commit: int) -> list[dict]:
    start = T0 + timedelta(minutes=proc * 1000 + commit)
    return [
        {"image_id": image, "timestamp": start + timedelta(seconds=k)}
        for k, image in enumerate(batch_ids(proc, commit))
    ]


def blob(image: str) -> bytes:
    return f"pixels of {image}".encode() * 3


def _writer(url: str, options: dict, proc: int, commits: int, barrier, errors) -> None:
    """One process: ``commits`` transactions of one tiny batch each to ``main``."""
    try:
        repo = Repository.open(url, **options)
        barrier.wait(timeout=120)  # everyone starts racing at once
        for n in range(commits):
            ids = batch_ids(proc, n)
            with repo.transaction("main", message=f"p{proc} c{n}", author=f"proc {proc}") as tx:
                tx.append_bytes(INSTRUMENT, batch_rows(proc, n), [blob(i) for i in ids])
            if tx.commit_id is None:
                raise AssertionError(f"p{proc} c{n}: the commit made nothing")
    except BaseException:  # noqa: BLE001 - reported to the parent, then exit 1
        errors.put(f"process {proc}:\n{traceback.format_exc()}")
        raise SystemExit(1) from None


def race(url: str, options: dict, commits: int) -> float:
    """Init ``url`` with a root commit, race PROCESSES writers, check the result.
    Returns the seconds the race took."""
    repo = Repository.init(url, **options)
    with repo.transaction("main", message="root", author="test") as tx:
        tx.append_bytes(INSTRUMENT, [{"image_id": "root", "timestamp": T0}], [blob("root")])
    assert tx.commit_id is not None

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    errors = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(url, options, p, commits, barrier, errors))
        for p in range(PROCESSES)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    elapsed = time.perf_counter() - started
    print(
        f"{PROCESSES} processes x {commits} commits on "
        f"{url.split(':')[0] if '://' in url else 'local'}: "
        f"{elapsed:.1f} s"
    )
    alive = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    assert not alive, f"writers still running after 600 s: {alive}"
    assert [p.exitcode for p in procs] == [0] * PROCESSES, "\n".join(reported)

    repo = Repository.open(url, **options)
    expected_batches = PROCESSES * commits
    snapshot = repo.snapshot().reader
    assert snapshot.batches.num_rows == 1 + expected_batches

    ids = repo.snapshot().images().column("image_id").to_pylist()
    assert len(ids) == 1 + expected_batches * IMAGES_PER_BATCH
    assert len(set(ids)) == len(ids), "an image is present more than once"
    expected = {"root"} | {
        i for p in range(PROCESSES) for n in range(commits) for i in batch_ids(p, n)
    }
    assert set(ids) == expected

    history = list(repo.log())
    assert len(history) == 1 + expected_batches
    messages = [commit.message for _, commit in history]
    assert len(set(messages)) == len(messages), "a batch was committed twice"
    assert messages[-1] == "root"
    # one first-parent chain, each commit adding exactly one batch
    for (oid, commit), (parent_id, parent) in itertools.pairwise(history):
        assert commit.parents == (parent_id,), oid
        assert commit.height == parent.height + 1, oid
        assert len(commit.batches) == 1, oid
    assert history[-1][1].parents == ()
    manifests = [b.manifest for _, c in history for b in c.batches]
    assert len(manifests) == 1 + expected_batches
    assert len(set(manifests)) == len(manifests), "a manifest is referenced twice"
    # every process's commits stay in its own order along the chain
    for p in range(PROCESSES):
        mine = [m for m in reversed(messages) if m.startswith(f"p{p} ")]
        assert mine == [f"p{p} c{n}" for n in range(commits)]

    report = fsck(repo, full=True)
    assert report.ok, report.to_json()
    assert report.commits == 1 + expected_batches
    for image in ("root", *batch_ids(PROCESSES - 1, commits - 1)):
        assert repo.snapshot().read_image(image) == blob(image)
    return elapsed


def test_8_processes_x_20_commits_local(tmp_path):
    race(str(tmp_path / "repo"), {}, commits=20)


def test_8_processes_x_5_commits_s3(s3_url, s3_options):
    """CI-sized S3 race (the full 8 x 20 is ``slow``)."""
    race(s3_url, s3_options, commits=5)


@pytest.mark.slow
def test_8_processes_x_20_commits_s3(s3_url, s3_options):
    race(s3_url, s3_options, commits=20)


# -- gc beside writers that reuse old garbage -----------------------------------------

GC_WRITERS = 4
GC_COMMITS = 4


def _garbage_ids(proc: int) -> list[str]:
    return [f"g{proc}_i{k}" for k in range(IMAGES_PER_BATCH)]


def _reusing_writer(url: str, proc: int, barrier, errors, refusals) -> None:
    """Commit the images of a deleted branch again (same pack, manifest and
    segment ids), then new ones; a commit refused because a gc is taking
    what it reuses is run again."""
    from improv_vcs import ConflictError

    try:
        repo = Repository.open(url)
        barrier.wait(timeout=120)
        for n in range(GC_COMMITS):
            ids = _garbage_ids(proc) if n == 0 else batch_ids(proc, n)
            rows = (
                [{"image_id": i, "timestamp": T0 + timedelta(minutes=proc)} for i in ids]
                if n == 0
                else batch_rows(proc, n)
            )
            for _ in range(50):
                try:
                    with repo.transaction("main", message=f"p{proc} c{n}") as tx:
                        tx.append_bytes(INSTRUMENT, rows, [blob(i) for i in ids])
                    break
                except ConflictError:
                    refusals.put(proc)
            else:
                raise AssertionError(f"p{proc} c{n}: refused 50 times")
    except BaseException:  # noqa: BLE001 - reported to the parent, then exit 1
        errors.put(f"process {proc}:\n{traceback.format_exc()}")
        raise SystemExit(1) from None


def _collector(url: str, runs: int, barrier, errors) -> None:
    from improv_vcs.maintenance.gc import gc

    try:
        repo = Repository.open(url)
        barrier.wait(timeout=120)
        for _ in range(runs):
            gc(repo, grace=86400)
    except BaseException:  # noqa: BLE001
        errors.put(f"gc:\n{traceback.format_exc()}")
        raise SystemExit(1) from None


def test_gc_running_beside_writers_that_reuse_its_garbage_loses_nothing(tmp_path):
    """Four processes commit again the images of branches that were deleted
    (objects two days old, unreachable: exactly what gc removes) while a
    fifth process runs gc over and over. Every commit lands whole, at once or
    after a refusal, and nothing else is lost."""
    import os

    url = str(tmp_path / "repo")
    repo = Repository.init(url)
    with repo.transaction("main", message="root") as tx:
        tx.append_bytes(INSTRUMENT, [{"image_id": "root", "timestamp": T0}], [blob("root")])
    for proc in range(GC_WRITERS):
        repo.create_branch(f"side{proc}")
        ids = _garbage_ids(proc)
        with repo.transaction(f"side{proc}", message="garbage") as tx:
            tx.append_bytes(
                INSTRUMENT,
                [{"image_id": i, "timestamp": T0 + timedelta(minutes=proc)} for i in ids],
                [blob(i) for i in ids],
            )
        repo.store.delete(f"refs/heads/side{proc}")
    old = time.time() - 2 * 86400
    for folder in ("objects", "packs"):
        for path in (tmp_path / "repo" / folder).rglob("*"):
            if path.is_file():
                os.utime(path, (old, old))

    ctx = multiprocessing.get_context("spawn")
    barrier, errors, refusals = ctx.Barrier(GC_WRITERS + 1), ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=_reusing_writer, args=(url, p, barrier, errors, refusals))
        for p in range(GC_WRITERS)
    ]
    procs.append(ctx.Process(target=_collector, args=(url, 8, barrier, errors)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    assert [p.exitcode for p in procs] == [0] * len(procs), "\n".join(reported)
    refused = 0
    while not refusals.empty():
        refused += 1 + 0 * refusals.get()
    print(f"{refused} commit(s) refused while gc took what they reused, then run again")

    repo = Repository.open(url)
    expected = {"root"} | {i for p in range(GC_WRITERS) for i in _garbage_ids(p)}
    expected |= {
        i for p in range(GC_WRITERS) for n in range(1, GC_COMMITS) for i in batch_ids(p, n)
    }
    ids = repo.snapshot().images().column("image_id").to_pylist()
    assert sorted(ids) == sorted(expected)
    assert len(list(repo.log())) == 1 + GC_WRITERS * GC_COMMITS
    report = fsck(repo, full=True)
    assert report.ok, report.to_json()
    for image in ids:
        assert repo.snapshot().read_image(image) == blob(image)
    from improv_vcs.maintenance.gc import gc

    gc(repo, grace=0)  # what is left is garbage only: the history stays whole
    assert fsck(repo, full=True).ok and sorted(
        repo.snapshot().images().column("image_id").to_pylist()
    ) == sorted(expected)


def test_four_cli_processes_with_one_task_id_make_one_commit(tmp_path):
    """`improv commit --task-id` from four processes at once (a retried
    ingest job, say): exactly one commit records the task, whichever wins."""
    import json
    import subprocess
    import sys

    url = tmp_path / "repo"
    Repository.init(url)
    folders = []
    for n in range(4):
        folder = tmp_path / f"bin{n}"
        folder.mkdir()
        for k in range(3):
            (folder / f"D20240501T000000_IFCB1_{n:02d}{k:03d}.png").write_bytes(
                f"run {n} image {k}".encode() * 20
            )
        folders.append(folder)
    command = [sys.executable, "-m", "improv_vcs.cli", "--repo", str(url), "commit"]
    procs = [
        subprocess.Popen(
            [*command, str(f), "-i", "IFCB1", "--task-id", "bin-0001", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for f in folders
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err.decode() for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    repo = Repository.open(url)
    tasks = [(oid, c.task) for oid, c in repo.log()]
    assert [t for _, t in tasks] == ["bin-0001"]
    landed = tasks[0][0]
    assert sorted(r["commit"] for r in results) == [landed] * 4
    assert sum(1 for r in results if r.get("already_done")) == 3
    assert repo.snapshot().count() == 3
