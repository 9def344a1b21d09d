"""The store conformance suite: what every :class:`Store` backend does.

Subclass :class:`StoreTests` in a test module, name the subclass
``Test...`` and implement its hooks; pytest then runs every ``test_*``
method on the backend::

    class TestMyStore(StoreTests):
        def make_store(self, read_only=False):
            return MyStore(new_empty_location(), read_only=read_only)

        def raw_set(self, store, key, data):
            ...  # write data under key in store's backend, not through store

        def raw_get(self, store, key):
            ...  # the bytes under key, read past store; None if absent

The bypass hooks let the suite check the store's reads against writes made
outside it, and its writes against what the backend really holds. Tests of
a capability the backend lacks (see :data:`CAPABILITIES`) are skipped, and
:meth:`StoreTests.test_missing_capabilities_are_refused` checks that each
such operation is refused instead.

Keys are chosen so that a served repository (which checks what is written
to it) takes them: values written through a store sit under the object key
their SHA-256 names, refs are branches, and :meth:`StoreTests.ref_values`
gives the values a ref may hold.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable
from typing import Any

from ..core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    StorageError,
)
from ..storage.store import CAPABILITIES, ClosedStoreError, Store
from .tools import race, raises, skip, skip_unless

REF = "refs/heads/main"
PACK = f"packs/{'ab' * 32}.pack"
LISTED = (
    "objects/ab/c0",
    "objects/ab/c1",
    "packs/p.pack",
    "refs/heads/main",
    "refs/heads/x-y",
    "refs/heads/x.y",
    "refs/heads/x/y",
    "refs/heads/x0",
    "refs/tags/v1",
)
"""Keys for listing, in order: ``-`` and ``.`` sort before ``/``, ``0`` after."""
UNCHECKED = b"0" * 64 + b"\n"
"""A ref value for writes refused before it is looked at."""
HOSTILE = ("", "/abs", "a//b", "../x", "a/../b", "a/./b", ".hidden", "a/.tmp", "a\\b", "a b")


def content_key(data: bytes) -> str:
    """The object key ``data``'s SHA-256 names."""
    digest = hashlib.sha256(data).hexdigest()
    return f"objects/{digest[:2]}/{digest[2:]}"


class StoreTests:
    """Conformance tests for one store backend (see the module docstring)."""

    # -- hooks ---------------------------------------------------------------------
    def make_store(self, read_only: bool = False) -> Store:
        """A new store over a fresh, empty location."""
        raise NotImplementedError

    def raw_set(self, store: Store, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` in ``store``'s backend, not through ``store``."""
        raise NotImplementedError

    def raw_get(self, store: Store, key: str) -> bytes | None:
        """The bytes under ``key`` in ``store``'s backend, read past ``store``; None if absent."""
        raise NotImplementedError

    def ref_values(self, store: Store, count: int) -> list[bytes]:
        """``count`` distinct values a ref of ``store`` may hold, each one
        a possible successor of the one before."""
        return [f"value {i}\n".encode() for i in range(count)]

    # -- helpers -------------------------------------------------------------------
    def fresh_store(self, read_only: bool = False) -> Store:
        """:meth:`make_store`, closed when the test ends."""
        store = self.make_store(read_only=read_only)
        self.__dict__.setdefault("_made", []).append(store)
        return store

    def teardown_method(self, method: Any = None) -> None:
        for store in self.__dict__.pop("_made", []):
            store.close()

    def filled_store(self, keys: tuple[str, ...] = LISTED) -> Store:
        """A fresh store holding ``keys`` (each its own name as bytes), written raw."""
        store = self.fresh_store()
        for key in reversed(keys):
            self.raw_set(store, key, key.encode())
        return store

    # -- capabilities ----------------------------------------------------------------
    def test_capability_flags_are_booleans(self) -> None:
        store = self.fresh_store()
        for flag in CAPABILITIES:
            assert isinstance(getattr(store, flag), bool), flag
        assert store.read_only is False and store.closed is False

    def test_missing_capabilities_are_refused(self) -> None:
        store = self.fresh_store()
        self.raw_set(store, "objects/ab/kept", b"kept")
        new = content_key(b"x")
        refusals: dict[str, tuple[type[Exception], Callable[[], object]]] = {
            "supports_writes": (ReadOnlyError, lambda: store.put_if_absent(new, b"x")),
            "supports_deletes": (ReadOnlyError, lambda: store.delete("objects/ab/kept")),
            "supports_replace": (ReadOnlyError, lambda: store.replace("objects/ab/kept", b"x")),
            "supports_conditional_writes": (
                ReadOnlyError,
                lambda: store.compare_and_swap(REF, None, UNCHECKED),
            ),
            "supports_listing": (NotImplementedError, lambda: store.list()),
        }
        missing = [flag for flag in refusals if not getattr(store, flag)]
        if not missing:
            skip("it has every capability that can be refused")
        for flag in missing:
            kind, call = refusals[flag]
            with raises(kind):
                call()
        assert self.raw_get(store, "objects/ab/kept") == b"kept"
        assert self.raw_get(store, new) is None
        assert self.raw_get(store, REF) is None

    # -- reading -------------------------------------------------------------------
    def test_missing_keys_are_not_found(self) -> None:
        store = self.fresh_store()
        key = "objects/ab/missing"
        for call in (store.get, store.size, store.modified, lambda k: store.get_range(k, 0, 1)):
            with raises(NotFoundError):
                call(key)
        with raises(NotFoundError):
            store.get_range(key, 0, 0)
        assert store.get_if_exists(key) is None
        assert store.exists(key) is False

    def test_reads_see_raw_writes(self) -> None:
        store = self.fresh_store()
        data = bytes(range(256))
        self.raw_set(store, "objects/ab/raw", data)
        self.raw_set(store, "objects/ab/empty", b"")
        assert store.get("objects/ab/raw") == data
        assert bytes(store.get_view("objects/ab/raw")) == data
        assert store.get_if_exists("objects/ab/raw") == data
        assert store.exists("objects/ab/raw") is True
        assert store.size("objects/ab/raw") == 256
        assert store.get("objects/ab/empty") == b""
        assert store.size("objects/ab/empty") == 0
        modified = store.modified("objects/ab/raw")
        assert isinstance(modified, float)
        assert time.time() - 3600 < modified < time.time() + 3600

    def test_get_range(self) -> None:
        store = self.fresh_store()
        data = bytes(range(256)) * 4
        self.raw_set(store, PACK, data)
        assert store.get_range(PACK, 0, 10) == data[:10]
        assert store.get_range(PACK, 300, 212) == data[300:512]
        assert store.get_range(PACK, 1014, 10) == data[1014:]
        with raises(StorageError):
            store.get_range(PACK, 1020, 10)
        with raises(NotFoundError):
            store.get_range("packs/missing.pack", 0, 1)

    def test_zero_length_range(self) -> None:
        store = self.fresh_store()
        self.raw_set(store, PACK, b"abc")
        assert store.get_range(PACK, 0, 0) == b""
        assert store.get_range(PACK, 3, 0) == b""
        with raises(StorageError):
            store.get_range(PACK, 4, 0)

    # -- listing -------------------------------------------------------------------
    def test_list_is_sorted_and_prefix_filtered(self) -> None:
        store = self.filled_store()
        skip_unless(store, "supports_listing")
        assert list(store.list()) == list(LISTED)
        assert list(store.list("")) == list(LISTED)
        assert list(store.list("refs/")) == [k for k in LISTED if k.startswith("refs/")]
        assert list(store.list("objects/ab/")) == ["objects/ab/c0", "objects/ab/c1"]
        assert list(store.list("refs/heads/ma")) == ["refs/heads/main"]
        assert list(store.list("refs/heads/x")) == [
            "refs/heads/x-y",
            "refs/heads/x.y",
            "refs/heads/x/y",
            "refs/heads/x0",
        ]
        assert list(store.list("refs/heads/x/")) == ["refs/heads/x/y"]
        assert list(store.list("objects/zz/")) == []

    def test_list_starts_after(self) -> None:
        store = self.filled_store()
        skip_unless(store, "supports_listing")
        after = {
            None: LISTED,
            "": LISTED,
            "a": LISTED,
            "objects/ab/c0": LISTED[1:],
            "refs/heads/x-y": LISTED[5:],
            "refs/heads/x.": LISTED[5:],
            "refs/heads/x/": LISTED[6:],
            "refs/heads/x/y": LISTED[7:],
            "refs/heads/x/z": LISTED[7:],
            "refs/tags/v1": (),
            "zzz": (),
        }
        for start, expected in after.items():
            assert list(store.list(start_after=start)) == list(expected), start
        assert list(store.list("refs/heads/", "refs/heads/x.y")) == list(LISTED[6:8])
        assert list(store.list("refs/heads/", start_after="objects/zz")) == list(LISTED[3:8])
        assert list(store.list("objects/", start_after="refs/")) == []

    def test_listing_resumes_page_by_page(self) -> None:
        store = self.filled_store()
        skip_unless(store, "supports_listing")
        seen: list[str] = []
        while True:
            page = list(itertools.islice(store.list(start_after=seen[-1] if seen else None), 2))
            if not page:
                break
            seen += page
        assert seen == list(LISTED)

    def test_list_checks_its_arguments(self) -> None:
        store = self.fresh_store()
        skip_unless(store, "supports_listing")
        for prefix in ("/abs", "../x", "a//b", ".hidden/"):
            with raises(InvalidInputError):
                store.list(prefix)
        with raises(InvalidInputError):
            store.list("refs/", start_after=5)  # type: ignore[arg-type]

    # -- writing -------------------------------------------------------------------
    def test_put_if_absent_writes_once(self) -> None:
        store = self.fresh_store()
        key = content_key(b"first")
        assert store.put_if_absent(key, b"first") is True
        assert store.put_if_absent(key, b"first") is False
        assert store.get(key) == b"first" and store.size(key) == 5 and store.exists(key)
        assert self.raw_get(store, key) == b"first"
        theirs = content_key(b"mine")
        self.raw_set(store, theirs, b"theirs")
        assert store.put_if_absent(theirs, b"mine") is False
        assert self.raw_get(store, theirs) == b"theirs"

    def test_put_accepts_memoryview_and_bytearray(self) -> None:
        store = self.fresh_store()
        assert store.put_if_absent(content_key(b"xyz"), memoryview(b"xyz")) is True
        assert store.put_if_absent(content_key(b"uvw"), bytearray(b"uvw")) is True
        assert self.raw_get(store, content_key(b"xyz")) == b"xyz"
        assert self.raw_get(store, content_key(b"uvw")) == b"uvw"

    def test_racing_put_if_absent_has_one_winner(self) -> None:
        store = self.fresh_store()
        key = content_key(b"contended")
        wins = race(4, lambda: store.put_if_absent(key, b"contended"))
        assert sorted(wins) == [False, False, False, True]
        assert self.raw_get(store, key) == b"contended"

    def test_put_or_freshen(self) -> None:
        store = self.fresh_store()
        key = content_key(b"value")
        assert store.put_or_freshen(key, b"value") is True
        written = store.modified(key)
        assert store.put_or_freshen(key, b"value") is False
        assert self.raw_get(store, key) == b"value"
        assert store.modified(key) >= written

    def test_freshen(self) -> None:
        store = self.fresh_store()
        assert store.freshen("objects/ab/absent") is False
        self.raw_set(store, "objects/ab/old", b"old")
        before = store.modified("objects/ab/old")
        assert store.freshen("objects/ab/old") is True
        assert self.raw_get(store, "objects/ab/old") == b"old"
        if store.supports_freshen:
            assert store.modified("objects/ab/old") >= before
        else:  # it only says the key exists
            assert store.modified("objects/ab/old") == before
        assert self.raw_get(store, "objects/ab/absent") is None

    def test_staging_publishes_once_and_discards(self) -> None:
        store = self.fresh_store()
        with store.staging() as staged:
            staged.write(b"hello ")
            staged.write(memoryview(b"world"))
            assert staged.publish(PACK) is True
        assert self.raw_get(store, PACK) == b"hello world"
        with store.staging() as staged:
            staged.write(b"other")
            assert staged.publish(PACK) is False
        assert store.get(PACK) == b"hello world"
        with store.staging() as staged:
            staged.write(b"never published")
        if store.supports_listing:
            assert list(store.list()) == [PACK]

    def test_replace_repairs_a_value(self) -> None:
        store = self.fresh_store()
        skip_unless(store, "supports_replace")
        key = content_key(b"good")
        self.raw_set(store, key, b"damaged")
        store.replace(key, b"good")
        assert self.raw_get(store, key) == b"good"
        assert store.get(key) == b"good"

    # -- compare-and-swap ------------------------------------------------------------
    def test_compare_and_swap(self) -> None:
        store = self.fresh_store()
        skip_unless(store, "supports_conditional_writes")
        one, two, three = self.ref_values(store, 3)
        store.compare_and_swap(REF, None, one)
        assert self.raw_get(store, REF) == one
        with raises(ConflictError):
            store.compare_and_swap(REF, None, two)
        with raises(ConflictError):
            store.compare_and_swap(REF, three, two)
        store.compare_and_swap(REF, one, two)
        assert store.get(REF) == two and self.raw_get(store, REF) == two
        with raises(ConflictError):
            store.compare_and_swap("refs/heads/other", one, two)
        assert self.raw_get(store, "refs/heads/other") is None

    def test_compare_and_swap_sees_raw_writes(self) -> None:
        store = self.fresh_store()
        skip_unless(store, "supports_conditional_writes")
        one, two = self.ref_values(store, 2)
        self.raw_set(store, REF, one)
        with raises(ConflictError):
            store.compare_and_swap(REF, None, two)
        store.compare_and_swap(REF, one, two)
        assert self.raw_get(store, REF) == two

    def test_racing_compare_and_swap_never_loses_an_update(self) -> None:
        """Threads move a ref one value on at a time; every move lands."""
        store = self.fresh_store()
        skip_unless(store, "supports_conditional_writes")
        per_thread, threads = 5, 4
        values = self.ref_values(store, per_thread * threads + 1)
        store.compare_and_swap(REF, None, values[0])

        def advance() -> None:
            done = 0
            while done < per_thread:
                current = store.get(REF)
                try:
                    store.compare_and_swap(REF, current, values[values.index(current) + 1])
                    done += 1
                except ConflictError:
                    pass

        race(threads, advance)
        assert store.get(REF) == values[-1]

    # -- deleting ------------------------------------------------------------------
    def test_delete_removes_only_that_key(self) -> None:
        keys = ("refs/heads/a/x", "refs/heads/a/y", "refs/heads/b/x")
        store = self.filled_store(keys)
        skip_unless(store, "supports_deletes")
        store.delete("refs/heads/a/x")
        assert self.raw_get(store, "refs/heads/a/x") is None
        assert store.exists("refs/heads/a/x") is False
        assert store.get_if_exists("refs/heads/a/x") is None
        for call in (store.get, store.size):
            with raises(NotFoundError):
                call("refs/heads/a/x")
        assert list(store.list("refs/heads/")) == ["refs/heads/a/y", "refs/heads/b/x"]
        assert store.get("refs/heads/a/y") == b"refs/heads/a/y"
        store.delete("refs/heads/a/y")
        assert list(store.list("refs/heads/a/")) == []
        assert list(store.list()) == ["refs/heads/b/x"]

    def test_delete_of_an_absent_key_is_a_no_op(self) -> None:
        store = self.filled_store(("objects/ab/one",))
        skip_unless(store, "supports_deletes")
        store.delete("refs/heads/never/there")
        store.delete("objects/ab/two")
        store.delete("objects/ab/one")
        store.delete("objects/ab/one")
        assert self.raw_get(store, "objects/ab/one") is None
        assert list(store.list()) == []

    def test_a_deleted_key_can_be_created_again(self) -> None:
        store = self.fresh_store()
        skip_unless(store, "supports_deletes")
        one, two, three = self.ref_values(store, 3)
        store.compare_and_swap(REF, None, one)
        store.delete(REF)
        with raises(ConflictError):
            store.compare_and_swap(REF, one, two)
        store.compare_and_swap(REF, None, two)
        assert store.get(REF) == two
        store.delete(REF)
        assert store.put_if_absent(REF, three) is True
        assert self.raw_get(store, REF) == three

    # -- keys ----------------------------------------------------------------------
    def test_hostile_keys_are_rejected(self) -> None:
        store = self.fresh_store()
        calls: list[Callable[[str], object]] = [
            store.get,
            store.exists,
            store.size,
            store.modified,
            store.freshen,
            store.delete,
            lambda k: store.get_range(k, 0, 1),
            lambda k: store.put_if_absent(k, b"x"),
            lambda k: store.put_or_freshen(k, b"x"),
            lambda k: store.compare_and_swap(k, None, UNCHECKED),
        ]
        if store.supports_replace:
            calls.append(lambda k: store.replace(k, b"x"))
        for key in HOSTILE:
            for call in calls:
                with raises(InvalidInputError):
                    call(key)
        if store.supports_listing:
            assert list(store.list()) == []

    # -- read-only -----------------------------------------------------------------
    def test_read_only_refuses_every_write(self) -> None:
        store = self.fresh_store(read_only=True)
        assert store.read_only is True
        held, new = content_key(b"held"), content_key(b"new")
        self.raw_set(store, held, b"held")
        source = self.fresh_store()
        self.raw_set(source, new, b"new")
        writes: list[Callable[[], object]] = [
            lambda: store.put_if_absent(new, b"new"),
            lambda: store.put_if_absent(held, b"held"),
            lambda: store.put_if_absent("../hostile", b"x"),
            lambda: store.put_or_freshen(new, b"new"),
            lambda: store.freshen(held),
            lambda: store.replace(held, b"other"),
            lambda: store.delete(held),
            lambda: store.compare_and_swap(REF, None, UNCHECKED),
            lambda: store.staging(),
            lambda: store.sweep_temporaries(time.time() + 3600),
            lambda: store.adopt(source, new),
        ]
        for write in writes:
            with raises(ReadOnlyError) as refused:
                write()
            assert "read-only" in str(refused.value) and "\n" not in str(refused.value)
        assert self.raw_get(store, held) == b"held"
        assert self.raw_get(store, new) is None and self.raw_get(store, REF) is None
        assert store.get(held) == b"held"
        assert store.sweep_temporaries(time.time() + 3600, dry_run=True) == []
        if store.supports_listing:
            assert list(store.list()) == [held]

    # -- closing -------------------------------------------------------------------
    def test_close_and_context_manager(self) -> None:
        store = self.fresh_store()
        key = content_key(b"kept")
        with store as entered:
            assert entered is store
            assert store.put_if_absent(key, b"kept") is True
        assert store.closed is True
        store.close()  # again: harmless
        calls: list[Callable[[], object]] = [
            lambda: store.get(key),
            lambda: store.get_range(key, 0, 1),
            lambda: store.exists(key),
            lambda: store.size(key),
            lambda: store.modified(key),
            lambda: store.list(),
            lambda: store.put_if_absent(key, b"kept"),
            lambda: store.put_or_freshen(key, b"kept"),
            lambda: store.freshen(key),
            lambda: store.delete(key),
            lambda: store.compare_and_swap(REF, None, UNCHECKED),
            lambda: store.staging(),
            lambda: store.sweep_temporaries(0.0, dry_run=True),
            lambda: store.__enter__(),
        ]
        for call in calls:
            with raises(ClosedStoreError):
                call()
        assert self.raw_get(store, key) == b"kept"
