"""The repository: the public entry point for reading and writing."""

from __future__ import annotations

import getpass
import heapq
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import revparse
from .errors import ConflictError, InvalidInputError, NotARepositoryError, NotFoundError
from .ids import ObjectId, ref_name
from .model import Commit, RepositoryConfig, Tag, canonical_json, decode_config
from .objects import ObjectDatabase
from .packs import DEFAULT_PACK_SIZE
from .refs import RefStore
from .snapshot import Snapshot
from .store import Store, open_store
from .transaction import Progress, Transaction

CONFIG_KEY = "improv.json"


def default_author() -> str:
    """``IMPROV_AUTHOR``, else the login name."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return os.environ.get("IMPROV_AUTHOR") or user


class Repository:
    """A versioned store of images and their metadata at one URL."""

    def __init__(self, store: Store, config: RepositoryConfig):
        self.store = store
        self.config = config
        self.odb = ObjectDatabase(store)
        self.refs = RefStore(store)

    # -- opening ---------------------------------------------------------
    @classmethod
    def init(cls, url: str | os.PathLike[str], default_branch: str = "main", **storage_options: Any) -> Repository:
        """Create an empty repository at ``url`` (a path, ``file://``, ``s3://``, ``memory://``)."""
        store = open_store(os.fspath(url), **storage_options)
        config = RepositoryConfig(
            id=str(uuid.uuid4()),
            default_branch=ref_name(default_branch),
            created=datetime.now(timezone.utc),
        )
        if store.exists(CONFIG_KEY) or not store.put_if_absent(CONFIG_KEY, canonical_json(config)):
            raise ConflictError(f"{store.url} is already an improv repository")
        return cls(store, config)

    @classmethod
    def open(cls, url: str | os.PathLike[str], **storage_options: Any) -> Repository:
        """Open the repository at ``url``."""
        store = open_store(os.fspath(url), **storage_options)
        data = store.get_if_exists(CONFIG_KEY)
        if data is None:
            raise NotARepositoryError(f"{store.url} is not an improv repository (no {CONFIG_KEY})")
        return cls(store, decode_config(data))

    @classmethod
    def find(cls, start: str | os.PathLike[str] = ".") -> Repository:
        """Open the repository containing the directory ``start``."""
        here = Path(start).absolute()
        for directory in (here, *here.parents):
            if (directory / CONFIG_KEY).is_file():
                return cls.open(directory)
        raise NotARepositoryError(
            f"{here} is not inside an improv repository (use --repo or set IMPROV_REPO)"
        )

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def url(self) -> str:
        return self.store.url

    def __repr__(self) -> str:
        return f"Repository({self.url!r})"

    # -- revisions -------------------------------------------------------
    def resolve(self, rev: str | None = None) -> ObjectId:
        """The commit id a revision names (default: the default branch)."""
        return revparse.resolve(self.odb, self.refs, rev or "HEAD", self.config.default_branch)

    def commit_info(self, rev: str | None = None) -> tuple[ObjectId, Commit]:
        oid = self.resolve(rev)
        return oid, self.odb.get_commit(oid)

    def log(self, rev: str | None = None, limit: int | None = None) -> Iterator[tuple[ObjectId, Commit]]:
        """Commits reachable from ``rev``, newest first (by height, then time)."""
        try:
            start = self.resolve(rev)
        except NotFoundError:
            if rev is None and not self.refs.branches():
                return
            raise
        seen = {start}
        queue = [(-self.odb.get_commit(start).height, start)]
        emitted = 0
        while queue and (limit is None or emitted < limit):
            _, oid = heapq.heappop(queue)
            commit = self.odb.get_commit(oid)
            yield oid, commit
            emitted += 1
            for parent in commit.parents:
                if parent not in seen:
                    seen.add(parent)
                    heapq.heappush(queue, (-self.odb.get_commit(parent).height, ObjectId(parent)))

    # -- reading ---------------------------------------------------------
    def _snapshot_at(self, commit_id: ObjectId | None) -> Snapshot:
        commit = self.odb.get_commit(commit_id) if commit_id else None
        return Snapshot(self.odb, commit_id, commit)

    def snapshot(self, at: str | None = None) -> Snapshot:
        """The read-only view at a revision (default: the default branch)."""
        if at is None and not self.refs.branches():
            return Snapshot(self.odb, None, None)
        return self._snapshot_at(self.resolve(at))

    def images(self, at: str | None = None) -> pa.Table:
        """Every image row (manifest columns) of the snapshot at ``at``."""
        return self.snapshot(at).images()

    def read_image(self, image_id: str, at: str | None = None) -> bytes:
        """The bytes of one image, verified against its hash."""
        return self.snapshot(at).read_image(image_id)

    # -- writing ---------------------------------------------------------
    def transaction(
        self,
        branch: str | None = None,
        message: str = "",
        author: str | None = None,
        pack_size: int = DEFAULT_PACK_SIZE,
        progress: Progress | None = None,
    ) -> Transaction:
        """Start appending batches to ``branch`` (default: the default branch)."""
        return Transaction(
            self,
            self.config.default_branch if branch is None else branch,
            message,
            author or default_author(),
            pack_size=pack_size,
            progress=progress,
        )

    # -- refs --------------------------------------------------------------
    def branches(self) -> dict[str, ObjectId]:
        return self.refs.branches()

    def create_branch(self, name: str, at: str | None = None) -> ObjectId:
        """Create branch ``name`` at revision ``at`` (default: the default branch)."""
        target = self.resolve(at)
        try:
            self.refs.set_branch(name, None, target)
        except ConflictError:
            raise ConflictError(f"branch {name!r} already exists") from None
        return target

    def tags(self) -> dict[str, ObjectId]:
        """Tag name → the commit it names (annotated tags peeled)."""
        return {name: self.resolve_tag_target(oid) for name, oid in self.refs.tags().items()}

    def resolve_tag_target(self, oid: str) -> ObjectId:
        obj = self.odb.get_object(oid)
        while isinstance(obj, Tag):
            oid = obj.target
            obj = self.odb.get_object(oid)
        return ObjectId(oid)

    def create_tag(
        self, name: str, at: str | None = None, message: str | None = None, tagger: str | None = None
    ) -> ObjectId:
        """Create tag ``name`` at ``at``; with a message it is an annotated tag object.

        Tags never move: creating an existing tag raises :class:`ReadOnlyError`.
        """
        ref_name(name)
        target = self.resolve(at)
        if self.refs.tag(name) is not None:
            self.refs.create_tag(name, target)  # raises ReadOnlyError
        pointer = target
        if message is not None:
            if not message.strip():
                raise InvalidInputError("a tag message cannot be empty")
            tag = Tag(
                name=name,
                target=target,
                tagger=tagger or default_author(),
                time=datetime.now(timezone.utc),
                message=message,
            )
            pointer = self.odb.put_object(tag)
        self.refs.create_tag(name, pointer)
        return target
