"""Metadata tables a newcomer brings: an instrument column, the columns the
store computes (so an export commits back), times without an offset (and
``--timezone``), and samples defined by a time window only."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_error, images, invoke, ok

from improv_vcs.query.filters import build_query
from improv_vcs.repository.repository import Repository
from improv_vcs.snapshot import registry

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def repo(runner, tmp_path):
    path = tmp_path / "repo"
    ok(invoke(runner, "init", path))
    return path


def state(path: Path) -> tuple[dict, list]:
    """Branches and every stored file: what a refused commit must not change."""
    return Repository.open(path).branches(), sorted(
        p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()
    )


def commit(runner, repo: Path, source: Path, *args: str):
    return invoke(runner, "--repo", repo, "commit", source, "-q", *args)


def by_id(repo: Path, *columns: str) -> dict[str, tuple]:
    rows = Repository.open(repo).snapshot().images()
    return {r["image_id"]: tuple(r[c] for c in columns) for r in rows.to_pylist()}


def batches(repo: Path) -> list[tuple[str, int]]:
    """(instrument, rows) of every batch of the head commit."""
    opened = Repository.open(repo)
    _, head = next(opened.log("HEAD", limit=1))
    return sorted((b.instrument, b.rows) for b in head.batches)


def query_ids(runner, repo: Path, *args: str) -> list[str]:
    result = ok(invoke(runner, "--repo", repo, "query", *args, "-c", "image_id", "--json"))
    return [row["image_id"] for row in json.loads(result.stdout)]


def commits(repo: Path) -> int:
    return len(list(Repository.open(repo).log()))


def table_folder(path: Path, csv: str, *ids: str) -> Path:
    images(path, *ids)
    (path / "metadata.csv").write_text(csv)
    return path


# -- 1. instruments ----------------------------------------------------------------------


def test_instrument_column_equal_to_the_instrument_option_is_accepted(runner, repo, tmp_path):
    src = table_folder(
        tmp_path / "src",
        "image_id,timestamp,instrument\na1,2024-05-01T10:00:00Z,SCOPE1\na2,2024-05-01T10:01:00Z,\n",
        "a1",
        "a2",
    )
    ok(commit(runner, repo, src, "-i", "SCOPE1"))
    assert by_id(repo, "instrument") == {"a1": ("SCOPE1",), "a2": ("SCOPE1",)}
    assert batches(repo) == [("SCOPE1", 2)]
    assert "instrument" not in Repository.open(repo).snapshot().reader.extra_column_types()


def test_without_the_option_the_instrument_column_splits_one_commit_into_batches(
    runner, repo, tmp_path
):
    src = table_folder(
        tmp_path / "src",
        "image_id,timestamp,instrument\n"
        "a1,2024-05-01T10:00:00Z,SCOPE1\nb1,2024-05-01T10:01:00Z,SCOPE2\na2,2024-05-01T10:02:00Z,SCOPE1\n",
        "a1",
        "a2",
        "b1",
    )
    result = ok(commit(runner, repo, src, "--json"))
    assert '"instruments": [\n    "SCOPE1",\n    "SCOPE2"\n  ]' in result.stdout
    assert commits(repo) == 1
    assert batches(repo) == [("SCOPE1", 2), ("SCOPE2", 1)]
    assert by_id(repo, "instrument") == {"a1": ("SCOPE1",), "a2": ("SCOPE1",), "b1": ("SCOPE2",)}


def test_ifcb_style_names_carry_the_instrument(runner, repo, tmp_path):
    src = images(
        tmp_path / "src",
        "D20240501T001500_IFCB107_00001",
        "D20240501T001500_IFCB107_00002",
        "D20240501T003000_IFCB108_00001",
        "IFCB5_2012_028_081515_00001",
    )
    ok(commit(runner, repo, src))
    assert commits(repo) == 1
    assert batches(repo) == [("IFCB107", 2), ("IFCB108", 1), ("IFCB5", 1)]
    assert by_id(repo, "instrument", "timestamp")["IFCB5_2012_028_081515_00001"] == (
        "IFCB5",
        at("2012-01-28T08:15:15"),
    )


def test_a_row_disagreeing_with_the_instrument_option_is_refused_with_its_row(
    runner, repo, tmp_path
):
    before = state(repo)
    src = table_folder(
        tmp_path / "src",
        "image_id,timestamp,instrument\na1,2024-05-01T10:00:00Z,SCOPE1\na2,2024-05-01T10:01:00Z,SCOPE2\n",
        "a1",
        "a2",
    )
    line = assert_error(commit(runner, repo, src, "-i", "SCOPE1"), 2)
    assert line == (
        f"error: {src / 'metadata.csv'}, row 2 (line 3): instrument 'SCOPE2' disagrees with "
        f"--instrument 'SCOPE1'"
    )
    parquet = images(tmp_path / "pq", "a1", "a2")
    pq.write_table(
        pa.table(
            {
                "image_id": ["a1", "a2"],
                "timestamp": [at("2024-05-01T10:00:00")] * 2,
                "instrument": ["SCOPE2", "SCOPE1"],
            }
        ),
        parquet / "metadata.parquet",
    )
    line = assert_error(commit(runner, repo, parquet, "-i", "SCOPE1"), 2)
    assert (
        line == f"error: {parquet / 'metadata.parquet'}, row 1: instrument 'SCOPE2' disagrees with "
        f"--instrument 'SCOPE1'"
    )
    assert state(repo) == before


def test_rows_without_any_instrument_are_one_clear_line(runner, repo, tmp_path):
    before = state(repo)
    plain = table_folder(tmp_path / "plain", "image_id,timestamp\na1,2024-05-01T10:00:00Z\n", "a1")
    assert_error(
        commit(runner, repo, plain), 2, "--format files needs --instrument (or an instrument column"
    )
    partly = table_folder(
        tmp_path / "partly",
        "image_id,timestamp,instrument\na1,2024-05-01T10:00:00Z,SCOPE1\na2,2024-05-01T10:00:00Z,\n",
        "a1",
        "a2",
    )
    line = assert_error(commit(runner, repo, partly), 2)
    assert line == (
        f"error: {partly / 'a2.png'}: no instrument for image 'a2'; give --instrument, fill its "
        f"instrument cell, "
        "or use an IFCB-style name"
    )
    bad = table_folder(
        tmp_path / "bad", "image_id,timestamp,instrument\na1,2024-05-01T10:00:00Z,no/slash\n", "a1"
    )
    assert_error(
        commit(runner, repo, bad), 2, f"{bad / 'metadata.csv'}, row 1 (line 2): ", "no/slash"
    )
    assert state(repo) == before


# -- 2. the columns the store computes -------------------------------------------------------


@pytest.fixture
def exported(runner, repo, tmp_path):
    """A repository of two instruments (lat/lon, an extra column), and its export."""
    ok(
        commit(
            runner,
            repo,
            images(
                tmp_path / "a", "D20240501T001500_IFCB107_00001", "D20240501T001500_IFCB107_00002"
            ),
            "-i",
            "IFCB107",
        )
    )
    src = table_folder(
        tmp_path / "b",
        "image_id,timestamp,lat,lon,sample_id,media_type,station\n"
        "s1,2024-05-02T06:00:00+02:00,41.5,-70.25,cast7,image/x-raw,A\ns2,2024-05-02T06:01:00Z,,,,,B\n",
        "s1",
        "s2",
    )
    ok(commit(runner, repo, src, "-i", "SCOPE1"))
    return repo


@pytest.mark.parametrize("metadata_format", ["parquet", "csv"])
def test_export_then_commit_into_a_new_repository_round_trips(
    runner, exported, tmp_path, metadata_format
):
    dest = tmp_path / "dest"
    ok(
        invoke(
            runner, "--repo", exported, "export", dest, "--metadata-format", metadata_format, "-q"
        )
    )
    new = tmp_path / "new"
    ok(invoke(runner, "init", new))
    ok(commit(runner, new, dest))
    columns = (
        "instrument",
        "blob_id",
        "size",
        "timestamp",
        "lat",
        "lon",
        "sample_id",
        "media_type",
    )
    assert by_id(new, *columns) == by_id(exported, *columns)
    # a CSV cannot tell an empty text from none: null extra text comes back empty
    station = {"s1": ("A",), "s2": ("B",)} | dict.fromkeys(
        ("D20240501T001500_IFCB107_00001", "D20240501T001500_IFCB107_00002"),
        (None if metadata_format == "parquet" else "",),
    )
    assert by_id(new, "station") == station
    assert sorted(by_id(new)) == [
        "D20240501T001500_IFCB107_00001",
        "D20240501T001500_IFCB107_00002",
        "s1",
        "s2",
    ]
    assert batches(new) == [("IFCB107", 2), ("SCOPE1", 2)]
    assert set(Repository.open(new).snapshot().reader.extra_column_types()) == {
        "station"
    }  # no file, pack, offset
    # the same folder again adds nothing
    result = ok(commit(runner, new, dest))
    assert result.stdout.startswith("Nothing new to commit")


def _exported_table(runner, exported, dest: Path) -> pa.Table:
    ok(invoke(runner, "--repo", exported, "export", dest, "-q"))
    return pq.read_table(dest / "metadata.parquet")


def _edit(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    index = table.column_names.index(column)
    return table.set_column(index, column, pa.array(values, table.schema.field(column).type))


def test_a_wrong_blob_id_or_size_is_refused_naming_row_and_image(runner, exported, tmp_path):
    dest = tmp_path / "dest"
    table = _exported_table(runner, exported, dest)
    new = tmp_path / "new"
    ok(invoke(runner, "init", new))
    before = state(new)
    name = table.column("file")[2].as_py()
    right = table.column("blob_id")[2].as_py()
    pq.write_table(_edit(table, "blob_id", 2, "0" * 64), dest / "metadata.parquet")
    line = assert_error(commit(runner, new, dest), 2)
    assert line == (
        f"error: {dest / 'metadata.parquet'}, row 3: blob_id 000000000000… does not match the "
        f"bytes of "
        f"{name!r} (SHA-256 {right[:12]}…)"
    )
    size = table.column("size")[1].as_py()
    pq.write_table(_edit(table, "size", 1, size + 1), dest / "metadata.parquet")
    line = assert_error(commit(runner, new, dest), 2)
    assert line == (
        f"error: {dest / 'metadata.parquet'}, row 2: size {size + 1} but "
        f"{table.column('file')[1].as_py()!r} has {size} bytes"
    )
    pq.write_table(_edit(table, "blob_id", 0, "not-a-hash"), dest / "metadata.parquet")
    assert_error(commit(runner, new, dest), 2, "row 1: blob_id 'not-a-hash' is not a SHA-256")
    assert state(new) == before


def test_pack_and_offset_are_ignored_and_media_type_is_kept(runner, exported, tmp_path):
    dest = tmp_path / "dest"
    table = _exported_table(runner, exported, dest)
    table = _edit(_edit(table, "pack", 0, "elsewhere"), "offset", 0, -5)
    pq.write_table(table, dest / "metadata.parquet")
    new = tmp_path / "new"
    ok(invoke(runner, "init", new))
    ok(commit(runner, new, dest))
    assert by_id(new, "blob_id", "media_type") == by_id(exported, "blob_id", "media_type")
    assert by_id(new, "media_type")["s1"] == ("image/x-raw",)
    packs = set(Repository.open(new).snapshot().images().column("pack").to_pylist())
    assert "elsewhere" not in packs and len(packs) == 1


# -- 3. times without an offset ---------------------------------------------------------------


def test_times_without_an_offset_are_utc_everywhere(runner, repo, tmp_path):
    src = table_folder(
        tmp_path / "src",
        "image_id,timestamp\na1,2024-05-01T10:00:00\na2,2024-05-01 "
        "10:30\na3,2024-05-01T11:00:00+02:00\n",
        "a1",
        "a2",
        "a3",
    )
    ok(commit(runner, repo, src, "-i", "SCOPE1"))
    assert by_id(repo, "timestamp") == {
        "a1": (at("2024-05-01T10:00:00"),),
        "a2": (at("2024-05-01T10:30:00"),),
        "a3": (at("2024-05-01T09:00:00"),),
    }
    naive_parquet = images(tmp_path / "pq", "p1")
    pq.write_table(
        pa.table(
            {
                "image_id": ["p1"],
                "timestamp": pa.array([datetime(2024, 5, 1, 10, 15)], pa.timestamp("s")),
            }
        ),
        naive_parquet / "metadata.parquet",
    )
    ok(commit(runner, repo, naive_parquet, "-i", "SCOPE1"))
    assert by_id(repo, "timestamp")["p1"] == (at("2024-05-01T10:15:00"),)

    opened = Repository.open(repo)
    wanted = ["a1", "p1"]
    # the Python API ...
    assert build_query(start=datetime(2024, 5, 1, 10)).start == at("2024-05-01T10:00:00")
    assert (
        opened.snapshot()
        .query(start=datetime(2024, 5, 1, 10), end=datetime(2024, 5, 1, 10, 30))
        .column("image_id")
        .to_pylist()
        == wanted
    )
    assert (
        opened.snapshot()
        .query(start="2024-05-01T10:00:00", end="2024-05-01T10:30:00")
        .column("image_id")
        .to_pylist()
        == wanted
    )
    # ... the command line ...
    assert (
        query_ids(runner, repo, "--start", "2024-05-01T10:00:00", "--end", "2024-05-01T10:30")
        == wanted
    )
    # ... and the HTTP API agree
    import httpx

    from improv_vcs.service.app import create_app
    from improv_vcs.service.auth import Access
    from improv_vcs.service.server import BackgroundServer

    with BackgroundServer(create_app(str(repo), Access(anonymous_read=True))) as base:
        got = httpx.get(
            f"{base}/v1/images",
            params={"start": "2024-05-01T10:00:00", "end": "2024-05-01T10:30:00"},
        )
        assert got.status_code == 200, got.text
        assert [r["image_id"] for r in got.json()["rows"]] == wanted
    # ... and so do tables given to a transaction, as-of times and sample windows
    with opened.transaction(message="naive rows") as tx:
        tx.append_bytes(
            "SCOPE2", [{"image_id": "t1", "timestamp": datetime(2024, 5, 1, 9)}], [b"1"]
        )
        tx.append_bytes("SCOPE2", [{"image_id": "t2", "timestamp": "2024-05-01T09:30:00"}], [b"2"])
    assert {k: v for k, v in by_id(repo, "timestamp").items() if k.startswith("t")} == {
        "t1": (at("2024-05-01T09:00:00"),),
        "t2": (at("2024-05-01T09:30:00"),),
    }
    assert opened.snapshot(as_of=datetime(2100, 1, 1)).commit_id == opened.resolve()
    assert registry.deployment(datetime(2024, 5, 1)).start == at("2024-05-01T00:00:00")


def test_timezone_reads_times_without_an_offset_in_that_zone(runner, repo, tmp_path):
    src = table_folder(
        tmp_path / "src",
        "image_id,timestamp\nsummer,2024-05-01T12:00:00\nwinter,2024-01-15T12:00:00\nexplicit,2024-05-01T12:00:00Z\n",
        "summer",
        "winter",
        "explicit",
    )
    ok(commit(runner, repo, src, "-i", "SCOPE1", "--timezone", "Europe/Stockholm"))
    assert by_id(repo, "timestamp") == {
        "summer": (at("2024-05-01T10:00:00"),),
        "winter": (at("2024-01-15T11:00:00"),),
        "explicit": (at("2024-05-01T12:00:00"),),
    }
    offset = images(tmp_path / "offset", "o1")
    pq.write_table(
        pa.table(
            {
                "image_id": ["o1"],
                "timestamp": pa.array([datetime(2024, 5, 1, 12)], pa.timestamp("us")),
            }
        ),
        offset / "metadata.parquet",
    )
    ok(commit(runner, repo, offset, "-i", "SCOPE1", "--timezone", "-05:30"))
    assert by_id(repo, "timestamp")["o1"] == (at("2024-05-01T17:30:00"),)
    ifcb = images(
        tmp_path / "ifcb", "D20240501T001500_IFCB107_00001"
    )  # IFCB names are UTC, whatever --timezone says
    ok(commit(runner, repo, ifcb, "--timezone", "Europe/Stockholm"))
    assert by_id(repo, "timestamp")["D20240501T001500_IFCB107_00001"] == (
        at("2024-05-01T00:15:00"),
    )


def test_unknown_or_unfit_timezones_are_one_clear_line(runner, repo, tmp_path):
    before = state(repo)
    src = table_folder(tmp_path / "src", "image_id,timestamp\na1,2024-05-01T12:00:00\n", "a1")
    line = assert_error(commit(runner, repo, src, "-i", "SCOPE1", "--timezone", "Mars/Olympus"), 2)
    assert line == (
        "error: --timezone 'Mars/Olympus': unknown time zone; give an IANA name such as "
        "Europe/Stockholm, "
        "or an offset such as +02:00"
    )
    assert_error(
        commit(runner, repo, src, "-i", "SCOPE1", "--timezone", "+25:00"), 2, "--timezone '+25:00'"
    )
    assert_error(
        commit(runner, repo, src, "-i", "SCOPE1", "--timezone", "../etc/passwd"),
        2,
        "unknown time zone",
    )
    line = assert_error(commit(runner, repo, src, "--format", "ifcb", "--timezone", "UTC"), 2)
    assert line == "error: --timezone does not apply to --format ifcb: its times carry their zone"
    twice = table_folder(
        tmp_path / "twice",
        "image_id,timestamp\na1,2024-05-01T12:00:00\na2,2024-10-27T02:30:00\n",
        "a1",
        "a2",
    )
    line = assert_error(
        commit(runner, repo, twice, "-i", "SCOPE1", "--timezone", "Europe/Stockholm"), 2
    )
    assert line.endswith(
        "column 'timestamp', row 2: 2024-10-27T02:30:00 passes twice (the clocks go back) in "
        "Europe/Stockholm; "
        "give that time a UTC offset"
    )
    skipped = table_folder(
        tmp_path / "skipped", "image_id,timestamp\na1,2024-03-31T02:30:00\n", "a1"
    )
    line = assert_error(
        commit(runner, repo, skipped, "-i", "SCOPE1", "--timezone", "Europe/Stockholm"), 2
    )
    assert line.endswith(
        "row 1: 2024-03-31T02:30:00 never happens (the clocks skip it) in Europe/Stockholm; give "
        "that time a UTC offset"
    )
    assert state(repo) == before


# -- 4. samples defined by a time window ---------------------------------------------------------


@pytest.fixture
def windowed(runner, repo, tmp_path):
    """SCOPE1 images with and without sample ids around sample S1's window
    [10:00, 11:00), and a SCOPE2 image inside it."""
    src = table_folder(
        tmp_path / "one",
        "image_id,timestamp,sample_id\n"
        "a_start,2024-05-01T10:00:00Z,\n"
        "a_mid,2024-05-01T10:30:00Z,\n"
        "a_end,2024-05-01T11:00:00Z,\n"
        "other,2024-05-01T10:15:00Z,cast9\n"
        "named,2024-05-01T13:00:00Z,S1\n",
        "a_start",
        "a_mid",
        "a_end",
        "other",
        "named",
    )
    ok(commit(runner, repo, src, "-i", "SCOPE1"))
    ok(
        commit(
            runner,
            repo,
            table_folder(
                tmp_path / "two", "image_id,timestamp\nb_mid,2024-05-01T10:10:00Z\n", "b_mid"
            ),
            "-i",
            "SCOPE2",
        )
    )
    ok(
        invoke(
            runner,
            "--repo",
            repo,
            "sample",
            "add",
            "S1",
            "-i",
            "SCOPE1",
            "--start",
            "2024-05-01T10:00:00Z",
            "--end",
            "2024-05-01T11:00:00Z",
            "--quality",
            "good",
        )
    )
    ok(
        invoke(
            runner,
            "--repo",
            repo,
            "sample",
            "add",
            "S0",
            "-i",
            "SCOPE2",
            "--start",
            "2024-04-01T00:00:00Z",
            "--end",
            "2024-04-02T00:00:00Z",
            "--quality",
            "bad",
        )
    )
    return repo


def test_a_window_sample_selects_its_instruments_images_without_sample_id(runner, windowed):
    assert query_ids(runner, windowed, "--sample", "S1") == ["a_start", "a_mid", "named"]
    assert query_ids(runner, windowed, "--sample-quality", "good") == ["a_start", "a_mid", "named"]
    assert query_ids(runner, windowed, "--sample-quality", "bad") == []
    assert query_ids(runner, windowed, "--sample", "cast9") == ["other"]
    count = ok(invoke(runner, "--repo", windowed, "query", "--sample", "S1", "--count"))
    assert count.stdout.strip() == "3"
    opened = Repository.open(windowed)
    assert opened.snapshot().query(samples=("S1",)).column("image_id").to_pylist() == [
        "a_start",
        "a_mid",
        "named",
    ]
    assert opened.snapshot().count(sample_quality=("good",)) == 3


def test_sample_columns_join_window_samples_too(runner, windowed):
    result = ok(
        invoke(
            runner,
            "--repo",
            windowed,
            "query",
            "-c",
            "image_id",
            "--with",
            "sample.quality",
            "--json",
        )
    )
    rows = [(row["image_id"], row["sample.quality"]) for row in json.loads(result.stdout)]
    assert rows == [
        ("a_start", "good"),
        ("b_mid", None),
        ("other", None),
        ("a_mid", "good"),
        ("a_end", None),
        ("named", "good"),
    ]


def test_timezone_reads_a_tiff_time_without_an_offset(runner, repo, tmp_path):
    import numpy as np
    import tifffile

    src = tmp_path / "stacks"
    src.mkdir()
    tifffile.imwrite(src / "well1.tif", np.zeros((2, 4, 4), np.uint8))
    ok(
        commit(
            runner,
            repo,
            src,
            "--format",
            "tiff",
            "-i",
            "SCOPE1",
            "--option",
            "time=2024-05-01T12:00:00",
            "--timezone",
            "+02:00",
            "--no-raw",
        )
    )
    assert set(by_id(repo, "timestamp").values()) == {(at("2024-05-01T10:00:00"),)}
