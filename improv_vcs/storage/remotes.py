"""Remotes: other copies of this repository, by name, in ``remotes.json``.

This is site-local state (like ``refs/``), not part of the history: a
clone starts with one remote, ``origin``. The file changes only by
compare-and-swap. Remote-tracking refs ``refs/remotes/<remote>/<branch>``
record where each remote branch was at the last fetch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ..core.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotARepositoryError,
    NotFoundError,
)
from ..core.ids import ObjectId, is_object_id, ref_name
from ..core.model import decode_config
from . import BundledStore, Store, open_store
from .packs import pack_key

KEY = "remotes.json"
CONFIG_KEY = "improv.json"
"""The repository's identity and format (:class:`~improv_vcs.core.model.RepositoryConfig`)."""
TRACKING = "refs/remotes/"
_ATTEMPTS = 20


def remote_name(value: str) -> str:
    """A remote name: one ref-name component (``origin``, ``shore-lab``)."""
    ref_name(value)
    if "/" in value:
        raise InvalidInputError(f"invalid remote name {value!r}: no '/'")
    return value


RemoteName = Annotated[str, AfterValidator(remote_name)]


class Remote(BaseModel):
    """Where a remote lives: a path, ``file://``, ``s3://`` or ``http(s)://``
    URL, and the storage options (e.g. ``endpoint_url``) needed to open it.
    Credentials are never stored: they come from the environment (as for
    fsspec/s3fs; ``$IMPROV_TOKEN`` for served repositories)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    url: str = Field(min_length=1)
    options: dict[str, str] = {}


class RemotesFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    remotes: dict[RemoteName, Remote] = {}
    promisor: RemoteName | None = Field(
        default=None, description="metadata-only clone: the remote image bytes come from"
    )


def normalize_url(url: str) -> str:
    """Local paths become absolute; URLs are kept."""
    if "://" in url:
        if not url.startswith(("file://", "s3://", "memory://", "http://", "https://")):
            raise InvalidInputError(
                f"unsupported remote URL {url!r}: use a path, file://, s3://, http(s):// or "
                f"memory://"
            )
        return url
    return os.path.abspath(url)


class Remotes:
    """Reads and edits ``remotes.json`` and the remote-tracking refs of a store."""

    def __init__(self, store: Store):
        self.store = store

    def _load(self) -> tuple[bytes | None, RemotesFile]:
        data = self.store.get_if_exists(KEY)
        if data is None:
            return None, RemotesFile()
        try:
            return data, RemotesFile.model_validate_json(data)
        except ValidationError as exc:
            raise IntegrityError(f"{KEY} is invalid: {exc.errors()[0]['msg']}") from None

    def _edit(self, change: Any) -> RemotesFile:
        for _ in range(_ATTEMPTS):
            old, current = self._load()
            new = change(current)
            payload = (
                json.dumps(new.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"
            )
            try:
                self.store.compare_and_swap(KEY, old, payload)
                return new
            except ConflictError:
                continue
        raise ConflictError(f"{KEY} kept changing; try again")

    def all(self) -> dict[str, Remote]:
        return dict(self._load()[1].remotes)

    def get(self, name: str) -> Remote:
        found = self.all().get(remote_name(name))
        if found is None:
            raise NotFoundError(
                f"no remote named {name!r}; add one with `improv remote add {name} URL`"
            )
        return found

    @property
    def promisor(self) -> str | None:
        return self._load()[1].promisor

    def blob_reader(self, repository_id: str) -> Callable[[str, int, int], bytes]:
        """For a metadata-only clone: ``read(pack, offset, length)`` of one
        blob's bytes from the promisor remote, opened on first use and checked
        to hold repository ``repository_id`` (the caller verifies the bytes)."""
        opened: list[Store] = []

        def read(pack_id: str, offset: int, length: int) -> bytes:
            if not opened:
                opened.append(self._open_promisor(repository_id))
            return opened[0].get_range(pack_key(pack_id), offset, length)

        return read

    def _open_promisor(self, repository_id: str) -> Store:
        remote = self.get(self.promisor or "")
        store = open_store(remote.url, **remote.options)
        data = store.get_if_exists(CONFIG_KEY)
        if data is None:
            raise NotARepositoryError(f"{store.url} is not an improv repository (no {CONFIG_KEY})")
        found = decode_config(data).id
        if found != repository_id:
            raise ConflictError(
                f"{store.url} holds another repository (id {found}, not {repository_id})"
            )
        return store if store.resolves_bundles else BundledStore(store)

    def add(
        self, name: str, url: str, options: dict[str, str] | None = None, promisor: bool = False
    ) -> Remote:
        remote = Remote(url=normalize_url(url), options=options or {})
        remote_name(name)

        def change(current: RemotesFile) -> RemotesFile:
            if name in current.remotes:
                raise ConflictError(f"remote {name!r} already exists")
            remotes = {**current.remotes, name: remote}
            return RemotesFile(remotes=remotes, promisor=name if promisor else current.promisor)

        self._edit(change)
        return remote

    def remove(self, name: str) -> None:
        self.get(name)

        def change(current: RemotesFile) -> RemotesFile:
            if current.promisor == name:
                raise ConflictError(
                    f"remote {name!r} holds the image bytes of this metadata-only clone; it "
                    f"cannot be removed"
                )
            remotes = {k: v for k, v in current.remotes.items() if k != name}
            return RemotesFile(remotes=remotes, promisor=current.promisor)

        self._edit(change)
        for key in list(self.store.list(f"{TRACKING}{name}/")):
            self.store.delete(key)

    # -- remote-tracking refs ------------------------------------------------
    def tracking(self, name: str) -> dict[str, ObjectId]:
        """Branch → commit, as last fetched from remote ``name``."""
        prefix = f"{TRACKING}{remote_name(name)}/"
        out = {}
        for key in self.store.list(prefix):
            value = self.store.get(key).decode("ascii", "replace").strip()
            if not is_object_id(value):
                raise IntegrityError(f"{key} does not hold an object id")
            out[key[len(prefix) :]] = ObjectId(value)
        return out

    def set_tracking(self, name: str, branch: str, target: str) -> None:
        key = f"{TRACKING}{remote_name(name)}/{ref_name(branch)}"
        for _ in range(_ATTEMPTS):
            old = self.store.get_if_exists(key)
            try:
                self.store.compare_and_swap(key, old, f"{target}\n".encode())
                return
            except ConflictError:
                continue
        raise ConflictError(f"{key} kept changing; try again")

    def drop_tracking(self, name: str, keep: set[str]) -> None:
        """Forget tracking refs of branches the remote no longer has."""
        for branch in set(self.tracking(name)) - keep:
            self.store.delete(f"{TRACKING}{name}/{branch}")
