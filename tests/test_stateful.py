"""Hypothesis state machines drive repositories and tiny pure-Python models
side by side: commits on several branches, branching, tagging, dataset edits,
queries, pushes, pulls and merges must agree at every step."""

from __future__ import annotations

import uuid
from datetime import datetime

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from improv_vcs import ConflictError, InvalidInputError, ReadOnlyError, Repository, add_dataset_span

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
            table = self.repo.snapshot(rev).images()
            assert sorted(table.column("image_id").to_pylist()) == sorted(expected)
            for image_id, data in expected.items():
                assert self.repo.snapshot(rev).read_image(image_id) == data

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


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


WHEN = {t: _time(t) for t in TIMES}
SPANS = [
    ("IFCB1", "2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z"),
    ("scope", "2023-01-01T00:00:00Z", "2024-06-01T00:00:00Z"),
]


class TwoSitesMachine(RuleBasedStateMachine):
    """A site L with dataset edits and a mirror M, both committing, with pushes
    from L to M and pulls from M into L, against a model of images (bytes,
    instrument, time), dataset spans and the commits each side holds."""

    @initialize()
    def create_sites(self):
        from improv_vcs.sync.sites import clone

        root = f"memory://two-sites-{uuid.uuid4().hex}"
        self.sites = {"L": Repository.init(f"{root}/L")}
        with self.sites["L"].transaction(message="root") as tx:
            tx.append_bytes("IFCB1", [{"image_id": "root", "timestamp": TIMES[0]}], [b"root"])
        self.sites["M"] = clone(f"{root}/L", f"{root}/M")[0]
        tip = self.sites["L"].resolve()
        self.images = {s: {"root": (b"root", "IFCB1", WHEN[TIMES[0]])} for s in self.sites}
        self.commits = {s: {tip} for s in self.sites}
        self.tips = {s: tip for s in self.sites}
        self.spans: set[tuple[str, str, str]] = set()

    @rule(
        site=st.sampled_from(["L", "M"]),
        batch=batches,
        instrument=st.sampled_from(["IFCB1", "scope"]),
    )
    def commit(self, site, batch, instrument):
        ids = [i for i, _, _ in batch]
        known = self.images[site]
        if len(set(ids)) != len(ids) or any(i in known and known[i][0] != b for i, b, _ in batch):
            return  # refusals are covered by RepositoryMachine
        with self.sites[site].transaction(message=f"commit at {site}") as tx:
            tx.append_bytes(
                instrument,
                [{"image_id": i, "timestamp": t} for i, _, t in batch],
                [b for _, b, _ in batch],
            )
        new = {i: (b, instrument, WHEN[t]) for i, b, t in batch if i not in known}
        assert (tx.commit_id is None) == (not new)
        if tx.commit_id:
            known.update(new)
            self.commits[site].add(tx.commit_id)
            self.tips[site] = tx.commit_id

    @rule(span=st.sampled_from(SPANS))
    def add_dataset_span(self, span):
        instrument, start, end = span
        commit_id = add_dataset_span(self.sites["L"], "bloom", instrument, _time(start), _time(end))
        assert (commit_id is None) == (span in self.spans)
        if commit_id:
            self.spans.add(span)
            self.commits["L"].add(commit_id)
            self.tips["L"] = commit_id

    @rule()
    def push(self):
        from improv_vcs.sync.sites import push

        if self.tips["M"] not in self.commits["L"]:
            with pytest.raises(ConflictError, match="fast-forward"):
                push(self.sites["L"], self.sites["M"].url)
            assert self.sites["M"].resolve() == self.tips["M"]
            return
        push(self.sites["L"], self.sites["M"].url)
        self.images["M"] = dict(self.images["L"])
        self.commits["M"] = set(self.commits["L"])
        self.tips["M"] = self.tips["L"]

    @rule()
    def pull(self):
        from improv_vcs.sync.sites import pull

        mine, theirs = self.images["L"], self.images["M"]
        diverged = (
            self.tips["M"] not in self.commits["L"] and self.tips["L"] not in self.commits["M"]
        )
        if diverged and any(i in mine and mine[i][0] != v[0] for i, v in theirs.items()):
            with pytest.raises(ConflictError, match="different bytes"):
                pull(self.sites["L"], self.sites["M"].url)
            assert self.sites["L"].resolve() == self.tips["L"]
            return
        result = pull(self.sites["L"], self.sites["M"].url)
        if self.tips["M"] in self.commits["L"]:
            assert result.action == "up-to-date"
            return
        assert result.action == ("merge" if diverged else "fast-forward")
        mine.update({i: v for i, v in theirs.items() if i not in mine})
        self.commits["L"] |= self.commits["M"] | {result.commit}
        self.tips["L"] = result.commit

    @invariant()
    def sites_match_the_model(self):
        if not hasattr(self, "sites"):
            return
        for name, repo in self.sites.items():
            assert repo.resolve() == self.tips[name]
            assert {oid for oid, _ in repo.log()} == self.commits[name]
            table = repo.snapshot().images()
            assert sorted(table.column("image_id").to_pylist()) == sorted(self.images[name])
            window = (WHEN[TIMES[0]], WHEN[TIMES[1]])
            expected = sum(window[0] <= t < window[1] for _, _, t in self.images[name].values())
            assert repo.snapshot().count(start=window[0], end=window[1]) == expected
        bloom = sum(
            any(inst == i and _time(s) <= t < _time(e) for i, s, e in self.spans)
            for _, inst, t in self.images["L"].values()
        )
        if self.spans:
            assert self.sites["L"].snapshot().count(dataset="bloom") == bloom


TwoSitesMachine.TestCase.settings = settings(
    max_examples=settings.default.max_examples // 2 or 1,
    stateful_step_count=15,
    deadline=None,
)
test_two_sites_state_machine = TwoSitesMachine.TestCase
