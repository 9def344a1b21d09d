"""Branches and tags: small files holding a commit (or tag object) id.

Branches move only by compare-and-swap from an expected old id; tags are
created once and never move.
"""

from __future__ import annotations

from .errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError, ReadOnlyError
from .ids import ObjectId, is_object_id, ref_name
from .store import Store

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

    def set_branch(self, name: str, old: str | None, new: str) -> None:
        """Move branch ``name`` from ``old`` (None: it must not exist) to ``new``."""
        key = HEADS + ref_name(name)
        expected = None if old is None else f"{old}\n".encode()
        try:
            self.store.compare_and_swap(key, expected, f"{new}\n".encode())
        except ConflictError:
            raise ConflictError(
                f"branch {name!r} moved concurrently (expected {old or 'no branch'})"
            ) from None

    def create_tag(self, name: str, target: str) -> None:
        key = TAGS + ref_name(name)
        try:
            self.store.compare_and_swap(key, None, f"{target}\n".encode())
        except ConflictError:
            raise ReadOnlyError(f"tag {name!r} already exists; tags never move") from None

    def require_branch(self, name: str) -> ObjectId:
        target = self.branch(name)
        if target is None:
            raise NotFoundError(f"no branch named {name!r}")
        return target
