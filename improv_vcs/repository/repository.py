"""The repository: the public entry point for reading and writing."""

from __future__ import annotations

import getpass
import heapq
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..storage import revparse
from ..core.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotARepositoryError,
    NotFoundError,
)
from ..storage.fence import Fence
from ..core.ids import ObjectId, new_ref_name
from ..core.model import (
    Commit,
    Dataset,
    Datasets,
    Registry,
    RepositoryConfig,
    Tag,
    canonical_json,
    decode_config,
)
from ..storage.objects import ObjectDatabase, object_key
from ..storage.packs import DEFAULT_PACK_SIZE
from ..storage.refs import RefStore
from ..storage.remotes import CONFIG_KEY, Remotes
from ..storage import BundledStore, Store, open_store
from ..core.times import Clock, utc_now

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ..cite.citation import Citation
    from ..query.engine import QueryResult
    from ..query.export import ExportReport, FilesReport
    from ..provenance.view import Record
    from ..query.filters import Query
    from ..snapshot.reader import Snapshot
    from ..query.stack import Selector
    from ..write.transaction import Progress, Transaction

_RECENT_SNAPSHOTS = 8


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
        self.store = store if store.resolves_bundles else BundledStore(store)
        self.config = config
        self.clock: Clock = utc_now
        """Where the times this repository records come from (commits, tags,
        sample versions, citations); tests replace it."""
        self.odb = ObjectDatabase(self.store)
        self.refs = RefStore(self.store)
        self.remotes = Remotes(self.store)
        self._snapshots: dict[ObjectId | None, Snapshot] = {}  # most recently used last
        self._snapshots_lock = threading.Lock()
        if self.remotes.promisor is not None:
            self.odb.remote_blobs = self.remotes.blob_reader(config.id)

    # -- opening ---------------------------------------------------------
    @classmethod
    def init(cls, url: str | os.PathLike[str], default_branch: str = "main", **storage_options: Any) -> Repository:
        """Create an empty repository at ``url`` (a path, ``file://``, ``s3://``, ``memory://``)."""
        store = open_store(os.fspath(url), **storage_options)
        config = RepositoryConfig(
            id=str(uuid.uuid4()),
            default_branch=new_ref_name(default_branch),
            created=utc_now(),
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

    def upgrade(self) -> bool:
        """Move the repository to the newest format (bundles: see
        :mod:`improv_vcs.maintenance.repack`); False when it is there already.
        Older improv_vcs versions refuse an upgraded repository."""
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
        """The view at a commit id (None: the empty snapshot). The last few
        are kept, with what they loaded: a snapshot never changes."""
        from ..snapshot.reader import Snapshot

        with self._snapshots_lock:
            found = self._snapshots.pop(commit_id, None)
            if found is None:
                commit = self.odb.get_commit(commit_id) if commit_id else None
                found = Snapshot(self.odb, commit_id, commit)
            self._snapshots[commit_id] = found
            while len(self._snapshots) > _RECENT_SNAPSHOTS:
                self._snapshots.pop(next(iter(self._snapshots)))
            return found

    def snapshot(self, at: str | None = None, as_of: datetime | None = None) -> Snapshot:
        """The read-only view at a revision (default: the default branch)."""
        return self._snapshot_at(self._commit_for(at, as_of))

    def images(self, at: str | None = None) -> pa.Table:
        """Every image row (manifest columns) of the snapshot at ``at``."""
        return self.snapshot(at).images()

    def read_image(self, image_id: str, at: str | None = None) -> bytes:
        """The bytes of one image, verified against its hash."""
        return self.snapshot(at).read_image(image_id)

    def resolve_as_of(self, when: datetime, rev: str | None = None) -> ObjectId:
        """The newest commit at or before ``when`` on the first-parent line of ``rev``."""
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

    def _commit_for(self, at: str | None, as_of: datetime | None) -> ObjectId | None:
        """The commit a snapshot selector names; None for an empty repository."""
        if as_of is not None:
            return self.resolve_as_of(as_of, at)
        if at is None and not self.refs.branches():
            return None
        return self.resolve(at)

    # -- queries -------------------------------------------------------------
    def select(
        self,
        query: Query,
        at: str | None = None,
        as_of: datetime | None = None,
        count: bool = False,
        record_ids: bool = False,
    ) -> QueryResult:
        """Run ``query`` at a snapshot (``at`` a revision, or ``as_of`` a time on
        ``at``'s first-parent line) and say how it was answered (with
        ``record_ids``, also which provenance records it used)."""
        from ..query import engine

        commit_id = self._commit_for(at, as_of)
        spans = None
        if query.dataset is not None:
            found = self._datasets_at(commit_id).datasets.get(query.dataset)
            if found is None:
                where = commit_id[:12] if commit_id else "an empty repository"
                raise NotFoundError(f"no dataset named {query.dataset!r} at {where}")
            spans = found.spans
        return engine.run(self._snapshot_at(commit_id), query, spans, count=count, record_ids=record_ids)

    def query(self, at: str | None = None, as_of: datetime | None = None, **filters: Any) -> pa.Table:
        """Image rows matching ``filters`` (the fields of :class:`Query`), as Arrow,
        sorted by time then image id."""
        from ..query.filters import build_query

        return self.select(build_query(**filters), at=at, as_of=as_of).table

    def count(self, at: str | None = None, as_of: datetime | None = None, **filters: Any) -> int:
        """How many images match ``filters``."""
        from ..query.filters import build_query

        result = self.select(build_query(**filters), at=at, as_of=as_of, count=True)
        return int(result.table.column(0)[0].as_py())

    def export(
        self,
        dest: str | os.PathLike[str],
        at: str | None = None,
        as_of: datetime | None = None,
        metadata_format: str = "parquet",
        metadata_only: bool = False,
        progress: Progress | None = None,
        **filters: Any,
    ) -> ExportReport:
        """Write the matching images (``<image_id><ext>``) and a metadata table
        into the directory ``dest``; files already there with the right hash
        are skipped, so an interrupted export resumes."""
        from ..query.filters import build_query

        query = build_query(**filters).model_copy(update={"columns": None})
        rows = self.select(query, at=at, as_of=as_of).table
        return self.export_rows(rows, dest, metadata_format, metadata_only, progress)

    def export_rows(
        self,
        rows: pa.Table,
        dest: str | os.PathLike[str],
        metadata_format: str = "parquet",
        metadata_only: bool = False,
        progress: Progress | None = None,
    ) -> ExportReport:
        """:meth:`export` for rows already selected (all manifest columns)."""
        from ..query.export import export_rows

        return export_rows(self.odb, rows, Path(dest), metadata_format, metadata_only, progress)

    def duckdb(self, at: str | None = None, as_of: datetime | None = None) -> Any:
        """A DuckDB connection with a read-only ``images`` view of the snapshot
        (no file access), for your own SQL."""
        from ..core.sql import connect

        snapshot = self._snapshot_at(self._commit_for(at, as_of))
        connection = connect()
        connection.register("images", snapshot.images())
        return connection

    # -- datasets ------------------------------------------------------------
    def _datasets_at(self, commit_id: ObjectId | None) -> Datasets:
        commit = self.odb.get_commit(commit_id) if commit_id else None
        if commit is None or commit.datasets is None:
            return Datasets()
        found = self.odb.get_object(commit.datasets)
        if not isinstance(found, Datasets):
            raise IntegrityError(f"commit {commit_id} points at a {found.kind} as its datasets")
        return found

    def datasets(self, at: str | None = None) -> dict[str, Dataset]:
        """Dataset definitions at a revision, by name."""
        if at is None and not self.refs.branches():
            return {}
        return dict(self._datasets_at(self.resolve(at)).datasets)

    def dataset(self, name: str, at: str | None = None) -> Dataset:
        found = self.datasets(at).get(name)
        if found is None:
            raise NotFoundError(f"no dataset named {name!r} at {at or 'HEAD'}")
        return found

    def add_dataset_span(
        self,
        name: str,
        instrument: str,
        start: datetime,
        end: datetime,
        description: str | None = None,
        branch: str | None = None,
        author: str | None = None,
    ) -> ObjectId | None:
        """Commit a new span for dataset ``name``; None if it was already there."""
        with self.transaction(branch, f"Dataset {name}: add {instrument} span", author) as tx:
            tx.add_dataset_span(name, instrument, start, end, description)
        return tx.commit_id

    def remove_dataset_span(
        self,
        name: str,
        instrument: str,
        start: datetime,
        end: datetime,
        branch: str | None = None,
        author: str | None = None,
    ) -> ObjectId | None:
        """Commit the removal of one span of dataset ``name``."""
        with self.transaction(branch, f"Dataset {name}: remove {instrument} span", author) as tx:
            tx.remove_dataset_span(name, instrument, start, end)
        return tx.commit_id

    def instruments(self, at: str | None = None) -> list[str]:
        """Instruments with at least one batch in the snapshot."""
        return sorted(set(self.snapshot(at).batches.column("instrument").to_pylist()))

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

    # -- organizing metadata ---------------------------------------------------
    def _registry_at(self, commit_id: ObjectId | None) -> Registry:
        return self._snapshot_at(commit_id).registry

    def registry(self, at: str | None = None, as_of: datetime | None = None) -> Registry:
        """Instruments, taxonomies and the sample segments in force at a revision."""
        return self.snapshot(at, as_of).registry

    def samples(self, at: str | None = None, as_of: datetime | None = None, history: bool = False) -> pa.Table:
        """The latest version of every sample at a revision (every version, oldest
        first, with ``history``)."""
        from ..snapshot.registry import latest

        versions = self.snapshot(at, as_of).sample_versions()
        return versions if history else latest(versions)

    def edit_registry(
        self, edit: Any, message: str, branch: str | None = None, author: str | None = None
    ) -> ObjectId | None:
        """Commit one registry edit (a function ``Registry -> Registry`` from
        :mod:`improv_vcs.snapshot.registry`); None when it changes nothing."""
        with self.transaction(branch, message, author) as tx:
            tx.edit_registry(edit)
        return tx.commit_id

    def tasks(
        self, at: str | None = None, instrument: str | None = None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The ingest tasks recorded in the history of ``at``, newest first:
        task, commit, time, author, images and instruments."""
        found = []
        for oid, commit in self.log(at):
            instruments = sorted({b.instrument for b in commit.batches})
            if commit.task is None or (since is not None and commit.time < since):
                continue
            if instrument is None or instrument in instruments:
                found.append({"task": commit.task, "commit": oid, "time": commit.time.isoformat(), "author": commit.author,
                              "images": sum(b.rows for b in commit.batches), "instruments": instruments})
        return found

    def task_commit(self, task: str, at: str | None = None) -> ObjectId | None:
        """The commit that recorded ingest task ``task`` in the history of
        ``at``, if any."""
        if at is None and not self.refs.branches():
            return None
        return next((oid for oid, c in self.log(at) if c.task == task), None)

    # -- provenance ----------------------------------------------------------
    def add_provenance(
        self,
        kind: str,
        records: Any,
        source: str | None = None,
        run_id: str | None = None,
        masks: Any = None,
        message: str | None = None,
        branch: str | None = None,
        author: str | None = None,
    ) -> ObjectId | None:
        """Commit provenance records of ``kind`` (see
        :meth:`Transaction.add_provenance`); None if all were already there."""
        author = author or default_author()
        source = source or author
        text = message or f"Provenance: {kind} from {source}" + (f" (run {run_id})" if run_id else "")
        with self.transaction(branch, text, author) as tx:
            tx.add_provenance(kind, records, source, run_id, masks)
        return tx.commit_id

    def provenance(
        self, image_id: str, kind: str | None = None, at: str | None = None, as_of: datetime | None = None
    ) -> list[Record]:
        """Every provenance record of one image (all runs), oldest first."""
        from ..provenance import view

        return view.history(self.snapshot(at, as_of), image_id, kind)

    def provenance_records(
        self, kind: str, at: str | None = None, as_of: datetime | None = None, run: str | None = None
    ) -> pa.Table:
        """Every record of ``kind`` in the snapshot (of one run, when given), as
        Arrow. Classification records with a positional ``score_vector`` get
        ``class_scores`` decoded through the taxonomy in force at the snapshot."""
        import pyarrow.compute as pc

        from ..provenance import catalog, view
        from ..snapshot.registry import with_class_scores

        catalog.get_kind(kind)
        snapshot = self.snapshot(at, as_of)
        found = view.segments(snapshot, kind, run)
        table = view.read(snapshot, found.column("id").to_pylist())
        if run is not None:
            table = table.filter(pc.equal(table.column("run_id"), run))
        return with_class_scores(table, snapshot.registry) if kind == "classification" else table

    def read_mask(
        self, image_id: str, run: str | None = None, at: str | None = None, as_of: datetime | None = None
    ) -> bytes:
        """The segmentation mask of an image (the latest run, or ``run``), verified."""
        from ..provenance import view

        row = view.mask_location(self.snapshot(at, as_of), image_id, run)
        return self.odb.read_blob(row["pack"], row["offset"], row["size"], row["blob_id"])

    # -- original files and stacks -------------------------------------------
    def source_files(
        self, at: str | None = None, as_of: datetime | None = None, query: Query | None = None, **filters: Any
    ) -> pa.Table:
        """Original files (raw bins, whole stacks, metadata documents) of the
        samples ``filters`` select: instrument, time, sample and dataset
        filters apply to the samples themselves (so samples without images
        count); any image filter keeps the samples of the matching images.
        Give the filters as a :class:`Query` or as its fields."""
        import pyarrow.compute as pc

        from ..snapshot import sources
        from ..query.filters import build_query

        query = query or build_query(**filters)
        commit_id = self._commit_for(at, as_of)
        snapshot = self._snapshot_at(commit_id)
        files = snapshot.source_files(list(query.samples) or None)
        spans = None
        if query.dataset is not None:
            spans = self.dataset(query.dataset, at=commit_id).spans if commit_id else ()
        files = sources.select(files, query, spans)
        if any(getattr(query, f) for f in sources.IMAGE_FILTERS):
            rows = self.select(query.model_copy(update={"columns": ("sample_id",), "limit": None}), at=commit_id).table
            samples = rows.column("sample_id").unique()
            files = files.filter(pc.is_in(files.column("sample_id"), value_set=samples))
        return files

    def read_source(self, sample_id: str, name: str, at: str | None = None) -> bytes:
        """The bytes of one original file (by file name or recorded path), verified."""
        import pyarrow.compute as pc

        files = self.snapshot(at).source_files([sample_id])
        row = files.filter(pc.or_(pc.equal(files.column("name"), name), pc.equal(files.column("path"), name))).to_pylist()
        if not row:
            raise NotFoundError(f"no original file {name!r} of sample {sample_id!r}")
        found = row[0]
        return self.odb.read_blob(found["pack"], found["offset"], found["size"], found["blob_id"])

    def export_sources(
        self,
        dest: str | os.PathLike[str],
        at: str | None = None,
        as_of: datetime | None = None,
        progress: Progress | None = None,
        query: Query | None = None,
        **filters: Any,
    ) -> FilesReport:
        """Write the original files :meth:`source_files` selects under
        ``dest``, at their recorded relative paths, byte for byte."""
        from ..query.export import export_files

        files = self.source_files(at, as_of, query, **filters)
        if files.num_rows == 0:
            raise NotFoundError("no original files match (were they ingested with --no-raw?)")
        return export_files(self.odb, files, Path(dest), progress)

    def read_stack(
        self,
        sample: str | None = None,
        at: str | None = None,
        as_of: datetime | None = None,
        query: Query | None = None,
        p: Selector = None,
        t: Selector = None,
        c: Selector = None,
        z: Selector = None,
    ) -> np.ndarray:
        """The N-D array of one stack's planes, shaped ``(P, T, C, Z, Y, X[, S])``
        before selection; ``p, t, c, z`` index it like numpy (an int drops the
        axis, a slice or list keeps it). Give the ``sample`` or a ``query``
        matching the planes of exactly one sample. Only selected planes are read."""
        from ..query import stack
        from ..query.export import iter_blobs
        from ..query.filters import build_query

        if (sample is None) == (query is None):
            raise InvalidInputError("give either a sample or a query")
        if query is None:
            query = build_query(samples=(sample,))
        rows = self.select(query.model_copy(update={"columns": None}), at=at, as_of=as_of).table
        if rows.num_rows == 0:
            raise NotFoundError(f"no planes of sample {sample!r}" if sample else "no images match the query")
        samples = rows.column("sample_id").unique().to_pylist()
        if len(samples) > 1:
            raise InvalidInputError(f"the query matches {len(samples)} samples; read one stack at a time")
        picked, chosen = stack.select(rows, {"p": p, "t": t, "c": c, "z": z})
        planes = ((image, data) for image, _, data in iter_blobs(self.odb, picked, picked.column("image_id")))
        return stack.assemble(picked, chosen, planes)

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
        return {name: self.resolve_tag_target(oid) for name, oid in self.refs.tags().items()}

    def resolve_tag_target(self, oid: str) -> ObjectId:
        obj = self.odb.get_object(oid)
        while isinstance(obj, Tag):
            oid = obj.target
            obj = self.odb.get_object(oid)
        return ObjectId(oid)

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
                raise InvalidInputError(f"{'.'.join(map(str, error['loc']))}: {error['msg']}") from None
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
                raise NotFoundError(f"{key} vanished while the ref was being created (a gc?); nothing was changed")
        fence.check(keys)

    def tag_object(self, name: str) -> Tag | None:
        """The annotated tag object of ``name`` (None for a lightweight tag)."""
        pointer = self.refs.tag(name)
        if pointer is None:
            raise NotFoundError(f"no tag named {name!r}")
        found = self.odb.get_object(pointer)
        return found if isinstance(found, Tag) else None

    # -- citations ---------------------------------------------------------
    def cite(self, at: str | None = None, tag: str | None = None, **options: Any) -> Citation:
        """A citation of the selection ``options`` describe (query filters, and
        ``title``, ``authors``, ``license``, ``description``, ``doi``) at
        ``at``, or of a release ``tag``. See :mod:`improv_vcs.cite.make`."""
        from ..cite import make as cite

        return cite.make(self, at=at, tag=tag, **options)
