"""The store conformance suite (:class:`improv_vcs.testing.StoreTests`) on
every backend: memory, a local directory, S3 (moto's server on 127.0.0.1),
a repository served over HTTP (a real uvicorn server on 127.0.0.1), and
bundles over a local directory. Each subclass only says how to make a fresh
store and how to read and write its backend directly."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import SERVE_TOKEN

from improv_vcs import Repository
from improv_vcs.core.model import Commit
from improv_vcs.storage import BundledStore, LocalStore, MemoryStore, S3Store
from improv_vcs.storage.bundled_store import BundleWriter
from improv_vcs.storage.http_store import HttpStore
from improv_vcs.testing import StoreTests
from improv_vcs.testing.store import content_key

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def write_file(root: Path, key: str, data: bytes) -> None:
    path = root.joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def read_file(root: Path, key: str) -> bytes | None:
    path = root.joinpath(*key.split("/"))
    return path.read_bytes() if path.is_file() else None


class TestMemoryStore(StoreTests):
    @pytest.fixture(autouse=True)
    def _memory(self):
        import fsspec

        self.fs = fsspec.filesystem("memory")
        self.roots: list[str] = []
        yield
        for root in self.roots:
            if self.fs.exists(root):
                self.fs.rm(root, recursive=True)

    def make_store(self, read_only=False):
        store = MemoryStore(f"memory://conformance-{uuid.uuid4().hex}", read_only=read_only)
        self.roots.append(store.root)
        return store

    def raw_set(self, store, key, data):
        self.fs.pipe_file(f"{store.root}/{key}", data)

    def raw_get(self, store, key):
        try:
            return self.fs.cat_file(f"{store.root}/{key}")
        except FileNotFoundError:
            return None


class TestLocalStore(StoreTests):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path):
        self.tmp = tmp_path

    def make_store(self, read_only=False):
        return LocalStore(self.tmp / uuid.uuid4().hex, read_only=read_only)

    def raw_set(self, store, key, data):
        write_file(store.root, key, data)

    def raw_get(self, store, key):
        return read_file(store.root, key)


class TestBundledStore(TestLocalStore):
    """Bundles over a local directory: loose keys, written raw to the inner store."""

    def make_store(self, read_only=False):
        return BundledStore(super().make_store(read_only))

    def raw_set(self, store, key, data):
        write_file(store.inner.root, key, data)

    def raw_get(self, store, key):
        return read_file(store.inner.root, key)

    def test_bundled_keys_are_listed_and_read_like_loose_ones(self):
        store = self.fresh_store()
        bundled = {content_key(v): v for v in (b"one", b"two", b"three")}
        writer = BundleWriter(store)
        for key, value in bundled.items():
            writer.add(key, value)
        writer.finish()
        loose = content_key(b"loose")
        assert store.put_if_absent(loose, b"loose") is True
        keys = sorted([*bundled, loose])
        assert list(store.list("objects/")) == keys
        assert list(store.list("objects/", start_after=keys[1])) == keys[2:]
        assert [store.get(k) for k in bundled] == list(bundled.values())
        assert all(store.inner.exists(k) is False for k in bundled)


class TestS3Store(StoreTests):
    @pytest.fixture(autouse=True)
    def _bucket(self, s3_url, s3_options):
        import boto3

        self.bucket = s3_url.split("/")[2]
        self.options = s3_options
        self.client = boto3.client("s3", endpoint_url=s3_options["endpoint_url"])

    def make_store(self, read_only=False):
        url = f"s3://{self.bucket}/{uuid.uuid4().hex}"
        return S3Store(url, read_only=read_only, **self.options)

    def _key(self, store, key):
        return f"{store.root.partition('/')[2]}/{key}"

    def raw_set(self, store, key, data):
        self.client.put_object(Bucket=self.bucket, Key=self._key(store, key), Body=data)

    def raw_get(self, store, key):
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self._key(store, key))
        except self.client.exceptions.NoSuchKey:
            return None
        return found["Body"].read()


class TestHttpStore(StoreTests):
    """A repository served by ``improv serve``; its backend is the served directory."""

    @pytest.fixture(autouse=True)
    def _server(self, serve, tmp_path):
        self.serve, self.tmp = serve, tmp_path
        self.served: dict[str, Path] = {}

    def make_store(self, read_only=False):
        path = self.tmp / uuid.uuid4().hex
        store = HttpStore(self.serve(path), token=SERVE_TOKEN, read_only=read_only)
        self.served[store.url] = path
        return store

    def raw_set(self, store, key, data):
        write_file(self.served[store.url], key, data)

    def raw_get(self, store, key):
        return read_file(self.served[store.url], key)

    def ref_values(self, store, count):
        """A chain of commits in the served repository: the server moves a
        ref only to a commit whose history it holds."""
        repo = Repository.init(self.served[store.url])
        oids: list[str] = []
        for height in range(1, count + 1):
            parents = tuple(oids[-1:])
            commit = Commit(parents=parents, height=height, author="t", message="", time=T0)
            oids.append(repo.odb.put_object(commit))
        return [f"{oid}\n".encode() for oid in oids]

    def test_close_closes_the_connection_pool(self):
        store = self.fresh_store()
        store.close()
        assert store._client.is_closed is True
