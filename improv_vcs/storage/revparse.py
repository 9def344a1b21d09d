"""Turn a revision string into a commit id.

A revision is a name optionally followed by ``~N`` (the N-th first parent)
or ``~`` (= ``~1``), repeatable. The name is read by one precedence, first
match wins:

1. ``HEAD``: the default branch (never a ref named ``HEAD``);
2. a full object id (64 lower-case hex digits): that commit or tag object,
   never a ref, so an id always means the same snapshot;
3. a branch of that name;
4. a tag of that name (an annotated tag is peeled to its commit);
5. a unique prefix of at least 4 hex digits of a commit or tag object id.

New refs cannot be named ``HEAD`` or like a hex prefix, nor share a name
with a ref of the other kind (:func:`improv_vcs.core.ids.new_ref_name`,
:meth:`improv_vcs.storage.refs.RefStore.check_new_name`), so steps 3 to 5 never
compete in a repository written by this version. A legacy ref named like a
full id is unreachable here; read it by name with
:meth:`~improv_vcs.storage.refs.RefStore.branch` or ``tag``.
"""

from __future__ import annotations

import re

from ..core.errors import InvalidInputError, NotFoundError
from ..core.ids import ObjectId, is_hex_prefix, is_object_id, ref_name
from ..core.model import Commit, Tag
from .objects import ObjectDatabase
from .refs import RefStore

_ANCESTRY = re.compile(r"~(\d*)")


def split_ancestry(spec: str) -> tuple[str, int]:
    """``"main~2~"`` → ``("main", 3)``."""
    name, tilde, rest = spec.partition("~")
    steps = 0
    if tilde:
        suffix = tilde + rest
        matches = list(_ANCESTRY.finditer(suffix))
        if "".join(m.group(0) for m in matches) != suffix:
            raise InvalidInputError(f"invalid revision {spec!r}")
        steps = sum(int(m.group(1) or 1) for m in matches)
    if not name:
        raise InvalidInputError(f"invalid revision {spec!r}")
    return name, steps


def resolve(odb: ObjectDatabase, refs: RefStore, spec: str, default_branch: str) -> ObjectId:
    """The commit id ``spec`` names; :class:`NotFoundError` if it names nothing."""
    name, steps = split_ancestry(spec.strip())
    oid = _resolve_name(odb, refs, name, default_branch)
    obj = odb.get_object(oid)
    while isinstance(obj, Tag):
        oid = ObjectId(obj.target)
        obj = odb.get_object(oid)
    if not isinstance(obj, Commit):
        raise NotFoundError(f"{name!r} names a {obj.kind} object, not a commit")
    for taken in range(steps):
        if not obj.parents:
            raise NotFoundError(
                f"{spec!r} goes back past the first commit ({taken} step(s) were possible)"
            )
        oid = ObjectId(obj.parents[0])
        obj = odb.get_commit(oid)
    return oid


def _resolve_name(odb: ObjectDatabase, refs: RefStore, name: str, default_branch: str) -> ObjectId:
    """The object ``name`` (no ``~`` suffix) names, by the module's precedence."""
    if name == "HEAD":
        head = refs.branch(default_branch)
        if head is None:
            raise NotFoundError(f"no branch, tag or commit named {default_branch!r}")
        return head
    if is_object_id(name):
        if not odb.has(name):
            raise NotFoundError(f"no branch, tag or commit named {name!r}")
        if not odb.is_json_object(name):
            raise NotFoundError(f"{name[:12]} is not a commit or tag")
        return ObjectId(name)
    named = None
    try:
        ref_name(name)
        named = refs.branch(name) or refs.tag(name)
    except InvalidInputError:
        pass
    if named is not None:
        return named
    if is_hex_prefix(name):
        matches = [m for m in odb.expand_prefix(name) if odb.is_json_object(m)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidInputError(f"commit prefix {name!r} is ambiguous ({len(matches)} objects)")
    raise NotFoundError(f"no branch, tag or commit named {name!r}")


def peel(odb: ObjectDatabase, oid: str) -> ObjectId:
    """The commit an object id names: itself, or what its annotated tag(s) point at."""
    obj = odb.get_object(oid)
    while isinstance(obj, Tag):
        oid = obj.target
        obj = odb.get_object(oid)
    return ObjectId(oid)
