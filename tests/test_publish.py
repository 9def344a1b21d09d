"""Training sets and publications from a selection (improv_vcs.publish): the
map-style dataset and the sharded stream that feed PyTorch (checked against
the repository, in spawned worker processes, and through a real DataLoader
when torch is installed), the ``imagefolder`` and ``parquet-images`` exports
(checked by reading them back, with Hugging Face ``datasets`` for the
latter), resumption of an interrupted export, and verification of every
export against its manifest and citation, from the API and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
import pickle
import re
import shutil
import sys
import types
import zipfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_error, assert_json_error, invoke, ok
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from improv_vcs import Repository
from improv_vcs.cli.demo import build_demo
from improv_vcs.core.errors import IntegrityError, InvalidInputError
from improv_vcs.publish import (
    ExportOptions,
    ImageDataset,
    ImageStream,
    Labels,
    decode_array,
    export,
    loader,
    select,
    verify,
)
from improv_vcs.publish.imagefolder import SPLITS, split_of
from improv_vcs.storage import LocalStore
from improv_vcs.sync.sites import push

RUN = "demo-cnn-v1"
RATIOS = (0.7, 0.2, 0.1)
SEED = 11
UNLABELLED = 5
"""Images committed after the demo with no classification: never selected."""
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png(level: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((8, 8), level, np.uint8)).save(out, "PNG")
    return out.getvalue()


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Repository:
    """The demo repository (240 images, each classified by both runs) and
    five more images that no run labels."""
    repo = build_demo(tmp_path_factory.mktemp("publish") / "repo", images_per_bin=20, quiet=True)
    when = datetime(2024, 5, 3, tzinfo=timezone.utc)
    rows = [
        {"image_id": f"D20240503T000000_IFCB107_{k:05d}", "timestamp": when}
        for k in range(1, UNLABELLED + 1)
    ]
    with repo.transaction(message="unlabelled images", author="tester") as tx:
        tx.append_bytes("IFCB107", rows, [png(k) for k in range(UNLABELLED)])
    return repo


@pytest.fixture(scope="module")
def truth(demo) -> types.SimpleNamespace:
    """What the repository says, read without the publish layer: each
    image's blob id and bytes, and each labelled image's winner and record."""
    snapshot = demo.snapshot()
    records = snapshot.provenance_records("classification", run=RUN)
    images = snapshot.images()
    ids = images.column("image_id").to_pylist()
    return types.SimpleNamespace(
        count=snapshot.count(),
        winners=dict(
            zip(records.column("image_id").to_pylist(), records.column("winner").to_pylist())
        ),
        record_ids=set(records.column("record_id").to_pylist()),
        blob_ids=dict(zip(ids, images.column("blob_id").to_pylist())),
        data={image_id: snapshot.read_image(image_id) for image_id in ids},
    )


@pytest.fixture(scope="module")
def selection(demo):
    return select(
        demo.snapshot(),
        None,
        Labels("classification", RUN),
        title="Demo plankton images",
        authors=["Doe, Jane"],
        license="CC-BY-4.0",
    )


@pytest.fixture(scope="module")
def pool():
    """Two spawned processes: a fresh interpreter each, so whatever they read
    came through pickling."""
    with multiprocessing.get_context("spawn").Pool(2) as workers:
        yield workers


@pytest.fixture(scope="module")
def exports(tmp_path_factory, selection) -> dict:
    """One export per format tested here, made once (tests that change one copy it first)."""
    root = tmp_path_factory.mktemp("exports")
    options = ExportOptions(ratios=RATIOS, seed=SEED, shard_rows=50)
    return {
        fmt: export(selection, root / fmt, fmt, options)
        for fmt in ("imagefolder", "parquet-images")
    }


def files_of(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def pack_order(selection) -> list[int]:
    rows = selection.rows
    packs, offsets = rows.column("pack").to_pylist(), rows.column("offset").to_pylist()
    return sorted(range(rows.num_rows), key=lambda i: (packs[i], offsets[i]))


# -- helpers run in spawned processes (module level, so they pickle by name) ---------------
def _dataset_items(payload: bytes, indices: list[int], environ: dict) -> tuple[int, list]:
    os.environ.update(environ)
    dataset = pickle.loads(payload)
    return os.getpid(), [dataset[i] for i in indices]


def _stream_items(payload: bytes, worker: int, workers: int, environ: dict) -> list:
    """Iterate an unpickled stream as DataLoader worker ``worker`` of
    ``workers`` would: the stream asks ``torch.utils.data.get_worker_info()``
    when torch is imported, so a stand-in module answers it (torch itself
    need not be installed)."""
    os.environ.update(environ)
    stream = pickle.loads(payload)
    info = types.SimpleNamespace(id=worker, num_workers=workers)
    stand_in = types.SimpleNamespace(
        utils=types.SimpleNamespace(data=types.SimpleNamespace(get_worker_info=lambda: info))
    )
    before = sys.modules.get("torch")
    sys.modules["torch"] = stand_in  # type: ignore[assignment]
    try:
        return list(stream)
    finally:
        if before is None:
            del sys.modules["torch"]
        else:
            sys.modules["torch"] = before


# -- the selection -------------------------------------------------------------------------------
def test_selection_is_the_labelled_images_and_pins_their_records(demo, selection, truth):
    assert truth.count == len(truth.winners) + UNLABELLED
    rows = selection.rows
    assert sorted(rows.column("image_id").to_pylist()) == sorted(truth.winners)
    assert dict(zip(rows.column("image_id").to_pylist(), rows.column("label").to_pylist())) == (
        truth.winners
    )
    assert set(selection.classes) == set(truth.winners.values())
    assert [selection.classes[i] for i in selection.class_index.values()] == list(selection.classes)
    assert set(selection.record_ids) == truth.record_ids
    assert selection.citation.pinned.count == len(truth.winners)


# -- the map-style dataset ---------------------------------------------------------------------
def test_dataset_items_are_the_repository_bytes_and_labels(selection, truth, monkeypatch):
    dataset = ImageDataset(selection)
    assert len(dataset) == len(truth.winners)
    assert dataset.classes == selection.classes
    assert dataset.citation.identifier == selection.citation.identifier
    seen = []
    for i in range(len(dataset)):
        data, label, image_id = dataset[i]
        assert sha256(data) == truth.blob_ids[image_id]
        assert data == truth.data[image_id]
        assert dataset.classes[label] == truth.winners[image_id]
        seen.append(image_id)
    assert sorted(seen) == sorted(truth.winners) and len(set(seen)) == len(seen)
    assert dataset[-1] == dataset[len(dataset) - 1]
    assert dataset[np.int64(3)] == dataset[3]
    with pytest.raises(IndexError):
        dataset[len(dataset)]
    with pytest.raises(IndexError):
        dataset[-len(dataset) - 1]
    assert [item[2] for item in dataset] == seen  # the sequence protocol stops at IndexError

    reads = []
    real = loader._Source.read
    monkeypatch.setattr(loader._Source, "read", lambda self, i: reads.append(i) or real(self, i))
    cached = ImageDataset(selection, cache_bytes=10 * 2**20)
    assert cached[5] == cached[5] == dataset[5]
    assert len(reads) == 1  # the second read came from the cache
    uncached = ImageDataset(selection, cache_bytes=0)
    assert uncached[5] == uncached[5] == dataset[5]
    assert len(reads) == 3


def test_dataset_decodes_arrays_or_with_a_function(selection, truth):
    arrays = ImageDataset(selection, decode="array")
    for i in (0, 1, len(arrays) // 2, len(arrays) - 1):
        array, label, image_id = arrays[i]
        with Image.open(io.BytesIO(truth.data[image_id])) as image:
            expected = np.asarray(image)
        assert isinstance(array, np.ndarray) and array.dtype == expected.dtype
        np.testing.assert_array_equal(array, expected)
        np.testing.assert_array_equal(decode_array(truth.data[image_id]), expected)
        assert arrays.classes[label] == truth.winners[image_id]
    sized = ImageDataset(selection, decode=len)
    _, _, image_id = sized[7]
    assert sized[7] == (len(truth.data[image_id]), arrays[7][1], image_id)


def test_dataset_pickles_to_spawned_processes(selection, pool):
    dataset = ImageDataset(selection)
    payload = pickle.dumps(dataset)
    copy = pickle.loads(payload)
    assert len(copy) == len(dataset) and copy.classes == dataset.classes
    indices = list(range(len(dataset)))
    results = pool.starmap(
        _dataset_items, [(payload, indices[0::2], {}), (payload, indices[1::2], {})], chunksize=1
    )
    assert all(pid != os.getpid() for pid, _ in results)
    got = dict(zip(indices[0::2], results[0][1])) | dict(zip(indices[1::2], results[1][1]))
    assert [got[i] for i in indices] == [dataset[i] for i in indices]


def test_dataset_pickles_as_url_and_rows_without_its_cache(selection):
    """A DataLoader sends the dataset to each worker: what travels is the
    repository's URL and the rows, never the bytes the parent has cached."""
    dataset = ImageDataset(selection)
    cold = len(pickle.dumps(dataset))
    images = [dataset[i][0] for i in range(len(dataset))]  # the cache now holds every image
    payload = pickle.dumps(dataset)
    assert not any(data in payload for data in images[:20])
    assert len(payload) <= cold + 1024, (cold, len(payload))


def test_torch_dataloader_feeds_on_both_loaders(selection, truth):
    """Both loaders go into a DataLoader as they are (docs/python-api.md:
    ``DataLoader(stream, batch_size=32, num_workers=4)``), its two workers
    each reading their share."""
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    dataset = ImageDataset(selection)
    batches = list(DataLoader(dataset, batch_size=16, num_workers=2))
    assert len(batches) == math.ceil(len(dataset) / 16)
    items = []
    for data, labels, ids in batches:
        assert isinstance(labels, torch.Tensor) and labels.dtype == torch.int64
        items += zip(data, labels.tolist(), ids)
    assert items == [dataset[i] for i in range(len(dataset))]

    # the stream must be taken as an iterable dataset, not indexed like a map-style one
    stream = ImageStream(selection, seed=5, shuffle=True, block=16)
    ids = []
    for data, labels, names in DataLoader(stream, batch_size=16, num_workers=2):
        for blob, label, image_id in zip(data, labels.tolist(), names):
            assert sha256(blob) == truth.blob_ids[image_id]
            assert stream.classes[label] == truth.winners[image_id]
        ids.append(list(names))
    # each worker read its own shard in order; the loader takes their batches in turn
    names = selection.rows.column("image_id").to_pylist()
    per_worker = []
    for worker in (0, 1):
        mine = [names[row] for b in stream.shard(worker, 2) for row in b]
        per_worker.append([mine[k : k + 16] for k in range(0, len(mine), 16)])
    turns = [b for pair in zip(*per_worker) for b in pair]
    shorter = min(len(w) for w in per_worker)
    turns += [b for w in per_worker for b in w[shorter:]]
    assert ids == turns
    flat = [image_id for batch in ids for image_id in batch]
    assert sorted(flat) == sorted(truth.winners) and len(set(flat)) == len(flat)


# -- the stream --------------------------------------------------------------------------------
def shards(selection, seed, epoch, world_size, workers, block, shuffle=True) -> dict:
    """(rank, worker) → that worker's rows in order, each stream freshly made."""
    out = {}
    for rank in range(world_size):
        stream = ImageStream(selection, seed, rank, world_size, shuffle=shuffle, block=block)
        stream.set_epoch(epoch)
        for worker in range(workers):
            out[rank, worker] = stream.shard(worker, workers)
    return out


@given(
    seed=st.integers(0, 2**64),
    epoch=st.integers(0, 10_000),
    world_size=st.integers(1, 4),
    workers=st.integers(1, 3),
    block=st.integers(1, 100),
)
def test_stream_shards_every_image_once_in_an_order_fixed_by_seed_and_epoch(
    selection, seed, epoch, world_size, workers, block
):
    n = selection.rows.num_rows
    order = pack_order(selection)
    position = {row: k for k, row in enumerate(order)}
    packs = selection.rows.column("pack").to_pylist()
    got = shards(selection, seed, epoch, world_size, workers, block)
    rows = [row for blocks in got.values() for b in blocks for row in b]
    assert sorted(rows) == list(range(n))  # every image once per epoch
    for blocks in got.values():
        for b in blocks:  # a block: at most `block` neighbours of one pack
            assert 1 <= len(b) <= block and len({packs[row] for row in b}) == 1
            spots = sorted(position[row] for row in b)
            assert spots == list(range(spots[0], spots[0] + len(b)))
    assert shards(selection, seed, epoch, world_size, workers, block) == got
    assert shards(selection, seed, epoch + 1, world_size, workers, block) != got
    assert shards(selection, seed + 1, epoch, world_size, workers, block) != got


def test_stream_without_shuffle_keeps_pack_order(selection):
    packs = selection.rows.column("pack").to_pylist()
    offsets = selection.rows.column("offset").to_pylist()
    ids = selection.rows.column("image_id").to_pylist()
    single = [row for b in ImageStream(selection, shuffle=False, block=7).shard() for row in b]
    assert sorted(single) == list(range(len(ids)))
    runs = [
        packs[row] for k, row in enumerate(single) if k == 0 or packs[single[k - 1]] != packs[row]
    ]
    assert len(runs) == len(set(runs)) == len(set(packs))  # each pack read in one run
    for pack in set(packs):
        mine = [offsets[row] for row in single if packs[row] == pack]
        assert mine == sorted(mine)  # front to back
    assert [item[2] for item in ImageStream(selection, shuffle=False, block=7)] == [
        ids[row] for row in single
    ]
    # sharded, each worker still reads front to back, and the epoch changes nothing
    for epoch in (0, 3):
        got = shards(selection, 9, epoch, 2, 2, 7, shuffle=False)
        for blocks in got.values():
            mine = [row for b in blocks for row in b]
            assert mine == sorted(mine, key=single.index)
        assert sorted(row for bs in got.values() for b in bs for row in b) == sorted(single)


def test_stream_reads_each_block_with_one_request(selection, truth, monkeypatch):
    """Where packs are not mapped files (S3, HTTP), one ranged read per block."""
    monkeypatch.setattr(LocalStore, "maps_values", False)
    n = selection.rows.num_rows
    ids = selection.rows.column("image_id").to_pylist()
    reads = []
    real = LocalStore.get_range
    monkeypatch.setattr(LocalStore, "get_range", lambda self, *a: reads.append(a) or real(self, *a))
    seen = []
    for rank in (0, 1):
        stream = ImageStream(selection, seed=4, rank=rank, world_size=2, block=16)
        stream.set_epoch(2)
        expected = [ids[row] for b in stream.shard() for row in b]
        before = len(reads)
        items = list(stream)
        assert len(reads) - before == len(stream.shard())
        assert [image_id for _, _, image_id in items] == expected
        for data, label, image_id in items:
            assert sha256(data) == truth.blob_ids[image_id]
            assert stream.classes[label] == truth.winners[image_id]
        seen += expected
    assert sorted(seen) == sorted(ids) and len(seen) == n


def test_stream_splits_across_spawned_processes(selection, truth, pool):
    """World size 2, each rank's stream pickled to two processes acting as its
    two DataLoader workers: every image once, each process in its shard's order."""
    ids = selection.rows.column("image_id").to_pylist()
    jobs, expected = [], []
    for rank in (0, 1):
        stream = ImageStream(selection, seed=21, rank=rank, world_size=2, block=8)
        stream.set_epoch(1)
        payload = pickle.dumps(stream)
        for worker in (0, 1):
            jobs.append((payload, worker, 2, {}))
            expected.append([ids[row] for b in stream.shard(worker, 2) for row in b])
    results = pool.starmap(_stream_items, jobs, chunksize=1)
    assert [[image_id for _, _, image_id in items] for items in results] == expected
    everything = [item for items in results for item in items]
    assert sorted(image_id for _, _, image_id in everything) == sorted(truth.winners)
    for data, label, image_id in everything:
        assert sha256(data) == truth.blob_ids[image_id]
        assert selection.classes[label] == truth.winners[image_id]


def test_loaders_read_from_s3(tmp_path, s3_url, s3_options, pool):
    """A repository on S3 (moto on 127.0.0.1): both loaders read the pushed
    bytes, in this process and in spawned ones that reopen it from the URL."""
    local = build_demo(tmp_path / "repo", images_per_bin=5, quiet=True)
    local.remotes.add("cloud", s3_url, options=s3_options)
    push(local, "cloud")
    cloud = Repository.open(s3_url, **s3_options)
    chosen = select(cloud.snapshot(), None, Labels("classification", RUN))
    expected = {
        r["image_id"]: local.snapshot().read_image(r["image_id"])
        for r in chosen.rows.select(["image_id"]).to_pylist()
    }
    assert len(expected) == local.snapshot().count() == 60

    dataset = ImageDataset(chosen, storage_options=s3_options)
    items = [dataset[i] for i in range(len(dataset))]
    assert {image_id: data for data, _, image_id in items} == expected
    stream = ImageStream(chosen, seed=2, world_size=1, block=8, storage_options=s3_options)
    assert sorted((image_id, data) for data, _, image_id in stream) == sorted(expected.items())

    environ = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    payload = pickle.dumps(dataset)
    indices = list(range(len(dataset)))
    halves = pool.starmap(
        _dataset_items,
        [(payload, indices[0::2], environ), (payload, indices[1::2], environ)],
        chunksize=1,
    )
    assert sorted(halves[0][1] + halves[1][1]) == sorted(items)
    streamed = pool.starmap(
        _stream_items, [(pickle.dumps(stream), w, 2, environ) for w in (0, 1)], chunksize=1
    )
    assert sorted(item[2] for items in streamed for item in items) == sorted(expected)
    assert all(expected[image_id] == data for items in streamed for data, _, image_id in items)


# -- imagefolder -------------------------------------------------------------------------------
def test_imagefolder_holds_each_image_under_its_split_and_class(selection, truth, exports):
    done = exports["imagefolder"]
    root = done.path
    n = len(truth.winners)
    assert (done.format, done.images, done.files) == ("imagefolder", n, n + 3)
    assert (done.written, done.kept) == (done.files, 0)
    assert done.citation == selection.citation.identifier
    files = files_of(root)
    assert set(files) - {"classes.txt", "metadata.csv", "MANIFEST.json"} == {
        f"{split_of(i, SEED, RATIOS)}/{truth.winners[i]}/{i}.png" for i in truth.winners
    }
    classes = files["classes.txt"].decode().splitlines()
    assert classes == list(selection.classes)
    per_folder = Counter(
        (name.split("/")[0], name.split("/")[1]) for name in files if name.count("/") == 2
    )
    per_class = Counter()
    for (_, folder), count in per_folder.items():
        per_class[folder] += count
    assert per_class == Counter(truth.winners.values())
    assert per_folder == Counter(
        (split_of(image_id, SEED, RATIOS), label) for image_id, label in truth.winners.items()
    )
    for name, data in files.items():
        if name.count("/") == 2:
            image_id = name.rsplit("/", 1)[1].removesuffix(".png")
            assert sha256(data) == truth.blob_ids[image_id]

    import csv

    table = list(csv.DictReader(io.StringIO(files["metadata.csv"].decode())))
    assert sorted(r["image_id"] for r in table) == sorted(truth.winners)
    for r in table:
        assert r["label"] == truth.winners[r["image_id"]] == classes[int(r["label_index"])]
        assert r["split"] == split_of(r["image_id"], SEED, RATIOS)
        assert r["file"] == f"{r['split']}/{r['label']}/{r['image_id']}.png" and r["file"] in files
        assert r["blob_id"] == truth.blob_ids[r["image_id"]]


def test_imagefolder_split_is_fixed_by_the_seed(selection, exports, tmp_path):
    first = files_of(exports["imagefolder"].path)
    again = export(selection, tmp_path / "again", "imagefolder", ExportOptions(RATIOS, SEED))
    assert files_of(again.path) == first
    other = files_of(
        export(selection, tmp_path / "other", "imagefolder", ExportOptions(RATIOS, SEED + 1)).path
    )

    def placed(files: dict[str, bytes]) -> dict[str, tuple[str, str]]:
        """image id → (split, class folder)."""
        return {
            n.rsplit("/", 1)[1].removesuffix(".png"): tuple(n.split("/")[:2])
            for n in files
            if n.count("/") == 2
        }

    here, there = placed(first), placed(other)
    assert here.keys() == there.keys()
    assert {i: c for i, (_, c) in here.items()} == {i: c for i, (_, c) in there.items()}
    assert any(here[i][0] != there[i][0] for i in here)  # another seed, another split


@given(
    seed=st.integers(0, 2**64),
    cuts=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_split_of_is_deterministic_and_close_to_the_ratios(seed, cuts):
    low, high = sorted(cuts)
    ratios = (low, high - low, 1 - high)
    n = 10_000
    ids = [f"D20240501T{k // 1000:06d}_IFCB107_{k % 1000:05d}" for k in range(n)]
    splits = [split_of(image_id, seed, ratios) for image_id in ids]
    assert splits == [split_of(image_id, seed, ratios) for image_id in ids]
    counts = Counter(splits)
    assert set(counts) <= set(SPLITS)
    for name, ratio in zip(SPLITS, ratios):
        sigma = math.sqrt(ratio * (1 - ratio) / n)
        assert abs(counts[name] / n - ratio) <= 6 * sigma + 1e-6, (name, ratio, counts)


def test_imagefolder_export_resumes_and_rewrites_nothing(selection, exports, tmp_path):
    dest = tmp_path / "folder"
    shutil.copytree(exports["imagefolder"].path, dest)
    manifest = (dest / "MANIFEST.json").read_bytes()
    options = ExportOptions(RATIOS, SEED)

    again = export(selection, dest, "imagefolder", options)
    assert (again.written, again.kept) == (1, again.files - 1)  # only MANIFEST.json
    assert (dest / "MANIFEST.json").read_bytes() == manifest

    before = files_of(dest)
    images = sorted(n for n in before if n.count("/") == 2)
    gone = [images[3], images[-2]]
    (dest / "MANIFEST.json").unlink()
    for name in gone:
        (dest / name).unlink()
    with pytest.raises(IntegrityError):
        verify(dest)  # an unfinished export has no manifest
    stamps = {
        n: ((dest / n).stat().st_ino, (dest / n).stat().st_mtime_ns)
        for n in before
        if n not in gone and n != "MANIFEST.json"
    }
    resumed = export(selection, dest, "imagefolder", options)
    assert (resumed.written, resumed.kept) == (3, resumed.files - 3)  # the two images + manifest
    assert files_of(dest) == before
    assert {
        n: ((dest / n).stat().st_ino, (dest / n).stat().st_mtime_ns) for n in stamps
    } == stamps  # nothing else was touched
    verify(dest)


def test_export_again_with_another_seed_in_the_same_folder(selection, exports, tmp_path):
    """A re-export moves images to their new split and drops what the
    previous run wrote there and this one did not; a file no export wrote
    is refused."""
    dest = tmp_path / "folder"
    shutil.copytree(exports["imagefolder"].path, dest)
    moved = export(selection, dest, "imagefolder", ExportOptions(RATIOS, SEED + 1))
    fresh = export(selection, tmp_path / "fresh", "imagefolder", ExportOptions(RATIOS, SEED + 1))
    assert files_of(dest) == files_of(fresh.path)
    assert moved.images == fresh.images and verify(dest).images == moved.images
    (dest / "train" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="notes.txt"):
        export(selection, dest, "imagefolder", ExportOptions(RATIOS, SEED))
    assert (dest / "train" / "notes.txt").read_text() == "mine"


def test_export_interrupted_mid_file_resumes_to_a_verified_export(selection, exports, tmp_path):
    """Killed while writing a file, an export leaves that file's temporary
    name behind (files land whole: a temporary name, then a rename). Running
    the export again must still end in an export that verifies."""
    dest = tmp_path / "folder"
    shutil.copytree(exports["imagefolder"].path, dest)
    (dest / "MANIFEST.json").unlink()
    image = next(p for p in sorted(dest.rglob("*.png")))
    (image.parent / ".tmp-0123456789abcdef0123456789abcdef").write_bytes(image.read_bytes()[:100])
    image.unlink()
    resumed = export(selection, dest, "imagefolder", ExportOptions(RATIOS, SEED))
    assert resumed.written == 2
    verify(dest)


# -- parquet-images ----------------------------------------------------------------------------
def test_parquet_images_load_with_hugging_face_datasets(
    selection, truth, exports, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # all it reads is here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    done = exports["parquet-images"]
    n = len(truth.winners)
    names = sorted(p.name for p in (done.path / "data").iterdir())
    counts = Counter(split_of(i, SEED, RATIOS) for i in truth.winners)
    assert names == sorted(
        f"{split}-{k:05d}-of-{math.ceil(counts[split] / 50):05d}.parquet"
        for split in SPLITS
        for k in range(math.ceil(counts[split] / 50))
    )
    assert (done.images, done.files) == (n, len(names) + 1)

    loaded = datasets.load_dataset(
        "parquet", data_dir=str(done.path / "data"), cache_dir=str(tmp_path / "hf")
    )
    assert set(loaded) == {HF_SPLITS[s] for s in SPLITS if counts[s]}
    seen = []
    for split in SPLITS:
        part = loaded[HF_SPLITS[split]]
        assert part.num_rows == counts[split]
        assert part.features["label"].names == list(selection.classes)
        assert isinstance(part.features["image"], datasets.Image)
        raw = part.cast_column("image", datasets.Image(decode=False))
        for row in raw:
            image_id = row["image_id"]
            assert sha256(row["image"]["bytes"]) == truth.blob_ids[image_id] == row["blob_id"]
            assert row["image"]["path"] == f"{image_id}.png"
            assert selection.classes[row["label"]] == truth.winners[image_id]
            assert split_of(image_id, SEED, RATIOS) == split
            seen.append(image_id)
        first = part[0]
        np.testing.assert_array_equal(
            np.asarray(first["image"]), decode_array(truth.data[first["image_id"]])
        )
    assert sorted(seen) == sorted(truth.winners) and len(seen) == n


# -- verification ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["imagefolder", "parquet-images"])
def test_every_export_verifies_with_and_without_the_repository(
    fmt, demo, selection, exports, tmp_path
):
    done = exports[fmt]
    alone = verify(done.path)
    with_repo = verify(done.path, demo)
    for result, against in ((alone, False), (with_repo, True)):
        assert result.against_repository is against
        assert (result.citation, result.export) == (selection.citation.identifier, fmt)
        assert (result.images, result.records) == (done.images, len(selection.record_ids))
        assert result.files == done.files - 1  # every file but the manifest
    archive = shutil.make_archive(str(tmp_path / "export"), "zip", done.path)
    assert verify(archive, demo) == with_repo
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("extra.txt", b"not exported")
    with pytest.raises(IntegrityError, match="extra.txt"):
        verify(archive)


@given(choice=st.data())
def test_any_changed_byte_fails_verification(exports, choice):
    fmt = choice.draw(st.sampled_from(sorted(exports)), label="format")
    root = exports[fmt].path
    names = sorted(n for n in files_of(root) if n != "MANIFEST.json")
    name = choice.draw(st.sampled_from(names), label="file")
    path = root / name
    original = path.read_bytes()
    at = choice.draw(st.integers(0, len(original) - 1), label="offset")
    flip = choice.draw(st.integers(1, 255), label="xor")
    changed = bytearray(original)
    changed[at] ^= flip
    path.write_bytes(bytes(changed))
    try:
        with pytest.raises(IntegrityError, match=re.escape(name)):
            verify(root)
    finally:
        path.write_bytes(original)
    verify(root)


@pytest.mark.parametrize(
    ("fmt", "target"),
    [
        ("imagefolder", "image"),
        ("imagefolder", "metadata.csv"),
        ("imagefolder", "classes.txt"),
        ("parquet-images", "shard"),
    ],
)
def test_one_changed_byte_fails_with_and_without_the_repository(
    fmt, target, demo, exports, tmp_path
):
    dest = tmp_path / "copy"
    shutil.copytree(exports[fmt].path, dest)
    if target == "image":
        name = sorted(n for n in files_of(dest) if n.endswith(".png"))[10]
    elif target == "shard":
        name = sorted(n for n in files_of(dest) if n.endswith(".parquet"))[-1]
    else:
        name = target
    data = bytearray((dest / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (dest / name).write_bytes(bytes(data))
    for repository in (None, demo):
        with pytest.raises(IntegrityError, match=f"{name}: its bytes changed"):
            verify(dest, repository)


@pytest.mark.parametrize("fmt", ["imagefolder", "parquet-images"])
@pytest.mark.parametrize("change", ["delete", "add", "add-hidden", "delete-manifest"])
def test_a_missing_or_extra_file_fails_verification(fmt, change, exports, tmp_path):
    dest = tmp_path / "copy"
    shutil.copytree(exports[fmt].path, dest)
    names = sorted(n for n in files_of(dest) if n != "MANIFEST.json")
    if change == "delete":
        (dest / names[len(names) // 2]).unlink()
        match = f"{names[len(names) // 2]}: missing"
    elif change == "add":
        (dest / "data" / "notes.txt").parent.mkdir(exist_ok=True)
        (dest / "data" / "notes.txt").write_text("added later")
        match = "data/notes.txt: not in the manifest"
    elif change == "add-hidden":
        (dest / ".extra").write_bytes(b"")
        match = ".extra: not in the manifest"
    else:
        (dest / "MANIFEST.json").unlink()
        match = "MANIFEST.json"
    with pytest.raises(IntegrityError, match=match):
        verify(dest)


def test_a_manifest_edited_to_match_still_fails(exports, tmp_path):
    """The manifest's file hashes are not the last word: image bytes must
    hash to their blob ids and the images and records to the citation."""
    dest = tmp_path / "copy"
    shutil.copytree(exports["imagefolder"].path, dest)
    body = json.loads((dest / "MANIFEST.json").read_text())
    name = sorted(n for n in body["files"] if n.endswith(".png"))[0]
    (dest / name).write_bytes(png(200))
    body["files"][name] = sha256(png(200))
    (dest / "MANIFEST.json").write_text(json.dumps(body))
    with pytest.raises(IntegrityError, match="not the bytes of image"):
        verify(dest)

    shutil.rmtree(dest)
    shutil.copytree(exports["imagefolder"].path, dest)
    body = json.loads((dest / "MANIFEST.json").read_text())
    body["records"] = body["records"][1:]
    (dest / "MANIFEST.json").write_text(json.dumps(body))
    with pytest.raises(IntegrityError, match="not the cited selection"):
        verify(dest)


# -- the CLI -----------------------------------------------------------------------------------
def test_cli_export_and_cite_verify(runner, demo, selection, exports, tmp_path, monkeypatch):
    dest = tmp_path / "training"
    args = ["-R", demo.url, "export", dest, "--as", "imagefolder", "--labels", "classification"]
    args += ["--label-run", RUN, "--split", ",".join(map(str, RATIOS)), "--seed", SEED]
    args += ["--title", "Demo plankton images", "--author", "Doe, Jane", "--json"]
    done = json.loads(ok(invoke(runner, *args)).stdout)
    n = len(selection.record_ids)
    assert (done["format"], done["images"], done["files"]) == ("imagefolder", n, n + 3)
    assert (done["written"], done["kept"]) == (n + 3, 0)
    made = files_of(dest)
    api = files_of(exports["imagefolder"].path)
    assert {k: v for k, v in made.items() if k != "MANIFEST.json"} == {
        k: v for k, v in api.items() if k != "MANIFEST.json"
    }
    again = json.loads(ok(invoke(runner, *args)).stdout)
    assert (again["written"], again["kept"]) == (1, n + 2)

    checked = json.loads(
        ok(invoke(runner, "-R", demo.url, "cite", "verify", dest, "--json")).stdout
    )
    assert checked["verified"] is True and checked["against_repository"] is True
    assert (checked["images"], checked["records"], checked["citation"]) == (
        n,
        n,
        done["citation"],
    )
    monkeypatch.chdir(tmp_path)  # no repository here: the files alone
    alone = json.loads(ok(invoke(runner, "cite", "verify", dest, "--json")).stdout)
    assert alone["verified"] is True and alone["against_repository"] is False
    text = ok(invoke(runner, "cite", "verify", dest)).stdout
    assert f"Verified {dest}: {n} image(s)" in text and "from its files alone" in text

    data = bytearray((dest / "metadata.csv").read_bytes())
    data[-2] ^= 0x20
    (dest / "metadata.csv").write_bytes(bytes(data))
    assert_error(invoke(runner, "cite", "verify", dest), 5, "metadata.csv", "changed")
    assert_error(invoke(runner, "-R", demo.url, "cite", "verify", dest), 5, "metadata.csv")
    assert_json_error(
        invoke(runner, "cite", "verify", dest, "--json"), 5, "IntegrityError", "metadata.csv"
    )
