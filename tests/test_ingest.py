"""Turning a directory of image files (plus optional metadata tables) into a batch."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from improv_vcs.core.errors import InvalidInputError
from improv_vcs.ingest.folders import scan_directory
from improv_vcs.repository.repository import Repository
from improv_vcs.snapshot import manifest

SAMPLE_PNGS = Path(__file__).resolve().parent / "data" / "irfcb" / "png"
UTC = timezone.utc


def write(directory: Path, *names: str) -> Path:
    """Create small files with distinct contents; return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(f"bytes of {name}".encode())
    return directory


def rows(table: pa.Table) -> dict[str, dict]:
    """Rows keyed by image id."""
    return {r["image_id"]: r for r in table.to_pylist()}


def scan(source: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Rows by image id and file path by image id (paths aligned with rows)."""
    table, paths = scan_directory(source)
    assert table.num_rows == len(paths)
    ids = table.column("image_id").to_pylist()
    return rows(table), dict(zip(ids, paths))


# -- IFCB names, no table -----------------------------------------------------


def test_new_style_ifcb_names(tmp_path):
    write(tmp_path, "D20240101T120000_IFCB107_00001.png", "D20240101T120000_IFCB107_00002.png")
    by_id, paths = scan(tmp_path)
    assert set(by_id) == {"D20240101T120000_IFCB107_00001", "D20240101T120000_IFCB107_00002"}
    row = by_id["D20240101T120000_IFCB107_00001"]
    assert row["timestamp"] == datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert row["timestamp"].utcoffset() == timedelta(0)
    assert row["sample_id"] == "D20240101T120000_IFCB107"
    assert row["media_type"] == "image/png"
    assert paths["D20240101T120000_IFCB107_00002"] == str(
        tmp_path / "D20240101T120000_IFCB107_00002.png"
    )


def test_legacy_ifcb_names(tmp_path):
    write(tmp_path, "IFCB5_2012_028_081515_00001.png", "IFCB5_2012_366_235959_00042.png")
    by_id, _ = scan(tmp_path)
    first = by_id["IFCB5_2012_028_081515_00001"]
    assert first["timestamp"] == datetime(2012, 1, 28, 8, 15, 15, tzinfo=UTC)
    assert first["sample_id"] == "IFCB5_2012_028_081515"
    assert first["media_type"] == "image/png"
    # day 366 of a leap year is 31 December
    assert by_id["IFCB5_2012_366_235959_00042"]["timestamp"] == datetime(
        2012, 12, 31, 23, 59, 59, tzinfo=UTC
    )


def test_timestamp_column_type_is_utc_microseconds(tmp_path):
    write(tmp_path, "D20240101T120000_IFCB107_00001.png")
    table, _ = scan_directory(tmp_path)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("image_id").type == pa.string()


def test_media_types_follow_extensions(tmp_path):
    write(
        tmp_path,
        "D20240101T120000_IFCB107_00001.png",
        "D20240101T120000_IFCB107_00002.JPG",
        "D20240101T120000_IFCB107_00003.tif",
        "D20240101T120000_IFCB107_00004.roi-unknown-ext",
    )
    by_id, _ = scan(tmp_path)
    assert by_id["D20240101T120000_IFCB107_00001"]["media_type"] == "image/png"
    assert by_id["D20240101T120000_IFCB107_00002"]["media_type"] == "image/jpeg"
    assert by_id["D20240101T120000_IFCB107_00003"]["media_type"] == "image/tiff"
    assert by_id["D20240101T120000_IFCB107_00004"]["media_type"] == "application/octet-stream"


def test_real_sample_pngs(tmp_path):
    sources = sorted(SAMPLE_PNGS.glob("*.png"))
    assert len(sources) == 2, f"the sample PNGs are missing from {SAMPLE_PNGS}"
    for src in sources:
        shutil.copyfile(src, tmp_path / src.name)
    table, paths = scan_directory(tmp_path)
    by_id = rows(table)
    assert set(by_id) == {p.stem for p in sources}
    assert by_id["D20220522T003051_IFCB134_00003"]["timestamp"] == datetime(
        2022, 5, 22, 0, 30, 51, tzinfo=UTC
    )
    assert by_id["D20220522T003051_IFCB134_00003"]["sample_id"] == "D20220522T003051_IFCB134"
    assert by_id["D20230810T113059_IFCB134_04108"]["timestamp"] == datetime(
        2023, 8, 10, 11, 30, 59, tzinfo=UTC
    )
    assert by_id["D20230810T113059_IFCB134_04108"]["sample_id"] == "D20230810T113059_IFCB134"
    assert all(r["media_type"] == "image/png" for r in by_id.values())
    # the real files pass validation and commit, and come back byte for byte
    repo = Repository.init(tmp_path / "repo")
    with repo.transaction(message="real pngs") as tx:
        assert tx.append_files("IFCB134", table, paths) == len(sources)
    for src in sources:
        assert repo.snapshot().read_image(src.stem) == src.read_bytes()


# -- metadata tables ------------------------------------------------------------


def test_metadata_csv_keyed_by_image_id(tmp_path):
    write(tmp_path, "a.png", "b.jpg", "00007.png")
    (tmp_path / "metadata.csv").write_text(
        "image_id,timestamp,lat,lon,depth,sample_id,station,operator\n"
        "a,2024-05-01T12:00:00Z,41.5,-70.7,3.5,007,12,ann\n"
        "b,2024-05-01T14:00:00+02:00,41.6,-70.6,,008,13,bob\n"
        "00007,2024-05-01T12:00:01.250Z,,,,,14,cy\n"
    )
    by_id, paths = scan(tmp_path)
    assert set(by_id) == {"a", "b", "00007"}  # leading zeros kept: ids are text
    a, b = by_id["a"], by_id["b"]
    assert a["timestamp"] == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert b["timestamp"] == datetime(2024, 5, 1, 12, tzinfo=UTC)  # converted to UTC
    assert by_id["00007"]["timestamp"] == datetime(2024, 5, 1, 12, 0, 1, 250000, tzinfo=UTC)
    assert (a["lat"], a["lon"], a["depth"]) == (41.5, -70.7, 3.5)
    assert b["depth"] is None
    assert a["sample_id"] == "007"  # sample_id is text, not the number 7
    # extra columns are kept with their own types
    assert (a["station"], a["operator"]) == (12, "ann")
    assert by_id["00007"]["station"] == 14
    assert a["media_type"] == "image/png" and b["media_type"] == "image/jpeg"
    assert paths == {
        i: str(tmp_path / n) for i, n in [("a", "a.png"), ("b", "b.jpg"), ("00007", "00007.png")]
    }
    # and the table passes validation with the extra columns intact
    table, _ = scan_directory(tmp_path)
    normalized = manifest.normalize_metadata(table)
    assert {"station", "operator"} <= set(normalized.column_names)


def test_metadata_csv_keyed_by_filename(tmp_path):
    write(tmp_path, "one.png", "two.tif")
    (tmp_path / "metadata.csv").write_text(
        "filename,timestamp,note\n"
        "two.tif,2024-01-02T00:00:00Z,second\n"
        "one.png,2024-01-01T00:00:00Z,first\n"
    )
    table, paths = scan_directory(tmp_path)
    assert "filename" not in table.column_names
    by_id = rows(table)
    assert by_id["one"]["timestamp"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert by_id["two"]["note"] == "second"
    assert by_id["two"]["media_type"] == "image/tiff"
    # paths follow the rows of the table
    assert paths == [str(tmp_path / "two.tif"), str(tmp_path / "one.png")]
    assert table.column("image_id").to_pylist() == ["two", "one"]


def test_filename_table_may_give_its_own_ids(tmp_path):
    write(tmp_path, "scan 1.png", "scan 2.png")  # stems are not valid ids
    (tmp_path / "metadata.csv").write_text(
        "filename,image_id,timestamp\n"
        "scan 1.png,s1,2024-01-01T00:00:00Z\n"
        "scan 2.png,s2,2024-01-01T00:00:01Z\n"
    )
    by_id, paths = scan(tmp_path)
    assert paths == {"s1": str(tmp_path / "scan 1.png"), "s2": str(tmp_path / "scan 2.png")}


def test_filename_table_resolves_shared_stems(tmp_path):
    write(tmp_path, "x.png", "x.tif")
    (tmp_path / "metadata.csv").write_text(
        "filename,image_id,timestamp\n"
        "x.png,x-png,2024-01-01T00:00:00Z\n"
        "x.tif,x-tif,2024-01-01T00:00:00Z\n"
    )
    by_id, _ = scan(tmp_path)
    assert by_id["x-png"]["media_type"] == "image/png"
    assert by_id["x-tif"]["media_type"] == "image/tiff"


def test_table_without_timestamp_uses_ifcb_names(tmp_path):
    write(tmp_path, "D20240101T120000_IFCB107_00001.png")
    (tmp_path / "metadata.csv").write_text(
        "image_id,lat,lon\nD20240101T120000_IFCB107_00001,41.5,-70.5\n"
    )
    row = rows(scan_directory(tmp_path)[0])["D20240101T120000_IFCB107_00001"]
    assert row["timestamp"] == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert row["sample_id"] == "D20240101T120000_IFCB107"
    assert (row["lat"], row["lon"]) == (41.5, -70.5)


def test_table_sample_id_wins_over_ifcb_bin(tmp_path):
    write(tmp_path, "D20240101T120000_IFCB107_00001.png")
    (tmp_path / "metadata.csv").write_text(
        "image_id,sample_id\nD20240101T120000_IFCB107_00001,cruise-7\n"
    )
    row = rows(scan_directory(tmp_path)[0])["D20240101T120000_IFCB107_00001"]
    assert row["sample_id"] == "cruise-7"
    assert row["timestamp"] == datetime(2024, 1, 1, 12, tzinfo=UTC)


def test_metadata_parquet(tmp_path):
    write(tmp_path, "p1.png", "p2.png")
    table = pa.table(
        {
            "image_id": ["p1", "p2"],
            "timestamp": pa.array(
                [datetime(2024, 3, 1, 6, tzinfo=UTC), datetime(2024, 3, 1, 7, tzinfo=UTC)],
                pa.timestamp("ms", tz="UTC"),
            ),
            "lat": pa.array([10, 11], pa.int32()),  # cast to float64
            "temperature": [12.5, 13.0],
            "tags": pa.array([["a"], ["b", "c"]]),
        }
    )
    pq.write_table(table, tmp_path / "metadata.parquet")
    result, paths = scan_directory(tmp_path)
    assert result.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert result.schema.field("lat").type == pa.float64()
    by_id = rows(result)
    assert by_id["p2"]["timestamp"] == datetime(2024, 3, 1, 7, tzinfo=UTC)
    assert by_id["p1"]["lat"] == 10.0
    assert by_id["p2"]["temperature"] == 13.0
    assert by_id["p2"]["tags"] == ["b", "c"]
    assert by_id["p1"]["media_type"] == "image/png"
    assert paths == [str(tmp_path / "p1.png"), str(tmp_path / "p2.png")]


def test_parquet_timestamps_in_other_zones_become_utc(tmp_path):
    write(tmp_path, "z.png")
    ts = pa.array([datetime(2024, 3, 1, 12, tzinfo=UTC)], pa.timestamp("s", tz="America/New_York"))
    pq.write_table(pa.table({"image_id": ["z"], "timestamp": ts}), tmp_path / "metadata.parquet")
    row = rows(scan_directory(tmp_path)[0])["z"]
    assert row["timestamp"] == datetime(2024, 3, 1, 12, tzinfo=UTC)


def test_tables_describe_only_their_own_folder(tmp_path):
    # root: a table for its own two files
    write(tmp_path, "r1.png", "r2.png")
    (tmp_path / "metadata.csv").write_text(
        "image_id,timestamp,station\nr1,2024-01-01T00:00:00Z,1\nr2,2024-01-01T00:00:01Z,2\n"
    )
    # a sub-folder of IFCB-named files, with no table: the root table does not list them
    write(tmp_path / "bin1", "D20240102T000000_IFCB9_00001.png", "D20240102T000000_IFCB9_00002.png")
    # a deeper folder with its own parquet table
    write(tmp_path / "bin1" / "extra", "e1.png")
    pq.write_table(
        pa.table(
            {
                "filename": ["e1.png"],
                "timestamp": pa.array([datetime(2024, 1, 3, tzinfo=UTC)]),
                "lat": [5.0],
            }
        ),
        tmp_path / "bin1" / "extra" / "metadata.parquet",
    )
    # a sibling folder with legacy IFCB names
    write(tmp_path / "old", "IFCB5_2012_028_081515_00001.png")

    by_id, paths = scan(tmp_path)
    assert set(by_id) == {
        "r1",
        "r2",
        "D20240102T000000_IFCB9_00001",
        "D20240102T000000_IFCB9_00002",
        "e1",
        "IFCB5_2012_028_081515_00001",
    }
    assert by_id["r2"]["station"] == 2
    assert by_id["D20240102T000000_IFCB9_00001"]["station"] is None
    assert by_id["D20240102T000000_IFCB9_00001"]["timestamp"] == datetime(2024, 1, 2, tzinfo=UTC)
    assert by_id["D20240102T000000_IFCB9_00001"]["sample_id"] == "D20240102T000000_IFCB9"
    assert by_id["e1"]["lat"] == 5.0 and by_id["r1"]["lat"] is None
    assert by_id["e1"]["timestamp"] == datetime(2024, 1, 3, tzinfo=UTC)
    assert by_id["IFCB5_2012_028_081515_00001"]["timestamp"] == datetime(
        2012, 1, 28, 8, 15, 15, tzinfo=UTC
    )
    assert paths["e1"] == str(tmp_path / "bin1" / "extra" / "e1.png")
    assert paths["D20240102T000000_IFCB9_00002"] == str(
        tmp_path / "bin1" / "D20240102T000000_IFCB9_00002.png"
    )
    # the merged table still validates
    manifest.normalize_metadata(scan_directory(tmp_path)[0])


def test_a_folder_may_hold_only_subfolders(tmp_path):
    write(tmp_path / "a" / "b", "D20240101T000000_IFCB1_00001.png")
    by_id, _ = scan(tmp_path)
    assert list(by_id) == ["D20240101T000000_IFCB1_00001"]


def test_hidden_files_and_folders_are_ignored(tmp_path):
    write(
        tmp_path,
        "D20240101T120000_IFCB107_00001.png",
        ".DS_Store",
        "._D20240101T120000_IFCB107_00001.png",
    )
    write(tmp_path / ".git", "config", "D20240101T120000_IFCB107_00009.png")
    write(tmp_path / ".cache" / "deep", "whatever.bin")
    # a hidden file next to a table need not be listed in it
    write(tmp_path / "tabled", "a.png", ".a.png.swp")
    (tmp_path / "tabled" / "metadata.csv").write_text(
        "image_id,timestamp\na,2024-01-01T00:00:00Z\n"
    )
    by_id, _ = scan(tmp_path)
    assert set(by_id) == {"D20240101T120000_IFCB107_00001", "a"}


# -- errors -----------------------------------------------------------------------


def test_not_a_directory(tmp_path):
    file = (
        write(tmp_path, "D20240101T120000_IFCB107_00001.png") / "D20240101T120000_IFCB107_00001.png"
    )
    with pytest.raises(InvalidInputError, match="not a directory"):
        scan_directory(file)
    with pytest.raises(InvalidInputError, match="not a directory"):
        scan_directory(tmp_path / "missing")


def test_empty_tree(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    write(tmp_path, ".hidden.png")
    with pytest.raises(InvalidInputError, match="no image files"):
        scan_directory(tmp_path)


def test_table_alone_is_an_empty_tree(tmp_path):
    (tmp_path / "metadata.csv").write_text("image_id,timestamp\n")
    with pytest.raises(InvalidInputError, match="no image files"):
        scan_directory(tmp_path)


def test_both_csv_and_parquet_in_one_folder(tmp_path):
    write(tmp_path / "sub", "a.png")
    (tmp_path / "sub" / "metadata.csv").write_text("image_id,timestamp\na,2024-01-01T00:00:00Z\n")
    pq.write_table(
        pa.table({"image_id": ["a"], "timestamp": pa.array([datetime(2024, 1, 1, tzinfo=UTC)])}),
        tmp_path / "sub" / "metadata.parquet",
    )
    with pytest.raises(InvalidInputError, match="both metadata.csv and metadata.parquet") as info:
        scan_directory(tmp_path)
    assert "sub" in str(info.value)


def test_table_without_image_id_or_filename(tmp_path):
    write(tmp_path, "a.png")
    (tmp_path / "metadata.csv").write_text("name,timestamp\na,2024-01-01T00:00:00Z\n")
    with pytest.raises(InvalidInputError, match="needs an image_id or a filename column"):
        scan_directory(tmp_path)


@pytest.mark.parametrize("key", ["image_id", "filename"])
def test_row_whose_file_is_missing(tmp_path, key):
    write(tmp_path, "a.png")
    a, ghost = ("a", "ghost") if key == "image_id" else ("a.png", "ghost.png")
    (tmp_path / "metadata.csv").write_text(
        f"{key},timestamp\n{a},2024-01-01T00:00:00Z\n{ghost},2024-01-01T00:00:01Z\n"
    )
    with pytest.raises(InvalidInputError, match="ghost"):
        scan_directory(tmp_path)


@pytest.mark.parametrize("key", ["image_id", "filename"])
def test_file_not_listed_in_its_folders_table(tmp_path, key):
    write(tmp_path, "a.png", "stray.png")
    a = "a" if key == "image_id" else "a.png"
    (tmp_path / "metadata.csv").write_text(f"{key},timestamp\n{a},2024-01-01T00:00:00Z\n")
    with pytest.raises(InvalidInputError, match="does not describe 1 file") as info:
        scan_directory(tmp_path)
    assert "stray.png" in str(info.value)


def test_files_sharing_a_stem_with_an_image_id_table(tmp_path):
    write(tmp_path, "x.png", "x.tif")
    (tmp_path / "metadata.csv").write_text("image_id,timestamp\nx,2024-01-01T00:00:00Z\n")
    with pytest.raises(InvalidInputError, match="share the id 'x'") as info:
        scan_directory(tmp_path)
    assert "filename column" in str(info.value)


def test_non_ifcb_names_without_a_table(tmp_path):
    write(tmp_path, "D20240101T120000_IFCB107_00001.png", "holiday.png")
    with pytest.raises(InvalidInputError, match="cannot tell the time of image 'holiday'") as info:
        scan_directory(tmp_path)
    assert "metadata.csv" in str(info.value)


def test_non_ifcb_names_with_a_table_lacking_timestamps(tmp_path):
    write(tmp_path, "holiday.png")
    (tmp_path / "metadata.csv").write_text("image_id,lat\nholiday,1.0\n")
    with pytest.raises(InvalidInputError, match="holiday"):
        scan_directory(tmp_path)


def test_impossible_ifcb_date_names_the_bad_file(tmp_path):
    """BUG: when every name matches the IFCB pattern but one date is impossible
    (month 13), the error names a different, valid image (the last one)."""
    write(tmp_path, "D20231301T120000_IFCB1_00001.png", "D20240101T120000_IFCB1_00002.png")
    with pytest.raises(InvalidInputError) as info:
        scan_directory(tmp_path)
    assert "D20231301T120000_IFCB1_00001" in str(info.value)


def test_folder_mixing_new_and_legacy_ifcb_names(tmp_path):
    """BUG: each name is a valid IFCB name (new or legacy), but a folder that
    holds both kinds is rejected with "use IFCB-style names"."""
    write(tmp_path, "D20240101T120000_IFCB107_00001.png", "IFCB5_2012_028_081515_00001.png")
    by_id, _ = scan(tmp_path)
    assert by_id["D20240101T120000_IFCB107_00001"]["timestamp"] == datetime(
        2024, 1, 1, 12, tzinfo=UTC
    )
    assert by_id["IFCB5_2012_028_081515_00001"]["timestamp"] == datetime(
        2012, 1, 28, 8, 15, 15, tzinfo=UTC
    )


def test_csv_with_utf8_bom_keeps_ids_as_text(tmp_path):
    """BUG: Excel's "CSV UTF-8" starts the file with a byte-order mark. The
    header sniffing in read_table opens the file as plain utf-8, so the first
    column is seen as '\\ufeffimage_id', is not forced to text, and numeric-looking
    ids lose their leading zeros ('00001' -> 1): "no file for image id 1"."""
    write(tmp_path, "00001.png")
    (tmp_path / "metadata.csv").write_bytes(
        "\ufeffimage_id,timestamp\n00001,2024-01-01T00:00:00Z\n".encode()
    )
    by_id, _ = scan(tmp_path)
    assert list(by_id) == ["00001"]


def test_mixed_column_types_across_folders(tmp_path):
    write(tmp_path / "a", "a.png")
    (tmp_path / "a" / "metadata.csv").write_text(
        "image_id,timestamp,station\na,2024-01-01T00:00:00Z,7\n"
    )
    write(tmp_path / "b", "b.png")
    pq.write_table(
        pa.table(
            {
                "image_id": ["b"],
                "timestamp": pa.array([datetime(2024, 1, 1, tzinfo=UTC)]),
                "station": pa.array([[1, 2]]),
            }
        ),
        tmp_path / "b" / "metadata.parquet",
    )
    with pytest.raises(InvalidInputError, match="disagree on column types"):
        scan_directory(tmp_path)


# -- bad timestamps fail validation -------------------------------------------------


@pytest.mark.parametrize(
    "value, problem",
    [
        ("yesterday", "yesterday"),
        ("2024-13-45T00:00:00Z", "2024-13-45"),
    ],  # without an offset is UTC: tests/test_metadata_tables.py
)
def test_bad_csv_timestamps_are_rejected(tmp_path, value, problem):
    src = write(tmp_path / "src", "a.png")
    (src / "metadata.csv").write_text(f"image_id,timestamp\na,{value}\n")
    # scan_directory casts known columns and already refuses them ...
    with pytest.raises(InvalidInputError, match=problem):
        scan_directory(src)
    # ... and so does validation, whichever way the table was read
    for table in (
        pacsv.read_csv(src / "metadata.csv"),  # inferred types (a naive timestamp column)
        pacsv.read_csv(
            src / "metadata.csv",
            convert_options=pacsv.ConvertOptions(
                column_types={"image_id": pa.string(), "timestamp": pa.string()}
            ),
        ),
    ):
        with pytest.raises(InvalidInputError, match="timestamp"):
            manifest.normalize_metadata(table)
        repo = (
            Repository.open(tmp_path / "repo")
            if (tmp_path / "repo").exists()
            else Repository.init(tmp_path / "repo")
        )
        with pytest.raises(InvalidInputError, match="timestamp"):
            with repo.transaction(message="bad") as tx:
                tx.append_files("IFCB1", table, [str(src / "a.png")])
        assert repo.branches() == {}


# -- property ---------------------------------------------------------------------------

_times = st.datetimes(
    min_value=datetime(2006, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)
).map(lambda d: d.replace(microsecond=0, tzinfo=UTC))


@given(
    pairs=st.sets(st.tuples(_times, st.integers(1, 99999)), min_size=1, max_size=12),
    instrument=st.integers(1, 999),
    legacy=st.booleans(),
    folder_per_bin=st.booleans(),
)
def test_ifcb_names_round_trip(pairs, instrument, legacy, folder_per_bin):
    expected = {}
    for when, roi in pairs:
        if legacy:
            bin_id = f"IFCB{instrument}_{when:%Y}_{when.timetuple().tm_yday:03d}_{when:%H%M%S}"
        else:
            bin_id = f"D{when:%Y%m%dT%H%M%S}_IFCB{instrument}"
        expected[f"{bin_id}_{roi:05d}"] = (when, bin_id)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for image_id, (_, bin_id) in expected.items():
            write(root / bin_id if folder_per_bin else root, f"{image_id}.png")
        table, paths = scan_directory(root)
    got = {r["image_id"]: (r["timestamp"], r["sample_id"]) for r in table.to_pylist()}
    assert got == expected
    assert sorted(Path(p).stem for p in paths) == sorted(expected)
    assert table.column("image_id").to_pylist() == [Path(p).stem for p in paths]
