"""Queries: random histories and random queries against a plain-Python model,
time travel, batch pruning, option parsing, hostile inputs and the raw
DuckDB connection."""

from __future__ import annotations

import operator
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import duckdb
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from improv_vcs import InvalidInputError, NotFoundError, Repository, add_dataset_span
from improv_vcs.core.times import parse_time
from improv_vcs.query.filters import Query, Where, build_query
from improv_vcs.query.text import parse_bbox, parse_depth, parse_where

DAY0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
INSTRUMENTS = ["IFCB1", "IFCB2", "scope-a"]
DATASETS = ["ds1", "ds2"]
SAMPLES = ["S1", "S2", "S3"]
LAT_GRID = [-30.0, -10.0, 0.0, 10.0, 30.0]
LON_GRID = [-120.0, -60.0, 0.0, 60.0, 120.0]
DEPTH_GRID = [0.0, 5.0, 10.0, 20.0, 40.0]
SCORES = [-3, -1.5, 0, 1, 2.5, 3]
NOTES = ["alpha", "beta", "a_b", "50%", "x' OR 1=1 --", "S1"]
# values compared with text columns, and LIKE patterns
TEXT_VALUES = [*NOTES, *SAMPLES, *INSTRUMENTS, "a1", "b2", "Z0", "", "zzz"]
LIKE_PATTERNS = [
    "a%",
    "%a",
    "%e%",
    "_eta",
    "%",
    "alpha",
    "a_b",
    "5%",
    "S_",
    "%1",
    "IFCB%",
    "%-%",
    "x'%",
]
OPS = ["=", "!=", "<", "<=", ">", ">=", "like"]
NUMERIC = {"lat", "lon", "depth", "score"}
TEXT = {"image_id", "instrument", "sample_id", "note"}
MODEL_COLUMNS = [
    "image_id",
    "instrument",
    "timestamp",
    "lat",
    "lon",
    "depth",
    "sample_id",
    "media_type",
]
EXTRAS = ["score", "note"]


def memory_url() -> str:
    return f"memory://query-{uuid.uuid4().hex}"


def blob(image: str) -> bytes:
    return f"pixels of {image}".encode()


def hours(h: float) -> datetime:
    return DAY0 + timedelta(hours=h)


# -- the model -------------------------------------------------------------------


@dataclass
class State:
    """What the repository holds at one commit."""

    rows: list[dict] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)  # image ids per batch
    datasets: dict[str, frozenset[tuple[str, datetime, datetime]]] = field(default_factory=dict)
    extras: frozenset[str] = frozenset()

    def columns(self) -> list[str]:
        return [*MODEL_COLUMNS, *sorted(self.extras)]


def like(value: str, pattern: str) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


_COMPARE = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def holds(row: dict, condition: Where) -> bool:
    value = row.get(condition.column)
    if value is None:  # SQL: a comparison with NULL is never true
        return False
    wanted = condition.value
    if condition.op == "like":
        return like(value, str(wanted))
    if condition.column in NUMERIC:
        wanted = float(wanted)
    elif condition.column == "timestamp":
        wanted = parse_time(str(wanted))
    return _COMPARE[condition.op](value, wanted)


def matches(row: dict, query: Query, state: State) -> bool:
    """The plain-Python reading of every filter of ``query``."""
    if query.instruments and row["instrument"] not in query.instruments:
        return False
    if query.start is not None and not row["timestamp"] >= query.start:
        return False
    if query.end is not None and not row["timestamp"] < query.end:
        return False
    if query.bbox is not None:
        lat_min, lon_min, lat_max, lon_max = query.bbox
        if row["lat"] is None or not lat_min <= row["lat"] <= lat_max:
            return False
        if row["lon"] is None or not lon_min <= row["lon"] <= lon_max:
            return False
    if query.depth is not None:
        low, high = query.depth
        if low is not None and (row["depth"] is None or row["depth"] < low):
            return False
        if high is not None and (row["depth"] is None or row["depth"] > high):
            return False
    if query.dataset is not None:
        spans = state.datasets[query.dataset]
        if not any(i == row["instrument"] and s <= row["timestamp"] < e for i, s, e in spans):
            return False
    if query.samples and row["sample_id"] not in query.samples:
        return False
    return all(holds(row, c) for c in query.where)


def expected_rows(state: State, query: Query) -> list[dict]:
    """Matching rows in query order (time, then image id), before any limit."""
    found = [r for r in state.rows if matches(r, query, state)]
    return sorted(found, key=lambda r: (r["timestamp"], r["image_id"]))


# -- random histories --------------------------------------------------------------

# a coarse grid over three days, so that equal times and exact boundaries are common
TIMES = st.builds(
    lambda h, m: hours(h) + timedelta(minutes=m),
    st.integers(0, 11).map(lambda n: 6 * n),
    st.sampled_from([0, 0, 30, 59]),
)
BOUNDS = TIMES | st.builds(hours, st.integers(0, 72))
OFFSETS = st.sampled_from(
    [timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7, minutes=-30))]
)
# mostly on the grids queries use, so that boundaries are hit exactly
LATS = st.sampled_from([None, *LAT_GRID, *LAT_GRID]) | st.floats(-90, 90)
LONS = st.sampled_from([None, *LON_GRID, *LON_GRID]) | st.floats(-180, 180)
DEPTHS = st.sampled_from([None, *DEPTH_GRID, *DEPTH_GRID]) | st.floats(-10, 100)


@st.composite
def batch_rows(draw, counter: list[int], extras: frozenset[str]) -> list[dict]:
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        counter[0] += 1
        row = {
            "image_id": draw(st.sampled_from(["a", "b", "Z", "m-"])) + str(counter[0]),
            "timestamp": draw(TIMES),
            "lat": draw(LATS),
            "lon": draw(LONS),
            "depth": draw(DEPTHS),
            "sample_id": draw(st.none() | st.sampled_from(SAMPLES)),
        }
        if "score" in extras:
            row["score"] = draw(st.none() | st.sampled_from(SCORES))
        if "note" in extras:
            row["note"] = draw(st.none() | st.sampled_from(NOTES))
        rows.append(row)
    return rows


@dataclass
class History:
    steps: list[tuple]  # ("images", [(instrument, rows)]) or ("span", name, instrument, start, end)
    states: list[State]  # one per commit, oldest first
    noops: list[bool]  # per step: True when it makes no commit (a span already there)


def apply(current: State, step: tuple) -> State | None:
    """The state after ``step``; None when it changes nothing (no commit)."""
    if step[0] == "span":
        _, name, instrument, start, end = step
        spans = current.datasets.get(name, frozenset())
        if (instrument, start, end) in spans:
            return None
        datasets = {**current.datasets, name: spans | {(instrument, start, end)}}
        return State(current.rows, current.batches, datasets, current.extras)
    rows = list(current.rows)
    extras = set(current.extras)
    for instrument, new in step[1]:
        extras |= {c for r in new for c in r if c in EXTRAS}
        rows += [
            {"instrument": instrument, "media_type": None, "score": None, "note": None, **r}
            for r in new
        ]
    batches = current.batches + [[r["image_id"] for r in new] for _, new in step[1]]
    return State(rows, batches, current.datasets, frozenset(extras))


def replay(steps: list[tuple]) -> History:
    current, states, noops = State(), [], []
    for step in steps:
        after = apply(current, step)
        noops.append(after is None)
        if after is not None:
            current = after
            states.append(current)
    return History(steps, states, noops)


@st.composite
def histories(draw) -> History:
    counter = [0]
    steps: list[tuple] = []
    current = State()
    for number in range(draw(st.integers(1, 5))):
        if number > 0 and draw(st.booleans()):
            name = draw(st.sampled_from(DATASETS))
            # often bounded by, and of the instrument of, images already there
            instrument = draw(
                st.sampled_from(sorted({r["instrument"] for r in current.rows}))
                | st.sampled_from(INSTRUMENTS)
            )
            times = (
                st.sampled_from(
                    [r["timestamp"] for r in current.rows if r["instrument"] == instrument]
                    or [DAY0]
                )
                | BOUNDS
            )
            start, end = draw(times), draw(times)
            if end <= start:
                start, end = (
                    (end, start)
                    if end < start
                    else (start, start + timedelta(hours=draw(st.integers(1, 30))))
                )
            step: tuple = ("span", name, instrument, start, end)
        else:
            batches = []
            for _ in range(draw(st.integers(1, 2))):
                instrument = draw(st.sampled_from(INSTRUMENTS))
                extras = frozenset(draw(st.sets(st.sampled_from(EXTRAS))))
                batches.append((instrument, draw(batch_rows(counter, extras))))
            step = ("images", batches)
        steps.append(step)
        current = apply(current, step) or current
    return replay(steps)


_BUILT: OrderedDict[str, tuple[Repository, list[str]]] = OrderedDict()


def build(history: History) -> tuple[Repository, list[str]]:
    """A memory repository holding ``history``, and its commit ids, oldest
    first. Queries never write, so a repository is reused while Hypothesis
    shrinks the queries of one history."""
    key = repr(history.steps)
    if key in _BUILT:
        _BUILT.move_to_end(key)
        return _BUILT[key]
    repo = Repository.init(memory_url())
    commits = []
    for step, noop in zip(history.steps, history.noops):
        if step[0] == "images":
            with repo.transaction(message="images") as tx:
                for instrument, rows in step[1]:
                    tx.append_bytes(instrument, rows, [blob(r["image_id"]) for r in rows])
            assert tx.commit_id is not None
            commits.append(tx.commit_id)
        else:
            _, name, instrument, start, end = step
            made = add_dataset_span(repo, name, instrument, start, end)
            assert (made is None) == noop
            if made is not None:
                commits.append(made)
    assert len(commits) == len(history.states)
    _BUILT[key] = repo, commits
    while len(_BUILT) > 8:
        _BUILT.popitem(last=False)
    return repo, commits


# -- random queries ------------------------------------------------------------------


def _text_value(value: str, quote: str | None) -> str:
    if quote or value != value.strip() or not value:
        quote = quote or "'"
        return f"{quote}{value}{quote}"
    return value


def present(state: State, column: str, grid: list) -> st.SearchStrategy:
    """A value of ``column`` that some row holds, or one from ``grid``."""
    held = sorted({r[column] for r in state.rows if r.get(column) is not None}, key=repr)
    return st.sampled_from(held) | st.sampled_from(grid) if held else st.sampled_from(grid)


@st.composite
def where_texts(draw, state: State) -> str:
    """``COLUMN OP VALUE`` text, well typed for the column."""
    column = draw(
        st.sampled_from(
            ["lat", "lon", "depth", "timestamp", *sorted(TEXT - {"note"}), *sorted(state.extras)]
        )
    )
    quote = draw(st.sampled_from([None, "'", '"']))
    if column in TEXT:
        op = draw(st.sampled_from(OPS))
        value = draw(
            st.sampled_from(LIKE_PATTERNS) if op == "like" else present(state, column, TEXT_VALUES)
        )
        text = _text_value(value, quote)
    else:
        op = draw(st.sampled_from(OPS[:-1]))
        if column == "timestamp":
            text = (
                draw(present(state, "timestamp", [hours(0)]) | BOUNDS)
                .astimezone(draw(OFFSETS))
                .isoformat()
            )
        else:
            grid = {"lat": LAT_GRID, "lon": LON_GRID, "depth": DEPTH_GRID, "score": SCORES}[column]
            text = repr(draw(present(state, column, grid)))
        if quote:
            text = f"{quote}{text}{quote}"
    spaced = draw(st.sampled_from(["{} {} {}", "{}{}{}", "  {}  {}  {}  "]))
    if op == "like":
        spaced = spaced.replace("}{", "} {").replace("{}{", "{} {")
        op = draw(st.sampled_from(["like", "LIKE", "Like"]))
    return spaced.format(column, op, text)


@st.composite
def queries(draw, state: State) -> dict:
    """Keyword options for :meth:`Repository.query`: up to three filters (more
    would leave almost every result empty on histories this small), columns
    and a limit."""
    kinds = draw(
        st.lists(
            st.sampled_from(
                [
                    "where",
                    "instruments",
                    "start",
                    "end",
                    "bbox",
                    "depth",
                    "dataset",
                    "samples",
                    "where",
                ]
            ),
            max_size=3,
            unique=True,
        )
    )
    options: dict = {}
    if "instruments" in kinds:
        options["instruments"] = draw(
            st.lists(st.sampled_from(INSTRUMENTS), min_size=1, max_size=3)
        )
    times = present(state, "timestamp", [hours(0)]) | BOUNDS
    start = draw(times) if "start" in kinds else None
    end = draw(times) if "end" in kinds else None
    if start is not None and end is not None and start >= end:
        start, end = (end, start) if end < start else (start, None)
    if start is not None:
        options["start"] = start.astimezone(draw(OFFSETS))
    if end is not None:
        options["end"] = end.astimezone(draw(OFFSETS))
    if "bbox" in kinds:
        lats = sorted(draw(st.lists(present(state, "lat", LAT_GRID), min_size=2, max_size=2)))
        lons = sorted(draw(st.lists(present(state, "lon", LON_GRID), min_size=2, max_size=2)))
        options["bbox"] = (lats[0], lons[0], lats[1], lons[1])
    if "depth" in kinds:
        depths = st.none() | present(state, "depth", DEPTH_GRID)
        low, high = draw(depths), draw(depths)
        if low is not None and high is not None and low > high:
            low, high = high, low
        options["depth"] = (low, high)
    if "dataset" in kinds:
        options["dataset"] = draw(
            st.sampled_from(sorted(state.datasets) or DATASETS) | st.sampled_from(DATASETS)
        )
    if "samples" in kinds:
        options["samples"] = draw(
            st.lists(st.sampled_from([*SAMPLES, "S9", "x' OR 1=1 --"]), min_size=1, max_size=3)
        )
    if "where" in kinds:
        options["where"] = [
            parse_where(w) for w in draw(st.lists(where_texts(state), min_size=1, max_size=2))
        ]
    if draw(st.booleans(), label="columns"):
        options["columns"] = draw(
            st.lists(st.sampled_from(state.columns()), min_size=1, max_size=4, unique=True)
        )
    if draw(st.booleans(), label="limit"):
        options["limit"] = draw(st.integers(0, 5))
    return options


@st.composite
def scenarios(draw) -> tuple[History, list[tuple[int, str, dict]]]:
    history = draw(histories())
    asks = []
    for _ in range(draw(st.integers(1, 12))):  # queries are cheap next to building the history
        back = draw(st.integers(0, len(history.states) - 1))
        how = draw(st.sampled_from(["default", "HEAD~N", "id"]))
        asks.append((back, how, draw(queries(history.states[-1 - back]))))
    return history, asks


def project(row: dict, columns: list[str]) -> dict:
    return {c: row.get(c) for c in columns}


# Mismatches the property found (since fixed), pinned as explicit examples
# because random search at the ci profile only meets them now and then:
# IFCB1's batch has no ``score`` and an all-null ``note``; IFCB2's has both.
_A1 = {
    "image_id": "a1",
    "timestamp": hours(0),
    "lat": None,
    "lon": None,
    "depth": None,
    "sample_id": None,
    "note": None,
}
_B1 = {
    "image_id": "b1",
    "timestamp": hours(1),
    "lat": 10.0,
    "lon": 0.0,
    "depth": 5.0,
    "sample_id": "S1",
    "score": 2.5,
    "note": "hi",
}
MIXED = replay([("images", [("IFCB1", [_A1]), ("IFCB2", [_B1])])])


def _ask(**options) -> tuple[History, list]:
    return MIXED, [(0, "default", options)]


@settings(deadline=None)
@given(scenarios())
@example(_ask(where=[parse_where("score > 1")], columns=["image_id", "score", "note"]))
@example(_ask(instruments=["IFCB1"], where=[parse_where("score > 1")]))
@example(_ask(instruments=["IFCB1"], columns=["image_id", "score"]))
@example(_ask(instruments=["IFCB1"], where=[parse_where("note like h%")]))
@example(_ask(depth=(None, None)))
def test_queries_match_a_python_model(scenario):
    history, asks = scenario
    repo, commits = build(history)
    for back, how, options in asks:
        state = history.states[-1 - back]
        commit_id = commits[-1 - back]
        if how == "id":
            at = commit_id
        elif how == "HEAD~N":
            at = f"HEAD~{back}"
        else:
            at = None if back == 0 else f"main~{back}"
        query = build_query(**options)
        if query.dataset is not None and query.dataset not in state.datasets:
            with pytest.raises(NotFoundError):
                repo.snapshot(at).query(**options)
            with pytest.raises(NotFoundError):
                repo.snapshot(at).count(**options)
            continue

        everything = expected_rows(state, query)
        limited = everything if query.limit is None else everything[: query.limit]
        result = repo.snapshot(at).select(query)
        table = result.table
        assert result.commit_id == commit_id
        if query.columns:
            assert table.column_names == list(query.columns)
            assert table.to_pylist() == [project(r, list(query.columns)) for r in limited]
        else:
            assert table.column("image_id").to_pylist() == [r["image_id"] for r in limited]
            known = [c for c in state.columns() if c in table.column_names]
            assert table.select(known).to_pylist() == [project(r, known) for r in limited]
        # every batch holding a matching row was scanned; no more than exist
        holding = {
            i for i, ids in enumerate(state.batches) for r in everything if r["image_id"] in ids
        }
        assert result.manifests_total == len(state.batches)
        assert len(holding) <= result.manifests_scanned <= len(state.batches)

        unlimited = {k: v for k, v in options.items() if k != "limit"}
        assert repo.snapshot(at).count(**unlimited) == len(everything)
        assert repo.snapshot(at).count(**options) == len(limited)


# -- focused reproductions of model mismatches ------------------------------------


@pytest.fixture
def mixed():
    """One commit: instrument A's batch has no ``score`` column and an all-null
    ``note`` column; instrument B's batch has both, filled in."""
    repo = Repository.init(memory_url())
    with repo.transaction(message="mixed") as tx:
        tx.append_bytes("A", [{"image_id": "a1", "timestamp": DAY0, "note": None}], [b"a1"])
        tx.append_bytes(
            "B",
            [{"image_id": "b1", "timestamp": DAY0, "score": 2.5, "note": "hi", "depth": 3.0}],
            [b"b1"],
        )
    return repo


def test_column_of_a_pruned_batch_is_still_a_column(mixed):
    """``score`` is a column of the snapshot; narrowing the query to A's batch
    (which lacks it) must give no rows, not 'unknown column'."""
    assert mixed.snapshot().query(where=[parse_where("score > 1")]).column(
        "image_id"
    ).to_pylist() == ["b1"]
    assert mixed.snapshot().query(instruments=["A"], where=[parse_where("score > 1")]).num_rows == 0
    table = mixed.snapshot().query(instruments=["A"], columns=["image_id", "score"])
    assert table.to_pylist() == [{"image_id": "a1", "score": None}]


def test_like_on_a_text_column_that_is_all_null_in_the_scanned_batches(mixed):
    assert mixed.snapshot().query(where=[parse_where("note like h%")]).column(
        "image_id"
    ).to_pylist() == ["b1"]
    assert (
        mixed.snapshot().query(instruments=["A"], where=[parse_where("note like h%")]).num_rows == 0
    )


def test_open_depth_range_on_both_sides_filters_nothing(mixed):
    """``depth=(None, None)`` compiles to no SQL condition, so it must not prune
    batches whose depth is all null either (or it must be rejected)."""
    try:
        got = mixed.snapshot().query(depth=(None, None)).column("image_id").to_pylist()
    except InvalidInputError:
        return
    assert got == ["a1", "b1"]
    assert mixed.snapshot().count(depth=(None, None)) == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"where": ["nosuch > 1"]},
        {"columns": ["nosuch"]},
        {"where": ["score = abc"]},
        {"where": ["score like 1%"]},
    ],
)
def test_invalid_query_is_rejected_even_when_pruning_leaves_nothing(mixed, bad):
    """Whether a query is valid must not depend on which batches survive pruning."""
    options = {k: [parse_where(w) for w in v] if k == "where" else v for k, v in bad.items()}
    with pytest.raises(InvalidInputError):
        mixed.snapshot().query(**options)  # batches survive: rejected
    with pytest.raises(InvalidInputError):
        mixed.snapshot().query(instruments=["C"], **options)  # nothing survives


def test_count_respects_limit(mixed):
    assert len(mixed.snapshot().query(limit=1)) == 1
    assert mixed.snapshot().count(limit=1) == 1
    assert mixed.snapshot().count(limit=0) == 0


@pytest.mark.parametrize(
    "first, second, same_commit, kind",
    [(1.5, "high", False, "double"), (True, "yes", True, "bool")],
)
def test_an_extra_column_with_conflicting_types_is_refused(first, second, same_commit, kind):
    """``score`` arrives as a number (or a boolean) in one batch and as text in
    another: the second append is refused and nothing of it is committed, so
    every read keeps one type per column."""
    repo = Repository.init(memory_url())
    rows = {
        "A": [{"image_id": "a1", "timestamp": DAY0, "score": first}],
        "B": [{"image_id": "b1", "timestamp": DAY0, "score": second}],
    }
    refusal = f"column 'score' holds string here but {kind} in earlier batches"
    if same_commit:
        both = repo.transaction(message="both")
        with pytest.raises(InvalidInputError, match=refusal), both as tx:
            for instrument, meta in rows.items():
                tx.append_bytes(instrument, meta, [blob(meta[0]["image_id"])])
        assert repo.branches() == {}
        return
    with repo.transaction(message="A") as tx:
        tx.append_bytes("A", rows["A"], [blob("a1")])
    with pytest.raises(InvalidInputError, match=refusal), repo.transaction(message="B") as tx:
        tx.append_bytes("B", rows["B"], [blob("b1")])
    assert [c.message for _, c in repo.log()] == ["A"]
    assert repo.snapshot().query(columns=["image_id", "score"]).to_pylist() == [
        {"image_id": "a1", "score": first}
    ]


@pytest.mark.parametrize("where", ["tags = x", "meta > 1", "tags like x%"])
def test_where_on_a_list_or_struct_column_is_invalid_input(where):
    """Extra columns may hold lists or structs; comparing one with a scalar
    must be refused as invalid input (today DuckDB's ConversionException
    escapes for every operator but ``like``)."""
    repo = Repository.init(memory_url())
    with repo.transaction(message="nested") as tx:
        tx.append_bytes(
            "A",
            [{"image_id": "a1", "timestamp": DAY0, "tags": ["x", "y"], "meta": {"k": 1}}],
            [b"a1"],
        )
    assert repo.snapshot().query(columns=["image_id", "tags", "meta"]).to_pylist() == [
        {"image_id": "a1", "tags": ["x", "y"], "meta": {"k": 1}}
    ]
    try:
        rows = repo.snapshot().query(where=[parse_where(where)]).num_rows
    except InvalidInputError:
        return
    assert rows == 0


# -- time travel -------------------------------------------------------------------


@pytest.fixture
def three_commits(clock):
    """Commits c1 (x1), c2 (+x2), c3 (+x3) on main a second apart, tag v1 at c1, and their ids."""
    repo = Repository.init(memory_url())
    repo.clock = clock
    ids = []
    for n in (1, 2, 3):
        with repo.transaction(message=f"c{n}") as tx:
            tx.append_bytes(
                "IFCB1", [{"image_id": f"x{n}", "timestamp": hours(n)}], [blob(f"x{n}")]
            )
        ids.append(tx.commit_id)
    repo.create_tag("v1", ids[0])
    return repo, ids


def ids_of(table) -> list[str]:
    return table.column("image_id").to_pylist()


def test_queries_at_older_commits(three_commits):
    repo, (c1, c2, c3) = three_commits
    assert ids_of(repo.snapshot().query()) == ["x1", "x2", "x3"]
    for at in (c1, c1[:10], "HEAD~2", "main~2", "v1", "HEAD~~"):
        assert ids_of(repo.snapshot(at).query()) == ["x1"], at
        assert repo.snapshot(at).count() == 1
    for at in (c2, "HEAD~1", "main~", "HEAD~1~0"):
        assert ids_of(repo.snapshot(at).query()) == ["x1", "x2"], at
    assert ids_of(repo.snapshot(c3).query(start=hours(2))) == ["x2", "x3"]
    assert repo.snapshot("v1").select(build_query()).commit_id == c1
    with pytest.raises(NotFoundError):
        repo.snapshot("HEAD~3").query()
    with pytest.raises(NotFoundError):
        repo.snapshot("nosuchbranch").query()


def test_as_of_picks_the_newest_commit_at_or_before(three_commits):
    repo, (c1, c2, c3) = three_commits
    times = {oid: commit.time for oid, commit in repo.log()}
    assert set(times) == {c1, c2, c3}
    assert times[c1] < times[c2] < times[c3]
    tick = timedelta(microseconds=1)
    cases = [
        (times[c1], c1, ["x1"]),
        (times[c2] - tick, c1, ["x1"]),
        (times[c2], c2, ["x1", "x2"]),
        (times[c3] - tick, c2, ["x1", "x2"]),
        (times[c3], c3, ["x1", "x2", "x3"]),
        (times[c3] + timedelta(days=365), c3, ["x1", "x2", "x3"]),
    ]
    for when, commit, rows in cases:
        for zone in (timezone.utc, timezone(timedelta(hours=5, minutes=45))):
            local = when.astimezone(zone)
            assert repo.snapshot(as_of=local).commit_id == commit
            assert ids_of(repo.snapshot(as_of=local).query()) == rows
            assert repo.snapshot(as_of=local).count() == len(rows)
            assert repo.snapshot(as_of=local).select(build_query()).commit_id == commit
    # as_of walks the first-parent line of ``at``
    assert repo.snapshot("v1", as_of=times[c3]).commit_id == c1
    assert ids_of(repo.snapshot("HEAD~1", as_of=times[c3]).query()) == ["x1", "x2"]


def test_as_of_before_the_first_commit_or_naive(three_commits):
    repo, (c1, _, _) = three_commits
    first = repo.odb.get_commit(c1).time
    with pytest.raises(NotFoundError):
        repo.snapshot(as_of=first - timedelta(microseconds=1)).query()
    with pytest.raises(NotFoundError):
        repo.snapshot(as_of=datetime(2000, 1, 1, tzinfo=timezone.utc))
    naive = first.replace(tzinfo=None) + timedelta(days=1)  # without an offset: UTC, as everywhere
    assert (
        repo.snapshot(as_of=naive).commit_id
        == repo.snapshot(as_of=naive.replace(tzinfo=timezone.utc)).commit_id
    )


def test_old_snapshot_keeps_its_rows_after_many_later_commits(three_commits):
    repo, (c1, _, _) = three_commits
    before = repo.snapshot(c1).query().to_pylist()
    for n in range(4, 8):
        with repo.transaction(message=f"c{n}") as tx:
            tx.append_bytes(
                "IFCB2", [{"image_id": f"x{n}", "timestamp": hours(0.5)}], [blob(f"x{n}")]
            )
    assert repo.snapshot(c1).query().to_pylist() == before
    assert ids_of(repo.snapshot("HEAD~6").query()) == ["x1"]
    assert ids_of(repo.snapshot().query())[:2] == ["x4", "x5"]


def test_query_on_an_empty_repository():
    repo = Repository.init(memory_url())
    assert repo.snapshot().query().num_rows == 0
    assert repo.snapshot().count() == 0
    assert repo.snapshot().count(instruments=["IFCB1"], where=[parse_where("lat > 1")]) == 0
    with pytest.raises(NotFoundError):
        repo.snapshot().query(dataset="ds1")


# -- pruning ---------------------------------------------------------------------

DAYS = 6


@pytest.fixture(scope="module")
def daily():
    """One batch per (instrument, day), each within that day; three commits."""
    repo = Repository.init(memory_url())
    for chunk in range(3):
        with repo.transaction(message=f"days {chunk}") as tx:
            for day in range(chunk * 2, chunk * 2 + 2):
                for k, instrument in enumerate(INSTRUMENTS):
                    rows = [
                        {
                            "image_id": f"{instrument}-d{day}-{h}",
                            "timestamp": DAY0 + timedelta(days=day, hours=h),
                            "lat": float(10 * k),
                            "lon": float(day),
                            "depth": float(h),
                        }
                        for h in (0, 7, 23)
                    ]
                    tx.append_bytes(instrument, rows, [blob(r["image_id"]) for r in rows])
    return repo


@pytest.mark.parametrize("instruments", [["IFCB1"], ["IFCB2", "scope-a"], []])
@pytest.mark.parametrize("day", range(DAYS))
@pytest.mark.parametrize("span", [1, 2])
def test_pruning_scans_exactly_the_overlapping_batches(daily, instruments, day, span):
    start = DAY0 + timedelta(days=day)
    result = daily.snapshot().select(
        build_query(instruments=instruments, start=start, end=start + timedelta(days=span))
    )
    per_instrument = min(span, DAYS - day)
    assert result.manifests_scanned == per_instrument * len(instruments or INSTRUMENTS)
    assert result.manifests_total == DAYS * len(INSTRUMENTS)
    assert result.table.num_rows == 3 * result.manifests_scanned


def test_pruning_by_other_statistics(daily):
    total = DAYS * len(INSTRUMENTS)
    # start exactly at a batch's last image still reaches it; end at a first image does not
    last = DAY0 + timedelta(days=2, hours=23)
    assert (
        daily.snapshot()
        .select(build_query(instruments=["IFCB1"], start=last, end=last + timedelta(hours=1)))
        .manifests_scanned
        == 1
    )
    first = DAY0 + timedelta(days=2)
    assert (
        daily.snapshot().select(build_query(instruments=["IFCB1"], end=first)).manifests_scanned
        == 2
    )
    # lat separates instruments, lon separates days
    result = daily.snapshot().select(build_query(bbox=(10.0, 3.0, 10.0, 4.0)))
    assert (result.manifests_scanned, result.table.num_rows) == (2, 6)
    result = daily.snapshot().select(build_query(depth=(24.0, None)))
    assert (result.manifests_scanned, result.table.num_rows) == (0, 0)
    assert daily.snapshot().select(build_query(instruments=["nosuch"])).manifests_scanned == 0
    assert daily.snapshot().select(build_query()).manifests_scanned == total
    assert (
        daily.snapshot().select(build_query(where=[parse_where("lat > 100")])).manifests_scanned
        == total
    )


def test_pruning_by_dataset_spans():
    repo = Repository.init(memory_url())
    for day in range(4):
        with repo.transaction(message=f"day {day}") as tx:
            for instrument in INSTRUMENTS[:2]:
                rows = [
                    {
                        "image_id": f"{instrument}-{day}",
                        "timestamp": DAY0 + timedelta(days=day, hours=12),
                    }
                ]
                tx.append_bytes(instrument, rows, [blob(rows[0]["image_id"])])
    add_dataset_span(repo, "cruise", "IFCB1", DAY0 + timedelta(days=1), DAY0 + timedelta(days=3))
    add_dataset_span(repo, "cruise", "IFCB2", DAY0, DAY0 + timedelta(hours=13))
    result = repo.snapshot().select(build_query(dataset="cruise"))
    assert result.manifests_scanned == 3
    assert result.manifests_total == 8
    assert ids_of(result.table) == ["IFCB2-0", "IFCB1-1", "IFCB1-2"]
    assert repo.snapshot().count(dataset="cruise", instruments=["IFCB2"]) == 1


def count_result(repo: Repository, **options):
    result = repo.snapshot().select(build_query(**options), count=True)
    return result.table.column(0)[0].as_py(), result


@pytest.mark.parametrize(
    "options, count, whole, scanned",
    [
        # whole days: every batch counted from its statistics, none read
        (
            {
                "instruments": ["IFCB1"],
                "start": DAY0 + timedelta(days=1),
                "end": DAY0 + timedelta(days=3),
            },
            6,
            2,
            0,
        ),
        ({}, 54, 18, 0),
        ({"end": DAY0 + timedelta(days=1)}, 9, 3, 0),
        # a window cutting into day 1 reads day 1's batches, counts day 2's
        ({"start": DAY0 + timedelta(days=1, hours=5), "end": DAY0 + timedelta(days=3)}, 15, 3, 3),
        # the boundaries: a batch's last image at end - 1us is inside, at end it is not
        ({"start": DAY0, "end": DAY0 + timedelta(hours=23, microseconds=1)}, 9, 3, 0),
        ({"start": DAY0, "end": DAY0 + timedelta(hours=23)}, 6, 0, 3),
        ({"start": DAY0 + timedelta(microseconds=1), "end": DAY0 + timedelta(days=1)}, 6, 0, 3),
        # filters decided per row always read the batches they may match
        ({"instruments": ["IFCB1"], "depth": (0.0, None)}, 18, 0, 6),
        ({"instruments": ["IFCB1"], "where": [parse_where("depth >= 7")]}, 12, 0, 6),
        ({"instruments": ["IFCB1"], "limit": 4}, 4, 6, 0),
        ({"instruments": ["IFCB1"], "limit": 40}, 18, 6, 0),
    ],
)
def test_counts_use_batch_statistics_exactly(daily, options, count, whole, scanned):
    got, result = count_result(daily, **options)
    assert got == count
    assert daily.snapshot().count(**options) == count
    assert len(daily.snapshot().query(**options)) == count
    assert (result.batches_counted_whole, result.manifests_scanned) == (whole, scanned)


def test_counts_of_datasets_from_batch_statistics():
    repo = Repository.init(memory_url())
    with repo.transaction(message="days") as tx:
        for day in range(3):
            for instrument in INSTRUMENTS[:2]:
                rows = [
                    {
                        "image_id": f"{instrument}-{day}-{h}",
                        "timestamp": DAY0 + timedelta(days=day, hours=h),
                    }
                    for h in (1, 12)
                ]
                tx.append_bytes(instrument, rows, [blob(r["image_id"]) for r in rows])
    # IFCB1 day 0 whole; IFCB1 day 1 cut at 12:00; IFCB2 days 1-2 whole, in two
    # overlapping spans, each image counted once
    add_dataset_span(repo, "d", "IFCB1", DAY0, DAY0 + timedelta(days=1, hours=12))
    add_dataset_span(repo, "d", "IFCB2", DAY0 + timedelta(days=1), DAY0 + timedelta(days=3))
    add_dataset_span(
        repo, "d", "IFCB2", DAY0 + timedelta(days=1), DAY0 + timedelta(days=2, hours=2)
    )
    expected = [
        "IFCB1-0-1",
        "IFCB1-0-12",
        "IFCB1-1-1",
        "IFCB2-1-1",
        "IFCB2-1-12",
        "IFCB2-2-1",
        "IFCB2-2-12",
    ]
    assert sorted(ids_of(repo.snapshot().query(dataset="d"))) == expected
    got, result = count_result(repo, dataset="d")
    assert got == len(expected)
    assert result.batches_counted_whole == 3
    assert repo.snapshot().count(dataset="d", instruments=["IFCB2"]) == 4
    assert repo.snapshot().count(dataset="d", start=DAY0 + timedelta(days=1)) == 5
    assert repo.snapshot().count(dataset="d", limit=2) == 2


def test_concurrent_queries_from_many_threads(daily):
    """Queries from several threads at once (each with its own DuckDB
    connection) give the same answers as one after another."""
    asks = [
        {
            "instruments": [INSTRUMENTS[n % 3]],
            "start": DAY0 + timedelta(days=n % DAYS),
            "end": DAY0 + timedelta(days=n % DAYS + 2),
        }
        for n in range(12)
    ] + [
        {"where": [parse_where(f"depth > {n}")], "columns": ["image_id", "depth"]}
        for n in (0, 7, 22)
    ]
    expected = [
        (daily.snapshot().query(**a).to_pylist(), daily.snapshot().count(**a)) for a in asks
    ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(offset: int) -> None:
        try:
            barrier.wait()
            for i in range(len(asks) * 2):
                n = (i + offset) % len(asks)
                assert daily.snapshot().query(**asks[n]).to_pylist() == expected[n][0]
                assert daily.snapshot().count(**asks[n]) == expected[n][1]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 3,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


# -- parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [
        ("10,-70.5,20,-60", (10.0, -70.5, 20.0, -60.0)),
        (" 1 , 2 ,3,4", (1.0, 2.0, 3.0, 4.0)),
        ("-90,-180,90,180", (-90.0, -180.0, 90.0, 180.0)),
        ("1e1,0,1e1,0", (10.0, 0.0, 10.0, 0.0)),
    ],
)
def test_parse_bbox_good(text, value):
    assert parse_bbox(text) == value
    assert build_query(bbox=parse_bbox(text)).bbox == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1,2,3",
        "1,2,3,4,5",
        "a,2,3,4",
        "1,2,,4",
        "nan,0,1,1",
        "0,0,inf,1",
        "0,-inf,1,1",
        "1e400,0,1,1",
        "1;2;3;4",
    ],
)
def test_parse_bbox_bad(text):
    with pytest.raises(InvalidInputError):
        parse_bbox(text)


@pytest.mark.parametrize("bbox", [(10.0, 0.0, 5.0, 1.0), (0.0, 10.0, 1.0, 5.0)])
def test_build_query_rejects_reversed_bbox(bbox):
    with pytest.raises(InvalidInputError):
        build_query(bbox=bbox)


@pytest.mark.parametrize(
    "text, value",
    [
        ("1:5", (1.0, 5.0)),
        ("1:", (1.0, None)),
        (":5", (None, 5.0)),
        (" 2.5 : 2.5 ", (2.5, 2.5)),
        ("-3:0", (-3.0, 0.0)),
    ],
)
def test_parse_depth_good(text, value):
    assert parse_depth(text) == value


@pytest.mark.parametrize(
    "text", ["", "5", ":", " : ", "a:1", "1:b", "5:1", "nan:", ":inf", "1:2:3", "1,2"]
)
def test_parse_depth_bad(text):
    with pytest.raises(InvalidInputError):
        parse_depth(text)


def test_build_query_rejects_reversed_depth():
    """parse_depth refuses MIN > MAX, as build_query refuses a reversed bbox; a
    reversed depth given to the Python API should not silently match nothing."""
    with pytest.raises(InvalidInputError):
        build_query(depth=(5.0, 1.0))


@pytest.mark.parametrize("bad", [(float("nan"), 1.0), (0.0, float("inf")), ("deep", 1.0), (1.0,)])
def test_build_query_rejects_bad_depth(bad):
    with pytest.raises(InvalidInputError):
        build_query(depth=bad)


@pytest.mark.parametrize(
    "text, value",
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        ("2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        (" 2024-05-01T14:30:00+02:00 ", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        (
            "2024-05-01T12:30:00.123456Z",
            datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=timezone.utc),
        ),
    ],
)
def test_parse_time_good(text, value):
    parsed = parse_time(text)
    assert parsed == value
    assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2024-13-01", "2024-05-01T25:00", "2024/05/01", "1=1"]
)
def test_parse_time_bad(text):
    with pytest.raises(InvalidInputError):
        parse_time(text)


@pytest.mark.parametrize(
    "text, column, op, value",
    [
        ("lat > 10", "lat", ">", "10"),
        ("lat>10", "lat", ">", "10"),
        ("  depth <= -2.5 ", "depth", "<=", "-2.5"),
        ("depth>=1", "depth", ">=", "1"),
        ("sample_id != S1", "sample_id", "!=", "S1"),
        ("note = hello world", "note", "=", "hello world"),
        ("note = 'quoted value'", "note", "=", "quoted value"),
        ('note = "x\' OR 1=1 --"', "note", "=", "x' OR 1=1 --"),
        ("note = x' OR 1=1 --", "note", "=", "x' OR 1=1 --"),
        ("note = ''", "note", "=", ""),
        ("a = b = c", "a", "=", "b = c"),
        ("image_id like D2024%", "image_id", "like", "D2024%"),
        ("image_id LIKE '%_1'", "image_id", "like", "%_1"),
        ("_x < 3", "_x", "<", "3"),
        ("instrument=IFCB1", "instrument", "=", "IFCB1"),
    ],
)
def test_parse_where_good(text, column, op, value):
    condition = parse_where(text)
    assert (condition.column, condition.op, condition.value) == (column, op, value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "lat",
        "lat 10",
        "lat >",
        "lat >   ",
        "> 10",
        "1lat > 10",
        "lat; DROP TABLE images > 1",
        "la t > 1",
        "lat ~ 1",
        "note like",
        "notelike x",
        "note NOT LIKE x",
        "'lat' > 1",
    ],
)
def test_parse_where_bad(text):
    with pytest.raises(InvalidInputError):
        parse_where(text)


def test_parse_where_overlong_column_is_invalid_input():
    """A 64+ character column name must be an InvalidInputError, like every
    other malformed --where (today pydantic's ValidationError escapes)."""
    with pytest.raises(InvalidInputError):
        parse_where("a" * 64 + " = 1")


def test_build_query_validation():
    start = DAY0
    with pytest.raises(InvalidInputError):
        build_query(start=start, end=start)
    with pytest.raises(InvalidInputError):
        build_query(start=start + timedelta(seconds=1), end=start)
    # the same instant in two zones is still start == end
    with pytest.raises(InvalidInputError):
        build_query(start=start, end=start.astimezone(timezone(timedelta(hours=3))))
    for name in ("start", "end"):  # a time without an offset is UTC, as everywhere
        assert getattr(build_query(**{name: datetime(2024, 5, 1)}), name) == datetime(
            2024, 5, 1, tzinfo=timezone.utc
        )
    for name in ("", "a b", "IFCB/1", "../x", "x' OR 1=1 --", "a" * 65, "é"):
        with pytest.raises(InvalidInputError):
            build_query(instruments=[name])
    for bad in (
        {"limit": -1},
        {"nosuch": 1},
        {"where": ["lat > 1"]},
        {"columns": ["lat; DROP TABLE images"]},
    ):
        with pytest.raises(InvalidInputError):
            build_query(**bad)
    query = build_query(
        instruments=["IFCB2", "IFCB1", "IFCB2"],
        start=start.astimezone(timezone(timedelta(hours=2))),
        limit=0,
    )
    assert query.instruments == ("IFCB1", "IFCB2")
    assert query.start == start and query.start.utcoffset() == timedelta(0)


# -- hostile and malformed inputs through repo.query ---------------------------------

INJECTIONS = [
    "x' OR 1=1 --",
    "x' OR '1'='1",
    "'; DROP TABLE images; --",
    '" OR ""="',
    "1; SELECT * FROM read_csv('/etc/passwd')",
    "%' OR image_id LIKE '%",
    "\\' OR 1=1 --",
    "a1') OR ('1'='1",
    ") OR TRUE --",
]


@pytest.fixture(scope="module")
def small():
    repo = Repository.init(memory_url())
    with repo.transaction(message="small") as tx:
        rows = [
            {
                "image_id": "a1",
                "timestamp": hours(1),
                "lat": 1.0,
                "sample_id": "S1",
                "score": 1.5,
                "note": "alpha",
            },
            {
                "image_id": "a2",
                "timestamp": hours(2),
                "lat": 2.0,
                "sample_id": "S2",
                "score": 2.5,
                "note": "beta",
            },
        ]
        tx.append_bytes("IFCB1", rows, [blob(r["image_id"]) for r in rows])
    add_dataset_span(repo, "ds1", "IFCB1", hours(0), hours(3))
    return repo


def _safely(repo: Repository, **options) -> int | None:
    """Rows the query returns, or None when it is refused as invalid input;
    any other outcome fails the test."""
    try:
        table = repo.snapshot().query(**options)
    except InvalidInputError:
        return None
    return table.num_rows


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_in_string_values_is_plain_data(small, value):
    rows = small.snapshot().images().to_pylist()
    for column in ("image_id", "sample_id", "note", "instrument", "blob_id"):
        for op in ("=", ">=", "like"):
            condition = Where(column=column, op=op, value=value)
            # a plain string comparison / pattern, exactly as Python reads it
            assert _safely(small, where=[condition]) == sum(holds(r, condition) for r in rows), (
                column,
                op,
            )
        assert _safely(small, where=[Where(column=column, op="=", value=value)]) == 0
    assert _safely(small, samples=[value]) == 0
    assert _safely(small, samples=["S1", value]) == 1
    # numeric and time columns refuse them outright
    for column in ("lat", "score", "timestamp", "size"):
        assert _safely(small, where=[Where(column=column, op="=", value=value)]) is None
    for options in ({"instruments": [value]}, {"columns": [value]}):
        assert _safely(small, **options) is None
    with pytest.raises(NotFoundError, match="no dataset named"):
        small.snapshot().query(dataset=value)
    with pytest.raises(NotFoundError, match="no branch, tag or commit named"):
        small.snapshot(value)
    # and nothing changed
    assert ids_of(small.snapshot().query()) == ["a1", "a2"]
    assert len(list(small.log())) == 2


@pytest.mark.parametrize(
    "where",
    [
        "image_id = x' OR 1=1 --",
        "note = '; DROP TABLE images; --",
        "note like %' OR '1'='1",
        "sample_id != x' OR 1=1 --",
    ],
)
def test_injection_through_parse_where(small, where):
    condition = parse_where(where)
    got = _safely(small, where=[condition])
    expected = 2 if condition.op == "!=" else 0
    assert got == expected
    assert small.snapshot().count(where=[condition]) == expected


@pytest.mark.parametrize(
    "column",
    [
        "lat; DROP TABLE images",
        'lat" OR 1=1 --',
        "lat--",
        "*",
        "images.lat",
        "1lat",
        "lat)",
        "count(*)",
        "",
    ],
)
def test_injection_in_column_names_is_refused(small, column):
    with pytest.raises(InvalidInputError):
        small.snapshot().query(columns=[column])
    with pytest.raises(InvalidInputError):
        small.snapshot().query(where=[{"column": column, "op": "=", "value": "1"}])


@pytest.mark.parametrize(
    "options",
    [
        {"where": ["nosuch = 1"]},
        {"columns": ["image_id", "nosuch"]},
        {"where": ["score = abc"]},
        {"where": ["score > 1..2"]},
        {"where": ["lat == 1"]},
        {"where": ["lat > 1; --"]},
        {"where": ["score = nan"]},
        {"where": ["score like 1%"]},
        {"where": ["lat like 1%"]},
        {"where": ["timestamp like 2024%"]},
        {"where": ["timestamp > soon"]},
        {"where": ["size = big"]},
    ],
)
def test_bad_queries_are_invalid_input(small, options):
    options = {k: [parse_where(w) for w in v] if k == "where" else v for k, v in options.items()}
    with pytest.raises(InvalidInputError):
        small.snapshot().query(**options)
    with pytest.raises(InvalidInputError):
        small.snapshot().count(**options)


def test_unknown_dataset_is_not_found(small):
    with pytest.raises(NotFoundError):
        small.snapshot().query(dataset="nosuch")
    with pytest.raises(NotFoundError):
        small.snapshot().count(dataset="nosuch")
    with pytest.raises(NotFoundError):
        small.snapshot("HEAD~1").query(dataset="ds1")  # defined only by the later commit
    assert ids_of(small.snapshot().query(dataset="ds1")) == ["a1", "a2"]


def test_well_typed_where_values(small):
    def ids(*conditions):
        return ids_of(small.snapshot().query(where=[parse_where(c) for c in conditions]))

    assert ids("score > 2") == ["a2"]
    assert ids("score = 1.5") == ["a1"]
    assert ids("score = '2.5'") == ["a2"]
    assert ids("lat >= 1", "lat < 2") == ["a1"]
    assert ids(f"timestamp >= {hours(2).isoformat()}") == ["a2"]
    assert ids("timestamp < 2024-05-01T03:00:00+02:00") == []  # 01:00Z
    assert ids("timestamp <= 2024-05-01T03:00:00+02:00") == ["a1"]
    assert ids("timestamp > 2024-05-01T02:30:00+02:00") == ["a1", "a2"]  # 00:30Z
    assert ids("note like %a") == ["a1", "a2"]
    assert ids("note like _eta") == ["a2"]
    assert ids("note like ALPHA") == []  # LIKE is case-sensitive
    assert ids("note != alpha") == ["a2"]
    assert ids("image_id like a_") == ["a1", "a2"]
    assert ids("instrument = IFCB1") == ["a1", "a2"]
    assert ids("sample_id < S2") == ["a1"]
    assert ids_of(small.snapshot().query(where=[{"column": "score", "op": ">", "value": 2}])) == [
        "a2"
    ]
    assert ids_of(small.snapshot().query(where=[{"column": "score", "op": "<", "value": 2.0}])) == [
        "a1"
    ]


@pytest.mark.parametrize(
    "rows, where, expected",
    [
        # an extra column that differs from a core column only by case
        ([("A", {"lat": 10.0, "LAT": -50.0}), ("B", {"lat": -10.0})], "LAT < 0", ["a0"]),
        # two extra columns that differ only by case, in different batches
        ([("A", {"score": 1.0}), ("B", {"Score": 5.0})], "Score > 0", ["a1"]),
        ([("A", {"score": 1.0}), ("B", {"Score": 5.0})], "score > 0", ["a0"]),
    ],
)
def test_columns_differing_only_by_case_are_refused_or_kept_apart(rows, where, expected):
    """DuckDB matches identifiers case-insensitively, so ``"LAT"`` reads
    ``lat``: such names must be refused when appended, or queries must still
    read exactly the column named (today they silently read the other one)."""
    repo = Repository.init(memory_url())
    try:
        for n, (instrument, extra) in enumerate(rows):
            with repo.transaction(message=instrument) as tx:
                meta = [{"image_id": f"a{n}", "timestamp": DAY0 + timedelta(hours=n), **extra}]
                tx.append_bytes(instrument, meta, [blob(f"a{n}")])
    except InvalidInputError:
        return
    assert ids_of(repo.snapshot().query(where=[parse_where(where)])) == expected
    assert repo.snapshot().count(where=[parse_where(where)]) == len(expected)


def test_columns_named_like_sql_keywords():
    repo = Repository.init(memory_url())
    rows = [
        {"image_id": "a1", "timestamp": DAY0, "select": 1.0, "order": "x", "FROM": "y", "_": "z"},
        {"image_id": "a2", "timestamp": DAY0, "select": 2.0, "order": "y", "FROM": "y", "_": "z"},
    ]
    with repo.transaction(message="keywords") as tx:
        tx.append_bytes("A", rows, [blob(r["image_id"]) for r in rows])
    assert ids_of(repo.snapshot().query(where=[parse_where("select > 1")])) == ["a2"]
    assert ids_of(
        repo.snapshot().query(where=[parse_where("order like x%"), parse_where("FROM = y")])
    ) == ["a1"]
    assert repo.snapshot().query(columns=["order", "select", "_"]).to_pylist() == [
        {"order": "x", "select": 1.0, "_": "z"},
        {"order": "y", "select": 2.0, "_": "z"},
    ]
    assert repo.snapshot().count(where=[parse_where("_ = z")]) == 2


# -- the raw DuckDB connection -------------------------------------------------------


def test_duckdb_connection_sees_the_snapshot_and_no_files(three_commits, tmp_path):
    repo, (c1, c2, c3) = three_commits
    for at, expected in (
        (c1, ["x1"]),
        ("HEAD~1", ["x1", "x2"]),
        (None, ["x1", "x2", "x3"]),
        ("v1", ["x1"]),
    ):
        connection = repo.snapshot(at).duckdb()
        try:
            got = connection.sql("SELECT image_id FROM images ORDER BY image_id").fetchall()
            assert [r[0] for r in got] == expected
            full = connection.sql(
                "SELECT * FROM images ORDER BY timestamp, image_id"
            ).to_arrow_table()
            assert full.to_pylist() == repo.snapshot(at).query().to_pylist()
        finally:
            connection.close()
    times = {oid: commit.time for oid, commit in repo.log()}
    connection = repo.snapshot(as_of=times[c2]).duckdb()
    assert connection.sql("SELECT count(*) FROM images").fetchall()[0][0] == 2

    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    out = tmp_path / "out.csv"
    for sql in (
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT * FROM '{secret}'",
        "SELECT * FROM glob('/etc/*')",
        f"COPY images TO '{out}'",
        f"ATTACH '{tmp_path / 'x.db'}' AS x",
        "SET enable_external_access = true",
        "LOAD httpfs",
    ):
        with pytest.raises(duckdb.Error):
            connection.execute(sql).fetchall()
    assert not out.exists()
    assert not (tmp_path / "x.db").exists()
    connection.close()


def test_duckdb_on_an_empty_repository():
    connection = Repository.init(memory_url()).snapshot().duckdb()
    assert connection.sql("SELECT count(*) FROM images").fetchall()[0][0] == 0
    connection.close()
