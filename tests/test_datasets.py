"""Dataset definitions: spans added and removed as commits, no-ops, errors,
definitions at old commits, edits in one transaction with images, and
concurrent writers."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from improv_vcs import (
    InvalidInputError,
    NotFoundError,
    Repository,
    add_dataset_span,
    remove_dataset_span,
)
from improv_vcs.core.model import Dataset, Datasets, Span, canonical_json
from improv_vcs.snapshot.datasets import add_span, make_span, remove_span

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)
PLUS2 = timezone(timedelta(hours=2))


def memory_url() -> str:
    return f"memory://datasets-{uuid.uuid4().hex}"


def blob(image: str) -> bytes:
    return f"pixels of {image}".encode()


def span(instrument: str, start: datetime, end: datetime) -> Span:
    return Span(instrument=instrument, start=start, end=end)


def commit_count(repo: Repository) -> int:
    return len(list(repo.log()))


def ids_of(table) -> list[str]:
    return table.column("image_id").to_pylist()


@pytest.fixture
def repo():
    """Images of IFCB1 and IFCB2 at T0 + 6h, T0 + 30h and T0 + 54h, in one commit."""
    repo = Repository.init(memory_url())
    with repo.transaction(message="images") as tx:
        for instrument in ("IFCB1", "IFCB2"):
            rows = [
                {"image_id": f"{instrument}-{n}", "timestamp": T0 + timedelta(hours=6 + 24 * n)}
                for n in range(3)
            ]
            tx.append_bytes(instrument, rows, [blob(r["image_id"]) for r in rows])
    return repo


# -- adding and removing ------------------------------------------------------------


def test_add_span_makes_a_commit_naming_the_dataset(repo):
    base = repo.resolve()
    images = repo.snapshot().images().to_pylist()
    first = add_dataset_span(repo, "cruise-1", "IFCB1", T0, T0 + DAY, description="spring cruise")
    assert first is not None and first == repo.resolve()
    commit = repo.odb.get_commit(first)
    assert "cruise-1" in commit.message
    assert commit.parents == (base,)
    assert commit.batches == ()
    assert repo.snapshot().dataset("cruise-1") == Dataset(
        description="spring cruise", spans=(span("IFCB1", T0, T0 + DAY),)
    )
    assert repo.snapshot().images().to_pylist() == images  # no image changed
    assert ids_of(repo.snapshot().query(dataset="cruise-1")) == ["IFCB1-0"]

    # a second span (given in another zone) is added in order; the description stays
    second = add_dataset_span(
        repo, "cruise-1", "IFCB1", (T0 - DAY).astimezone(PLUS2), T0.astimezone(PLUS2)
    )
    assert second is not None and repo.odb.get_commit(second).parents == (first,)
    assert "cruise-1" in repo.odb.get_commit(second).message
    found = repo.snapshot().dataset("cruise-1")
    assert found.description == "spring cruise"
    assert found.spans == (span("IFCB1", T0 - DAY, T0), span("IFCB1", T0, T0 + DAY))
    assert all(s.start.utcoffset() == timedelta(0) for s in found.spans)
    assert commit_count(repo) == 3


def test_spans_are_kept_sorted_and_unique_so_equal_definitions_are_equal_bytes(repo):
    spans = [
        ("IFCB2", T0, T0 + DAY),
        ("IFCB1", T0 + DAY, T0 + 2 * DAY),
        ("IFCB1", T0, T0 + 2 * DAY),
        ("IFCB1", T0, T0 + DAY),
    ]
    one, other = Datasets(), Datasets()
    for s in spans:
        one = add_span(one, "d", make_span(*s))
    for s in reversed(spans):
        other = add_span(other, "d", make_span(*s))
    other = add_span(other, "d", make_span(*spans[0]))
    assert canonical_json(one) == canonical_json(other)
    assert [(s.instrument, s.start, s.end) for s in one.datasets["d"].spans] == sorted(spans)
    for s in spans:
        add_dataset_span(repo, "d", *s)
    assert repo.snapshot().dataset("d") == one.datasets["d"]


def test_readding_an_identical_span_is_a_no_op(repo):
    first = add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY, description="d")
    count = commit_count(repo)
    assert add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY) is None
    assert add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY, description="d") is None
    # the same instants in another zone are the same span
    assert (
        add_dataset_span(
            repo, "cruise", "IFCB1", T0.astimezone(PLUS2), (T0 + DAY).astimezone(PLUS2)
        )
        is None
    )
    assert repo.resolve() == first
    assert commit_count(repo) == count
    # a new description for the same span is a change
    assert add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY, description="new") is not None
    assert repo.snapshot().dataset("cruise").description == "new"


def test_remove_span_makes_a_commit_naming_the_dataset(repo):
    add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    added = add_dataset_span(repo, "cruise", "IFCB2", T0, T0 + 3 * DAY)
    removed = remove_dataset_span(repo, "cruise", "IFCB1", T0.astimezone(PLUS2), T0 + DAY)
    assert removed is not None and removed == repo.resolve()
    commit = repo.odb.get_commit(removed)
    assert "cruise" in commit.message
    assert commit.parents == (added,)
    assert repo.snapshot().dataset("cruise").spans == (span("IFCB2", T0, T0 + 3 * DAY),)
    assert ids_of(repo.snapshot().query(dataset="cruise")) == ["IFCB2-0", "IFCB2-1", "IFCB2-2"]


@pytest.mark.parametrize(
    "name, instrument, start, end",
    [
        ("cruise", "IFCB1", T0, T0 + 2 * DAY),  # another span of the dataset
        ("cruise", "IFCB2", T0, T0 + DAY),  # another instrument
        ("cruise", "IFCB1", T0 + timedelta(microseconds=1), T0 + DAY),
        ("nosuch", "IFCB1", T0, T0 + DAY),  # no such dataset
    ],
)
def test_removing_a_missing_span_is_not_found(repo, name, instrument, start, end):
    add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    head, before = repo.resolve(), repo.snapshot().datasets()
    with pytest.raises(NotFoundError):
        remove_dataset_span(repo, name, instrument, start, end)
    assert repo.resolve() == head
    assert repo.snapshot().datasets() == before


def test_removing_from_an_empty_repository_is_not_found():
    repo = Repository.init(memory_url())
    with pytest.raises(NotFoundError):
        remove_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    assert repo.branches() == {}


@pytest.mark.parametrize(
    "start, end",
    [
        (T0, T0),  # empty
        (T0 + DAY, T0),  # reversed
        (T0, T0 - timedelta(microseconds=1)),
        (T0.astimezone(PLUS2), T0),  # the same instant in two zones is empty
        (T0.replace(tzinfo=None), T0.replace(tzinfo=None)),  # naive times are UTC: still empty
    ],
)
def test_empty_reversed_or_naive_spans_are_invalid(repo, start, end):
    add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    head = repo.resolve()
    with pytest.raises(InvalidInputError):
        add_dataset_span(repo, "cruise", "IFCB1", start, end)
    with pytest.raises(InvalidInputError):
        remove_dataset_span(repo, "cruise", "IFCB1", start, end)
    with pytest.raises(InvalidInputError):
        make_span("IFCB1", start, end)
    assert repo.resolve() == head


@pytest.mark.parametrize(
    "name, instrument",
    [
        ("a b", "IFCB1"),
        ("../x", "IFCB1"),
        ("", "IFCB1"),
        ("x.lock", "IFCB1"),
        ("ok", "IF CB"),
        ("ok", "../x"),
        ("ok", ""),
    ],
)
def test_bad_dataset_or_instrument_names_are_invalid(repo, name, instrument):
    head = repo.resolve()
    with pytest.raises(InvalidInputError):
        add_dataset_span(repo, name, instrument, T0, T0 + DAY)
    assert repo.resolve() == head
    assert repo.snapshot().datasets() == {}


def test_pure_edits_raise_the_documented_errors():
    doc = add_span(Datasets(), "d", make_span("IFCB1", T0, T0 + DAY), "desc")
    with pytest.raises(NotFoundError):
        remove_span(doc, "nosuch", make_span("IFCB1", T0, T0 + DAY))
    with pytest.raises(NotFoundError):
        remove_span(doc, "d", make_span("IFCB2", T0, T0 + DAY))
    with pytest.raises(InvalidInputError):
        add_span(doc, "bad name", make_span("IFCB1", T0, T0 + DAY))
    assert remove_span(doc, "d", make_span("IFCB1", T0, T0 + DAY)) == Datasets()
    assert doc.datasets["d"].description == "desc"  # documents are never changed in place


# -- history ------------------------------------------------------------------------


def test_a_dataset_at_an_old_commit_keeps_its_old_spans(repo):
    a = span("IFCB1", T0, T0 + DAY)
    b = span("IFCB2", T0 + DAY, T0 + 2 * DAY)
    c1 = add_dataset_span(repo, "cruise", a.instrument, a.start, a.end, description="v1")
    c2 = add_dataset_span(repo, "cruise", b.instrument, b.start, b.end, description="v2")
    c3 = remove_dataset_span(repo, "cruise", a.instrument, a.start, a.end)
    with repo.transaction(message="more images") as tx:
        tx.append_bytes(
            "IFCB1", [{"image_id": "late", "timestamp": T0 + timedelta(hours=1)}], [blob("late")]
        )
    c4 = tx.commit_id
    assert None not in (c1, c2, c3, c4)

    assert repo.snapshot(c1).dataset("cruise") == Dataset(description="v1", spans=(a,))
    assert repo.snapshot(c2).dataset("cruise") == Dataset(description="v2", spans=(a, b))
    assert repo.snapshot(c3).dataset("cruise") == Dataset(description="v2", spans=(b,))
    assert (
        repo.snapshot(c4).dataset("cruise")
        == repo.snapshot().dataset("cruise")
        == repo.snapshot(c3).dataset("cruise")
    )
    assert repo.snapshot("HEAD~3").datasets() == {"cruise": Dataset(description="v1", spans=(a,))}
    assert repo.snapshot("HEAD~4").datasets() == {}  # the images commit, before any dataset
    with pytest.raises(NotFoundError):
        repo.snapshot("HEAD~4").dataset("cruise")

    # queries resolve the dataset as it was at the commit they read
    assert ids_of(repo.snapshot(c1).query(dataset="cruise")) == ["IFCB1-0"]
    assert ids_of(repo.snapshot(c2).query(dataset="cruise")) == ["IFCB1-0", "IFCB2-1"]
    assert ids_of(repo.snapshot(c3).query(dataset="cruise")) == ["IFCB2-1"]
    assert ids_of(repo.snapshot().query(dataset="cruise")) == ["IFCB2-1"]
    # by tag too; and before the dataset existed, it is not found
    repo.create_tag("v1", c1)
    assert ids_of(repo.snapshot("v1").query(dataset="cruise")) == ["IFCB1-0"]
    with pytest.raises(NotFoundError):
        repo.snapshot("HEAD~4").query(dataset="cruise")
    # the later image is in the dataset's span at HEAD only if its span says so
    assert "late" not in ids_of(repo.snapshot().query(dataset="cruise"))


def test_removing_the_last_span_removes_the_dataset(repo):
    add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY, description="gone soon")
    add_dataset_span(repo, "other", "IFCB2", T0, T0 + DAY)
    kept = repo.resolve()
    removed = remove_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    assert removed is not None
    assert "cruise" in repo.odb.get_commit(removed).message
    assert set(repo.snapshot().datasets()) == {"other"}
    with pytest.raises(NotFoundError):
        repo.snapshot().dataset("cruise")
    with pytest.raises(NotFoundError):
        repo.snapshot().query(dataset="cruise")
    with pytest.raises(NotFoundError):
        remove_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    assert repo.snapshot(kept).dataset("cruise").description == "gone soon"
    # adding a span again starts a new dataset: the old description is gone
    add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    assert repo.snapshot().dataset("cruise").description == ""
    # removing every dataset leaves an empty definition
    remove_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    remove_dataset_span(repo, "other", "IFCB2", T0, T0 + DAY)
    assert repo.snapshot().datasets() == {}


# -- transactions -------------------------------------------------------------------


def test_dataset_edits_and_images_in_one_transaction_make_one_commit(repo):
    add_dataset_span(repo, "old", "IFCB2", T0, T0 + DAY)
    base, count = repo.resolve(), commit_count(repo)
    with repo.transaction(message="day 4 and its datasets") as tx:
        rows = [
            {"image_id": f"new-{n}", "timestamp": T0 + 3 * DAY + timedelta(hours=n)}
            for n in range(3)
        ]
        tx.append_bytes("IFCB3", rows, [blob(r["image_id"]) for r in rows])
        tx.add_dataset_span("day4", "IFCB3", T0 + 3 * DAY, T0 + 4 * DAY, description="fourth day")
        tx.add_dataset_span("day4", "IFCB1", T0 + 2 * DAY, T0 + 3 * DAY)
        tx.remove_dataset_span("old", "IFCB2", T0, T0 + DAY)
    assert tx.commit_id is not None and tx.commit_id == repo.resolve()
    assert commit_count(repo) == count + 1
    commit = repo.odb.get_commit(tx.commit_id)
    assert commit.parents == (base,)
    assert commit.message == "day 4 and its datasets"
    assert len(commit.batches) == 1
    assert set(repo.snapshot().datasets()) == {"day4"}
    assert repo.snapshot().dataset("day4").description == "fourth day"
    assert ids_of(repo.snapshot().query(dataset="day4")) == ["IFCB1-2", "new-0", "new-1", "new-2"]
    assert repo.snapshot().count(dataset="day4") == 4
    # the commit before it has neither the images nor the new dataset
    assert set(repo.snapshot("HEAD~1").datasets()) == {"old"}
    assert repo.snapshot("HEAD~1").count(instruments=["IFCB3"]) == 0


def test_a_transaction_with_only_a_no_op_dataset_edit_commits_nothing(repo):
    add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    head, count = repo.resolve(), commit_count(repo)
    with repo.transaction(message="nothing new") as tx:
        tx.add_dataset_span("cruise", "IFCB1", T0, T0 + DAY)
    assert tx.commit_id is None
    assert (repo.resolve(), commit_count(repo)) == (head, count)


def test_a_failed_transaction_leaves_datasets_alone(repo):
    head = repo.resolve()
    with pytest.raises(RuntimeError):
        with repo.transaction(message="fails") as tx:
            tx.add_dataset_span("cruise", "IFCB1", T0, T0 + DAY)
            raise RuntimeError("boom")
    with pytest.raises(InvalidInputError):
        with repo.transaction(message="bad span") as tx:
            tx.add_dataset_span("cruise", "IFCB1", T0, T0 + DAY)
            tx.add_dataset_span("cruise", "IFCB1", T0 + DAY, T0)
    assert repo.resolve() == head
    assert repo.snapshot().datasets() == {}


def test_edits_in_one_transaction_apply_in_order(repo):
    """A span added earlier in the same transaction can be removed later in
    it (and removing one span twice fails when asked, not at commit)."""
    add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    head = repo.resolve()
    with repo.transaction(message="add then remove") as tx:
        tx.add_dataset_span("cruise", "IFCB2", T0, T0 + DAY)
        tx.remove_dataset_span("cruise", "IFCB2", T0, T0 + DAY)
    assert tx.commit_id is None  # no net change
    assert repo.resolve() == head

    with repo.transaction(message="remove twice") as tx:
        tx.remove_dataset_span("cruise", "IFCB1", T0, T0 + DAY)
        with pytest.raises(NotFoundError):
            tx.remove_dataset_span("cruise", "IFCB1", T0, T0 + DAY)
        tx.abort()
    assert repo.resolve() == head


# -- concurrent writers -----------------------------------------------------------


def test_two_writers_adding_spans_to_one_dataset_both_land(repo):
    """Both transactions start on the same base; the later commit re-parents
    on the earlier and keeps both spans."""
    base = repo.resolve()
    url = repo.url
    writers = [Repository.open(url), Repository.open(url)]
    txs = [w.transaction(message=f"writer {n}") for n, w in enumerate(writers)]
    txs[0].add_dataset_span("cruise", "IFCB1", T0, T0 + DAY)
    txs[1].add_dataset_span("cruise", "IFCB2", T0 + DAY, T0 + 2 * DAY)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def commit(tx) -> None:
        try:
            barrier.wait()
            tx.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(tx,)) for tx in txs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    ids = [tx.commit_id for tx in txs]
    assert None not in ids and ids[0] != ids[1]

    head = repo.resolve()
    assert head in ids
    later = repo.odb.get_commit(head)
    earlier_id = ids[1] if head == ids[0] else ids[0]
    assert later.parents == (earlier_id,)  # re-parented on the other writer's commit
    assert repo.odb.get_commit(earlier_id).parents == (base,)
    assert repo.snapshot().dataset("cruise").spans == (
        span("IFCB1", T0, T0 + DAY),
        span("IFCB2", T0 + DAY, T0 + 2 * DAY),
    )
    assert [oid for oid, _ in repo.log()][:3] == [head, earlier_id, base]
    assert ids_of(repo.snapshot().query(dataset="cruise")) == ["IFCB1-0", "IFCB2-1"]


def test_many_writers_racing_on_one_dataset_all_land(repo):
    base_count = commit_count(repo)
    url = repo.url
    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    results: list[str | None] = [None] * n

    def writer(k: int) -> None:
        try:
            mine = Repository.open(url)
            barrier.wait()
            if k % 2:  # half of them add images in the same commit
                with mine.transaction(message=f"writer {k}") as tx:
                    tx.append_bytes(
                        "IFCB9", [{"image_id": f"w{k}", "timestamp": T0 + k * DAY}], [blob(f"w{k}")]
                    )
                    tx.add_dataset_span("race", "IFCB9", T0 + k * DAY, T0 + (k + 1) * DAY)
                results[k] = tx.commit_id
            else:
                results[k] = add_dataset_span(
                    mine, "race", "IFCB1", T0 + k * DAY, T0 + (k + 1) * DAY
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert None not in results and len(set(results)) == n
    assert commit_count(repo) == base_count + n
    # history is a line: every commit has one parent
    assert all(len(c.parents) <= 1 for _, c in repo.log())
    expected = sorted(
        (("IFCB9" if k % 2 else "IFCB1"), T0 + k * DAY, T0 + (k + 1) * DAY) for k in range(n)
    )
    assert [
        (s.instrument, s.start, s.end) for s in repo.snapshot().dataset("race").spans
    ] == expected
    assert ids_of(repo.snapshot().query(dataset="race", instruments=["IFCB9"])) == [
        "w1",
        "w3",
        "w5",
    ]


def test_concurrent_add_and_remove_of_different_spans_both_land(repo):
    add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    url = repo.url
    adder, remover = Repository.open(url), Repository.open(url)
    add_tx = adder.transaction(message="add")
    add_tx.add_dataset_span("cruise", "IFCB2", T0, T0 + DAY)
    remove_tx = remover.transaction(message="remove")
    remove_tx.remove_dataset_span("cruise", "IFCB1", T0, T0 + DAY)
    assert add_tx.commit() is not None
    assert remove_tx.commit() is not None  # on a moved branch: re-parented
    assert repo.odb.get_commit(remove_tx.commit_id).parents == (add_tx.commit_id,)
    assert repo.snapshot().dataset("cruise").spans == (span("IFCB2", T0, T0 + DAY),)


def test_concurrent_removal_of_the_same_span_removes_it_once(repo):
    add_dataset_span(repo, "cruise", "IFCB1", T0, T0 + DAY)
    add_dataset_span(repo, "cruise", "IFCB2", T0, T0 + DAY)
    count = commit_count(repo)
    first, second = Repository.open(repo.url), Repository.open(repo.url)
    tx1 = first.transaction(message="one")
    tx1.remove_dataset_span("cruise", "IFCB1", T0, T0 + DAY)
    tx2 = second.transaction(message="two")
    tx2.remove_dataset_span("cruise", "IFCB1", T0, T0 + DAY)
    assert tx1.commit() is not None
    try:
        outcome = tx2.commit()
    except NotFoundError:
        outcome = None
    assert outcome is None  # the span was already gone: nothing (more) to commit
    assert commit_count(repo) == count + 1
    assert repo.snapshot().dataset("cruise").spans == (span("IFCB2", T0, T0 + DAY),)
