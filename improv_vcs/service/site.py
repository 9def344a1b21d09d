"""The served location and what may be written to it over HTTP.

Reads may name any shared key (configuration, objects, packs, branches and
tags; never site-local state such as ``remotes.json``). Writes are checked
before they become visible, so a client can never make the repository
inconsistent:

- a loose object must hash to the id its key names;
- a pack's data is streamed to the store unchecked but stays invisible until
  its index arrives; the index must hash to the pack id and verify every blob of the
  pack (a pack that fails is removed, so a correct retry succeeds);
- ``improv.json`` may only be created (a first push to an empty location);
- refs move only by compare-and-swap; tags are only created, never moved.
  A branch must name a commit, a tag a commit or a tag object, and the
  server must hold the target's whole history: every commit down to what a
  ref already reaches, with its parents, objects and packs (each verified
  when it was uploaded). The walk freshens what it finds and checks gc's
  fence, so a concurrent gc cannot take it away. A write token can add
  history; it cannot make the repository inconsistent.
- ``gc/state`` may be read, so a client writing here can honour gc's fence.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import AsyncIterator

from ..core.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
)
from ..core.http import TooLargeError
from ..core.ids import is_object_id, ref_name
from ..core.model import Commit, Tag, decode_config
from ..repository.repository import Repository
from ..storage import Store, check_key, open_store
from ..storage.closure import commit_keys
from ..storage.fence import STATE_KEY, Fence, read_state
from ..storage.objects import ObjectDatabase, object_key
from ..storage.packs import PackIndex, index_key, pack_key
from ..storage.refs import HEADS, TAGS
from ..storage.remotes import CONFIG_KEY

_OBJECT = re.compile(r"objects/([0-9a-f]{2})/([0-9a-f]{62})\Z")
_PACK = re.compile(r"packs/([0-9a-f]{64})\.(pack|idx)\Z")
_SHARED_PREFIXES = ("objects/", "packs/", HEADS, TAGS, STATE_KEY)


class Site:
    """A repository location served over HTTP (possibly still empty)."""

    def __init__(self, url: str):
        self.store: Store = open_store(url)
        self.url = self.store.url
        self._repo: Repository | None = None
        self._lock = threading.Lock()
        self._complete: tuple[int, set[str]] = (-1, set())
        """Commits whose whole history was found here, for one gc generation."""

    @property
    def repo(self) -> Repository:
        """The repository, once it exists (a first push may create it)."""
        with self._lock:
            if self._repo is None:
                data = self.store.get_if_exists(CONFIG_KEY)
                if data is None:
                    raise NotFoundError("no repository is served here yet; push one to create it")
                self._repo = Repository(self.store, decode_config(data))
            return self._repo


def readable(key: str) -> str:
    """``key`` if clients may read it."""
    check_key(key)
    if key != CONFIG_KEY and not key.startswith(_SHARED_PREFIXES):
        raise NotFoundError(f"no such key: {key}")
    return key


def readable_prefix(prefix: str) -> str:
    if prefix and not (
        prefix.startswith(_SHARED_PREFIXES) or any(p.startswith(prefix) for p in _SHARED_PREFIXES)
    ):
        raise InvalidInputError(f"cannot list {prefix!r}")
    return prefix


async def receive(site: Site, key: str, body: AsyncIterator[bytes], limit: int) -> bool:
    """Store an uploaded value under ``key`` after checking it; True if
    written, False if the key already held it. Pack data streams to the
    store; checks and writes run off the event loop."""
    from starlette.concurrency import run_in_threadpool

    check_key(key)
    match = _PACK.match(key)
    if match and match.group(2) == "pack":
        if await run_in_threadpool(_freshen_pack, site, match.group(1)):
            return False  # published already; its bytes were verified then
        with site.store.staging() as staging:
            size = 0
            async for part in body:
                size += len(part)
                if size > limit:
                    raise TooLargeError(
                        f"the upload is larger than the server's limit of {limit} bytes"
                    )
                await run_in_threadpool(staging.write, part)
            return await run_in_threadpool(staging.publish, key)
    data = await read_limited(body, limit)
    return await run_in_threadpool(_store_checked, site, key, data)


def _freshen_pack(site: Site, pack_id: str) -> bool:
    """Freshen a published pack (both halves); False if it is not published."""
    return site.store.freshen(index_key(pack_id)) and site.store.freshen(pack_key(pack_id))


def _store_checked(site: Site, key: str, data: bytes) -> bool:
    if key == CONFIG_KEY:
        decode_config(data)  # a valid configuration, or IntegrityError
        return site.store.put_if_absent(key, data)
    if match := _OBJECT.match(key):
        if hashlib.sha256(data).hexdigest() != match.group(1) + match.group(2):
            raise IntegrityError(f"object {key} does not hash to its id")
        return site.store.put_or_freshen(key, data)
    if match := _PACK.match(key):
        return _publish_index(site, match.group(1), data)
    raise ReadOnlyError(f"{key} cannot be written over HTTP")


def _publish_index(site: Site, pack_id: str, index: bytes) -> bool:
    if hashlib.sha256(index).hexdigest() != pack_id:
        raise IntegrityError(f"the index of pack {pack_id} does not hash to its id")
    if not site.store.exists(pack_key(pack_id)):
        raise ConflictError(f"pack {pack_id}: send the pack before its index")
    try:
        PackIndex.parse(index).verify(site.store.get_view(pack_key(pack_id)))
    except IntegrityError as exc:
        if not site.store.exists(index_key(pack_id)):
            site.store.delete(pack_key(pack_id))  # unpublished and wrong: let a retry send it again
        raise IntegrityError(f"pack {pack_id} does not match its index: {exc}") from None
    return site.store.put_or_freshen(index_key(pack_id), index)


def swap_ref(site: Site, key: str, expected: str | None, new: str) -> None:
    """Move a branch (or create a tag) by compare-and-swap."""
    check_key(key)
    if key.startswith(HEADS):
        kind, name = "branch", key[len(HEADS) :]
    elif key.startswith(TAGS):
        kind, name = "tag", key[len(TAGS) :]
        if expected is not None:
            raise ReadOnlyError("tags never move")
    else:
        raise ReadOnlyError(f"{key} cannot be changed over HTTP")
    if expected is None:
        site.repo.refs.check_new_name(kind, name)
    else:
        ref_name(name)
    target = new[:-1] if new.endswith("\n") else ""
    if not is_object_id(target):
        raise InvalidInputError(f"a ref holds '<object id>\\n', not {new[:80]!r}")
    fence = Fence(site.store)
    keys = _history_held(site, key, target, expected)
    fence.check(keys)
    site.store.compare_and_swap(
        key, expected.encode() if expected is not None else None, new.encode()
    )


def _held_object(odb: ObjectDatabase, oid: str) -> Commit | Tag | None:
    """The commit or tag object ``oid`` names here, or None (absent, or
    another kind of object)."""
    if not odb.has(oid) or not odb.is_json_object(oid):
        return None
    found = odb.get_object(oid)
    return found if isinstance(found, (Commit, Tag)) else None


def _history_held(site: Site, key: str, target: str, expected: str | None) -> set[str]:
    """The keys ``target``'s new history relies on, freshened; refuses
    (:class:`ConflictError`) a target of the wrong kind or with any part
    missing. The walk stops at commits a ref (or the ref's old value)
    already reaches, or that an earlier check found complete."""
    repo = site.repo
    odb = repo.odb
    if not odb.has(target):
        raise ConflictError(
            f"{key} cannot point at {target[:12]}: the object is not here (send it first)"
        )
    found = _held_object(odb, target)
    keys = {object_key(target)}
    if isinstance(found, Tag) and key.startswith(TAGS):
        commit = found.target
        if not isinstance(_held_object(odb, commit), Commit):
            raise ConflictError(f"{key}: tag object {target[:12]} does not name a commit held here")
        keys.add(object_key(commit))
    elif isinstance(found, Commit):
        commit = target
    else:
        raise ConflictError(
            f"{key} cannot point at {target[:12]}: it is not a "
            f"commit{' or tag' if key.startswith(TAGS) else ''}"
        )
    generation = read_state(site.store)[1].generation
    with site._lock:
        if site._complete[0] != generation:
            site._complete = (generation, set())
        complete = site._complete[1]
    known = {*complete, *repo.refs.branches().values(), *repo.refs.tags().values()}
    if expected is not None:
        known.add(expected.strip())
    stack, walked = [commit], []
    while stack:
        oid = stack.pop()
        if oid in known:
            continue
        known.add(oid)
        found_commit = _held_object(odb, oid)
        if not isinstance(found_commit, Commit):
            raise ConflictError(
                f"{key} cannot point at {target[:12]}: its history lacks commit {oid[:12]}"
            )
        needed = commit_keys(odb, oid, found_commit)
        missing = sorted(k for k in needed if not site.store.freshen(k))
        if missing:
            raise ConflictError(
                f"{key} cannot point at {target[:12]}: commit {oid[:12]} lacks {missing[0]}"
            )
        keys |= needed
        walked.append(oid)
        stack.extend(found_commit.parents)
    with site._lock:
        if site._complete[0] == generation:
            site._complete[1].update(walked)
    return keys


async def read_limited(body: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, refused (413) once it passes ``limit`` bytes."""
    parts, size = [], 0
    async for part in body:
        size += len(part)
        if size > limit:
            raise TooLargeError(f"the upload is larger than the server's limit of {limit} bytes")
        parts.append(part)
    return b"".join(parts)
