"""Packs (pure bytes) and the object database over a local store.

Properties: every blob added to a pack is located by its id and its slice
equals the input; identical blobs are stored once; the index parses back; the
pack id is the SHA-256 of the index; any corruption is an IntegrityError.
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from improv_vcs.core.errors import IntegrityError, NotFoundError, StorageError
from improv_vcs.core.ids import hash_bytes
from improv_vcs.storage import LocalStore
from improv_vcs.storage.objects import ObjectDatabase, object_key
from improv_vcs.storage.packs import MAGIC, PackBuilder, PackIndex, index_key, pack_key

blob_lists = st.lists(st.binary(max_size=200), max_size=20)
# small pools make duplicates (and the empty blob) likely
pooled_blob_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=4).flatmap(
    lambda pool: st.lists(st.sampled_from(pool), max_size=20)
)
any_blobs = blob_lists | pooled_blob_lists

HEADER_SIZE = 32
ENTRY_SIZE = 48


class _Built:
    """A pack laid out by :class:`PackBuilder`, with the bytes written the way
    its contract says: a blob's bytes are appended only when ``add`` says it is new."""

    def __init__(self, blobs: list[bytes]):
        self.builder = PackBuilder()
        data = bytearray()
        self.offsets = []
        self.new = []
        for b in blobs:
            offset, new = self.builder.add(hashlib.sha256(b).digest(), len(b))
            if new:
                assert offset == len(data)
                data += b
            self.offsets.append(offset)
            self.new.append(new)
        self.data = bytes(data)

    def finish(self) -> tuple[str, bytes, bytes]:
        pack_id, index_bytes = self.builder.finish()
        return pack_id, index_bytes, self.data


def _build(blobs: list[bytes]) -> tuple[_Built, list[int]]:
    built = _Built(blobs)
    return built, built.offsets


def _flip(data: bytes | memoryview, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0xFF
    return bytes(out)


@given(any_blobs)
def test_every_blob_is_located_and_sliced_back(blobs):
    builder, offsets = _build(blobs)
    pack_id, index_bytes, data = builder.finish()
    data = bytes(data)
    index = PackIndex.parse(index_bytes)
    for blob, offset in zip(blobs, offsets):
        where = index.locate(hashlib.sha256(blob).hexdigest())
        assert where == (offset, len(blob))
        assert data[offset : offset + len(blob)] == blob
    assert index.pack_length == len(data)


@given(any_blobs)
def test_duplicates_are_stored_once(blobs):
    builder, offsets = _build(blobs)
    unique = {hashlib.sha256(b).hexdigest(): b for b in blobs}
    assert builder.builder.blob_count == len(unique)
    assert len(builder.builder) == sum(len(b) for b in unique.values())
    first = {}
    for blob, offset, new in zip(blobs, offsets, builder.new):
        assert new == (blob not in first)
        assert first.setdefault(blob, offset) == offset
    _, index_bytes, data = builder.finish()
    assert len(data) == sum(len(b) for b in unique.values())
    assert PackIndex.parse(index_bytes).blob_ids() == sorted(unique)


@given(any_blobs)
def test_index_round_trip_and_pack_id(blobs):
    builder, _ = _build(blobs)
    pack_id, index_bytes, data = builder.finish()
    assert pack_id == hashlib.sha256(index_bytes).hexdigest() == hash_bytes(index_bytes)
    assert index_bytes[:8] == MAGIC
    index = PackIndex.parse(index_bytes)
    assert len(index_bytes) == HEADER_SIZE + ENTRY_SIZE * len(index.digests)
    assert list(index.digests) == sorted(index.digests)
    assert len(set(index.digests)) == len(index.digests)
    assert PackIndex.parse(bytes(index_bytes)) == index
    # the same blobs in the same order always make the same pack (content addressing)
    again, _ = _build(list(blobs))
    same_id, same_index, same_data = again.finish()
    assert (same_id, same_index, bytes(same_data)) == (pack_id, index_bytes, bytes(data))


def test_locate_unknown_blob_is_none():
    builder, _ = _build([b"one", b"two"])
    _, index_bytes, _ = builder.finish()
    index = PackIndex.parse(index_bytes)
    assert index.locate(hashlib.sha256(b"three").hexdigest()) is None
    assert index.locate("00" * 32) is None
    assert index.locate("ff" * 32) is None


def test_empty_pack():
    pack_id, index_bytes = PackBuilder().finish()
    data = b""
    index = PackIndex.parse(index_bytes)
    assert len(data) == 0 and index.digests == () and index.pack_length == 0
    index.verify(b"")
    assert pack_id == hash_bytes(index_bytes)


@given(any_blobs)
def test_verify_passes_on_intact_pack(blobs):
    builder, _ = _build(blobs)
    _, index_bytes, data = builder.finish()
    PackIndex.parse(index_bytes).verify(data)
    PackIndex.parse(index_bytes).verify(bytes(data))


@given(st.lists(st.binary(max_size=100), max_size=12).filter(lambda bs: any(bs)), st.data())
def test_verify_detects_any_flipped_byte(blobs, data):
    builder, _ = _build(blobs)
    _, index_bytes, pack = builder.finish()
    pack = bytes(pack)
    index = PackIndex.parse(index_bytes)
    position = data.draw(st.integers(0, len(pack) - 1), label="position")
    with pytest.raises(IntegrityError):
        index.verify(_flip(pack, position))


@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=8), st.data())
def test_verify_detects_wrong_length(blobs, data):
    builder, _ = _build(blobs)
    _, index_bytes, pack = builder.finish()
    pack = bytes(pack)
    index = PackIndex.parse(index_bytes)
    cut = data.draw(st.integers(0, len(pack) - 1), label="cut")
    with pytest.raises(IntegrityError):
        index.verify(pack[:cut])
    with pytest.raises(IntegrityError):
        index.verify(pack + b"\0")


@given(st.lists(st.binary(max_size=30), max_size=8), st.data())
def test_truncated_index_is_rejected(blobs, data):
    builder, _ = _build(blobs)
    _, index_bytes, _ = builder.finish()
    cut = data.draw(st.integers(0, len(index_bytes) - 1), label="cut")
    with pytest.raises(IntegrityError):
        PackIndex.parse(index_bytes[:cut])
    with pytest.raises(IntegrityError):
        PackIndex.parse(index_bytes + b"\0")


def _index_of(*blobs: bytes) -> bytes:
    builder, _ = _build(list(blobs))
    return builder.finish()[1]


def _garble_magic(idx: bytes) -> bytes:
    return b"XMPRVIDX" + idx[8:]


def _garble_version(idx: bytes) -> bytes:
    return idx[:8] + struct.pack("<I", 2) + idx[12:]


def _garble_count(idx: bytes) -> bytes:
    return idx[:24] + struct.pack("<Q", 4) + idx[32:]


def _garble_order(idx: bytes) -> bytes:
    first, second = idx[32:80], idx[80:128]
    return idx[:32] + second + first + idx[128:]


def _garble_duplicate(idx: bytes) -> bytes:
    return idx[:32] + idx[32:80] + idx[32:80] + idx[128:]


def _garble_pack_length(idx: bytes) -> bytes:
    return idx[:16] + struct.pack("<Q", 1) + idx[24:]


def _garble_length(idx: bytes) -> bytes:
    return idx[: 32 + 40] + struct.pack("<Q", 2**40) + idx[80:]


def _garble_offset(idx: bytes) -> bytes:
    return idx[: 32 + 32] + struct.pack("<Q", 2**63) + idx[72:]


@pytest.mark.parametrize(
    "garble",
    [
        _garble_magic,
        _garble_version,
        _garble_count,
        _garble_order,
        _garble_duplicate,
        _garble_pack_length,
        _garble_length,
        _garble_offset,
        lambda idx: b"",
        lambda idx: b"\0" * 32,
        lambda idx: idx[:40],
    ],
)
def test_garbled_index_is_rejected(garble):
    idx = _index_of(b"first blob", b"second blob", b"third")
    PackIndex.parse(idx)  # the original is fine
    with pytest.raises(IntegrityError):
        PackIndex.parse(garble(idx))


@given(st.binary(max_size=300))
def test_parse_arbitrary_bytes_only_raises_integrity_error(data):
    try:
        index = PackIndex.parse(data)
    except IntegrityError:
        return
    assert list(index.digests) == sorted(set(index.digests))
    assert all(o + n <= index.pack_length for o, n in zip(index.offsets, index.lengths))


@given(st.binary(max_size=300).map(lambda b: MAGIC + struct.pack("<IIQQ", 1, 0, 2**20, 2) + b))
def test_parse_garbage_after_valid_header(data):
    try:
        PackIndex.parse(data)
    except IntegrityError:
        pass


# -- the object database over a local store --------------------------------------


@pytest.fixture
def odb(tmp_path):
    return ObjectDatabase(LocalStore(tmp_path))


def _write(odb: ObjectDatabase, blobs: list[bytes]) -> tuple[str, list[int]]:
    writer = odb.pack_writer()
    offsets = [writer.add(hashlib.sha256(b).digest(), b) for b in blobs]
    return writer.finish(), offsets


def _flip_file(path, position: int) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0xFF]))


BLOBS = [b"alpha" * 10, b"", b"beta", b"alpha" * 10, bytes(range(256)), b"gamma"]


def test_write_pack_then_read_blob(odb, tmp_path):
    pack_id, offsets = _write(odb, BLOBS)
    assert (tmp_path / "packs" / f"{pack_id}.pack").is_file()
    assert (tmp_path / "packs" / f"{pack_id}.idx").is_file()
    for blob, offset in zip(BLOBS, offsets):
        assert odb.read_blob(pack_id, offset, len(blob), hashlib.sha256(blob).hexdigest()) == blob
    index = odb.pack_index(pack_id)
    for blob, offset in zip(BLOBS, offsets):
        assert index.locate(hashlib.sha256(blob).hexdigest()) == (offset, len(blob))
    index.verify(odb.store.get(pack_key(pack_id)))
    # writing the same pack again is a no-op with the same id
    assert _write(odb, BLOBS)[0] == pack_id


@given(any_blobs)
def test_write_pack_then_read_every_blob(tmp_path_factory, blobs):
    odb = ObjectDatabase(LocalStore(tmp_path_factory.mktemp("odb")))
    pack_id, offsets = _write(odb, blobs)
    for blob, offset in zip(blobs, offsets):
        assert odb.read_blob(pack_id, offset, len(blob), hashlib.sha256(blob).hexdigest()) == blob


def test_corrupt_pack_file_is_detected(odb, tmp_path):
    pack_id, offsets = _write(odb, BLOBS)
    target = BLOBS.index(b"beta")
    _flip_file(tmp_path / "packs" / f"{pack_id}.pack", offsets[target] + 2)
    with pytest.raises(IntegrityError):
        odb.read_blob(pack_id, offsets[target], 4, hashlib.sha256(b"beta").hexdigest())
    # the other blobs are still intact and readable
    gamma = BLOBS.index(b"gamma")
    assert (
        odb.read_blob(pack_id, offsets[gamma], 5, hashlib.sha256(b"gamma").hexdigest()) == b"gamma"
    )
    with pytest.raises(IntegrityError):
        odb.pack_index(pack_id).verify(odb.store.get(pack_key(pack_id)))


def test_every_byte_of_a_blob_is_covered(tmp_path):
    for position in range(50):
        odb = ObjectDatabase(LocalStore(tmp_path / str(position)))
        pack_id, offsets = _write(odb, BLOBS)
        _flip_file(tmp_path / str(position) / "packs" / f"{pack_id}.pack", offsets[0] + position)
        with pytest.raises(IntegrityError):
            odb.read_blob(pack_id, offsets[0], 50, hashlib.sha256(BLOBS[0]).hexdigest())


def test_pack_writer_matches_pack_layout(odb):
    """The streamed pack file is exactly the layout PackBuilder describes."""
    pack_id, offsets = _write(odb, BLOBS)
    built, expected_offsets = _build(BLOBS)
    expected_id, expected_index, expected_data = built.finish()
    assert pack_id == expected_id and offsets == expected_offsets
    assert odb.store.get(pack_key(pack_id)) == expected_data
    assert odb.store.get(index_key(pack_id)) == expected_index


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_discarded_pack_leaves_nothing(tmp_path, kind):
    import os
    import uuid

    from improv_vcs.storage import open_store

    store = open_store(
        str(tmp_path / "s") if kind == "local" else f"memory://discard-{uuid.uuid4().hex}"
    )
    odb = ObjectDatabase(store)
    writer = odb.pack_writer()
    for b in BLOBS:
        writer.add(hashlib.sha256(b).digest(), b)
    writer.discard()
    assert list(store.list()) == []
    if kind == "local":
        leftovers = [
            n for _, _, files in os.walk(tmp_path / "s") for n in files if n.startswith(".tmp")
        ]
        assert leftovers == []


def test_reading_a_blob_at_a_wrong_location_is_an_integrity_error(odb):
    pack_id, offsets = _write(odb, BLOBS)
    with pytest.raises(IntegrityError):
        odb.read_blob(pack_id, offsets[0] + 1, 4, hashlib.sha256(b"beta").hexdigest())


def test_truncated_pack_file_is_an_error(odb, tmp_path):
    pack_id, offsets = _write(odb, BLOBS)
    path = tmp_path / "packs" / f"{pack_id}.pack"
    path.write_bytes(path.read_bytes()[:-3])
    gamma = BLOBS.index(b"gamma")
    with pytest.raises(StorageError, match="past the end"):
        odb.read_blob(pack_id, offsets[gamma], 5, hashlib.sha256(b"gamma").hexdigest())


@pytest.mark.parametrize("position", [0, 9, 20, 33, 100, -1])
def test_corrupt_pack_index_file_is_detected(tmp_path, position):
    writer = ObjectDatabase(LocalStore(tmp_path))
    pack_id, _ = _write(writer, BLOBS)
    path = tmp_path / "packs" / f"{pack_id}.idx"
    _flip_file(path, position % path.stat().st_size)
    reader = ObjectDatabase(LocalStore(tmp_path))  # no cached index
    with pytest.raises(IntegrityError):
        reader.pack_index(pack_id)


def test_missing_pack_is_not_found(odb):
    with pytest.raises(NotFoundError):
        odb.read_blob("ab" * 32, 0, 1, hashlib.sha256(b"x").hexdigest())


def test_loose_object_round_trip(odb, tmp_path):
    oid = odb.put_bytes(b"hello world")
    assert oid == hashlib.sha256(b"hello world").hexdigest()
    assert (tmp_path / "objects" / oid[:2] / oid[2:]).is_file()
    assert odb.store.exists(object_key(oid))
    assert odb.get_bytes(oid) == b"hello world"
    assert odb.put_bytes(b"hello world") == oid  # idempotent
    assert odb.has(oid)
    assert odb.expand_prefix(oid[:6]) == [oid]


def test_corrupt_loose_object_is_detected(odb, tmp_path):
    oid = odb.put_bytes(b"hello world")
    _flip_file(tmp_path / "objects" / oid[:2] / oid[2:], 4)
    with pytest.raises(IntegrityError):
        odb.get_bytes(oid)


def test_corrupt_commit_object_is_detected(tmp_path):
    from datetime import datetime, timezone

    from improv_vcs.core.model import Commit

    writer = ObjectDatabase(LocalStore(tmp_path))
    oid = writer.put_object(
        Commit(height=1, author="a", message="m", time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    )
    path = tmp_path / "objects" / oid[:2] / oid[2:]
    path.write_bytes(path.read_bytes().replace(b'"m"', b'"n"'))
    reader = ObjectDatabase(LocalStore(tmp_path))
    with pytest.raises(IntegrityError):
        reader.get_object(oid)


def test_missing_loose_object_is_not_found(odb):
    with pytest.raises(NotFoundError):
        odb.get_bytes("cd" * 32)
