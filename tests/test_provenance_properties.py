"""Provenance records: random classification runs against a plain-Python model
of the query semantics (kinds, conditions, run choice, joined columns),
immutable history, deduplication of re-submitted records, and the open
numeric feature set of ``ifcb_features``."""

from __future__ import annotations

import math
import operator
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from improv_vcs import Repository, add_provenance
from improv_vcs.provenance.kinds import BLOB_COLUMNS, ENVELOPE
from improv_vcs.query.text import parse_provenance, parse_run

DAY0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
INSTRUMENTS = ["IFCB1", "IFCB2"]
RUN_POOL = ["r1", "r2", "r3"]
CLASSES = ["Dino", "ciliate", "detritus", "diatom"]
# values compared with ``winner``: the classes and strings sorting between / around them
WINNER_VALUES = [*CLASSES, "Ab", "d", "zzz"]
# values compared with ``score``: on and off the two-decimal grid, and the ends
SCORE_VALUES = ["0", "0.1", "0.25", "0.5", "0.505", "0.75", "0.99", "1"]
OPS = ["=", "!=", "<", "<=", ">", ">="]
COMPARE = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
KIND = "classification"
JOINED = ["winner", "score", "label", "run_id"]  # score and label may be null
SOURCE = "clf"


def memory_url() -> str:
    return f"memory://prov-{uuid.uuid4().hex}"


def hours(h: float) -> datetime:
    return DAY0 + timedelta(hours=h)


# -- images ------------------------------------------------------------------------

TIMES = st.builds(
    lambda h, m: hours(h) + timedelta(minutes=m), st.integers(0, 47), st.sampled_from([0, 0, 30])
)


@st.composite
def image_sets(draw, min_size: int = 6, max_size: int = 20) -> list[dict]:
    n = draw(st.integers(min_size, max_size))
    return [
        {
            "image_id": f"img{i:02d}",
            "instrument": draw(st.sampled_from(INSTRUMENTS)),
            "timestamp": draw(TIMES),
        }
        for i in range(n)
    ]


def build_images(images: list[dict]) -> Repository:
    repo = Repository.init(memory_url())
    with repo.transaction(message="images") as tx:
        for instrument in INSTRUMENTS:
            rows = [
                {"image_id": r["image_id"], "timestamp": r["timestamp"]}
                for r in images
                if r["instrument"] == instrument
            ]
            if rows:
                tx.append_bytes(
                    instrument, rows, [f"pixels {r['image_id']}".encode() for r in rows]
                )
    assert tx.commit_id is not None
    return repo


# -- classification runs and the model of the records ---------------------------------

SCORES = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.51, 0.75, 0.99, 1.0]) | st.integers(0, 100).map(
    lambda n: round(n / 100, 2)
)


@st.composite
def runs(
    draw, images: list[dict], min_runs: int = 1, max_runs: int = 4, one_score: bool = False
) -> list[tuple[str, list[dict]]]:
    """``(run_id, rows)`` per submission: a subset of the images, each once
    (``one_score``: every record of a submission has the same score)."""
    ids = [r["image_id"] for r in images]
    out = []
    # Hypothesis favours small counts; several runs over the same images are
    # where the run choice matters, so prefer them (1 still comes up)
    counts = [n for n in (2, 3, 4, 1) if min_runs <= n <= max_runs]
    for _ in range(draw(st.sampled_from(counts))):
        run_id = draw(st.sampled_from(RUN_POOL))
        chosen = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=len(ids), unique=True))
        # a few scores per run (sometimes none at all), so that a run's segment
        # often has a narrow score range that a condition can rule out
        pool = draw(st.lists(SCORES, min_size=1, max_size=2)) + draw(st.sampled_from([[], [None]]))
        if one_score:
            pool = [draw(st.sampled_from(pool))]
        rows = [
            {
                "image_id": i,
                "model": "m",
                "winner": draw(st.sampled_from(CLASSES)),
                "score": draw(st.sampled_from(pool)),
                "label": draw(st.none() | st.sampled_from(CLASSES)),
            }
            for i in chosen
        ]
        out.append((run_id, rows))
    return out


def key_of(run_id: str, row: dict) -> tuple:
    """A record's identity in the model (kind and source are fixed)."""
    return (run_id, row["image_id"], row["model"], row["winner"], row["score"], row["label"])


@dataclass(frozen=True)
class Rec:
    image_id: str
    run_id: str
    winner: str
    score: float | None
    label: str | None
    recorded_at: datetime
    record_id: str


def commit_runs(
    repo: Repository, submissions: list[tuple[str, list[dict]]], known: set[tuple]
) -> list[str]:
    """Commit each submission; check that exactly the new records make a
    commit (``known``: the model's record keys, updated). The commit ids made."""
    commits = []
    for run_id, rows in submissions:
        new = {key_of(run_id, r) for r in rows} - known
        commit = add_provenance(repo, KIND, rows, source=SOURCE, run_id=run_id)
        assert (commit is not None) == bool(new), (run_id, rows, new)
        known |= new
        if commit is not None:
            commits.append(commit)
    return commits


def model_records(repo: Repository, known: set[tuple], at: str | None = None) -> list[Rec]:
    """The model's records with their ``recorded_at`` and ``record_id`` taken
    from the repository, after checking that the repository holds exactly the
    model's records (nothing lost, nothing duplicated)."""
    table = repo.snapshot(at).provenance_records(KIND)
    stored = {}
    for row in table.to_pylist():
        assert row["kind"] == KIND and row["source"] == SOURCE
        key = key_of(row["run_id"], row)
        assert key not in stored, f"duplicate record {key}"
        stored[key] = row
    assert set(stored) == known
    return [
        Rec(image, run, winner, score, label, stored[k]["recorded_at"], stored[k]["record_id"])
        for k in sorted(known, key=repr)
        for run, image, _model, winner, score, label in [k]
    ]


# -- queries and their plain-Python reading -------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    kinds: bool
    conditions: tuple[tuple[str, str, str], ...]  # (column, op, value text)
    run: str | None  # None, "latest" or a run id
    run_for_kind: bool  # "classification=RUN" rather than "RUN"
    start: datetime | None
    end: datetime | None
    instruments: tuple[str, ...]
    columns: tuple[str, ...]  # joined classification columns

    def filters(self) -> dict:
        filters: dict = {}
        if self.kinds:
            filters["kinds"] = (KIND,)
        if self.conditions:
            filters["provenance"] = tuple(
                parse_provenance(f"{KIND}.{column} {op} {value}")
                for column, op, value in self.conditions
            )
        if self.run is not None:
            filters["runs"] = (parse_run(f"{KIND}={self.run}" if self.run_for_kind else self.run),)
        if self.start is not None:
            filters["start"] = self.start
        if self.end is not None:
            filters["end"] = self.end
        if self.instruments:
            filters["instruments"] = self.instruments
        if self.columns:
            filters["provenance_columns"] = tuple(f"{KIND}.{c}" for c in self.columns)
        return filters


CONDITIONS = st.one_of(
    st.tuples(st.just("winner"), st.sampled_from(OPS), st.sampled_from(WINNER_VALUES)),
    st.tuples(st.just("score"), st.sampled_from(OPS), st.sampled_from(SCORE_VALUES)),
)
BOUNDS = st.none() | st.builds(hours, st.integers(0, 48))


@st.composite
def queries(draw, with_columns: bool = False) -> Drawn:
    start, end = draw(BOUNDS), draw(BOUNDS)
    if start is not None and end is not None and start >= end:
        start, end = (end, start) if end < start else (start, None)
    return Drawn(
        kinds=draw(st.booleans()),
        conditions=tuple(draw(st.lists(CONDITIONS, max_size=2))),
        run=draw(st.none() | st.just("latest") | st.sampled_from([*RUN_POOL, "r9"])),
        run_for_kind=draw(st.booleans()),
        start=start,
        end=end,
        instruments=tuple(draw(st.sets(st.sampled_from(INSTRUMENTS), max_size=1))),
        columns=tuple(draw(st.lists(st.sampled_from(JOINED), unique=True, max_size=2)))
        if with_columns
        else (),
    )


def holds(record: Rec, condition: tuple[str, str, str]) -> bool:
    column, op, text = condition
    value = getattr(record, column)
    if value is None:  # SQL: no comparison with NULL holds
        return False
    wanted = float(text) if column == "score" else text
    return COMPARE[op](value, wanted)


def selected(records: list[Rec], run: str | None) -> list[Rec]:
    """One image's records under the run choice."""
    if run is None:
        return records
    if run == "latest":
        if not records:
            return []
        last = max(records, key=lambda r: (r.recorded_at, r.run_id)).run_id
        return [r for r in records if r.run_id == last]
    return [r for r in records if r.run_id == run]


def expected(images: list[dict], records: list[Rec], q: Drawn) -> list[tuple[str, dict]]:
    """``(image_id, joined columns)`` of the matching images in query order."""
    filtering = q.kinds or bool(q.conditions) or (q.run is not None and q.run_for_kind)
    uses_kind = filtering or bool(q.columns)
    out = []
    for image in sorted(images, key=lambda r: (r["timestamp"], r["image_id"])):
        if q.instruments and image["instrument"] not in q.instruments:
            continue
        if q.start is not None and not image["timestamp"] >= q.start:
            continue
        if q.end is not None and not image["timestamp"] < q.end:
            continue
        mine = [r for r in records if r.image_id == image["image_id"]]
        match = [
            r
            for r in selected(mine, q.run if uses_kind else None)
            if all(holds(r, c) for c in q.conditions)
        ]
        if filtering and not match:
            continue
        latest = max(match, key=lambda r: (r.recorded_at, r.record_id)) if match else None
        joined = {f"{KIND}.{c}": getattr(latest, c) if latest else None for c in q.columns}
        out.append((image["image_id"], joined))
    return out


def check_query(repo: Repository, images: list[dict], records: list[Rec], q: Drawn) -> None:
    """``repo.query`` gives the model's images, in order, and joined values."""
    filters = q.filters()
    want = expected(images, records, q)
    table = repo.snapshot().query(**filters)
    assert table.column("image_id").to_pylist() == [i for i, _ in want], (filters, records)
    for column in q.columns:
        name = f"{KIND}.{column}"
        assert name in table.column_names, table.column_names
        assert table.column(name).to_pylist() == [j[name] for _, j in want], (
            name,
            filters,
            records,
        )


def check_count(repo: Repository, images: list[dict], records: list[Rec], q: Drawn) -> None:
    """``repo.count`` gives the number of images the model selects."""
    filters = q.filters()
    assert repo.snapshot().count(**filters) == len(expected(images, records, q)), (filters, records)


# -- 1. random runs, random queries ------------------------------------------------


@st.composite
def scenarios(draw, min_runs: int = 1, max_runs: int = 4):
    images = draw(image_sets())
    return images, draw(runs(images, min_runs, max_runs))


_BUILT: OrderedDict[str, tuple[Repository, list[Rec]]] = OrderedDict()


def built(
    images: list[dict], submissions: list[tuple[str, list[dict]]]
) -> tuple[Repository, list[Rec]]:
    """A repository holding the images and runs, and the model's records.
    Queries never write, so a repository is reused while Hypothesis shrinks
    the queries of one scenario (the expensive part is building it)."""
    key = repr((images, submissions))
    if key in _BUILT:
        _BUILT.move_to_end(key)
        return _BUILT[key]
    repo = build_images(images)
    known: set[tuple] = set()
    commit_runs(repo, submissions, known)
    _BUILT[key] = repo, model_records(repo, known)
    while len(_BUILT) > 16:
        _BUILT.popitem(last=False)
    return _BUILT[key]


@given(scenarios(), st.lists(queries(with_columns=True), min_size=6, max_size=6))
def test_queries_match_a_model_of_the_records(scenario, drawn) -> None:
    images, submissions = scenario
    repo, records = built(images, submissions)
    for q in drawn:
        check_query(repo, images, records, q)


@given(scenarios(), st.lists(queries(), min_size=6, max_size=6))
def test_counts_match_a_model_of_the_records(scenario, drawn) -> None:
    images, submissions = scenario
    repo, records = built(images, submissions)
    for q in drawn:
        check_count(repo, images, records, q)


@given(
    image_sets(1, 4).flatmap(
        lambda images: st.tuples(st.just(images), runs(images, 2, 4, one_score=True))
    ),
    st.lists(
        st.builds(
            Drawn,
            kinds=st.booleans(),
            conditions=st.lists(CONDITIONS, min_size=1, max_size=2).map(tuple),
            run=st.just("latest") | st.sampled_from(RUN_POOL),
            run_for_kind=st.booleans(),
            start=st.none(),
            end=st.none(),
            instruments=st.just(()),
            columns=st.lists(st.sampled_from(JOINED), unique=True, max_size=2).map(tuple),
        ),
        min_size=4,
        max_size=4,
    ),
)
def test_run_choice_and_conditions_on_overlapping_runs(scenario, drawn) -> None:
    """Few images, several runs each giving one score to all its records: the
    run choice decides which records the conditions see."""
    images, submissions = scenario
    repo, records = built(images, submissions)
    for q in drawn:
        check_query(repo, images, records, q)
        check_count(repo, images, records, q)


# -- 2. history is immutable ------------------------------------------------------------


@given(scenarios(1, 3), st.data(), st.lists(queries(with_columns=True), min_size=2, max_size=2))
def test_old_commits_answer_the_same_after_more_runs(scenario, data, drawn) -> None:
    images, submissions = scenario
    repo = build_images(images)
    known: set[tuple] = set()
    commit_runs(repo, submissions, known)
    old = repo.resolve()
    old_known = set(known)
    model_records(repo, known)
    filters = [q.filters() for q in drawn]
    tables = [repo.snapshot().query(**f) for f in filters]
    counts = [repo.snapshot().count(**f) for f in filters]
    histories = {i["image_id"]: repo.snapshot().provenance(i["image_id"]) for i in images}
    stored = repo.snapshot().provenance_records(KIND)

    later = commit_runs(repo, data.draw(runs(images, 1, 3)), known)
    assert (repo.resolve() != old) == bool(later)

    for f, table, count in zip(filters, tables, counts, strict=True):
        assert repo.snapshot(old).query(**f).equals(table), f
        assert repo.snapshot(old).count(**f) == count, f
    for image, history in histories.items():
        assert repo.snapshot(old).provenance(image) == history
        assert repo.snapshot(old).provenance(image, KIND) == history
    assert repo.snapshot(old).provenance_records(KIND).equals(stored)
    model_records(repo, old_known, at=old)
    # and the tip holds every record so far
    model_records(repo, known)


# -- 3. deduplication ------------------------------------------------------------------


def count_records(repo: Repository) -> int:
    return repo.snapshot().provenance_records(KIND).num_rows


def contents(rows: list[dict]) -> list[str]:
    """The records' content (what an automatic run id is derived from), in a canonical order."""
    return sorted(repr(key_of("", r)) for r in rows)


@given(scenarios(1, 3), st.data())
def test_resubmitting_records_adds_nothing(scenario, data) -> None:
    images, submissions = scenario
    repo = build_images(images)
    known: set[tuple] = set()
    commit_runs(repo, submissions, known)
    total = count_records(repo)
    assert total == len(known)
    head = repo.resolve()

    # any earlier batch again, same source and run id, in any order
    run_id, rows = data.draw(st.sampled_from(submissions))
    rows = data.draw(st.permutations(rows))
    assert add_provenance(repo, KIND, rows, source=SOURCE, run_id=run_id) is None
    with repo.transaction(message="again") as tx:
        assert tx.add_provenance(KIND, rows, SOURCE, run_id) == 0
    assert tx.commit_id is None
    assert repo.resolve() == head
    assert count_records(repo) == total

    # without a run id: the run is named after the content
    first = data.draw(runs(images, 1, 1))[0][1]
    before = set(repo.snapshot().provenance_records(KIND).column("run_id").to_pylist())
    assert add_provenance(repo, KIND, first, source=SOURCE) is not None
    table = repo.snapshot().provenance_records(KIND)
    auto = set(table.column("run_id").to_pylist()) - before
    assert len(auto) == 1
    (auto_run,) = auto
    assert auto_run.startswith("auto-")
    assert table.num_rows == total + len(first)
    head = repo.resolve()
    again = data.draw(st.permutations(first))
    assert add_provenance(repo, KIND, again, source=SOURCE) is None
    assert repo.resolve() == head
    assert count_records(repo) == total + len(first)

    # different content: a different automatic run
    second = data.draw(runs(images, 1, 1))[0][1]
    same = contents(second) == contents(first)
    commit = add_provenance(repo, KIND, second, source=SOURCE)
    table = repo.snapshot().provenance_records(KIND)
    if same:
        assert commit is None
        assert table.num_rows == total + len(first)
    else:
        assert commit is not None
        new_runs = set(table.column("run_id").to_pylist()) - before - {auto_run}
        assert len(new_runs) == 1 and next(iter(new_runs)).startswith("auto-")
        assert table.num_rows == total + len(first) + len(second)
        theirs = table.filter(pa.compute.equal(table.column("run_id"), next(iter(new_runs))))
        assert contents(theirs.to_pylist()) == contents(second)


# -- 4. ifcb_features: an open set of numeric columns -------------------------------------

RESERVED = {*ENVELOPE, *BLOB_COLUMNS}
FEATURE_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,62}", fullmatch=True).filter(
    lambda n: n not in RESERVED
)
FLOAT_VALUES = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=False, width=64),
    st.just(float("nan")),
    st.integers(-(2**53), 2**53).map(float),
)
INT_VALUES = st.none() | st.integers(-(2**53), 2**53)  # exactly representable as float64


@st.composite
def feature_batches(
    draw, images: list[dict]
) -> list[tuple[str, dict[str, pa.DataType], list[dict]]]:
    """``(run_id, feature name → input type, rows)`` per submission; names may
    repeat across submissions (same column) or be new (schema evolution)."""
    ids = [r["image_id"] for r in images]
    pool = draw(st.lists(FEATURE_NAMES, min_size=1, max_size=8, unique=True))
    out = []
    for n in range(draw(st.integers(1, 2))):
        names = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
        types = {name: draw(st.sampled_from([pa.float64(), pa.int64()])) for name in names}
        chosen = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=len(ids), unique=True))
        rows = [
            {
                "image_id": i,
                **{
                    name: draw(FLOAT_VALUES if pa.types.is_floating(kind) else INT_VALUES)
                    for name, kind in types.items()
                },
            }
            for i in chosen
        ]
        out.append((f"f{n}", types, rows))
    return out


def as_table(types: dict[str, pa.DataType], rows: list[dict]) -> pa.Table:
    columns = {"image_id": pa.array([r["image_id"] for r in rows], pa.string())}
    columns.update({name: pa.array([r[name] for r in rows], kind) for name, kind in types.items()})
    return pa.table(columns)


def same_value(got: float | None, want: float | None) -> bool:
    if want is None or math.isnan(want):
        return got is None
    return isinstance(got, float) and got == want  # numeric features are stored as float64


@given(image_sets(1, 6).flatmap(lambda images: st.tuples(st.just(images), feature_batches(images))))
def test_ifcb_features_round_trip(scenario) -> None:
    images, batches = scenario
    repo = build_images(images)
    for run_id, types, rows in batches:
        commit = add_provenance(
            repo, "ifcb_features", as_table(types, rows), source="ifcb", run_id=run_id
        )
        assert commit is not None
    table = repo.snapshot().provenance_records("ifcb_features")
    every = {name for _, types, _ in batches for name in types}
    assert every <= set(table.column_names)
    for name in every:
        assert table.schema.field(name).type == pa.float64(), (name, table.schema)
    assert table.num_rows == sum(len(rows) for _, _, rows in batches)
    stored = {(r["run_id"], r["image_id"]): r for r in table.to_pylist()}
    assert len(stored) == table.num_rows
    for run_id, _types, rows in batches:
        for row in rows:
            got = stored[(run_id, row["image_id"])]
            assert got["kind"] == "ifcb_features" and got["source"] == "ifcb"
            for name in every:
                want = row.get(name)
                assert same_value(got[name], want), (name, got[name], want)
    for run_id, _types, rows in batches:
        records = repo.snapshot().provenance_records("ifcb_features", run=run_id)
        assert sorted(records.column("image_id").to_pylist()) == sorted(r["image_id"] for r in rows)
