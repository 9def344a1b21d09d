"""A hypothesis state machine drives a repository and a tiny pure-Python model
side by side: commits on several branches, branching, tagging and reads must
agree at every step."""

from __future__ import annotations

import uuid

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from improv_vcs import ConflictError, InvalidInputError, ReadOnlyError, Repository

IDS = [f"img{i}" for i in range(12)]
BLOBS = [b"", b"a", b"b", b"\x00" * 3000, b"png-ish bytes", b"a" * 9000]
TIMES = ["2024-05-01T00:00:00Z", "2024-05-02T12:30:00+02:00", "2023-12-31T23:59:59Z"]

batches = st.lists(
    st.tuples(st.sampled_from(IDS), st.sampled_from(BLOBS), st.sampled_from(TIMES)),
    min_size=1,
    max_size=5,
)


class RepositoryMachine(RuleBasedStateMachine):
    branches = Bundle("branches")

    @initialize(target=branches)
    def create_repository(self):
        self.repo = Repository.init(f"memory://stateful-{uuid.uuid4().hex}")
        self.model: dict[str, dict[str, bytes]] = {"main": {}}
        self.tags: dict[str, dict[str, bytes]] = {}
        self.commits = 0
        return "main"

    @rule(branch=branches, batch=batches, instrument=st.sampled_from(["IFCB1", "scope"]))
    def commit(self, branch, batch, instrument):
        snapshot = self.model[branch]
        rows = [{"image_id": i, "timestamp": t} for i, _, t in batch]
        blobs = [b for _, b, _ in batch]
        ids = [i for i, _, _ in batch]
        tx = self.repo.transaction(branch=branch, message="step")
        if len(set(ids)) != len(ids):
            with pytest.raises(InvalidInputError):
                tx.append_bytes(instrument, rows, blobs)
            return
        if any(i in snapshot and snapshot[i] != b for i, b, _ in batch):
            with pytest.raises(ConflictError):
                tx.append_bytes(instrument, rows, blobs)
            return
        tx.append_bytes(instrument, rows, blobs)
        commit_id = tx.commit()
        new = {i: b for i, b, _ in batch if i not in snapshot}
        assert (commit_id is None) == (not new)
        snapshot.update(new)
        if commit_id:
            self.commits += 1

    @rule(target=branches, source=branches, name=st.sampled_from(["b1", "b2", "team/x"]))
    def branch(self, source, name):
        if name in self.model:
            with pytest.raises(ConflictError):
                self.repo.create_branch(name, source)
            return source
        if not self.repo.branches():
            return source  # nothing to branch from yet
        self.repo.create_branch(name, source)
        self.model[name] = dict(self.model[source])
        return name

    @rule(branch=branches, name=st.sampled_from(["v1", "v2"]), annotated=st.booleans())
    def tag(self, branch, name, annotated):
        if not self.repo.branches():
            return
        message = "release" if annotated else None
        if name in self.tags:
            with pytest.raises(ReadOnlyError):
                self.repo.create_tag(name, branch, message)
            return
        self.repo.create_tag(name, branch, message)
        self.tags[name] = dict(self.model[branch])

    @invariant()
    def snapshots_match_the_model(self):
        if not hasattr(self, "repo") or not self.repo.branches():
            return
        for rev, expected in [*self.model.items(), *self.tags.items()]:
            table = self.repo.images(at=rev)
            assert sorted(table.column("image_id").to_pylist()) == sorted(expected)
            for image_id, data in expected.items():
                assert self.repo.read_image(image_id, at=rev) == data

    @invariant()
    def history_counts_every_commit(self):
        if hasattr(self, "repo") and self.repo.branches():
            reachable = set()
            for name in self.model:
                reachable.update(oid for oid, _ in self.repo.log(name))
            assert len(reachable) == self.commits


RepositoryMachine.TestCase.settings = settings(
    max_examples=settings.default.max_examples // 2 or 1,
    stateful_step_count=12,
    deadline=None,
)
test_repository_state_machine = RepositoryMachine.TestCase
