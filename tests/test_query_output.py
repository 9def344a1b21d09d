"""What ``improv query`` writes: the format an output file's extension
implies, atomic files, the default columns, ``--json``; and queries that
join sample records while filtering, with DuckDB failures as one-line errors."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import A1, A2, assert_error, assert_json_error, images, invoke, ok, sample_images

from improv_vcs import InvalidInputError, Repository
from improv_vcs.query.filters import Where

UTC = timezone.utc
DEFAULT = ["image_id", "instrument", "timestamp", "lat", "lon", "depth", "sample_id", "size"]
ROWS = [  # the default columns of the ``committed`` repository's images
    {
        "image_id": A1,
        "instrument": "IFCB107",
        "timestamp": datetime(2024, 1, 1, 12, tzinfo=UTC),
        "lat": None,
        "lon": None,
        "depth": None,
        "sample_id": "D20240101T120000_IFCB107",
        "size": 36,
    },
    {
        "image_id": A2,
        "instrument": "IFCB107",
        "timestamp": datetime(2024, 1, 1, 12, tzinfo=UTC),
        "lat": None,
        "lon": None,
        "depth": None,
        "sample_id": "D20240101T120000_IFCB107",
        "size": 36,
    },
    {
        "image_id": "b1",
        "instrument": "scope-2",
        "timestamp": datetime(2024, 1, 2, 6, tzinfo=UTC),
        "lat": 41.5,
        "lon": -70.25,
        "depth": 2.0,
        "sample_id": None,
        "size": 8,
    },
]
JSON_ROWS = [{**r, "timestamp": r["timestamp"].isoformat()} for r in ROWS]


def query(runner, repo, *args):
    return invoke(runner, "--repo", repo, "query", *args)


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- 1. the output file's extension picks its format ------------------------------------


def test_parquet_file_by_extension(runner, committed, tmp_path):
    out = tmp_path / "rows.parquet"
    assert ok(query(runner, committed, "-o", out)).stdout == ""
    table = pq.read_table(out)
    assert table.column_names == DEFAULT
    assert table.to_pylist() == ROWS


@pytest.mark.parametrize("name", ["rows.arrow", "rows.feather", "ROWS.ARROW"])
def test_arrow_ipc_file_by_extension(runner, committed, tmp_path, name):
    out = tmp_path / name
    ok(query(runner, committed, "-o", out))
    with pa.ipc.open_file(out) as reader:
        assert reader.read_all().to_pylist() == ROWS


def test_csv_file_by_extension(runner, committed, tmp_path):
    out = tmp_path / "rows.csv"
    ok(query(runner, committed, "-o", out))
    assert out.read_text().splitlines() == [
        '"image_id","instrument","timestamp","lat","lon","depth","sample_id","size"',
        f'"{A1}","IFCB107",2024-01-01 12:00:00.000000Z,,,,"D20240101T120000_IFCB107",36',
        f'"{A2}","IFCB107",2024-01-01 12:00:00.000000Z,,,,"D20240101T120000_IFCB107",36',
        '"b1","scope-2",2024-01-02 06:00:00.000000Z,41.5,-70.25,2,,8',
    ]
    assert [r["image_id"] for r in csv.DictReader(io.StringIO(out.read_text()))] == [A1, A2, "b1"]


def test_json_and_jsonl_files_by_extension(runner, committed, tmp_path):
    ok(query(runner, committed, "-o", tmp_path / "rows.json"))
    assert json.loads((tmp_path / "rows.json").read_text()) == JSON_ROWS
    for name in ("rows.jsonl", "rows.ndjson"):
        ok(query(runner, committed, "-o", tmp_path / name))
        assert [
            json.loads(line) for line in (tmp_path / name).read_text().splitlines()
        ] == JSON_ROWS


def test_txt_file_is_the_table(runner, committed, tmp_path):
    out = tmp_path / "rows.txt"
    ok(query(runner, committed, "-o", out))
    assert out.read_text() == ok(query(runner, committed)).stdout


def test_matching_format_and_extension_agree(runner, committed, tmp_path):
    out = tmp_path / "rows.parquet"
    ok(query(runner, committed, "-o", out, "--format", "parquet"))
    assert pq.read_table(out).to_pylist() == ROWS


@pytest.mark.parametrize(
    "name, args",
    [
        ("rows.parquet", ["--format", "table"]),
        ("rows.parquet", ["--format", "csv"]),
        ("rows.csv", ["--format", "parquet"]),
        ("rows.json", ["-f", "jsonl"]),
        ("rows.arrow", ["-f", "parquet"]),
        ("rows.feather", ["-f", "json"]),
        ("rows.txt", ["-f", "csv"]),
    ],
)
def test_format_that_disagrees_with_the_extension_is_refused(
    runner, committed, tmp_path, name, args
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    line = assert_error(query(runner, committed, "-o", out_dir / name, *args), 2, name)
    assert "--format" in line
    assert files(out_dir) == []


def test_refused_format_leaves_an_existing_file_alone(runner, committed, tmp_path):
    out = tmp_path / "rows.parquet"
    ok(query(runner, committed, "-o", out))
    before = out.read_bytes()
    assert_error(
        query(runner, committed, "-o", out, "--format", "table"),
        2,
        "--format table",
        "rows.parquet",
    )
    assert out.read_bytes() == before


def test_unknown_extension_is_refused_with_the_known_ones(runner, committed, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    line = assert_error(
        query(runner, committed, "-o", out_dir / "rows.xlsx"), 2, "rows.xlsx", "--format"
    )
    for known in (".parquet", ".csv", ".json", ".jsonl", ".arrow", ".feather"):
        assert known in line
    assert_error(query(runner, committed, "-o", out_dir / "rows"), 2, "'rows'", ".parquet")
    assert files(out_dir) == []
    # an explicit --format decides for a name that implies none
    ok(query(runner, committed, "-o", out_dir / "rows.dat", "--format", "parquet"))
    assert pq.read_table(out_dir / "rows.dat").to_pylist() == ROWS


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_binary_format_to_the_terminal_is_refused(runner, committed, fmt):
    assert_error(query(runner, committed, "--format", fmt), 2, f"--format {fmt} needs -o FILE")


def test_output_into_a_missing_directory_or_onto_a_directory_is_refused(
    runner, committed, tmp_path
):
    assert_error(
        query(runner, committed, "-o", tmp_path / "nope" / "rows.csv"), 2, "does not exist"
    )
    assert_error(query(runner, committed, "-o", tmp_path), 2, "is a directory")
    assert not (tmp_path / "nope").exists()


def test_explain_does_not_pretend_to_write_a_file(runner, committed, tmp_path):
    assert_error(
        query(runner, committed, "--explain", "-o", tmp_path / "plan.txt"), 2, "--explain", "-o"
    )
    assert not (tmp_path / "plan.txt").exists()


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(
    runner, committed, tmp_path, monkeypatch
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "rows.parquet"
    ok(query(runner, committed, "-o", out, "--limit", "1"))
    before = out.read_bytes()

    def disk_full(table, where, **kwargs):
        if isinstance(where, (str, os.PathLike)):
            Path(where).write_bytes(b"PAR1 half a file")
        else:
            where.write(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    assert_error(query(runner, committed, "-o", out), 7, "No space left on device", "rows.parquet")
    assert out.read_bytes() == before
    assert files(out_dir) == ["rows.parquet"]  # no temporary file left behind
    monkeypatch.undo()
    assert pq.read_table(out).to_pylist() == ROWS[:1]

    assert_error(
        query(runner, committed, "-o", out_dir / "new.parquet", "--where", "nope = 1"),
        2,
        "unknown column",
    )
    assert files(out_dir) == ["rows.parquet"]


def test_new_output_file_gets_ordinary_permissions(runner, committed, tmp_path):
    mask = os.umask(0o022)
    try:
        ok(query(runner, committed, "-o", tmp_path / "rows.csv"))
    finally:
        os.umask(mask)
    assert (tmp_path / "rows.csv").stat().st_mode & 0o777 == 0o644


def test_count_goes_to_a_file_in_its_format(runner, committed, tmp_path):
    ok(query(runner, committed, "--count", "-o", tmp_path / "n.parquet"))
    assert pq.read_table(tmp_path / "n.parquet").to_pylist() == [{"count": 3}]
    ok(query(runner, committed, "--count", "-o", tmp_path / "n.json"))
    assert json.loads((tmp_path / "n.json").read_text()) == {"count": 3}
    ok(query(runner, committed, "--count", "-o", tmp_path / "n.csv"))
    assert (tmp_path / "n.csv").read_text() == "count\n3\n"
    assert ok(query(runner, committed, "--count")).stdout == "3\n"
    assert ok(query(runner, committed, "--count", "--json")).stdout == '{"count": 3}\n'


# -- 2. default columns ---------------------------------------------------------------


def test_default_columns_are_the_readable_set(runner, committed):
    assert json.loads(ok(query(runner, committed, "-f", "json")).stdout) == JSON_ROWS
    header = ok(query(runner, committed)).stdout.splitlines()[0].split()
    assert header == DEFAULT


def test_star_gives_every_column(runner, committed):
    every = json.loads(ok(query(runner, committed, "-c", "*", "--json")).stdout)
    assert list(every[0]) == [
        "image_id",
        "instrument",
        "timestamp",
        "lat",
        "lon",
        "depth",
        "sample_id",
        "media_type",
        "blob_id",
        "size",
        "pack",
        "offset",
    ]
    assert [(r["image_id"], r["media_type"]) for r in every] == [
        (A1, "image/png"),
        (A2, "image/png"),
        ("b1", "image/png"),
    ]
    assert_error(query(runner, committed, "-c", "image_id,*"), 2, "'*'")


def test_python_api_still_returns_every_column(committed):
    table = Repository.open(committed).snapshot().query()
    assert table.column_names == [
        "image_id",
        "instrument",
        "timestamp",
        "lat",
        "lon",
        "depth",
        "sample_id",
        "media_type",
        "blob_id",
        "size",
        "pack",
        "offset",
    ]


# -- 4. --json ---------------------------------------------------------------------------


def test_json_flag_is_format_json(runner, committed, tmp_path):
    as_flag = ok(query(runner, committed, "--json")).stdout
    assert as_flag == ok(query(runner, committed, "--format", "json")).stdout
    assert json.loads(as_flag) == JSON_ROWS
    ok(query(runner, committed, "--json", "--format", "json", "-o", tmp_path / "rows.json"))
    assert json.loads((tmp_path / "rows.json").read_text()) == JSON_ROWS
    assert_json_error(
        query(runner, committed, "--json", "--format", "csv"),
        2,
        "InvalidInputError",
        "--json",
        "--format csv",
    )
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert_json_error(
        query(runner, committed, "-o", out_dir / "rows.csv", "--json"),
        2,
        "InvalidInputError",
        "rows.csv",
        "--format",
    )
    assert list(out_dir.iterdir()) == []


# -- 3. sample joins with filters; DuckDB errors -------------------------------------------


@pytest.fixture
def sampled(runner, repo, tmp_path):
    """Two instruments: IFCB1 has a1 (sample S1, good) and a2 (S2, never
    recorded); IFCB2 has b1 (S3, bad)."""

    def cli(*args):
        return ok(invoke(runner, "--repo", repo, *args))

    cli("instrument", "add", "IFCB1", "--deployed", "2024-01-01..")
    cli("instrument", "add", "IFCB2", "--deployed", "2024-01-01..")
    cli(
        "commit",
        sample_images(
            tmp_path / "one",
            [("a1", "2024-05-01T10:00:00Z", "S1"), ("a2", "2024-05-01T11:00:00Z", "S2")],
        ),
        "-i",
        "IFCB1",
        "-q",
    )
    two = sample_images(tmp_path / "two", [("b1", "2024-05-01T10:30:00Z", "S3")])
    (two / "metadata.csv").write_text(
        "image_id,timestamp,sample_id,lat,lon,depth\nb1,2024-05-01T10:30:00Z,S3,41.5,-70.5,3\n"
    )
    cli("commit", two, "-i", "IFCB2", "-q")
    cli(
        "sample",
        "add",
        "S1",
        "-i",
        "IFCB1",
        "--start",
        "2024-05-01T10:00:00Z",
        "--end",
        "2024-05-01T10:20:00Z",
        "--quality",
        "good",
        "--alt-id",
        "cast-7",
        "--alt-id",
        "niskin-3",
    )
    cli(
        "sample",
        "add",
        "S3",
        "-i",
        "IFCB2",
        "--start",
        "2024-05-01T10:20:00Z",
        "--end",
        "2024-05-01T10:40:00Z",
        "--quality",
        "bad",
    )
    return repo


def pairs(runner, repo, *args) -> list[tuple]:
    rows = json.loads(ok(query(runner, repo, "--json", *args)).stdout)
    return [tuple(r.values()) for r in rows]


def test_sample_columns_with_instrument_filter(runner, sampled):
    got = pairs(
        runner, sampled, "--with", "sample.quality", "-i", "IFCB1", "-c", "image_id,instrument"
    )
    assert got == [("a1", "IFCB1", "good"), ("a2", "IFCB1", None)]
    got = pairs(
        runner, sampled, "--with", "sample.quality", "-i", "IFCB2", "-c", "image_id,instrument"
    )
    assert got == [("b1", "IFCB2", "bad")]
    full = json.loads(
        ok(query(runner, sampled, "--json", "--with", "sample.quality", "-i", "IFCB1")).stdout
    )
    assert [list(r) for r in full] == [[*DEFAULT, "sample.quality"]] * 2
    assert [(r["image_id"], r["sample_id"], r["sample.quality"]) for r in full] == [
        ("a1", "S1", "good"),
        ("a2", "S2", None),
    ]


def test_sample_columns_with_sample_filter(runner, sampled):
    got = pairs(
        runner, sampled, "--with", "sample.quality", "--sample", "S1", "-c", "image_id,sample_id"
    )
    assert got == [("a1", "S1", "good")]
    got = pairs(
        runner,
        sampled,
        "--with",
        "sample.quality",
        "--sample",
        "S3",
        "--sample",
        "S2",
        "-c",
        "image_id,sample_id",
    )
    assert got == [("b1", "S3", "bad"), ("a2", "S2", None)]


def test_sample_columns_with_every_manifest_filter(runner, sampled):
    ok(
        invoke(
            runner,
            "--repo",
            sampled,
            "dataset",
            "add",
            "d",
            "-i",
            "IFCB2",
            "--start",
            "2024-05-01",
            "--end",
            "2024-05-02",
        )
    )
    base = ["--with", "sample.quality", "--with", "sample.instrument", "-c", "image_id"]
    assert pairs(runner, sampled, *base, "--dataset", "d") == [("b1", "bad", "IFCB2")]
    assert pairs(
        runner, sampled, *base, "--where", "instrument = IFCB1", "--start", "2024-05-01T10:30:00Z"
    ) == [("a2", None, None)]
    assert pairs(
        runner, sampled, *base, "--end", "2024-05-01T10:30:00Z", "-i", "IFCB1", "-i", "IFCB2"
    ) == [("a1", "good", "IFCB1")]
    assert pairs(runner, sampled, *base, "--bbox", "41,-71,42,-70", "--depth", "0:5") == [
        ("b1", "bad", "IFCB2")
    ]
    assert pairs(
        runner, sampled, *base, "--sample-quality", "good", "--where", "sample_id = S1"
    ) == [("a1", "good", "IFCB1")]
    assert pairs(runner, sampled, "--with", "sample.alt_ids", "-i", "IFCB1", "-c", "image_id") == [
        ("a1", ["cast-7", "niskin-3"]),
        ("a2", None),
    ]


def test_sample_columns_with_filters_in_the_python_api(sampled):
    api = Repository.open(sampled)
    table = api.snapshot().query(
        instruments=["IFCB1"],
        samples=["S1", "S3"],
        sample_columns=["quality", "instrument"],
        columns=["image_id"],
    )
    assert table.to_pylist() == [
        {"image_id": "a1", "sample.quality": "good", "sample.instrument": "IFCB1"}
    ]


def test_sample_columns_in_csv_keep_lists_as_json(runner, sampled, tmp_path):
    out = tmp_path / "rows.csv"
    ok(
        query(
            runner, sampled, "--with", "sample.alt_ids", "-i", "IFCB1", "-c", "image_id", "-o", out
        )
    )
    assert out.read_text().splitlines() == [
        '"image_id","sample.alt_ids"',
        '"a1","[""cast-7"", ""niskin-3""]"',
        '"a2",',
    ]


@pytest.fixture
def dated(runner, repo, tmp_path):
    """One image with an extra date column ``cast_date``."""
    src = images(tmp_path / "c", "c1")
    (src / "metadata.csv").write_text(
        "image_id,timestamp,cast_date\nc1,2024-05-01T12:00:00Z,2024-05-01\n"
    )
    ok(invoke(runner, "--repo", repo, "commit", src, "-i", "scope", "-q"))
    return repo


def test_duckdb_errors_are_one_line_invalid_input(runner, dated, tmp_path):
    assert pairs(runner, dated, "--where", "cast_date = 2024-05-01", "-c", "image_id") == [("c1",)]
    assert_error(query(runner, dated, "--where", "cast_date = tomorrow"), 2, "DuckDB", "tomorrow")
    assert_error(
        query(runner, dated, "--where", "cast_date < 5", "-o", tmp_path / "never.csv"), 2, "DuckDB"
    )
    assert not (tmp_path / "never.csv").exists()


def test_duckdb_errors_in_the_python_api(dated):
    api = Repository.open(dated)
    condition = Where(column="cast_date", op="=", value="tomorrow")
    with pytest.raises(InvalidInputError, match="tomorrow") as caught:
        api.snapshot().query(where=[condition])
    assert "\n" not in str(caught.value)
    assert caught.value.__suppress_context__  # a traceback shows our error, not DuckDB's
    with pytest.raises(InvalidInputError):
        api.snapshot().count(where=[condition])
