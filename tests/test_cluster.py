"""A snapshot on a Dask cluster: manifest rows and images as Dask
collections read by the workers, and a run of a user function committed
from worker-staged segments (improv_vcs.cluster). Everything runs on a real
``distributed.LocalCluster`` of two worker processes on 127.0.0.1, over the
demo repository: local, on S3 (moto) and served over HTTP."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import SERVE_TOKEN

from improv_vcs import Repository, cluster
from improv_vcs.cli.demo import build_demo
from improv_vcs.cluster.runs import stage
from improv_vcs.core.errors import ImprovError, InvalidInputError
from improv_vcs.core.media import decode_array
from improv_vcs.query.filters import Query
from improv_vcs.sync.sites import push

distributed = pytest.importorskip("distributed")

KIND, SOURCE, RUN = "classification", "mean-pixel", "mean-v1"


def mean_pixel(images, image_ids):
    """The per-image function of the tests: a class from the mean pixel."""
    return [
        {
            "image_id": image_id,
            "model": "mean-pixel",
            "model_version": "1",
            "winner": "bright" if float(image.mean()) > 128 else "dark",
            "score": round(float(image.mean()) / 255, 6),
        }
        for image, image_id in zip(images, image_ids, strict=True)
    ]


class AtMost:
    """``mean_pixel``, refusing more than ``n`` images at a time."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, images, image_ids):
        assert 0 < len(images) <= self.n
        return mean_pixel(images, image_ids)


class KillOnce:
    """``mean_pixel``, but the first worker to be given ``victim`` dies
    (the whole process) before returning: the cluster must run it again."""

    def __init__(self, marker: Path, victim: str):
        self.marker, self.victim = str(marker), victim

    def __call__(self, images, image_ids):
        if self.victim in image_ids:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return mean_pixel(images, image_ids)


class FailOn:
    """``mean_pixel``, but raises for a partition holding ``victim`` while
    ``flag`` exists."""

    def __init__(self, flag: Path, victim: str):
        self.flag, self.victim = flag, victim

    def __call__(self, images, image_ids):
        if self.victim in image_ids and self.flag.exists():
            raise ValueError("the classifier ran out of memory")
        return mean_pixel(images, image_ids)


@pytest.fixture(scope="module")
def client(s3_endpoint):
    """Two worker processes (they inherit the moto credentials from the environment)."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as local,
        distributed.Client(local) as connected,
    ):
        yield connected


@pytest.fixture
def demo(tmp_path) -> Repository:
    return build_demo(tmp_path / "repo", images_per_bin=20, quiet=True)


def run_records(repo: Repository, branch: str = "main") -> pa.Table:
    return repo.snapshot(branch).provenance_records(KIND, run=RUN)


def blob_ids(snapshot) -> dict[str, str]:
    images = snapshot.images()
    return dict(zip(images.column("image_id").to_pylist(), images.column("blob_id").to_pylist()))


# -- collections -------------------------------------------------------------------------------
def test_rows_are_the_query_partitioned_by_batch(demo, client):
    snapshot = demo.snapshot()
    query = Query(instruments=("IFCB110",))
    frame = cluster.to_dask(snapshot, query)
    batches = snapshot.partitions(query)
    assert frame.npartitions == batches.num_rows == 2  # IFCB107's batches are pruned
    assert snapshot.partitions().num_rows == 4
    got = pa.Table.from_pandas(frame.compute(), preserve_index=False).sort_by("image_id")
    expected = snapshot.query(query).sort_by("image_id")
    assert got.schema == expected.schema
    assert got.equals(expected)


def test_rows_refuse_a_limit_and_an_empty_selection_is_empty(demo, client):
    snapshot = demo.snapshot()
    with pytest.raises(InvalidInputError, match="limit"):
        cluster.to_dask(snapshot, Query(limit=5))
    frame = cluster.to_dask(snapshot, instruments=("IFCB999",))
    assert len(frame.compute()) == 0


def test_every_selected_image_is_read_once_by_the_workers(demo, client):
    snapshot = demo.snapshot()
    query = Query(instruments=("IFCB107",))
    bag = cluster.images_to_dask(snapshot, query, decode="bytes")
    assert bag.npartitions == 2
    items = bag.compute()
    selected = snapshot.query(query).column("image_id").to_pylist()
    assert Counter(image_id for image_id, _ in items) == Counter(selected)
    known = blob_ids(snapshot)
    assert all(hashlib.sha256(data).hexdigest() == known[i] for i, data in items)
    arrays = cluster.images_to_dask(snapshot, query, decode="array").compute()
    read = dict(items)
    assert len(arrays) == len(selected)
    assert all(np.array_equal(a, decode_array(read[i])) for i, a in arrays)


# -- runs --------------------------------------------------------------------------------------
def test_a_cluster_run_is_one_commit_equal_to_a_single_process_run(demo, client):
    snapshot = demo.snapshot()
    start = demo.resolve("main")
    demo.create_branch("single", at=start)
    alone = cluster.attach_run(
        snapshot, AtMost(7), KIND, SOURCE, RUN, branch="single", batch_size=7
    )
    spread = cluster.attach_run(
        snapshot, mean_pixel, KIND, SOURCE, RUN, client=client, rows_per_part=None
    )
    assert spread.partitions == 4 and alone.partitions == 1
    assert len(spread.commits) == len(alone.commits) == 1
    assert [oid for oid, _ in demo.log("main", limit=2)] == [spread.commits[0], start]
    count = snapshot.count()
    assert spread.images == alone.images == spread.records == alone.records == count
    on_cluster, in_process = run_records(demo), run_records(demo, "single")
    assert on_cluster.num_rows == count
    assert sorted(on_cluster.column("record_id").to_pylist()) == sorted(
        in_process.column("record_id").to_pylist()
    )
    columns = ["image_id", "winner", "score"]
    assert (
        on_cluster.select(columns)
        .sort_by("image_id")
        .equals(in_process.select(columns).sort_by("image_id"))
    )
    # the same call again reads nothing and commits nothing
    again = cluster.attach_run(demo.snapshot(), mean_pixel, KIND, SOURCE, RUN, client=client)
    assert (again.commits, again.images, again.skipped) == ([], 0, count)


def test_a_killed_worker_is_retried_and_leaves_no_duplicate(demo, client, tmp_path):
    snapshot = demo.snapshot()
    victim = snapshot.query(columns=["image_id"], limit=1).column("image_id")[0].as_py()
    marker = tmp_path / "killed"
    fn = KillOnce(marker, victim)
    report = cluster.attach_run(snapshot, fn, KIND, SOURCE, RUN, client=client, rows_per_part=None)
    assert marker.exists()  # a worker died
    records = run_records(demo)
    ids = records.column("image_id").to_pylist()
    assert len(report.commits) == 1 and report.records == len(ids) == snapshot.count()
    assert Counter(ids) == Counter(list(blob_ids(snapshot)))
    assert len(set(records.column("record_id").to_pylist())) == len(ids)


@pytest.mark.parametrize("where", ["cluster", "in process"])
def test_an_interrupted_run_resumes_with_only_what_is_missing(demo, client, tmp_path, where):
    """In process the partitions run in order, so the three before the
    failing last one are committed; on the cluster, whichever finished."""
    snapshot = demo.snapshot()
    count = snapshot.count()
    last = cluster.parts(snapshot, Query())[-1] if where == "in process" else None
    victim = last.rows(["image_id"]) if last else snapshot.query(instruments=("IFCB110",))
    victim_id = victim.column("image_id")[0].as_py()
    flag = tmp_path / "fail"
    flag.touch()
    fn = FailOn(flag, victim_id)
    options = {"client": client if where == "cluster" else None, "rows_per_part": None}
    with pytest.raises(ImprovError, match="out of memory.*run it again to resume"):
        cluster.attach_run(snapshot, fn, KIND, SOURCE, RUN, commit_every=1, **options)
    kept = run_records(demo)
    assert victim_id not in kept.column("image_id").to_pylist()
    if where == "in process":
        assert kept.num_rows == count - victim.num_rows == 180
    else:
        assert kept.num_rows <= count - 60  # at most the three other batches
    flag.unlink()
    resumed = cluster.attach_run(demo.snapshot(), fn, KIND, SOURCE, RUN, commit_every=1, **options)
    assert resumed.skipped == kept.num_rows
    assert resumed.images == resumed.records == count - kept.num_rows
    records = run_records(demo)
    assert Counter(records.column("image_id").to_pylist()) == Counter(list(blob_ids(snapshot)))
    assert len(set(records.column("record_id").to_pylist())) == count


def test_records_committed_meanwhile_are_not_committed_twice(demo):
    """Segments staged against an older tip: what the branch gained since
    (the same record ids) is dropped, at the start or in a rebase."""
    snapshot = demo.snapshot()
    since = demo.resolve("main")
    spec = cluster.runs.RunSpec(KIND, SOURCE, RUN, "array", 256, since)
    staged = [stage(part, mean_pixel, spec) for part in cluster.parts(snapshot, Query())]
    segments = [s for piece in staged for s in piece.segments]
    assert sum(s.rows for s in segments) == snapshot.count()
    first = cluster.attach_run(snapshot, mean_pixel, KIND, SOURCE, RUN)  # another writer
    with demo.transaction(message="late") as tx:
        assert tx.add_segments(segments, since=demo.snapshot(since).reader) == 0
    assert tx.commit_id is None
    # in a rebase: the other writer commits after the transaction began
    demo.create_branch("other", at=since)
    tx = demo.transaction(branch="other", message="racing")
    assert tx.add_segments(segments) == snapshot.count()
    cluster.attach_run(snapshot, mean_pixel, KIND, SOURCE, RUN, branch="other")
    assert tx.commit() is None  # everything it held landed meanwhile
    assert run_records(demo, "other").num_rows == run_records(demo).num_rows == first.records


def test_a_function_naming_other_images_fails_the_run(demo, client):
    snapshot = demo.snapshot()

    def stray(images, image_ids):
        elsewhere = "D20990101T000000_IFCB107_00001"
        return [{**r, "image_id": elsewhere} for r in mean_pixel(images, image_ids)]

    with pytest.raises(InvalidInputError, match="not given.*run it again"):
        cluster.attach_run(snapshot, stray, KIND, SOURCE, RUN, client=client)
    assert run_records(demo).num_rows == 0
    with pytest.raises(InvalidInputError, match="rows_per_part"):
        cluster.images_to_dask(snapshot, rows_per_part=0)
    with pytest.raises(InvalidInputError, match="run id"):
        cluster.attach_run(snapshot, mean_pixel, KIND, SOURCE, " padded ")


# -- S3 ----------------------------------------------------------------------------------------
def test_a_repository_on_s3_is_read_and_extended_by_the_workers(demo, client, s3_url, s3_options):
    demo.remotes.add("cloud", s3_url, options=s3_options)
    push(demo, "cloud")
    cloud = Repository.open(s3_url, **s3_options)
    snapshot = cloud.snapshot()
    count = snapshot.count()
    frame = cluster.to_dask(snapshot, columns=["image_id", "blob_id"])
    assert len(frame.compute()) == count
    items = cluster.images_to_dask(snapshot).compute()
    known = blob_ids(demo.snapshot())
    assert sorted(i for i, _ in items) == sorted(known)
    assert all(hashlib.sha256(data).hexdigest() == known[i] for i, data in items)

    report = cluster.attach_run(snapshot, mean_pixel, KIND, SOURCE, RUN, client=client)
    assert report.records == count and len(report.commits) == 1
    cluster.attach_run(demo.snapshot(), mean_pixel, KIND, SOURCE, RUN)  # in process, locally
    on_s3 = cloud.snapshot().provenance_records(KIND, run=RUN).column("record_id").to_pylist()
    assert sorted(on_s3) == sorted(run_records(demo).column("record_id").to_pylist())


# -- HTTP --------------------------------------------------------------------------------------
def test_a_served_repository_is_read_and_extended_by_the_workers(demo, client, serve):
    """``improv serve`` on 127.0.0.1; the token travels in the storage options."""
    served = Repository.open(serve(demo.url), token=SERVE_TOKEN)
    snapshot = served.snapshot()
    items = cluster.images_to_dask(snapshot, instruments=("IFCB110",)).compute()
    known = blob_ids(demo.snapshot())
    assert sorted(i for i, _ in items) == sorted(i for i in known if "IFCB110" in i)
    assert all(hashlib.sha256(data).hexdigest() == known[i] for i, data in items)
    report = cluster.attach_run(snapshot, mean_pixel, KIND, SOURCE, RUN, client=client)
    assert report.records == snapshot.count() and len(report.commits) == 1
    assert run_records(demo).num_rows == snapshot.count()  # written through the server
