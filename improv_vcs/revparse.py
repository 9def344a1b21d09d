"""Turn a revision string into a commit id.

Accepted: a branch or tag name, ``HEAD`` (the default branch), a full commit
id or a unique prefix of at least 4 hex digits, each optionally followed by
``~N`` (the N-th first parent) or ``~`` (= ``~1``), repeatable.
"""

from __future__ import annotations

import re

from .errors import InvalidInputError, NotFoundError
from .ids import ObjectId, is_hex_prefix, is_object_id, ref_name
from .model import Commit, Tag
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
            raise NotFoundError(f"{spec!r} goes back past the first commit ({taken} step(s) were possible)")
        oid = ObjectId(obj.parents[0])
        obj = odb.get_commit(oid)
    return oid


def _resolve_name(odb: ObjectDatabase, refs: RefStore, name: str, default_branch: str) -> ObjectId:
    if name == "HEAD":
        name = default_branch
    named = None
    try:
        ref_name(name)
        named = refs.branch(name) or refs.tag(name)
    except InvalidInputError:
        pass
    if named is not None:
        return named
    if is_object_id(name) and odb.has(name):
        if not odb.is_json_object(name):
            raise NotFoundError(f"{name[:12]} is not a commit or tag")
        return ObjectId(name)
    if is_hex_prefix(name):
        matches = [m for m in odb.expand_prefix(name) if odb.is_json_object(m)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidInputError(f"commit prefix {name!r} is ambiguous ({len(matches)} objects)")
    raise NotFoundError(f"no branch, tag or commit named {name!r}")
