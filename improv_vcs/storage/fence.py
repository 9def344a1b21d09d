"""The writers' half of gc's protocol: nothing a writer relies on is collected.

gc (:mod:`improv_vcs.maintenance.gc`) publishes, under ``gc/state``, the keys it is
about to delete (its *doomed* keys) and bumps a generation number when it
starts deleting and when it is done. A writer — a commit, a merge, a
transfer, a new branch or tag:

1. opens a :class:`Fence` (reads the state) before it writes anything;
2. writes its objects with :meth:`Store.put_or_freshen`, so whatever it
   reuses (and whatever commit it builds on) is young again;
3. calls :meth:`Fence.check` with the keys its new ref target relies on,
   just before moving the ref. The check refuses when a gc is deleting any
   of them, and, when a gc ran meanwhile, when any of them is gone.

gc deletes only what it listed *before* re-checking ages and refs, so a
writer that read the state before the list was published has freshened its
objects before gc looked at them again, and a writer that read it after
sees the list. The one assumption is the grace period: a writer finishes
within it (24 h by default) of writing its objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..core.errors import ConflictError, IntegrityError
from . import Store

STATE_KEY = "gc/state"


@dataclass(frozen=True)
class GcState:
    """What gc tells writers: a generation and the keys being deleted."""

    generation: int = 0
    doomed: frozenset[str] = field(default_factory=frozenset)
    started: float | None = None
    owner: str | None = None

    @property
    def collecting(self) -> bool:
        return self.owner is not None

    def encode(self) -> bytes:
        doc = {
            "generation": self.generation,
            "doomed": sorted(self.doomed),
            "started": self.started,
            "owner": self.owner,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> GcState:
        try:
            doc = json.loads(data)
            state = cls(
                int(doc["generation"]),
                frozenset(map(str, doc["doomed"])),
                doc["started"],
                doc["owner"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{STATE_KEY} is not a gc state: {exc}") from None
        return state


def read_state(store: Store) -> tuple[bytes | None, GcState]:
    """The stored bytes (for a compare-and-swap) and the state they hold."""
    data = store.get_if_exists(STATE_KEY)
    return data, (GcState() if data is None else GcState.decode(data))


class Fence:
    """Opened before a write, checked before the ref move that publishes it."""

    def __init__(self, store: Store):
        self.store = store
        self.opened = read_state(store)[1]

    def check(self, keys: Iterable[str]) -> None:
        """Refuse (:class:`ConflictError`, nothing changed) if a gc is
        deleting any of ``keys``, or deleted any since the fence opened."""
        keys = set(keys)
        now = read_state(self.store)[1]
        doomed = sorted(keys & now.doomed)
        if doomed:
            started = datetime.fromtimestamp(now.started or 0, timezone.utc).isoformat(
                timespec="seconds"
            )
            raise ConflictError(
                f"a gc started at {started} is removing {len(doomed)} object(s) this write would "
                f"rely on "
                f"({doomed[0]}); nothing was changed: run it again once that gc has finished "
                "(if it was killed, `improv gc --force` finishes its work)"
            )
        if now.generation != self.opened.generation:
            missing = sorted(k for k in keys if not self.store.exists(k))
            if missing:
                raise ConflictError(
                    f"a gc removed {len(missing)} object(s) this write would rely on "
                    f"({missing[0]}); "
                    "nothing was changed: run it again"
                )
