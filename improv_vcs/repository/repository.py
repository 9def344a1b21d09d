"""The repository: the public entry point for reading and writing."""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..core.authors import default_author
from ..core.errors import (
    ConflictError,
    InvalidInputError,
    NotARepositoryError,
    NotFoundError,
)
from ..core.ids import ObjectId, new_ref_name
from ..core.model import (
    Commit,
    RepositoryConfig,
    Tag,
    canonical_json,
    decode_config,
)
from ..core.times import Clock, utc_now
from ..storage import BundledStore, Store, graph, open_store, revparse
from ..storage.fence import Fence
from ..storage.objects import ObjectDatabase, object_key
from ..storage.packs import DEFAULT_PACK_SIZE
from ..storage.refs import RefStore
from ..storage.remotes import CONFIG_KEY, Remotes

if TYPE_CHECKING:
    from ..snapshot.reader import SnapshotReader
    from ..write.transaction import Progress, Transaction
    from .snapshot import Snapshot

_RECENT_SNAPSHOTS = 8


class Repository:
    """A versioned store of images and their metadata at one URL."""

    def __init__(
        self,
        store: Store,
        config: RepositoryConfig,
        storage_options: dict[str, Any] | None = None,
    ):
        self.store = store if store.resolves_bundles else BundledStore(store)
        self.config = config
        self.clock: Clock = utc_now
        """Where the times this repository records come from (commits, tags,
        sample versions, citations); tests replace it."""
        self.odb = ObjectDatabase(self.store)
        self.refs = RefStore(self.store)
        self.remotes = Remotes(self.store)
        self._readers: dict[ObjectId | None, SnapshotReader] = {}  # most recently used last
        self._readers_lock = threading.Lock()
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        """The options the store was opened with (credentials, endpoint):
        what another process needs to open this repository again."""
        if self.remotes.promisor is not None:
            self.odb.remote_blobs = self.remotes.blob_reader(config.id)

    # -- opening ---------------------------------------------------------
    @classmethod
    def init(
        cls, url: str | os.PathLike[str], default_branch: str = "main", **storage_options: Any
    ) -> Repository:
        """Create an empty repository at ``url`` (a path, ``file://``, ``s3://``, ``memory://``)."""
        store = open_store(os.fspath(url), **storage_options)
        config = RepositoryConfig(
            id=str(uuid.uuid4()),
            default_branch=new_ref_name(default_branch),
            created=utc_now(),
        )
        if store.exists(CONFIG_KEY) or not store.put_if_absent(CONFIG_KEY, canonical_json(config)):
            raise ConflictError(f"{store.url} is already an improv repository")
        return cls(store, config, storage_options)

    @classmethod
    def open(cls, url: str | os.PathLike[str], **storage_options: Any) -> Repository:
        """Open the repository at ``url``."""
        store = open_store(os.fspath(url), **storage_options)
        data = store.get_if_exists(CONFIG_KEY)
        if data is None:
            raise NotARepositoryError(f"{store.url} is not an improv repository (no {CONFIG_KEY})")
        return cls(store, decode_config(data), storage_options)

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

    def upgrade(self) -> bool:
        """Move the repository to the newest format (``docs/format.md``:
        bundles and manifest parts, then the tasks index); False when it is
        there already. Older improv_vcs versions refuse an upgraded repository."""
        from ..core.model import REPOSITORY_FORMAT

        if self.config.format >= REPOSITORY_FORMAT:
            return False
        newer = self.config.model_copy(update={"format": REPOSITORY_FORMAT})
        self.store.compare_and_swap(CONFIG_KEY, canonical_json(self.config), canonical_json(newer))
        self.config = newer
        return True

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
        """The commit id a revision names (default: the default branch).

        ``HEAD``, then a full object id, then a branch, then a tag, then a
        unique hex prefix, each optionally followed by ``~N``: see
        :mod:`improv_vcs.storage.revparse`. A full commit id always means that commit.
        """
        return revparse.resolve(self.odb, self.refs, rev or "HEAD", self.config.default_branch)

    def log(
        self, rev: str | None = None, limit: int | None = None
    ) -> Iterator[tuple[ObjectId, Commit]]:
        """Commits reachable from ``rev``, newest first (by height, then time)."""
        try:
            start = self.resolve(rev)
        except NotFoundError:
            if rev is None and not self.refs.branches():
                return
            raise
        yield from itertools.islice(graph.history(self.odb, start), limit)

    # -- reading ---------------------------------------------------------
    def snapshot(self, at: str | None = None, as_of: datetime | None = None) -> Snapshot:
        """The read session at a revision (default: the default branch), or
        with ``as_of`` at the newest commit at or before that time on the
        first-parent line of ``at``. Every read is a method of the
        :class:`~improv_vcs.Snapshot`; an empty repository gives an empty one."""
        from .snapshot import Snapshot

        commit_id = self._commit_for(at, as_of)
        return Snapshot(self, at, commit_id, self._reader_at(commit_id))

    def _commit_for(self, at: str | None, as_of: datetime | None) -> ObjectId | None:
        if as_of is not None:
            return self._as_of(as_of, at)
        if at is None and not self.refs.branches():
            return None
        return self.resolve(at)

    def _as_of(self, when: datetime, rev: str | None) -> ObjectId:
        if when.tzinfo is None:  # a time without an offset is UTC, as everywhere
            when = when.replace(tzinfo=timezone.utc)
        oid = self.resolve(rev)
        commit = self.odb.get_commit(oid)
        while commit.time > when:
            if not commit.parents:
                raise NotFoundError(f"no commit at or before {when.isoformat()} on {rev or 'HEAD'}")
            oid = ObjectId(commit.parents[0])
            commit = self.odb.get_commit(oid)
        return oid

    def _reader_at(self, commit_id: ObjectId | None) -> SnapshotReader:
        """The stored view at a commit id (None: the empty snapshot). The last
        few are kept, with what they loaded: a snapshot never changes."""
        from ..snapshot.reader import SnapshotReader

        with self._readers_lock:
            found = self._readers.pop(commit_id, None)
            if found is None:
                commit = self.odb.get_commit(commit_id) if commit_id else None
                found = SnapshotReader(self.odb, commit_id, commit)
            self._readers[commit_id] = found
            while len(self._readers) > _RECENT_SNAPSHOTS:
                self._readers.pop(next(iter(self._readers)))
            return found

    # -- writing ---------------------------------------------------------
    def transaction(
        self,
        branch: str | None = None,
        message: str = "",
        author: str | None = None,
        pack_size: int = DEFAULT_PACK_SIZE,
        progress: Progress | None = None,
        task: str | None = None,
        allow_outside_deployment: bool = False,
        strict: bool = False,
    ) -> Transaction:
        """Start appending batches to ``branch`` (default: the default branch).
        ``task`` names the ingest task the commit records (see
        :meth:`task_commit`); images of registered instruments must fall in
        their deployments unless ``allow_outside_deployment``; with
        ``strict``, unregistered instruments are refused."""
        from ..write.transaction import Transaction

        return Transaction(
            self,
            self.config.default_branch if branch is None else branch,
            message,
            author or default_author(),
            pack_size=pack_size,
            progress=progress,
            task=task,
            allow_outside_deployment=allow_outside_deployment,
            strict=strict,
        )

    # -- refs --------------------------------------------------------------
    def branches(self) -> dict[str, ObjectId]:
        return self.refs.branches()

    def create_branch(self, name: str, at: str | None = None) -> ObjectId:
        """Create branch ``name`` at revision ``at`` (default: the default branch).

        The name must not read as another revision (``HEAD``, 4 to 64 hex
        digits) nor be a tag's name: :class:`InvalidInputError`
        (:meth:`RefStore.check_new_name`); an existing branch raises
        :class:`ConflictError`.
        """
        self.refs.check_new_name("branch", name)
        fence = Fence(self.store)
        target = self.resolve(at)
        self._hold(fence, target)
        try:
            self.refs.set_branch(name, None, target)
        except ConflictError:
            raise ConflictError(f"branch {name!r} already exists") from None
        return target

    def delete_branch(self, name: str) -> ObjectId:
        """Delete branch ``name`` and return the commit it named.

        Only the name goes: its commits stay while another ref reaches them,
        and otherwise for gc's grace period from now (the tip is freshened
        first, and gc keeps what a young commit reaches). The default branch
        is refused (:class:`InvalidInputError`), a missing one is
        :class:`NotFoundError`. A commit that moves the branch while it is
        being deleted is not kept by the branch; it stays until gc's grace
        period ends, like any unreachable commit.
        """
        from ..core.ids import ref_name
        from ..storage.refs import HEADS

        if name == self.config.default_branch:
            raise InvalidInputError(f"{name!r} is the default branch; it cannot be deleted")
        target = self.refs.require_branch(name)
        self.store.freshen(object_key(target))
        self.store.delete(HEADS + ref_name(name))
        return target

    def tags(self) -> dict[str, ObjectId]:
        """Tag name → the commit it names (annotated tags peeled)."""
        return {name: revparse.peel(self.odb, oid) for name, oid in self.refs.tags().items()}

    def create_tag(
        self,
        name: str,
        at: str | None = None,
        message: str | None = None,
        tagger: str | None = None,
        **release: Any,
    ) -> ObjectId:
        """Create tag ``name`` at ``at``; with a message it is an annotated tag
        object, which may carry release metadata (``title``, ``authors``,
        ``license``, ``description``, ``doi``) for citations.

        Tags never move: creating an existing tag raises :class:`ReadOnlyError`.
        The name must not read as another revision (``HEAD``, 4 to 64 hex
        digits) nor be a branch's name: :class:`InvalidInputError`
        (:meth:`RefStore.check_new_name`), before anything is written.
        """
        self.refs.check_new_name("tag", name)
        fence = Fence(self.store)
        target = self.resolve(at)
        if self.refs.tag(name) is not None:
            self.refs.create_tag(name, target)  # raises ReadOnlyError
        pointer = target
        if release and message is None:
            message = release.get("title") or f"Release {name}"
        if message is not None:
            if not message.strip():
                raise InvalidInputError("a tag message cannot be empty")
            try:
                tag = Tag(
                    name=name,
                    target=target,
                    tagger=tagger or default_author(),
                    time=self.clock(),
                    message=message,
                    **release,
                )
            except ValidationError as exc:
                error = exc.errors()[0]
                raise InvalidInputError(
                    f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
                ) from None
            pointer = self.odb.put_object(tag)
        self._hold(fence, target, pointer)
        self.refs.create_tag(name, pointer)
        return target

    def _hold(self, fence: Fence, *oids: str) -> None:
        """Before a new ref names existing objects (which may be old
        garbage): freshen them, so gc keeps them and what they reach, and
        check gc's fence (see :mod:`improv_vcs.storage.fence`)."""
        keys = [object_key(oid) for oid in oids]
        for key in keys:
            if not self.store.freshen(key):
                raise NotFoundError(
                    f"{key} vanished while the ref was being created (a gc?); nothing was changed"
                )
        fence.check(keys)

    def tag_object(self, name: str) -> Tag | None:
        """The annotated tag object of ``name`` (None for a lightweight tag)."""
        pointer = self.refs.tag(name)
        if pointer is None:
            raise NotFoundError(f"no tag named {name!r}")
        found = self.odb.get_object(pointer)
        return found if isinstance(found, Tag) else None
