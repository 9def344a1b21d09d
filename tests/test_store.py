"""What is particular to each store backend. The behaviour every store shares
is the conformance suite's (tests/test_store_conformance.py)."""

from __future__ import annotations

import os
import uuid

from conftest import SERVE_TOKEN
from hypothesis import given, settings
from hypothesis import strategies as st

from improv_vcs.service import app as service_app
from improv_vcs.storage import BundledStore, LocalStore, MemoryStore, open_store
from improv_vcs.storage.http_store import HttpStore


@settings(max_examples=15)
@given(
    values=st.dictionaries(
        st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True),
        st.binary(max_size=300),
        max_size=6,
    )
)
def test_round_trip_arbitrary_bytes(tmp_path_factory, values):
    """Property: put then get returns the bytes, on a local and a memory store."""
    for store in (
        open_store(str(tmp_path_factory.mktemp("s"))),
        open_store(f"memory://prop-{uuid.uuid4().hex}"),
    ):
        written = {}
        for key, value in values.items():
            if any(k.startswith(key + "/") or key.startswith(k + "/") for k in written):
                continue  # a key cannot be both a value and a directory
            store.put_if_absent(key, value)
            written[key] = value
        for key, value in written.items():
            assert store.get(key) == value
        assert list(store.list()) == sorted(written)
        assert list(store.list(start_after=min(written, default=None))) == sorted(written)[1:]


def test_open_store_read_only_for_every_kind_of_url(tmp_path, s3_url, s3_options):
    urls = {
        str(tmp_path / "a"): LocalStore,
        f"file://{tmp_path / 'b'}": LocalStore,
        f"memory://ro-{uuid.uuid4().hex}": MemoryStore,
        "http://127.0.0.1:9": HttpStore,
    }
    for url, kind in urls.items():
        with open_store(url, read_only=True) as store:
            assert isinstance(store, kind) and store.read_only is True
        assert open_store(url).read_only is False
    with open_store(s3_url, read_only=True, **s3_options) as store:
        assert store.read_only is True
    assert not (tmp_path / "a").exists()  # opening read-only creates nothing


def test_local_listing_skips_directories_before_start_after(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    for key in ("objects/aa/x", "objects/bb/y", "objects/bb/z", "objects/cc/z"):
        store.put_if_absent(key, b"v")
    scanned = []
    scandir = os.scandir

    def recording(path):  # type: ignore[no-untyped-def]
        scanned.append(os.path.relpath(path, tmp_path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", recording)
    assert list(store.list(start_after="objects/bb/y")) == ["objects/bb/z", "objects/cc/z"]
    assert scanned == [".", "objects", "objects/bb", "objects/cc"]
    scanned.clear()
    assert list(store.list("objects/", start_after="objects/bc")) == ["objects/cc/z"]
    assert scanned == ["objects", "objects/cc"]


def test_s3_listing_starts_after_and_follows_pages(s3_url, s3_options):
    store = open_store(s3_url, **s3_options)
    keys = [f"objects/ab/{i}" for i in range(7)]
    for key in keys:
        store.put_if_absent(key, b"v")
    calls = []
    call_s3 = store.fs.call_s3

    def paging(method, **params):  # type: ignore[no-untyped-def]
        calls.append(dict(params))
        return call_s3(method, MaxKeys=2, **params)

    store.fs.call_s3 = paging
    assert list(store.list("objects/", start_after=keys[1])) == keys[2:]
    root = s3_url.split("/", 3)[3]
    assert calls[0]["StartAfter"] == f"{root}/{keys[1]}"
    assert len(calls) == 3 and all("ContinuationToken" in c for c in calls[1:])


def test_served_listing_reads_on_from_each_page(serve, tmp_path, monkeypatch):
    """Each page of ``GET /v1/store`` lists the store from where the last
    one ended: paging through reads every key once."""
    local = LocalStore(tmp_path / "served")
    keys = [f"objects/ab/{i}" for i in range(5)]
    for key in keys:
        local.put_if_absent(key, b"v")
    monkeypatch.setattr(service_app, "LIST_PAGE", 2)
    asked, read = [], []
    listing = LocalStore.list

    def recording(self, prefix="", start_after=None):  # type: ignore[no-untyped-def]
        asked.append(start_after)
        for key in listing(self, prefix, start_after):
            read.append(key)
            yield key

    monkeypatch.setattr(LocalStore, "list", recording)
    store = HttpStore(serve(tmp_path / "served"), token=SERVE_TOKEN)
    assert list(store.list("objects/")) == keys
    assert asked == ["", keys[1], keys[3]] and read == keys
    asked.clear()
    assert list(store.list("objects/", start_after=keys[2])) == keys[3:]
    assert asked == [keys[2], keys[4]]  # a full page: the next one is empty


def test_closing_a_bundled_store_closes_the_inner_one(tmp_path):
    inner = LocalStore(tmp_path)
    with BundledStore(inner) as store:
        assert store.read_only is False
    assert inner.closed is True and store.closed is True
    assert BundledStore(LocalStore(tmp_path, read_only=True)).read_only is True
