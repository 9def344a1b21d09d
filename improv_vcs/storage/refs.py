"""Branches and tags: small files holding a commit (or tag object) id.

Branches move only by compare-and-swap from an expected old id; tags are
created once and never move.

A new branch or tag must have a name no revision could mean (not ``HEAD``,
not a hex commit-id prefix: :func:`~improv_vcs.core.ids.new_ref_name`) and a name
the other kind does not already use, so a ref never shadows a commit id and
a branch never shadows a tag (:meth:`RefStore.check_new_name`). Refs that
already exist are read, and branches moved, whatever their name.
"""

from __future__ import annotations

from typing import Literal

from ..core.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
)
from ..core.ids import ObjectId, is_object_id, new_ref_name, ref_name
from . import Store

HEADS = "refs/heads/"
TAGS = "refs/tags/"


class RefStore:
    def __init__(self, store: Store):
        self.store = store

    def _read(self, key: str) -> ObjectId | None:
        data = self.store.get_if_exists(key)
        if data is None:
            return None
        value = data.decode("ascii", "replace").strip()
        if not is_object_id(value):
            raise IntegrityError(f"{key} does not hold an object id")
        return ObjectId(value)

    def _all(self, prefix: str) -> dict[str, ObjectId]:
        out = {}
        for key in self.store.list(prefix):
            name = key[len(prefix) :]
            try:
                ref_name(name)
            except InvalidInputError:
                raise IntegrityError(f"{self.store.url}: invalid ref name {key!r}") from None
            target = self._read(key)
            if target is not None:
                out[name] = target
        return out

    def branch(self, name: str) -> ObjectId | None:
        return self._read(HEADS + ref_name(name))

    def tag(self, name: str) -> ObjectId | None:
        return self._read(TAGS + ref_name(name))

    def branches(self) -> dict[str, ObjectId]:
        return self._all(HEADS)

    def tags(self) -> dict[str, ObjectId]:
        return self._all(TAGS)

    def check_new_name(self, kind: Literal["branch", "tag"], name: str) -> str:
        """Validate ``name`` for a new ``kind`` ("branch" or "tag") and return it.

        :class:`InvalidInputError` when :func:`~improv_vcs.core.ids.new_ref_name`
        refuses it, or when a ref of the other kind already has that name
        (branch and tag names must differ, or one would shadow the other).
        Whether a ref of the same kind exists is left to the write itself
        (a compare-and-swap). The check is not atomic with that write: two
        writers racing to create branch ``x`` and tag ``x`` can both pass,
        and then revision parsing prefers the branch.
        """
        if kind not in ("branch", "tag"):
            raise InvalidInputError(f"kind must be 'branch' or 'tag', not {kind!r}")
        new_ref_name(name)
        other = "tag" if kind == "branch" else "branch"
        taken = self.tag(name) if kind == "branch" else self.branch(name)
        if taken is not None:
            raise InvalidInputError(
                f"a {other} named {name!r} exists; branch and tag names must differ"
            )
        return name

    def set_branch(self, name: str, old: str | None, new: str) -> None:
        """Move branch ``name`` from ``old`` (None: create it; it must not
        exist, and its name must pass :meth:`check_new_name`) to ``new``.
        Moving an existing branch does not re-check its name."""
        key = HEADS + (self.check_new_name("branch", name) if old is None else ref_name(name))
        expected = None if old is None else f"{old}\n".encode()
        try:
            self.store.compare_and_swap(key, expected, f"{new}\n".encode())
        except ConflictError:
            raise ConflictError(
                f"branch {name!r} moved concurrently (expected {old or 'no branch'})"
            ) from None

    def create_tag(self, name: str, target: str) -> None:
        """Create tag ``name`` at ``target`` (a commit or tag object id); its
        name must pass :meth:`check_new_name`. :class:`ReadOnlyError` if the
        tag exists: tags never move."""
        key = TAGS + self.check_new_name("tag", name)
        try:
            self.store.compare_and_swap(key, None, f"{target}\n".encode())
        except ConflictError:
            raise ReadOnlyError(f"tag {name!r} already exists; tags never move") from None

    def require_branch(self, name: str) -> ObjectId:
        target = self.branch(name)
        if target is None:
            raise NotFoundError(f"no branch named {name!r}")
        return target
