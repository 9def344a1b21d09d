"""Push, fetch, pull and clone between sites, and on-demand image bytes.

Every site is just a repository at a URL (a path, ``file://``, ``s3://``).
Refs move last, by compare-and-swap, after everything they name is in place.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConflictError, InvalidInputError, NotARepositoryError, NotFoundError
from ..core.ids import ObjectId, ref_name
from ..core.model import canonical_json
from ..storage import graph, revparse
from ..storage.closure import commit_keys
from ..storage.fence import Fence
from ..storage.objects import object_key
from ..storage.remotes import normalize_url
from .merge import merge
from .transfer import Progress, Transfer, TransferReport

if TYPE_CHECKING:
    from ..repository.repository import Repository

_CAS_ATTEMPTS = 20


@dataclass
class SyncResult:
    """What a push, fetch, pull or clone did."""

    remote: str
    transfer: TransferReport = field(default_factory=TransferReport)
    refs: dict[str, str] = field(default_factory=dict)  # ref → new commit id
    action: str = ""
    commit: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            **self.transfer.to_json(),
            "refs": self.refs,
            "action": self.action,
            "commit": self.commit,
            "notes": self.notes,
        }


def open_remote(
    repo: Repository, remote: str | None, endpoint_url: str | None = None
) -> tuple[str, Repository]:
    """``(display name, repository)`` for a remote name (default ``origin``) or URL."""
    from ..repository.repository import Repository

    name = remote or "origin"
    known = repo.remotes.all()
    if name in known:
        found = known[name]
        options = dict(found.options)
        url = found.url
    else:
        if remote is None:
            raise NotFoundError("no remote named 'origin'; give a remote name or URL")
        if "://" not in name and not os.path.exists(name):
            raise NotFoundError(
                f"{name!r} is neither a remote of this repository nor an existing path"
            )
        url, options = normalize_url(name), {}
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    other = Repository.open(url, **options)
    _same_repository(repo, other)
    return name, other


def _same_repository(repo: Repository, other: Repository) -> None:
    if other.id != repo.id:
        raise ConflictError(
            f"{other.url} holds another repository (id {other.id}, not {repo.id}); nothing was "
            f"transferred"
        )


def _init_like(repo: Repository, url: str, options: dict[str, str]) -> Repository:
    """An empty repository at ``url`` with ``repo``'s identity (for a first push)."""
    from ..repository.repository import Repository
    from ..storage import open_store
    from ..storage.remotes import CONFIG_KEY

    store = open_store(url, **options)
    if any(True for _ in store.list("")):
        raise InvalidInputError(
            f"{url} is neither an improv repository nor empty; nothing was pushed"
        )
    store.put_if_absent(CONFIG_KEY, canonical_json(repo.config))
    return Repository.open(url, **options)


def _created(result: SyncResult, name: str, create: Any) -> bool:
    """Run ``create`` (a new branch or tag); a name this version refuses
    for new refs (one that could shadow a revision, from an older site) is
    left out with a note instead of stopping the transfer."""
    try:
        create()
    except InvalidInputError as exc:
        result.notes.append(f"{name!r} was not created: {exc}")
        return False
    return True


def push(
    repo: Repository,
    remote: str | None = None,
    branch: str | None = None,
    tags: bool = False,
    force: bool = False,
    endpoint_url: str | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Send ``branch`` (default: the default branch) and, with ``tags``, every
    tag; move the remote branch by compare-and-swap, refusing a move that is
    not a fast-forward unless ``force``."""
    branch = ref_name(branch or repo.config.default_branch)
    try:
        name, other = open_remote(repo, remote, endpoint_url)
    except NotARepositoryError:
        found = repo.remotes.all().get(remote or "origin")
        url = found.url if found else normalize_url(remote or "")
        options = {
            **(found.options if found else {}),
            **({"endpoint_url": endpoint_url} if endpoint_url else {}),
        }
        name, other = remote or "origin", _init_like(repo, url, options)
    tip = repo.refs.require_branch(branch)
    theirs = other.refs.branch(branch)
    result = SyncResult(name)
    if theirs is not None and not force:
        if not repo.odb.has(theirs) or not graph.is_ancestor(repo.odb, theirs, tip):
            raise ConflictError(
                f"the remote's {branch!r} has commits this site lacks (not a fast-forward): "
                f"run `improv pull {name} {branch}` first, or push --force"
            )
    tag_pointers = dict(repo.refs.tags()) if tags else {}
    fence = Fence(other.store)
    transfer = Transfer(repo, other, progress=progress)
    tips = [tip, *(revparse.peel(repo.odb, p) for p in tag_pointers.values())]
    transfer.send(tips)
    if theirs != tip:
        fence.check(transfer.relied | {object_key(tip)})
        other.refs.set_branch(branch, theirs, tip)
    result.refs[f"refs/heads/{branch}"] = tip
    for tag, pointer in sorted(tag_pointers.items()):
        existing = other.refs.tag(tag)
        if existing == pointer:
            continue
        if existing is not None:
            result.notes.append(
                f"tag {tag!r} differs on the remote; left as it is (tags never move)"
            )
            continue
        transfer.send_tag(pointer)
        fence.check(transfer.relied | {object_key(pointer)})
        if _created(
            result, tag, lambda tag=tag, pointer=pointer: other.refs.create_tag(tag, pointer)
        ):
            result.refs[f"refs/tags/{tag}"] = pointer
    if repo.remotes.all().get(name):
        repo.remotes.set_tracking(name, branch, tip)
    result.transfer = transfer.report
    result.action = "up-to-date" if theirs == tip else ("forced" if force and theirs else "pushed")
    result.commit = tip
    return result


def fetch(
    repo: Repository,
    remote: str | None = None,
    endpoint_url: str | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Copy every commit of the remote's branches and tags that this site
    lacks; record the remote branches under ``refs/remotes/<remote>/``."""
    return _fetch(repo, remote, endpoint_url, progress)[0]


def _fetch(
    repo: Repository,
    remote: str | None,
    endpoint_url: str | None,
    progress: Progress | None,
    hardlinks: bool = True,
    whole_bundles: bool = False,
) -> tuple[SyncResult, dict[str, ObjectId], Fence]:
    """:func:`fetch`, also returning the remote's branches and the fence
    opened on this site before the transfer (for later ref moves). With
    ``whole_bundles`` (a clone), the remote's bundles are copied first."""
    name, other = open_remote(repo, remote, endpoint_url)
    result = SyncResult(name)
    branches = other.refs.branches()
    tags = other.refs.tags()
    blobs = repo.remotes.promisor is None
    fence = Fence(repo.store)
    transfer = Transfer(other, repo, blobs=blobs, progress=progress, hardlinks=hardlinks)
    if whole_bundles:
        transfer.copy_bundles()
    transfer.send([*branches.values(), *(revparse.peel(other.odb, p) for p in tags.values())])
    fence.check(transfer.relied | {object_key(t) for t in branches.values()})
    for tag, pointer in sorted(tags.items()):
        mine = repo.refs.tag(tag)
        if mine is None:
            transfer.send_tag(pointer)
            fence.check({object_key(pointer)})
            if _created(
                result, tag, lambda tag=tag, pointer=pointer: repo.refs.create_tag(tag, pointer)
            ):
                result.refs[f"refs/tags/{tag}"] = pointer
        elif mine != pointer:
            result.notes.append(f"tag {tag!r} differs on the remote; kept this site's")
    if name in repo.remotes.all():
        for branch, target in branches.items():
            repo.remotes.set_tracking(name, branch, target)
            result.refs[f"refs/remotes/{name}/{branch}"] = target
        repo.remotes.drop_tracking(name, set(branches))
    result.transfer = transfer.report
    result.action = "fetched"
    return result, branches, fence


def pull(
    repo: Repository,
    remote: str | None = None,
    branch: str | None = None,
    author: str | None = None,
    endpoint_url: str | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Fetch, then bring the remote's ``branch`` into the local one: create
    it, fast-forward it, or write a merge commit when both sides appended."""
    from ..core.authors import default_author

    branch = ref_name(branch or repo.config.default_branch)
    result, branches, fence = _fetch(repo, remote, endpoint_url, progress)
    theirs = branches.get(branch)
    if theirs is None:
        raise NotFoundError(f"the remote has no branch {branch!r}")
    for _ in range(_CAS_ATTEMPTS):
        ours = repo.refs.branch(branch)
        if ours is None:
            action, new = "created", theirs
        elif graph.is_ancestor(repo.odb, theirs, ours):
            result.action, result.commit = "up-to-date", ours
            return result
        elif graph.is_ancestor(repo.odb, ours, theirs):
            action, new = "fast-forward", theirs
        else:
            message = f"Merge {result.remote}/{branch} into {branch}"
            action, new = "merge", merge(repo, ours, theirs, author or default_author(), message)
            fence.check(commit_keys(repo.odb, new, repo.odb.get_commit(new)))
        try:
            repo.refs.set_branch(branch, ours, new)
        except ConflictError:
            continue  # a local commit landed meanwhile: integrate again
        result.action, result.commit = action, new
        result.refs[f"refs/heads/{branch}"] = new
        return result
    raise ConflictError(f"branch {branch!r} kept moving during the pull; nothing was changed")


def clone(
    url: str,
    dest: str | os.PathLike[str],
    branch: str | None = None,
    metadata_only: bool = False,
    endpoint_url: str | None = None,
    progress: Progress | None = None,
    hardlinks: bool = True,
) -> tuple[Repository, SyncResult]:
    """A new repository at ``dest`` holding everything (or, with
    ``metadata_only``, everything but image and mask bytes) of ``url``, with
    ``url`` as its remote ``origin``. On the same disk, packs are shared by
    hard links (they never change; ``hardlinks=False`` copies them).

    ``dest`` must be absent or empty (as with ``git clone``); a local
    ``dest`` is removed again when the clone fails."""
    from ..repository.repository import Repository
    from ..storage import LocalStore, open_store
    from ..storage.remotes import CONFIG_KEY

    options = {"endpoint_url": endpoint_url} if endpoint_url else {}
    source = Repository.open(normalize_url(url), **options)
    created = not os.path.exists(dest)
    store = open_store(os.fspath(dest))
    if any(True for _ in store.list("")):
        raise InvalidInputError(
            f"{dest} already exists and is not empty; clone into a new folder "
            f"(to update an existing copy, run `improv --repo {dest} pull`)"
        )
    try:
        store.put_if_absent(CONFIG_KEY, canonical_json(source.config))
        repo = Repository.open(os.fspath(dest))
        repo.remotes.add("origin", url, options, promisor=metadata_only)
        result, branches, _ = _fetch(repo, "origin", None, progress, hardlinks, whole_bundles=True)
        if branch and branch not in branches:
            raise NotFoundError(f"{url} has no branch {branch!r}")
        for name in [branch] if branch else list(branches):
            if _created(result, name, lambda n=name: repo.refs.set_branch(n, None, branches[n])):
                result.refs[f"refs/heads/{name}"] = branches[name]
    except BaseException:
        if isinstance(store, LocalStore):
            _remove_local(store.root, created)
        raise
    result.action = "cloned"
    result.commit = branches.get(repo.config.default_branch)
    return Repository.open(os.fspath(dest)), result  # reopened: it now knows its remote


def _remove_local(root: Path, created: bool) -> None:
    """Undo a failed clone into a local folder: remove the folder if the
    clone created it, else empty it again."""
    if created:
        shutil.rmtree(root, ignore_errors=True)
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def fetch_blobs(repo: Repository, rows: Any, progress: Progress | None = None) -> TransferReport:
    """Copy (verified) the packs holding the image bytes of ``rows`` (manifest
    rows, e.g. a query result) from the promisor remote of a metadata-only clone."""
    promisor = repo.remotes.promisor
    if promisor is None:
        raise InvalidInputError(
            "this repository is not a metadata-only clone; it already holds every image"
        )
    _, other = open_remote(repo, promisor)
    transfer = Transfer(other, repo, progress=progress)
    return transfer.send_packs(
        sorted(set(rows.column("pack").to_pylist())) if rows.num_rows else []
    )


def repair(
    repo: Repository, remote: str | None, full: bool = True, progress: Progress | None = None
) -> tuple[Any, list[str]]:
    """Replace every object and pack fsck finds missing or corrupt with a
    verified copy from ``remote``; returns the final fsck report and what
    was replaced. Objects a replaced commit or manifest reveals as missing
    are repaired in the next round."""
    from ..maintenance.fsck import fsck
    from ..maintenance.repack import maintain

    _, other = open_remote(repo, remote)
    transfer = Transfer(other, repo, progress=progress)
    replaced: list[str] = []
    while True:
        report = fsck(repo, full=full)
        todo = sorted(
            {
                (p.what == "pack" and "pack" or "object", p.object_id)
                for p in report.problems
                if p.what not in ("ref", "bundle")
            }
        )
        todo = [(what, oid) for what, oid in todo if f"{what} {oid}" not in replaced]
        if not todo:
            return report, replaced
        for what, oid in todo:
            transfer.replace(what, oid)
            replaced.append(f"{what} {oid}")
        if repo.config.format >= 2:
            maintain(repo)  # bundles holding a replaced value are rewritten with the good copy
