"""The timeline (``improv_vcs.query.timeline``) against a brute-force model.

Random batches of two instruments, with times that straddle hour, day and
week edges, are committed; for random ranges and every bucket, the
timeline's counts per instrument and bucket equal a count over every image
of the snapshot, and the batches it says it read are exactly those the
index cannot count whole. Volumes and concentrations come from sample
records; class counts equal a join of a run's winners with image times."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st

from improv_vcs import Repository
from improv_vcs.core.errors import InvalidInputError
from improv_vcs.query.timeline import BUCKETS, bucket_for, class_counts, timeline

UTC = timezone.utc
MONDAY = datetime(2024, 5, 6, tzinfo=UTC)
"""A Monday: weeks, days and hours all start here, so batches around it straddle every edge."""
INSTRUMENTS = ("IFCB1", "IFCB2")
SAMPLES = ("s1", "s2", "s3")
CLASSES = ("Diatom", "Ciliate", "Other")
TIME = pa.timestamp("us", tz="UTC")


# -- the model -------------------------------------------------------------------------------------
def floor(t: datetime, bucket: str) -> datetime:
    """The start of ``t``'s bucket in UTC (weeks start on Monday)."""
    t = t.astimezone(UTC)
    if bucket == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == "day":
        return day
    assert bucket == "week"
    return day - timedelta(days=day.weekday())


def in_range(rows: list[dict], start: datetime, end: datetime) -> list[dict]:
    return [r for r in rows if start <= r["timestamp"] < end]


def first_images(rows: list[dict]) -> dict[tuple[str, str | None], datetime]:
    """(instrument, sample id or None) → the time of the group's first image in ``rows``."""
    firsts: dict[tuple[str, str | None], datetime] = {}
    for r in rows:
        key = (r["instrument"], r["sample_id"])
        firsts[key] = min(firsts.get(key, r["timestamp"]), r["timestamp"])
    return firsts


def model_counts(rows: list[dict], bucket: str) -> Counter:
    """(instrument, bucket start, sample id) → images, over ``rows`` (already in range)."""
    counts: Counter = Counter()
    if bucket == "sample":
        firsts = first_images(rows)
        for r in rows:
            key = (r["instrument"], r["sample_id"])
            counts[(r["instrument"], firsts[key], r["sample_id"])] += 1
    else:
        for r in rows:
            counts[(r["instrument"], floor(r["timestamp"], bucket), None)] += 1
    return counts


def observed_counts(table: pa.Table) -> Counter:
    out: Counter = Counter()
    for r in table.to_pylist():
        key = (r["instrument"], r["bucket"].astimezone(UTC), r["sample_id"])
        assert key not in out, f"two rows for {key}"
        out[key] = r["images"]
    return out


def model_scanned(batches: list[dict], start: datetime, end: datetime, bucket: str) -> int:
    """Batches with images in the range that are not inside one bucket inside the range."""
    scanned = 0
    for b in batches:
        low, high = b["time_min"], b["time_max"]
        if high < start or low >= end:
            continue  # not overlapping
        if bucket == "sample":
            scanned += 1
        elif not (floor(low, bucket) == floor(high, bucket) and start <= low and high < end):
            scanned += 1
    return scanned


# -- building repositories -------------------------------------------------------------------------
def memory_repo() -> Repository:
    return Repository.init(f"memory://timeline-{uuid.uuid4().hex}")


def commit_batches(repo: Repository, batches: list[list[dict]]) -> None:
    """One transaction; each list of rows becomes one batch (one append)."""
    with repo.transaction(message="batches") as tx:
        for rows in batches:
            table = pa.table(
                {
                    "image_id": pa.array([r["image_id"] for r in rows], pa.string()),
                    "timestamp": pa.array([r["timestamp"] for r in rows], TIME),
                    "sample_id": pa.array([r["sample_id"] for r in rows], pa.string()),
                }
            )
            tx.append_bytes(
                rows[0]["instrument"], table, [f"pixels {r['image_id']}".encode() for r in rows]
            )


def snapshot_rows(repo: Repository) -> list[dict]:
    """Every image of the head (the brute force reads them all)."""
    images = repo.snapshot().images().select(["image_id", "instrument", "timestamp", "sample_id"])
    return [{**r, "timestamp": r["timestamp"].astimezone(UTC)} for r in images.to_pylist()]


# -- random batches --------------------------------------------------------------------------------
SPANS = st.one_of(
    st.sampled_from([0, 1, 59 * 60, 3600, 3601, 86_399, 86_400, 7 * 86_400]),
    st.integers(0, 3 * 86_400),
)
"""A batch's width in seconds: nothing, edges, and anything up to three days."""


@st.composite
def batch(draw: st.DrawFn, number: int) -> list[dict]:
    instrument = draw(st.sampled_from(INSTRUMENTS))
    # a start near the Monday (to the minute, often exactly on an hour)
    hours = draw(st.integers(-80, 80))
    minute = draw(st.sampled_from([0, 0, 1, 30, 59, 59]))
    second = draw(st.sampled_from([0, 0, 59]))
    low = MONDAY + timedelta(hours=hours, minutes=minute, seconds=second)
    span = draw(SPANS)
    n = draw(st.integers(1, 5))
    offsets = draw(
        st.lists(
            st.one_of(st.integers(0, span), st.sampled_from([0, span])), min_size=n, max_size=n
        )
    )
    samples = draw(st.lists(st.one_of(st.none(), st.sampled_from(SAMPLES)), min_size=n, max_size=n))
    return [
        {
            "image_id": f"b{number}-{k}",
            "instrument": instrument,
            "timestamp": low + timedelta(seconds=offset),
            "sample_id": sample,
        }
        for k, (offset, sample) in enumerate(zip(offsets, samples))
    ]


@st.composite
def batches(draw: st.DrawFn) -> list[list[dict]]:
    count = draw(st.integers(1, 5))
    return [draw(batch(k)) for k in range(count)]


@st.composite
def time_range(draw: st.DrawFn) -> tuple[datetime, datetime]:
    """A range around the Monday, its ends often on hour edges."""
    start = MONDAY + timedelta(
        hours=draw(st.integers(-100, 100)), seconds=draw(st.sampled_from([0, 0, 1, 1799]))
    )
    length = draw(
        st.one_of(
            st.sampled_from([1, 3600, 86_400, 7 * 86_400, 14 * 86_400]),
            st.integers(1, 10 * 86_400),
        )
    )
    return start, start + timedelta(seconds=length)


# -- counts ----------------------------------------------------------------------------------------
NUDGES = st.sampled_from(
    [timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1), timedelta(minutes=-30)]
)


@st.composite
def range_at_images(draw: st.DrawFn, rows: list[dict]) -> tuple[datetime, datetime]:
    """A range whose ends are at (or a hair around) images' times, cutting batches."""
    times = sorted(r["timestamp"] for r in rows)
    start = draw(st.sampled_from(times)) + draw(NUDGES)
    end = (
        draw(st.sampled_from(times))
        + draw(NUDGES)
        + draw(st.sampled_from([timedelta(0)] * 3 + [timedelta(days=1)]))
    )
    if end <= start:
        end = start + timedelta(hours=draw(st.integers(1, 200)))
    return start, end


@given(made=batches(), data=st.data())
def test_counts_equal_a_brute_force_count(made, data):
    repo = memory_repo()
    commit_batches(repo, made)
    snapshot = repo.snapshot()
    everything = snapshot_rows(repo)
    assert len(everything) == sum(len(b) for b in made)
    stats = snapshot.reader.batches.to_pylist()
    # one batch per append, its index entry spanning its rows' times
    assert sorted(
        (b["instrument"], b["time_min"], b["time_max"], b["rows"]) for b in stats
    ) == sorted(
        (b[0]["instrument"], min(r["timestamp"] for r in b), max(r["timestamp"] for r in b), len(b))
        for b in made
    )
    ranges = data.draw(
        st.lists(st.one_of(time_range(), range_at_images(everything)), min_size=1, max_size=3)
    )
    for start, end in ranges:
        inside = in_range(everything, start, end)
        for bucket in BUCKETS:
            found = timeline(snapshot.reader, start, end, (), bucket)
            assert found.bucket == bucket
            assert observed_counts(found.table) == model_counts(inside, bucket), (
                bucket,
                start,
                end,
            )
            assert sum(found.table.column("images").to_pylist()) == len(inside)
            assert found.scanned_batches == model_scanned(stats, start, end, bucket), bucket
            if bucket != "sample":
                overlapping = model_scanned(stats, start, end, "sample")
                event(
                    f"{bucket}: some batches counted unread: {found.scanned_batches < overlapping}"
                )
                event(f"{bucket}: some batches read: {found.scanned_batches > 0}")
                assert set(found.table.column("sample_id").to_pylist()) <= {None}
        # one instrument: only its rows, and only its batches read
        only = data.draw(st.sampled_from(INSTRUMENTS))
        bucket = data.draw(st.sampled_from(BUCKETS))
        found = snapshot.timeline(start, end, [only], bucket)
        mine = [r for r in inside if r["instrument"] == only]
        assert observed_counts(found.table) == model_counts(mine, bucket)
        assert found.scanned_batches == model_scanned(
            [b for b in stats if b["instrument"] == only], start, end, bucket
        )
        # no sample records: no volumes
        assert set(found.table.column("volume_ml").to_pylist()) <= {None}
        assert set(found.table.column("concentration").to_pylist()) <= {None}


def test_a_batch_inside_one_bucket_is_counted_unread():
    """Batches inside one hour count from the index; one over an hour edge is read."""
    repo = memory_repo()
    t = MONDAY + timedelta(hours=5)
    whole = [
        {"image_id": f"w{k}", "instrument": "IFCB1", "timestamp": t + timedelta(minutes=k)}
        for k in range(3)
    ]
    straddling = [
        {"image_id": f"s{k}", "instrument": "IFCB1", "timestamp": t + timedelta(minutes=50 * k)}
        for k in range(3)
    ]
    for rows in (whole, straddling):
        for r in rows:
            r["sample_id"] = None
    commit_batches(repo, [whole, straddling])
    reader = repo.snapshot().reader
    found = timeline(reader, MONDAY, MONDAY + timedelta(days=1), (), "hour")
    assert found.scanned_batches == 1
    assert {(r["bucket"], r["images"]) for r in found.table.to_pylist()} == {
        (t, 5),  # w0, w1, w2 (05:00-05:02), s0 (05:00), s1 (05:50)
        (t + timedelta(hours=1), 1),  # s2 (06:40)
    }
    assert timeline(reader, MONDAY, MONDAY + timedelta(days=1), (), "day").scanned_batches == 0
    # a range that cuts the whole batch makes it read too
    cut = timeline(reader, t + timedelta(minutes=1), t + timedelta(hours=3), (), "day")
    assert cut.scanned_batches == 2
    assert sum(cut.table.column("images").to_pylist()) == 2 + 2


# -- volumes and concentration ---------------------------------------------------------------------
def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 5, day, hour, minute, tzinfo=UTC)


VOLUME_IMAGES = {
    # sample: (instrument, image times, the sample's start, its metadata)
    "s1": ("IFCB1", [at(6, 9, 10), at(6, 9, 15), at(6, 10, 5)], at(6, 9, 10), {"ml_analyzed": 5.0}),
    "s2": ("IFCB1", [at(6, 10, 20), at(6, 10, 30)], at(6, 10, 20), {"volume_ml": 2.5}),
    "s3": ("IFCB1", [at(5, 23, 50), at(6, 0, 10)], at(5, 23, 50), {"ml_analyzed": 4.0}),
    "t1": ("IFCB2", [at(6, 9, m) for m in (0, 10, 20, 30)], at(6, 9), {"ml_analyzed": 1.0}),
    "t2": ("IFCB2", [at(6, 11)], at(6, 11), {"operator": "no volume"}),
}


@pytest.fixture(scope="module")
def volumes_repo() -> Repository:
    """Samples with volumes (one renamed ``volume_ml``, one without), and a
    later version of s1 that corrects its volume to 6 mL."""
    repo = memory_repo()
    with repo.transaction(message="images and samples") as tx:
        for sample, (instrument, times, _start, _meta) in VOLUME_IMAGES.items():
            rows = [
                {"image_id": f"{sample}-{k}", "timestamp": t, "sample_id": sample}
                for k, t in enumerate(times)
            ]
            tx.append_bytes(instrument, rows, [f"{r['image_id']} pixels".encode() for r in rows])
        tx.add_samples(
            [
                {
                    "sample_id": sample,
                    "instrument": instrument,
                    "start": start,
                    "end": max(times) + timedelta(minutes=1),
                    "meta": meta,
                }
                for sample, (instrument, times, start, meta) in VOLUME_IMAGES.items()
            ]
        )
    with repo.transaction(message="s1 measured again") as tx:
        instrument, times, start, _meta = VOLUME_IMAGES["s1"]
        assert (
            tx.add_samples(
                [
                    {
                        "sample_id": "s1",
                        "instrument": instrument,
                        "start": start,
                        "end": max(times) + timedelta(minutes=1),
                        "meta": {"ml_analyzed": 6.0},
                    }
                ]
            )
            == 1
        )
    return repo


def rows_of(table: pa.Table) -> set[tuple]:
    return {
        (
            r["instrument"],
            r["bucket"].astimezone(UTC),
            r["sample_id"],
            r["images"],
            r["volume_ml"],
            r["concentration"],
        )
        for r in table.to_pylist()
    }


@pytest.mark.parametrize(
    "bucket, expected",
    [
        (
            "hour",
            {
                ("IFCB1", at(5, 23), None, 1, 4.0, 1 / 4.0),
                ("IFCB1", at(6, 0), None, 1, None, None),  # no sample starts in this hour
                ("IFCB1", at(6, 9), None, 2, 6.0, 2 / 6.0),  # s1's latest version
                ("IFCB1", at(6, 10), None, 3, 2.5, 3 / 2.5),  # s2 starts here (volume_ml)
                ("IFCB2", at(6, 9), None, 4, 1.0, 4.0),
                ("IFCB2", at(6, 11), None, 1, None, None),  # t2 names no volume
            },
        ),
        (
            "day",
            {
                ("IFCB1", at(5, 0), None, 1, 4.0, 1 / 4.0),
                ("IFCB1", at(6, 0), None, 6, 8.5, 6 / 8.5),
                ("IFCB2", at(6, 0), None, 5, 1.0, 5.0),
            },
        ),
        (
            "week",  # 2024-05-05 is a Sunday: its week began on Monday 04-29
            {
                ("IFCB1", datetime(2024, 4, 29, tzinfo=UTC), None, 1, 4.0, 1 / 4.0),
                ("IFCB1", at(6, 0), None, 6, 8.5, 6 / 8.5),
                ("IFCB2", at(6, 0), None, 5, 1.0, 5.0),
            },
        ),
        (
            "sample",
            {
                ("IFCB1", at(6, 9, 10), "s1", 3, 6.0, 3 / 6.0),
                ("IFCB1", at(6, 10, 20), "s2", 2, 2.5, 2 / 2.5),
                ("IFCB1", at(5, 23, 50), "s3", 2, 4.0, 2 / 4.0),
                ("IFCB2", at(6, 9), "t1", 4, 1.0, 4.0),
                ("IFCB2", at(6, 11), "t2", 1, None, None),
            },
        ),
    ],
)
def test_volumes_and_concentration_per_bucket(volumes_repo, bucket, expected):
    found = volumes_repo.snapshot().timeline(at(1, 0), at(20, 0), bucket=bucket)
    assert found.bucket == bucket
    assert rows_of(found.table) == expected
    assert found.table.column_names == [
        "instrument",
        "bucket",
        "sample_id",
        "images",
        "volume_ml",
        "concentration",
    ]


def test_volumes_of_one_instrument(volumes_repo):
    found = volumes_repo.snapshot().timeline(at(1, 0), at(20, 0), ["IFCB2"], "day")
    assert rows_of(found.table) == {("IFCB2", at(6, 0), None, 5, 1.0, 5.0)}


# -- class counts ----------------------------------------------------------------------------------
@settings(phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(made=batches(), data=st.data())
def test_class_counts_equal_a_join_of_winners_and_times(made, data):
    """(Not shrunk: each example builds a repository, and shrinking one takes
    minutes; test_class_counts_per_sample_use_the_samples_first_image is the
    smallest case of what this has found.)"""
    repo = memory_repo()
    commit_batches(repo, made)
    everything = snapshot_rows(repo)
    ids = sorted(r["image_id"] for r in everything)
    chosen = data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    classified = [i for i, keep in zip(ids, chosen) if keep] or ids[-1:]
    winners = {i: data.draw(st.sampled_from(CLASSES)) for i in classified}
    with repo.transaction(message="classified") as tx:
        tx.add_provenance(
            "classification",
            [{"image_id": i, "winner": w, "score": 0.5, "model": "m"} for i, w in winners.items()],
            "clf",
            "run-1",
        )
    snapshot = repo.snapshot()
    records = snapshot.provenance_records("classification", run="run-1")
    assert dict(zip(records["image_id"].to_pylist(), records["winner"].to_pylist())) == winners
    ranges = data.draw(
        st.lists(st.one_of(time_range(), range_at_images(everything)), min_size=1, max_size=2)
    )
    for start, end in ranges:
        only = data.draw(st.sampled_from([(), *((i,) for i in INSTRUMENTS)]))
        inside = [
            r for r in in_range(everything, start, end) if not only or r["instrument"] in only
        ]
        for bucket in BUCKETS:
            expected = model_class_counts(inside, winners, bucket)
            found = class_counts(snapshot.reader, records, start, end, only, bucket)
            assert found.column_names == ["instrument", "bucket", "winner", "images"]
            observed = {
                (r["instrument"], r["bucket"].astimezone(UTC), r["winner"]): r["images"]
                for r in found.to_pylist()
            }
            assert len(observed) == found.num_rows
            assert observed == expected, (bucket, start, end, only)
            # each class count falls in one of the timeline's buckets
            drawn = timeline(snapshot.reader, start, end, only, bucket).table.to_pylist()
            buckets = {(r["instrument"], r["bucket"].astimezone(UTC)) for r in drawn}
            assert {(i, b) for i, b, _w in observed} <= buckets


def model_class_counts(inside: list[dict], winners: dict[str, str], bucket: str) -> dict:
    """(instrument, bucket, winner) → classified images among ``inside``; a
    sample's bucket is its first image in the range (classified or not), as
    the timeline draws it."""
    firsts = first_images(inside)
    expected: Counter = Counter()
    for r in inside:
        if r["image_id"] in winners:
            key = (
                firsts[(r["instrument"], r["sample_id"])]
                if bucket == "sample"
                else floor(r["timestamp"], bucket)
            )
            expected[(r["instrument"], key, winners[r["image_id"]])] += 1
    return dict(expected)


def test_class_counts_per_sample_use_the_samples_first_image():
    """A sample whose first image is unclassified: its class counts are in
    the sample's bucket (its first image), the timeline's row for it."""
    repo = memory_repo()
    rows = [
        {
            "image_id": f"i{k}",
            "instrument": "IFCB1",
            "timestamp": MONDAY + timedelta(minutes=10 * k),
            "sample_id": "s1",
        }
        for k in range(3)
    ]
    commit_batches(repo, [rows])
    with repo.transaction(message="one classified") as tx:
        tx.add_provenance(
            "classification", [{"image_id": "i2", "winner": "Diatom", "model": "m"}], "clf", "r"
        )
    snapshot = repo.snapshot()
    end = MONDAY + timedelta(days=1)
    drawn = timeline(snapshot.reader, MONDAY, end, (), "sample").table.to_pylist()
    assert [(r["sample_id"], r["bucket"], r["images"]) for r in drawn] == [("s1", MONDAY, 3)]
    counted = class_counts(
        snapshot.reader,
        snapshot.provenance_records("classification", run="r"),
        MONDAY,
        end,
        (),
        "sample",
    )
    assert [(r["bucket"], r["winner"], r["images"]) for r in counted.to_pylist()] == [
        (MONDAY, "Diatom", 1)
    ]


# -- the bucket a range is drawn in, and bad input -------------------------------------------------
@pytest.mark.parametrize(
    "span, bucket",
    [
        (timedelta(microseconds=1), "sample"),
        (timedelta(days=7), "sample"),
        (timedelta(days=7, microseconds=1), "hour"),
        (timedelta(days=31), "hour"),
        (timedelta(days=31, microseconds=1), "day"),
        (timedelta(days=366), "day"),
        (timedelta(days=366, microseconds=1), "week"),
        (timedelta(days=3650), "week"),
    ],
)
def test_bucket_for_boundaries(volumes_repo, span, bucket):
    assert bucket_for(MONDAY, MONDAY + span) == bucket
    assert timeline(volumes_repo.snapshot().reader, MONDAY, MONDAY + span).bucket == bucket


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("end", [MONDAY, MONDAY - timedelta(microseconds=1)])
def test_an_empty_or_backward_range_is_invalid(volumes_repo, end):
    reader = volumes_repo.snapshot().reader
    for call in (
        lambda: timeline(reader, MONDAY, end),
        lambda: timeline(reader, MONDAY, end, (), "hour"),
        lambda: class_counts(reader, pa.table({"image_id": [], "winner": []}), MONDAY, end),
    ):
        with pytest.raises(InvalidInputError) as excinfo:
            call()
        assert one_line(excinfo) == "the end of a timeline must be after its start"


def test_an_unknown_bucket_is_invalid(volumes_repo):
    reader = volumes_repo.snapshot().reader
    end = MONDAY + timedelta(days=1)
    with pytest.raises(InvalidInputError) as excinfo:
        timeline(reader, MONDAY, end, (), "month")
    assert one_line(excinfo) == "unknown bucket 'month'; use one of sample, hour, day, week"
    with pytest.raises(InvalidInputError) as excinfo:
        class_counts(reader, pa.table({"image_id": ["x"], "winner": ["y"]}), MONDAY, end, (), "yr")
    assert one_line(excinfo) == "unknown bucket 'yr'; use one of sample, hour, day, week"
