"""What fsck found: counts of what it checked, and each problem by the
object it concerns (``improv fsck --json`` prints :meth:`FsckReport.to_json`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong, named by the object it concerns."""

    object_id: str
    what: str  # commit, tag, manifest, pack, segment, datasets, ref (the detail names the ref)
    detail: str

    def __str__(self) -> str:
        return f"{self.what} {self.object_id}: {self.detail}"


@dataclass
class FsckReport:
    refs: int = 0
    commits: int = 0
    objects: int = 0
    packs: int = 0
    packs_remote: int = 0
    bundles: int = 0
    bytes_hashed: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "refs": self.refs,
            "commits": self.commits,
            "objects": self.objects,
            "packs": self.packs,
            "packs_remote": self.packs_remote,
            "bundles": self.bundles,
            "bytes_hashed": self.bytes_hashed,
            "problems": [p.__dict__ for p in self.problems],
        }
