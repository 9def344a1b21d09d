"""Crash safety: commit, push, pull, export and gc run in a subprocess
(``tests/crash_worker.py``) that is killed with SIGKILL after a delay
hypothesis picks, covering the whole operation. After every kill:

* ``fsck(full=True)`` is clean for every repository involved;
* every branch resolves to a snapshot whose rows all read back with the
  right bytes, and queries over it agree;
* the state is the operation's before- or after-state, never a mix
  (a commit is all or nothing; a pushed or pulled branch is old or new);
* re-running the operation to completion gives exactly the end state of an
  uninterrupted run.

CI runs a few kills per operation; ``--run-slow`` runs the full harness
(``FULL_KILLS`` per operation, over 200 in all). Set ``CRASH_STATS`` to a
file path to get one JSON line per kill (delay, whether the worker was still
running, which state the kill left).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import crash_worker as w

from improv_vcs import Repository
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.query.export import file_names
from improv_vcs.sync.sites import push

WORKER = Path(w.__file__)
OPERATIONS = list(w.OPS)
CI_KILLS = 3  # per operation: 15 in all
FULL_KILLS = 45  # per operation: 225 in all
OVERSHOOT = 1.15  # delays up to this multiple of the measured duration

# -- building the starting states ----------------------------------------------


def _init_with_base(root: Path) -> Repository:
    repo = Repository.init(root / "site")
    w.append(repo, w.BASE, 0, "base")
    return repo


def _setup_commit(root: Path) -> None:
    _init_with_base(root)


def _setup_push(root: Path) -> None:
    site = _init_with_base(root)
    (root / "remote").mkdir()
    push(site, str(root / "remote"))
    w.append(site, w.COMMIT, 1000, "site work")


def _setup_pull(root: Path) -> None:
    site = _init_with_base(root)
    (root / "remote").mkdir()
    push(site, str(root / "remote"))
    w.append(Repository.open(root / "remote"), w.REMOTE_SIDE, 3000, "remote work")
    w.append(site, w.SITE_SIDE, 2000, "site work")


def _setup_export(root: Path) -> None:
    site = _init_with_base(root)
    w.append(site, w.EXPORTED, 4000, "more")


def _setup_gc(root: Path) -> None:
    """Reachable: BASE and SITE_SIDE. Unreachable: the packs, manifests and
    commit of a transaction that died just before moving its branch, and a
    loose annotated tag no ref names. ``remote``, a copy of the site, has
    that commit on its main: a pull after a killed gc must bring back
    whatever the gc took."""
    from improv_vcs.core.model import Tag
    from improv_vcs.write.commit import Header, write_commit

    site = _init_with_base(root)
    w.append(site, w.SITE_SIDE, 2000, "site work")
    tx = site.transaction(message="died before the branch moved", pack_size=w.PACK_SIZE)
    for start in range(0, len(w.GARBAGE), 40):
        chunk = w.GARBAGE[start : start + 40]
        tx.append_bytes(w.INSTRUMENT, w.rows(chunk, 5000 + start), [w.blob(i) for i in chunk])
    header = Header("t", tx.message, None, site.config.format, site.clock)
    base = [(tx._base.commit_id, tx._base.commit)]
    died = write_commit(site.odb, base, tx._images.write(site.odb), header)
    tip = site.resolve()
    site.odb.put_object(Tag(name="orphan", target=tip, tagger="t", time=w.T0, message="orphan"))
    shutil.copytree(root / "site", root / "remote")
    Repository.open(root / "remote").refs.set_branch("main", tip, died)


def _small_history(site: Repository, prefix: str = "", offset: int = 6000) -> None:
    for number, ids in enumerate(w.SMALL):
        ids = [prefix + i for i in ids]
        with site.transaction(message=f"small {prefix}{number}") as tx:
            tx.append_bytes(
                w.INSTRUMENT, w.rows(ids, offset + 10 * number), [w.blob(i) for i in ids]
            )


def _setup_maintenance(root: Path) -> None:
    """Eighty small commits, the first forty bundled (and those past the
    64th by the automatic run): a run bundles the rest and merges."""
    from improv_vcs.maintenance.repack import maintain

    site = _init_with_base(root)
    _small_history(site)
    maintain(site)
    _small_history(site, "more-", 8000)


def _setup_push_bundles(root: Path) -> None:
    """A remote at the base; the site adds forty small commits, bundled: the
    push sends them as bundles."""
    from improv_vcs.maintenance.repack import maintain

    site = _init_with_base(root)
    (root / "remote").mkdir()
    push(site, str(root / "remote"))
    _small_history(site)
    maintain(site)


SETUP = {
    "commit": _setup_commit,
    "push": _setup_push,
    "pull": _setup_pull,
    "export": _setup_export,
    "gc": _setup_gc,
    "maintenance": _setup_maintenance,
    "push_bundles": _setup_push_bundles,
}

# -- reading states ------------------------------------------------------------


class Inconsistent(AssertionError):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Inconsistent(what)


def verified_ids(path: Path) -> dict[str, tuple[str, set[str]]]:
    """fsck, then every branch: ``branch → (tip, image ids)``, after reading
    every image back and checking that queries agree with the rows."""
    repo = Repository.open(path)
    report = fsck(repo, full=True)
    check(report.ok, f"fsck of {path.name}: {[str(p) for p in report.problems]}")
    out = {}
    for branch, tip in sorted(repo.branches().items()):
        snap = repo.snapshot(branch)
        ids = snap.images().column("image_id").to_pylist()
        check(len(ids) == len(set(ids)), f"{path.name}/{branch}: duplicate image rows")
        for image in ids:
            check(
                snap.read_image(image) == w.blob(image),
                f"{path.name}/{branch}: {image} reads wrong bytes",
            )
        check(
            repo.snapshot(branch).count() == len(ids),
            f"{path.name}/{branch}: count disagrees with rows",
        )
        queried = (
            repo.snapshot(branch).query(instruments=(w.INSTRUMENT,)).column("image_id").to_pylist()
        )
        check(sorted(queried) == sorted(ids), f"{path.name}/{branch}: query disagrees with rows")
        out[branch] = (tip, set(ids))
    return out


def classification_count(path: Path) -> int:
    repo = Repository.open(path)
    return repo.snapshot().provenance_records("classification").num_rows


def export_listing(dest: Path) -> dict[str, bytes]:
    if not dest.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(dest.iterdir())}


def tree_listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@dataclass
class Template:
    root: Path  # the starting state
    reference: Path  # after an uninterrupted run
    duration: float  # seconds from "ready" to "done", uninterrupted
    before: dict  # verified_ids of each repository, at the start
    after: dict  # ... after an uninterrupted run


def repos_of(op: str) -> list[str]:
    return ["site", "remote"] if op in ("push", "pull", "push_bundles") else ["site"]


def run_worker(op: str, root: Path, delay: float | None) -> tuple[bool, bool, float]:
    """Run the worker on ``root``; kill it ``delay`` s after "ready" (None:
    never). Returns (killed, finished the operation, and for an uninterrupted
    run the seconds from "ready" to "done")."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), op, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(WORKER.parent.parent),
    )
    try:
        line = proc.stdout.readline()
        start = time.monotonic()
        assert line.strip() == b"ready", (line, proc.stderr.read())
        killed = False
        elapsed = 0.0
        if delay is not None:
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed = True
        else:  # time the operation itself, not the interpreter's teardown
            line = proc.stdout.readline()
            elapsed = time.monotonic() - start
            assert line.strip() == b"done", (line, proc.stderr.read())
        out, err = proc.communicate(timeout=300)
        out = line + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not killed:
        assert proc.returncode == 0, err.decode()
    return killed, b"done" in out, elapsed


class Harness:
    def __init__(self, base: Path):
        self.base = base
        self.templates: dict[str, Template] = {}

    def template(self, op: str) -> Template:
        if op not in self.templates:
            root = self.base / f"template-{op}"
            root.mkdir()
            SETUP[op](root)
            before = {name: verified_ids(root / name) for name in repos_of(op)}
            reference = self.base / f"reference-{op}"
            durations = []
            for _ in range(3):  # the median of three: the first runs cold
                shutil.rmtree(reference, ignore_errors=True)
                shutil.copytree(root, reference, symlinks=True)
                durations.append(run_worker(op, reference, None)[2])
            after = {name: verified_ids(reference / name) for name in repos_of(op)}
            self.templates[op] = Template(root, reference, sorted(durations)[1], before, after)
        return self.templates[op]

    def run(self, op: str, fraction: float) -> None:
        t = self.template(op)
        work = Path(tempfile.mkdtemp(dir=self.base, prefix=f"{op}-"))
        root = work / "root"
        try:
            shutil.copytree(t.root, root, symlinks=True)
            delay = fraction * t.duration
            killed, finished, _ = run_worker(op, root, delay)
            outcome = CHECK_KILLED[op](t, root)
            self.record(op, delay, t.duration, killed, finished, outcome)
            w.OPS[op](root)  # re-run to completion, in process
            CHECK_END[op](t, root)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def record(self, op, delay, duration, killed, finished, outcome) -> None:
        path = os.environ.get("CRASH_STATS")
        if path:
            line = {
                "op": op,
                "delay": round(delay, 4),
                "duration": round(duration, 4),
                "killed": killed,
                "mid_operation": killed and not finished,
                "outcome": outcome,
            }
            with open(path, "a") as f:
                f.write(json.dumps(line) + "\n")


def state_of(op: str, t: Template, now: dict, name: str) -> str:
    """'before' or 'after' for repository ``name`` (main branch), else fail."""
    got = now[name]["main"][1]
    if got == t.before[name]["main"][1]:
        return "before"
    check(
        got == t.after[name]["main"][1],
        f"{op}: {name} main holds {len(got)} images, neither the before- nor the after-state",
    )
    return "after"


# -- after a kill: consistent, and old or new --------------------------------


def _killed_commit(t: Template, root: Path) -> str:
    now = {"site": verified_ids(root / "site")}
    state = state_of("commit", t, now, "site")
    records = classification_count(root / "site") if state == "after" else 0
    if state == "before":
        check(
            now["site"]["main"][0] == t.before["site"]["main"][0],
            "commit: tip moved but images did not",
        )
    else:
        repo = Repository.open(root / "site")
        _, commit = next(repo.log(limit=1))
        check(
            commit.parents == (t.before["site"]["main"][0],),
            "commit: new tip is not a child of the old",
        )
        check(
            records == len(w.COMMIT), f"commit: images committed but {records} provenance records"
        )
    return state


def _killed_push(t: Template, root: Path) -> str:
    now = {name: verified_ids(root / name) for name in ("site", "remote")}
    check(now["site"] == t.before["site"], "push: the site changed")
    state = state_of("push", t, now, "remote")
    expected = t.before["remote" if state == "before" else "site"]["main"][0]
    check(
        now["remote"]["main"][0] == expected,
        f"push: remote tip is neither old nor the site's ({state})",
    )
    return state


def _killed_pull(t: Template, root: Path) -> str:
    now = {name: verified_ids(root / name) for name in ("site", "remote")}
    check(now["remote"] == t.before["remote"], "pull: the remote changed")
    state = state_of("pull", t, now, "site")
    if state == "before":
        check(
            now["site"]["main"][0] == t.before["site"]["main"][0],
            "pull: site tip moved, images did not",
        )
    else:
        _, commit = next(Repository.open(root / "site").log(limit=1))
        parents = (t.before["site"]["main"][0], t.before["remote"]["main"][0])
        check(
            commit.parents == parents, f"pull: merge parents {commit.parents}, expected {parents}"
        )
    return state


def _expected_export(site: Path) -> dict[str, str]:
    """file name → image id of the whole selection."""
    rows = Repository.open(site).snapshot().images()
    return dict(zip(file_names(rows).to_pylist(), rows.column("image_id").to_pylist()))


def _killed_export(t: Template, root: Path) -> str:
    check(verified_ids(root / "site") == t.before["site"], "export: the repository changed")
    expected = _expected_export(root / "site")
    files = export_listing(root / "export")
    for name, data in files.items():
        if name.startswith("."):
            continue  # an unfinished atomic write: never a visible name
        if name == "metadata.parquet":
            table = pq.read_table(root / "export" / name)
            check(table.num_rows == len(expected), "export: metadata table is incomplete")
            continue
        check(name in expected, f"export: unexpected file {name}")
        check(
            data == w.blob(expected[name]),
            f"export: {name} has wrong bytes (a partial file is visible)",
        )
    visible = [n for n in files if not n.startswith(".")]
    if "metadata.parquet" in visible:
        check(len(visible) == len(expected) + 1, "export: metadata written before every image")
        return "after"
    return "before" if not visible else "partial"


def _killed_gc(t: Template, root: Path) -> str:
    now = verified_ids(root / "site")
    check(now == t.before["site"], "gc: the reachable state changed")
    left = tree_listing(root / "site")
    _pull_after_gc(root)
    return "after" if left == tree_listing(t.reference / "site") else "partial"


def _pull_after_gc(root: Path) -> None:
    """On a copy: a pull of the history the gc was taking brings it all back
    (after a gc --force finishes a killed run, if the pull asks for one)."""
    from improv_vcs import ConflictError
    from improv_vcs.maintenance.gc import gc
    from improv_vcs.sync.sites import pull

    scratch = Path(tempfile.mkdtemp(dir=root.parent, prefix="pull-"))
    try:
        shutil.copytree(root / "site", scratch / "site")
        site = Repository.open(scratch / "site")
        try:
            pull(site, str(root / "remote"))
        except ConflictError as exc:
            check("improv gc --force" in str(exc), f"gc: pull refused without saying why: {exc}")
            gc(site, grace=0, force=True)
            pull(site, str(root / "remote"))
        remote = verified_ids(root / "remote")
        check(
            verified_ids(scratch / "site")["main"] == remote["main"],
            "gc: pull after a killed gc is not whole",
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _killed_maintenance(t: Template, root: Path) -> str:
    check(
        verified_ids(root / "site") == t.before["site"], "maintenance: the reachable state changed"
    )
    left = tree_listing(root / "site")
    if left == tree_listing(t.root / "site"):
        return "before"
    return "after" if left == tree_listing(t.reference / "site") else "partial"


CHECK_KILLED = {
    "commit": _killed_commit,
    "push": _killed_push,
    "pull": _killed_pull,
    "export": _killed_export,
    "gc": _killed_gc,
    "maintenance": _killed_maintenance,
    "push_bundles": _killed_push,
}

# -- after re-running: the end state of an uninterrupted run ---------------------


def _end_commit(t: Template, root: Path) -> None:
    check(
        verified_ids(root / "site")["main"][1] == t.after["site"]["main"][1],
        "commit: end images differ",
    )
    check(
        classification_count(root / "site") == classification_count(t.reference / "site"),
        "commit: end provenance differs",
    )
    history = len(list(Repository.open(root / "site").log()))
    check(
        history == len(list(Repository.open(t.reference / "site").log())),
        "commit: end history differs",
    )


def _end_push(t: Template, root: Path) -> None:
    now = {name: verified_ids(root / name) for name in ("site", "remote")}
    check(now == t.after, "push: end state differs from an uninterrupted push")


def _end_pull(t: Template, root: Path) -> None:
    now = {name: verified_ids(root / name) for name in ("site", "remote")}
    check(now["remote"] == t.after["remote"], "pull: end remote differs")
    check(now["site"]["main"][1] == t.after["site"]["main"][1], "pull: end images differ")
    repo, ref = Repository.open(root / "site"), Repository.open(t.reference / "site")
    check(
        next(repo.log(limit=1))[1].parents == next(ref.log(limit=1))[1].parents,
        "pull: end merge parents differ",
    )
    check(len(list(repo.log())) == len(list(ref.log())), "pull: end history differs")


def _end_export(t: Template, root: Path) -> None:
    check(verified_ids(root / "site") == t.after["site"], "export: the repository changed")
    expected = _expected_export(root / "site")
    files = export_listing(root / "export")
    reference = export_listing(t.reference / "export")
    check(
        set(files) == set(expected) | {"metadata.parquet"},
        f"export: end files differ from the selection: {sorted(set(files) ^ set(expected))[:5]}",
    )
    for name, image in expected.items():
        check(files[name] == w.blob(image), f"export: {name} has wrong bytes")
    table = pq.read_table(root / "export" / "metadata.parquet")
    check(
        table.equals(pq.read_table(t.reference / "export" / "metadata.parquet")),
        "export: end metadata differs",
    )
    check(set(files) == set(reference), "export: end listing differs from an uninterrupted export")


def _end_gc(t: Template, root: Path) -> None:
    check(verified_ids(root / "site") == t.after["site"], "gc: end reachable state differs")
    check(
        tree_listing(root / "site") == tree_listing(t.reference / "site"),
        "gc: end files differ from an uninterrupted gc",
    )


def _end_maintenance(t: Template, root: Path) -> None:
    check(
        verified_ids(root / "site") == t.after["site"], "maintenance: end reachable state differs"
    )
    loose = [
        name for name in tree_listing(root / "site") if name.startswith(("objects/", "packs/"))
    ]
    check(not loose, f"maintenance: {len(loose)} loose file(s) left after a completed run")


CHECK_END = {
    "commit": _end_commit,
    "push": _end_push,
    "pull": _end_pull,
    "export": _end_export,
    "gc": _end_gc,
    "maintenance": _end_maintenance,
    "push_bundles": _end_push,
}

# -- the tests ---------------------------------------------------------------


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("crash"))


def test_worker_reaches_both_states(harness):
    """Sanity: the starting and reference states differ for every operation."""
    for op in OPERATIONS:
        t = harness.template(op)
        if op == "export":
            assert export_listing(t.reference / "export") and not (t.root / "export").exists()
        elif op in ("gc", "maintenance"):
            assert tree_listing(t.reference / "site") != tree_listing(t.root / "site")
            assert t.before == t.after
        else:
            assert t.before != t.after


_SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


def _spread(n: int) -> float:
    """A fraction in [0, OVERSHOOT) from an integer, spread evenly (golden-ratio
    hashing), so hypothesis's preference for small and boundary integers does
    not pile the kills up at delay 0."""
    return ((n + 1) * 0x9E3779B9 % 2**32) / 2**32 * OVERSHOOT


FRACTIONS = st.integers(0, 2**32 - 1).map(_spread)


@pytest.mark.parametrize("op", OPERATIONS)
@settings(max_examples=CI_KILLS, **_SETTINGS)
@given(fraction=FRACTIONS)
def test_killed_operation_leaves_consistent_state(harness, op, fraction):
    harness.run(op, fraction)


@pytest.mark.slow
@pytest.mark.parametrize("op", OPERATIONS)
@settings(max_examples=FULL_KILLS, **_SETTINGS)
@given(fraction=FRACTIONS)
def test_killed_operation_leaves_consistent_state_full(harness, op, fraction):
    harness.run(op, fraction)
