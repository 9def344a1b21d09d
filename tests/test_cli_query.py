"""``improv query``, ``export`` and ``dataset`` through typer's CliRunner."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from conftest import A1, A2, assert_error, invoke, ok


def rows(result) -> list[dict]:
    return json.loads(result.stdout)


def test_query_formats_agree(runner, committed, tmp_path):
    base = ["--repo", committed, "query", "-c", "image_id,instrument,lat"]
    as_json = rows(ok(invoke(runner, *base, "--format", "json")))
    assert [r["image_id"] for r in as_json] == [A1, A2, "b1"]
    as_jsonl = [
        json.loads(line)
        for line in ok(invoke(runner, *base, "--format", "jsonl")).stdout.splitlines()
    ]
    assert as_jsonl == as_json
    as_csv = list(csv.DictReader(io.StringIO(ok(invoke(runner, *base, "--format", "csv")).stdout)))
    assert [r["image_id"] for r in as_csv] == [A1, A2, "b1"]
    out = tmp_path / "rows.parquet"
    ok(invoke(runner, *base, "--format", "parquet", "-o", out))
    assert pq.read_table(out).to_pylist() == as_json
    table = ok(invoke(runner, *base)).stdout
    assert "(3 image(s))" in table and A1 in table


def test_query_filters_count_and_explain(runner, committed):
    base = ["--repo", committed, "query"]
    assert ok(invoke(runner, *base, "--count")).stdout == "3\n"
    assert ok(invoke(runner, *base, "--count", "--start", "2024-01-02")).stdout == "1\n"
    assert ok(invoke(runner, *base, "--count", "--bbox", "41,-71,42,-70")).stdout == "1\n"
    assert ok(invoke(runner, *base, "--count", "--depth", ":1")).stdout == "0\n"
    assert ok(invoke(runner, *base, "--count", "--at", "HEAD~1")).stdout == "2\n"
    assert ok(invoke(runner, *base, "--count", "--where", "lat > 41")).stdout == "1\n"
    explained = ok(
        invoke(runner, *base, "--explain", "--start", "2024-01-02", "--where", "lat > 0")
    ).stdout
    assert "manifests scanned: 1 of 2" in explained
    assert "matching images: 1" in explained
    whole = ok(invoke(runner, *base, "--explain", "--start", "2024-01-02")).stdout
    assert (
        "manifests scanned: 0 of 2" in whole and "counted whole from their statistics: 1" in whole
    )
    assert "matching images: 1" in whole
    assert (
        "timestamp >= ?" in explained
        and "2024-01-02" not in explained.split("sql:")[1].split("\n")[0]
    )


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--at", "nope"], 3, "nope"),
        (["--dataset", "nope"], 3, "nope"),
        (["--bbox", "1,2,3"], 2, "--bbox"),
        (["--bbox", "a,b,c,d"], 2, "--bbox"),
        (["--depth", "5"], 2, "--depth"),
        (["--start", "yesterday"], 2, "--start"),
        (["--where", "nope = 1"], 2, "unknown column"),
        (["--where", "lat = x' OR 1=1 --"], 2, "lat"),
        (["--where", "lat; DROP TABLE images = 1"], 2, "--where"),
        (["--columns", 'image_id,"x" FROM images; --'], 2, "column"),
        (["--format", "xml"], 2, "--format"),
        (["--as-of", "1990-01-01T00:00:00Z"], 3, "no commit"),
    ],
)
def test_query_bad_input(runner, committed, args, code, fragment):
    assert_error(invoke(runner, "--repo", committed, "query", *args), code, fragment)


def test_injection_in_values_is_just_a_value(runner, committed):
    result = ok(invoke(runner, "--repo", committed, "query", "--count", "--sample", "x' OR '1'='1"))
    assert result.stdout == "0\n"
    result = ok(
        invoke(
            runner,
            "--repo",
            committed,
            "query",
            "--count",
            "--where",
            "image_id = \"x' OR '1'='1\"",
        )
    )
    assert result.stdout == "0\n"


def test_datasets_are_versioned(runner, committed):
    base = ["--repo", committed]
    ok(
        invoke(
            runner,
            *base,
            "dataset",
            "add",
            "day1",
            "-i",
            "IFCB107",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
            "--description",
            "first day",
        )
    )
    assert ok(invoke(runner, *base, "query", "--dataset", "day1", "--count")).stdout == "2\n"
    listed = json.loads(ok(invoke(runner, *base, "dataset", "list", "--json")).stdout)
    assert listed["day1"]["description"] == "first day"
    shown = ok(invoke(runner, *base, "dataset", "show", "day1")).stdout
    assert "2024-01-01T00:00:00+00:00 .. 2024-01-02T00:00:00+00:00" in shown
    ok(
        invoke(
            runner,
            *base,
            "dataset",
            "remove-span",
            "day1",
            "-i",
            "IFCB107",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
        )
    )
    assert_error(invoke(runner, *base, "query", "--dataset", "day1"), 3, "day1")
    assert (
        ok(invoke(runner, *base, "query", "--dataset", "day1", "--at", "HEAD~1", "--count")).stdout
        == "2\n"
    )
    assert_error(
        invoke(
            runner,
            *base,
            "dataset",
            "add",
            "x",
            "-i",
            "IFCB107",
            "--start",
            "2024-01-02",
            "--end",
            "2024-01-01",
        ),
        2,
        "before",
    )


def test_dataset_add_warns_about_unknown_instrument(runner, committed):
    result = ok(
        invoke(
            runner,
            "--repo",
            committed,
            "dataset",
            "add",
            "d",
            "-i",
            "OTHER",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
        )
    )
    assert "warning" in result.stderr and "OTHER" in result.stderr


def test_export_writes_verified_files_and_resumes(runner, committed, tmp_path):
    dest = tmp_path / "out"
    first = json.loads(
        ok(
            invoke(runner, "--repo", committed, "export", dest, "--json", "--end", "2024-01-02")
        ).stdout
    )
    assert (first["images"], first["written"], first["skipped"]) == (2, 2, 0)
    assert (dest / f"{A1}.png").read_bytes() == f"image {A1}".encode()
    (dest / f"{A2}.png").write_bytes(b"truncated")  # a damaged file is rewritten
    (dest / f"{A1}.png").unlink()
    again = json.loads(ok(invoke(runner, "--repo", committed, "export", dest, "--json")).stdout)
    assert (again["images"], again["written"], again["skipped"]) == (3, 3, 0)
    third = json.loads(ok(invoke(runner, "--repo", committed, "export", dest, "--json")).stdout)
    assert (third["written"], third["skipped"]) == (0, 3)
    assert (dest / f"{A2}.png").read_bytes() == f"image {A2}".encode()
    metadata = pq.read_table(dest / "metadata.parquet")
    assert sorted(metadata.column("file").to_pylist()) == sorted(
        [f"{A1}.png", f"{A2}.png", "b1.png"]
    )
    ok(
        invoke(
            runner,
            "--repo",
            committed,
            "export",
            tmp_path / "meta",
            "--metadata-only",
            "--metadata-format",
            "csv",
        )
    )
    assert sorted(p.name for p in (tmp_path / "meta").iterdir()) == ["metadata.csv"]
