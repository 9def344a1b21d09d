"""Conformance suite every store implementation passes."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from improv_vcs.core.errors import ConflictError, InvalidInputError, NotFoundError, StorageError


def test_get_missing_key_is_not_found(store):
    with pytest.raises(NotFoundError):
        store.get("objects/ab/missing")
    assert store.get_if_exists("objects/ab/missing") is None
    assert not store.exists("objects/ab/missing")


def test_put_if_absent_writes_once(store):
    assert store.put_if_absent("objects/aa/one", b"first") is True
    assert store.put_if_absent("objects/aa/one", b"second") is False
    assert store.get("objects/aa/one") == b"first"
    assert store.exists("objects/aa/one")
    assert store.size("objects/aa/one") == 5


def test_put_accepts_memoryview_and_bytearray(store):
    store.put_if_absent("a/b", memoryview(b"xyz"))
    store.put_if_absent("a/c", bytearray(b"uvw"))
    assert store.get("a/b") == b"xyz"
    assert store.get("a/c") == b"uvw"


def test_ranged_get(store):
    data = bytes(range(256)) * 4
    store.put_if_absent("packs/p.pack", data)
    assert store.get_range("packs/p.pack", 0, 10) == data[:10]
    assert store.get_range("packs/p.pack", 300, 212) == data[300:512]
    assert store.get_range("packs/p.pack", 1014, 10) == data[1014:]
    with pytest.raises(StorageError):
        store.get_range("packs/p.pack", 1020, 10)
    with pytest.raises(NotFoundError):
        store.get_range("packs/missing.pack", 0, 1)


def test_list_is_sorted_and_prefix_filtered(store):
    for key in ["refs/heads/main", "refs/tags/v1", "objects/ab/c1", "objects/ab/c0", "improv.json"]:
        store.put_if_absent(key, b"x")
    assert list(store.list("refs/")) == ["refs/heads/main", "refs/tags/v1"]
    assert list(store.list("objects/ab/")) == ["objects/ab/c0", "objects/ab/c1"]
    assert list(store.list("refs/heads/ma")) == ["refs/heads/main"]
    assert list(store.list("nothing/")) == []
    assert list(store.list()) == sorted(
        ["improv.json", "objects/ab/c0", "objects/ab/c1", "refs/heads/main", "refs/tags/v1"]
    )


def test_compare_and_swap(store):
    store.compare_and_swap("refs/heads/main", None, b"one")
    with pytest.raises(ConflictError):
        store.compare_and_swap("refs/heads/main", None, b"two")
    with pytest.raises(ConflictError):
        store.compare_and_swap("refs/heads/main", b"stale", b"two")
    store.compare_and_swap("refs/heads/main", b"one", b"two")
    assert store.get("refs/heads/main") == b"two"
    with pytest.raises(ConflictError):
        store.compare_and_swap("refs/heads/other", b"one", b"x")


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "../x", "a/../b", "a/./b", ".hidden", "a/.tmp", "a\\b", "a b"]
)
def test_hostile_keys_are_rejected(store, key):
    with pytest.raises(InvalidInputError):
        store.put_if_absent(key, b"x")
    with pytest.raises(InvalidInputError):
        store.get(key)


def test_racing_compare_and_swap_never_loses_an_update(store):
    """Many threads increment a counter by CAS; every increment lands."""
    store.compare_and_swap("refs/counter", None, b"0")
    per_thread, threads = 5, 4

    def worker():
        done = 0
        while done < per_thread:
            current = store.get("refs/counter")
            try:
                store.compare_and_swap("refs/counter", current, str(int(current) + 1).encode())
                done += 1
            except ConflictError:
                pass

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert int(store.get("refs/counter")) == per_thread * threads


@settings(max_examples=15)
@given(values=st.dictionaries(st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True), st.binary(max_size=300), max_size=6))
def test_round_trip_arbitrary_bytes(tmp_path_factory, values):
    """Property: put then get returns the bytes, on a local and a memory store."""
    import uuid

    from improv_vcs.storage import open_store

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


def test_zero_length_range(store):
    store.put_if_absent("packs/z.pack", b"abc")
    assert store.get_range("packs/z.pack", 0, 0) == b""
    assert store.get_range("packs/z.pack", 3, 0) == b""
    with pytest.raises(NotFoundError):
        store.get_range("packs/none.pack", 0, 0)


def test_staging_publishes_once_and_discards(store):
    with store.staging() as staged:
        staged.write(b"hello ")
        staged.write(memoryview(b"world"))
        assert staged.publish("packs/s.pack") is True
    assert store.get("packs/s.pack") == b"hello world"
    with store.staging() as staged:
        staged.write(b"other")
        assert staged.publish("packs/s.pack") is False
    assert store.get("packs/s.pack") == b"hello world"
    with store.staging() as staged:
        staged.write(b"never published")
    assert list(store.list()) == ["packs/s.pack"]


# -- delete (local state: remote-tracking refs) -------------------------------------


def test_delete_removes_only_that_key(store):
    store.put_if_absent("refs/remotes/origin/main", b"a")
    store.put_if_absent("refs/remotes/origin/dev", b"b")
    store.put_if_absent("refs/remotes/origin2/main", b"c")
    store.delete("refs/remotes/origin/main")
    assert not store.exists("refs/remotes/origin/main")
    assert store.get_if_exists("refs/remotes/origin/main") is None
    with pytest.raises(NotFoundError):
        store.get("refs/remotes/origin/main")
    with pytest.raises(NotFoundError):
        store.size("refs/remotes/origin/main")
    assert list(store.list("refs/remotes/")) == ["refs/remotes/origin/dev", "refs/remotes/origin2/main"]
    assert store.get("refs/remotes/origin/dev") == b"b"
    store.delete("refs/remotes/origin/dev")
    assert list(store.list("refs/remotes/origin/")) == []
    assert list(store.list()) == ["refs/remotes/origin2/main"]


def test_delete_of_an_absent_key_is_a_no_op(store):
    store.delete("refs/remotes/never/there")
    store.put_if_absent("objects/ab/one", b"x")
    store.delete("objects/ab/two")
    store.delete("objects/ab/one")
    store.delete("objects/ab/one")
    assert list(store.list()) == []


def test_a_deleted_key_can_be_created_again(store):
    store.compare_and_swap("refs/remotes/origin/main", None, b"one")
    store.delete("refs/remotes/origin/main")
    with pytest.raises(ConflictError):
        store.compare_and_swap("refs/remotes/origin/main", b"one", b"two")
    store.compare_and_swap("refs/remotes/origin/main", None, b"two")
    assert store.get("refs/remotes/origin/main") == b"two"
    store.delete("refs/remotes/origin/main")
    assert store.put_if_absent("refs/remotes/origin/main", b"three") is True
    assert store.get("refs/remotes/origin/main") == b"three"


def test_delete_rejects_hostile_keys(store):
    store.put_if_absent("a/b", b"kept")
    for key in ["", "/abs", "../x", "a/../b", ".hidden", "a/.tmp", "a b", "a//b"]:
        with pytest.raises(InvalidInputError):
            store.delete(key)
    assert list(store.list()) == ["a/b"] and store.get("a/b") == b"kept"
