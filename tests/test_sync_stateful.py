"""A hypothesis state machine drives two sites, A and B, that share a remote R
(all in-memory repositories: R made by ``Repository.init``, A and B cloned
from it, each also knowing the other as remote ``peer``), next to a small
pure-Python model of what each of them should hold.

Sites commit small batches of images (ids from a pool of 8, so sites collide;
rarely, or through ``commit_divergent``, with site-specific bytes, so merges
conflict), add classification records (sometimes the very records the other
site has), push, pull and fetch. The model predicts every outcome: a push
succeeds iff the target's branch is an ancestor of the site's; a pull is
up-to-date, a fast-forward, a merge (the union of both snapshots) or, exactly
when one image id holds different bytes on the two sides, a conflict that
moves and writes nothing. After every step each repository's branch, history,
images, bytes, records (no duplicates) and ``latest``-run query must match the
model, and every reachable commit must have its parents and objects ("fsck").
The ``sync_all`` rule (A pulls, pushes; B pulls, pushes; A pulls) must fail
only when the model says A and B conflict; otherwise A, B and R end on one
commit and A and B answer queries identically.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import hypothesis.strategies as st
import pytest
from hypothesis import event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from improv_vcs import ConflictError, InvalidInputError, Repository, add_provenance
from improv_vcs.provenance import view
from improv_vcs.query.text import parse_run
from improv_vcs.storage.closure import commit_objects
from improv_vcs.storage.packs import index_key, pack_key
from improv_vcs.sync.sites import clone, fetch, pull, push

IDS = [f"img{i:02d}" for i in range(8)]
SITES = ("A", "B")
REMOTES = ("origin", "peer")  # peer: the other site
WINNERS = ("Diatom", "Ciliate", "Dino")
SCORES = (0.5, 0.9)
RUNS = ("r1", "r2")
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
AUTHOR = "tester"
LATEST_WINNER = {"provenance_columns": ("classification.winner",), "runs": (parse_run("latest"),)}
MAIN = "main"


def canonical(image: str) -> bytes:
    return b"image " + image.encode()


def divergent(image: str, site: str) -> bytes:
    return b"other " + image.encode() + site.encode()


def row(image: str) -> dict:
    """The same metadata for an id everywhere: only the bytes may differ."""
    return {"image_id": image, "timestamp": T0 + timedelta(minutes=int(image[3:]))}


# (image, divergent bytes?) pairs; divergent is rare (and shrinks to False)
batches = st.lists(
    st.tuples(st.sampled_from(IDS), st.sampled_from([False] * 9 + [True])),
    min_size=1,
    max_size=3,
    unique_by=lambda pair: pair[0],
)
# (which image, winner, score, run); the image index is taken modulo the
# site's present images, unless ``stray`` asks for any id of the pool
record_picks = st.lists(
    st.tuples(
        st.integers(0, len(IDS) - 1),
        st.sampled_from(WINNERS),
        st.sampled_from(SCORES),
        st.sampled_from(RUNS),
    ),
    min_size=1,
    max_size=2,
)


class Model:
    """What one repository should hold."""

    def __init__(self, images: dict[str, bytes], records: dict[tuple, datetime], tip: str):
        self.images = dict(images)  # image id → bytes
        self.records = dict(records)  # (image, winner, score, run) → recorded_at
        self.tip = tip

    def copy(self) -> Model:
        return Model(self.images, self.records, self.tip)

    def conflicts(self, other: Model) -> list[str]:
        return sorted(i for i, data in self.images.items() if other.images.get(i, data) != data)


class SyncMachine(RuleBasedStateMachine):
    @initialize()
    def create_sites(self):
        self.root = f"memory://improv-sync-{uuid.uuid4().hex}"
        self.urls = {name: f"{self.root}/{name}" for name in ("R", *SITES)}
        remote = Repository.init(self.urls["R"])
        with remote.transaction(message="initial", author=AUTHOR) as tx:
            first = IDS[:1]
            tx.append_bytes("IFCB1", [row(i) for i in first], [canonical(i) for i in first])
        tip = tx.commit_id
        assert tip is not None
        self.urls["R"] = self.serve(self.urls["R"])
        self.parents: dict[str, tuple[str, ...]] = {tip: ()}  # the model's commit graph
        self.model = {"R": Model({i: canonical(i) for i in first}, {}, tip)}
        self.sites: dict[str, Repository] = {}
        for name in SITES:
            site, result = clone(self.urls["R"], self.urls[name])
            assert (result.action, result.commit) == ("cloned", tip)
            assert site.remotes.all()["origin"].url == self.urls["R"]
            self.sites[name] = site
            self.model[name] = self.model["R"].copy()
        for name, other in (("A", "B"), ("B", "A")):
            self.sites[name].remotes.add("peer", self.urls[other])
        self.record_ids: dict[tuple, str] = {}  # identity → record id (the same at every site)
        self.last_recorded: datetime | None = None
        # what was already read back (see the invariants): commits, contents, A+B answers
        self.verified: dict[str, set] = {name: set() for name in (*self.urls, "A+B")}

    def serve(self, url: str) -> str:
        """The URL the sites reach the shared remote at: its store itself here."""
        return url

    def teardown(self):
        if hasattr(self, "root"):
            import fsspec

            fs = fsspec.filesystem("memory")
            path = fs._strip_protocol(self.root)
            if fs.exists(path):
                fs.rm(path, recursive=True)

    # -- helpers -----------------------------------------------------------------
    def ancestors(self, tip: str) -> set[str]:
        seen, todo = {tip}, [tip]
        while todo:
            for parent in self.parents[todo.pop()]:
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    def target(self, site: str, remote: str) -> str:
        """The model name of the repository ``remote`` names at ``site``."""
        return "R" if remote == "origin" else next(s for s in SITES if s != site)

    def branch_of(self, name: str) -> str | None:
        return Repository.open(self.urls[name]).refs.branch(MAIN)

    def data_keys(self, name: str) -> set[str]:
        store = Repository.open(self.urls[name]).store
        return set(store.list("objects/")) | set(store.list("packs/"))

    # -- rules -------------------------------------------------------------------
    @rule(site=st.sampled_from(SITES), batch=batches)
    def commit(self, site, batch):
        self.do_commit(site, batch)

    @rule(site=st.sampled_from(SITES), k=st.integers(0, len(IDS) - 1))
    def commit_divergent(self, site, k):
        """One image with bytes only this site has, preferably under an id the
        other site already holds: a conflict waiting to happen."""
        other = next(s for s in SITES if s != site)
        mine = self.model[site].images
        candidates = sorted(set(self.model[other].images) - set(mine)) or IDS
        self.do_commit(site, [(candidates[k % len(candidates)], True)])

    def do_commit(self, site: str, batch: list[tuple[str, bool]]) -> None:
        repo, model = self.sites[site], self.model[site]
        data = {i: divergent(i, site) if odd else canonical(i) for i, odd in batch}
        ids = [i for i, _ in batch]
        tx = repo.transaction(message=f"commit at {site}", author=AUTHOR)
        clash = [i for i in ids if i in model.images and model.images[i] != data[i]]
        if clash:
            with pytest.raises(ConflictError, match="already committed with different bytes"):
                tx.append_bytes("IFCB1", [row(i) for i in ids], [data[i] for i in ids])
            assert self.branch_of(site) == model.tip
            event("commit: conflict")
            return
        added = tx.append_bytes("IFCB1", [row(i) for i in ids], [data[i] for i in ids])
        new = {i: data[i] for i in ids if i not in model.images}
        assert added == len(new)
        commit_id = tx.commit()
        if not new:
            assert commit_id is None  # re-adding identical images is a no-op
            assert self.branch_of(site) == model.tip
            return
        assert commit_id is not None and repo.odb.get_commit(commit_id).parents == (model.tip,)
        self.parents[commit_id] = (model.tip,)
        model.images.update(new)
        model.tip = commit_id
        event("commit: committed")

    @rule(
        site=st.sampled_from(SITES),
        picks=record_picks,
        how=st.sampled_from(["present"] * 6 + ["echo"] * 3 + ["stray"]),
    )
    def add_provenance(self, site, picks, how):
        """Classification records for images of this site (``stray``: any id of
        the pool; ``echo``: records the other site has, identical, where the
        image is here too)."""
        repo, model = self.sites[site], self.model[site]
        present = sorted(model.images)
        other = self.model[next(s for s in SITES if s != site)]
        echoes = sorted(r for r in other.records if r[0] in model.images)
        wanted = []
        for k, winner, score, run in picks:
            if how == "echo" and echoes:
                image, winner, score, run = echoes[k % len(echoes)]
            else:
                image = IDS[k] if how == "stray" else present[k % len(present)]
            wanted.append(
                {"image_id": image, "winner": winner, "score": score, "model": "m", "run": run}
            )
        # one submission has one run id: the first pick's
        run = wanted[0]["run"]
        records = [{k: v for k, v in r.items() if k != "run"} for r in wanted]
        identities = {(r["image_id"], r["winner"], r["score"], run) for r in records}
        if any(r["image_id"] not in model.images for r in records):
            with pytest.raises(InvalidInputError, match="refer to images not in"):
                add_provenance(
                    repo, "classification", records, source="clf", run_id=run, author=AUTHOR
                )
            assert self.branch_of(site) == model.tip
            return
        commit_id = add_provenance(
            repo, "classification", records, source="clf", run_id=run, author=AUTHOR
        )
        new = identities - set(model.records)
        if not new:
            assert commit_id is None  # every record was already there
            assert self.branch_of(site) == model.tip
            return
        assert commit_id is not None and repo.odb.get_commit(commit_id).parents == (model.tip,)
        table = repo.snapshot().provenance_records("classification")
        found = {
            (r["image_id"], r["winner"], r["score"], r["run_id"]): r for r in table.to_pylist()
        }
        stamps = {found[i]["recorded_at"] for i in new}
        assert len(stamps) == 1, stamps  # one submission, one time
        (stamp,) = stamps
        if self.last_recorded is not None:
            assert stamp > self.last_recorded  # recorded_at increases
        self.last_recorded = stamp
        for identity in new:
            record_id = found[identity]["record_id"]
            assert self.record_ids.setdefault(identity, record_id) == record_id
            model.records[identity] = stamp
        self.parents[commit_id] = (model.tip,)
        model.tip = commit_id

    def do_push(self, site: str, remote: str) -> bool:
        """Push ``site`` to ``remote``; True unless refused (as predicted)."""
        mine, dest = self.model[site], self.target(site, remote)
        theirs = self.model[dest]
        if theirs.tip not in self.ancestors(mine.tip):
            before = self.data_keys(dest)
            with pytest.raises(ConflictError, match="not a fast-forward"):
                push(self.sites[site], remote)
            assert self.branch_of(dest) == theirs.tip
            assert self.data_keys(dest) == before  # refused before anything travelled
            event("push: refused")
            return False
        result = push(self.sites[site], remote)
        expected = "up-to-date" if theirs.tip == mine.tip else "pushed"
        assert (result.action, result.commit) == (expected, mine.tip)
        assert self.sites[site].remotes.tracking(remote)[MAIN] == mine.tip
        self.model[dest] = mine.copy()
        event(f"push: {result.action}")
        return True

    def do_pull(self, site: str, remote: str) -> bool:
        """Pull ``remote`` into ``site``; True unless a conflict (as predicted)."""
        mine, source = self.model[site], self.target(site, remote)
        theirs = self.model[source]
        repo = self.sites[site]
        ours_history = self.ancestors(mine.tip)
        if theirs.tip in ours_history:
            expected = "up-to-date"
        elif mine.tip in self.ancestors(theirs.tip):
            expected = "fast-forward"
        else:
            expected = "merge"
            clash = mine.conflicts(theirs)
            if clash:
                fetch(
                    repo, remote
                )  # the fetch half of the pull, done first to watch the merge alone
                before = self.data_keys(site)
                with pytest.raises(ConflictError, match="hold different bytes") as info:
                    pull(repo, remote, author=AUTHOR)
                assert all(i in str(info.value) for i in clash)
                assert self.branch_of(site) == mine.tip
                assert repo.remotes.tracking(remote)[MAIN] == theirs.tip
                assert self.data_keys(site) == before  # a conflicting merge writes nothing
                event("pull: conflict")
                return False
        result = pull(repo, remote, author=AUTHOR)
        assert result.action == expected, (result.action, expected)
        event(f"pull: {expected}")
        assert repo.remotes.tracking(remote)[MAIN] == theirs.tip
        if expected == "fast-forward":
            assert result.commit == theirs.tip
            self.model[site] = theirs.copy()
        elif expected == "merge":
            merged = result.commit
            assert repo.odb.get_commit(merged).parents == (mine.tip, theirs.tip)
            self.parents[merged] = (mine.tip, theirs.tip)
            mine.images = {**theirs.images, **mine.images}
            # a record both sides have keeps ours: the merge appends only what theirs adds
            mine.records = {**theirs.records, **mine.records}
            mine.tip = merged
        else:
            assert result.commit == mine.tip
        assert self.branch_of(site) == self.model[site].tip
        return True

    @rule(site=st.sampled_from(SITES), remote=st.sampled_from(REMOTES))
    def push_to(self, site, remote):
        self.do_push(site, remote)

    @rule(
        site=st.sampled_from(SITES),
        remote=st.sampled_from(REMOTES),
        only_fetch=st.sampled_from([False] * 3 + [True]),
    )
    def pull_from(self, site, remote, only_fetch):
        if not only_fetch:
            self.do_pull(site, remote)
            return
        result = fetch(self.sites[site], remote)
        source = self.model[self.target(site, remote)]
        assert result.action == "fetched"
        assert self.sites[site].remotes.tracking(remote) == {MAIN: source.tip}
        assert self.branch_of(site) == self.model[site].tip  # no local branch moves

    @rule()
    def sync_all(self):
        """A pulls and pushes, B pulls and pushes, A pulls: unless the model
        says the two sites hold one id with different bytes, both converge."""
        conflict = bool(self.model["A"].conflicts(self.model["B"]))
        outcomes = [
            self.do_pull(site, "origin") if step == "pull" else self.do_push(site, "origin")
            for site, step in (
                ("A", "pull"),
                ("A", "push"),
                ("B", "pull"),
                ("B", "push"),
                ("A", "pull"),
            )
        ]
        assert all(outcomes) == (not conflict)
        event(f"sync all: {'conflict' if conflict else 'converged'}")
        if conflict:
            return
        a, b = (Repository.open(self.urls[s]) for s in SITES)
        tip = a.refs.branch(MAIN)
        assert tip == b.refs.branch(MAIN) == self.branch_of("R")
        if tip not in self.verified["A+B"]:  # (the invariants check each answer against the model)
            assert a.snapshot().query().to_pylist() == b.snapshot().query().to_pylist()
            assert (
                a.snapshot().query(**LATEST_WINNER).to_pylist()
                == b.snapshot().query(**LATEST_WINNER).to_pylist()
            )
            self.verified["A+B"].add(tip)

    def latest_winners(self, name: str) -> dict[str, str | None]:
        """Per image, the winner the ``latest`` run choice should give: the run
        recorded last (ties: the greater run id), then its most recent record
        (ties: the greater record id)."""
        model = self.model[name]
        out: dict[str, str | None] = {}
        for image in model.images:
            mine = [
                (stamp, identity)
                for identity, stamp in model.records.items()
                if identity[0] == image
            ]
            if not mine:
                out[image] = None
                continue
            run = max((stamp, identity[3]) for stamp, identity in mine)[1]
            same_run = [(stamp, self.record_ids[i], i[1]) for stamp, i in mine if i[3] == run]
            out[image] = max(same_run)[2]
        return out

    # -- invariants ----------------------------------------------------------------
    # Objects are immutable and content-addressed, so what a commit holds is
    # read back once per repository (``self.verified``); refs, history and the
    # presence of every object are checked after every step.
    @invariant()
    def repositories_match_the_model(self):
        for name, model in self.model.items():
            repo = Repository.open(self.urls[name])  # fresh: no cache hides a missing object
            assert repo.refs.branch(MAIN) == model.tip, name
            if ("content", model.tip) in self.verified[name]:
                continue
            table = repo.snapshot().images()
            ids = table.column("image_id").to_pylist()
            assert sorted(ids) == sorted(model.images), name  # and no id twice
            assert {r["image_id"]: r["timestamp"] for r in table.to_pylist()} == {
                i: row(i)["timestamp"] for i in model.images
            }
            for image, data in model.images.items():
                assert repo.snapshot().read_image(image) == data, (name, image)
            records = repo.snapshot().provenance_records("classification").to_pylist()
            seen = Counter((r["image_id"], r["winner"], r["score"], r["run_id"]) for r in records)
            assert not [k for k, n in seen.items() if n > 1], (name, seen)  # no duplicates
            assert set(seen) == set(model.records), name
            for r in records:
                identity = (r["image_id"], r["winner"], r["score"], r["run_id"])
                assert r["recorded_at"] == model.records[identity], (name, identity)
                assert r["record_id"] == self.record_ids[identity], (name, identity)
            answer = repo.snapshot().query(**LATEST_WINNER).to_pylist()
            by_time = sorted(model.images, key=lambda i: (row(i)["timestamp"], i))
            assert [r["image_id"] for r in answer] == by_time, name
            winners = {r["image_id"]: r["classification.winner"] for r in answer}
            assert winners == self.latest_winners(name), name
            self.verified[name].add(("content", model.tip))

    @invariant()
    def every_reachable_commit_is_complete(self):
        """fsck: each commit reachable from every branch has its parents and
        objects, and its manifests and provenance segments load; the history
        is exactly the model's."""
        for name in self.urls:
            repo = Repository.open(self.urls[name])
            for branch, tip in repo.branches().items():
                assert branch == MAIN
                reachable = {}
                for oid, commit in repo.log(branch):
                    reachable[oid] = commit
                assert set(reachable) == self.ancestors(tip), name
                for oid, commit in reachable.items():
                    for parent in commit.parents:
                        assert repo.odb.has(parent), (name, oid, parent)
                    loose, packs = commit_objects(commit)
                    for other in loose:
                        assert repo.odb.has(other), (name, oid, other)
                    for pack in packs:
                        assert repo.store.exists(index_key(pack)), (name, oid, pack)
                        assert repo.store.exists(pack_key(pack)), (name, oid, pack)
                    if oid in self.verified[name]:
                        continue
                    snapshot = repo.snapshot(oid).reader
                    for manifest_id in snapshot.batches.column("manifest").to_pylist():
                        snapshot.manifest(manifest_id)
                    view.read(snapshot, snapshot.provenance_segments.column("id").to_pylist())
                    self.verified[name].add(oid)


# Each example builds three sites and syncs them up to 20 times: half the
# profile's examples keep the suite inside its time (the thorough profile runs 500).
SyncMachine.TestCase.settings = settings(
    max_examples=max(1, settings.default.max_examples // 2), stateful_step_count=20, deadline=None
)
test_sync_state_machine = SyncMachine.TestCase
