"""IFCB bins as instruments write them: incomplete and bad bins reported
(or refused with --strict-bins), each ROI timed by its own trigger, the
legacy volume estimate, and the trigger table of a sample."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import assert_error, invoke, ok
from hypothesis import given, settings
from hypothesis import strategies as st

from improv_vcs import NotFoundError, Repository, add_dataset_span, apply_plan, get_adapter
from improv_vcs.core.errors import InvalidInputError
from improv_vcs.ingest.adapters.ifcb.bins import check_tiling

DATA = Path(__file__).resolve().parent / "data"
UTC = timezone.utc
SUFFIXES = (".adc", ".hdr", ".roi")

WHITE = "D20130526T095207_IFCB013"  # complete, 118 triggers, 19 ROIs
MODERN = "D20220522T003051_IFCB134"  # complete, 3 triggers, 2 ROIs
EMPTY = "D20150411T205456_IFCB012"  # 0-byte .adc and .roi
ADC_ONLY = ("D20220522T000439_IFCB134", "D20230810T113059_IFCB134")  # .hdr + .adc
HDR_ONLY = (
    "D20190929T185847_IFCB122",
    "D20230521T210245_IFCB174",
    "D20231021T154635_IFCB199",
)
OLD = "IFCB5_2012_028_081515"  # legacy (schema 1)
WHERE = {
    WHITE: DATA / "pyifcb" / "white",
    MODERN: DATA / "irfcb",
    EMPTY: DATA / "pyifcb" / "empty",
    OLD: DATA / "pyifcb" / "old_format",
    **{b: DATA / "irfcb" for b in ADC_ONLY},
    **{b: DATA / "pyifcb" / "hdr_only" for b in HDR_ONLY},
}


# -- helpers ---------------------------------------------------------------------


def copy_bin(bin_id: str, dest: Path, name: str | None = None) -> Path:
    """The files the bin has, copied into ``dest`` (under ``name`` if given)."""
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in SUFFIXES:
        found = WHERE[bin_id] / f"{bin_id}{suffix}"
        if found.exists():
            shutil.copyfile(found, dest / f"{name or bin_id}{suffix}")
    return dest


def mixed_folder(root: Path) -> Path:
    """Every kind of real bin in one dated tree."""
    for b in (WHITE, MODERN, EMPTY, *ADC_ONLY, *HDR_ONLY):
        copy_bin(b, root / b[:9])
    return root


def adc_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return [row for row in csv.reader(f) if row]


def bin_start(bin_id: str) -> datetime:
    return datetime.strptime(bin_id[1:16], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def store_state(path: Path) -> dict[str, str]:
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def commit(runner, repo: Path, source: Path, *extra):
    return invoke(runner, "--repo", repo, "commit", "--format", "ifcb", source, *extra)


# -- 1. a folder of complete, empty, ADC-only and header-only bins ---------------------

SKIPPED = [{"sample": b, "reason": "no .adc file (header only)"} for b in HDR_ONLY]
WITHOUT_IMAGES = [
    {"sample": EMPTY, "reason": "no ROIs"},
    {"sample": ADC_ONLY[0], "reason": "no .roi file"},
    {"sample": ADC_ONLY[1], "reason": "no .roi file"},
]


def test_a_mixed_folder_commits_what_it_can_and_names_the_rest(runner, repo, tmp_path):
    source = mixed_folder(tmp_path / "bins")
    result = commit(runner, repo, source, "--json", "-q")
    assert result.exit_code == 10, result.output
    out = json.loads(result.stdout)
    assert result.stderr == ""
    assert out["samples"] == [WHITE, MODERN]
    assert out["samples_without_images"] == WITHOUT_IMAGES
    assert out["skipped"] == SKIPPED
    assert (out["images"], out["new_images"], out["files"], out["new_files"]) == (21, 21, 13, 13)
    assert out["instruments"] == ["IFCB012", "IFCB013", "IFCB134"]

    snap = Repository.open(repo).snapshot()
    assert len(list(Repository.open(repo).log())) == 1
    ids = snap.query(columns=("image_id",)).column("image_id").to_pylist()
    assert sorted({i.rsplit("_", 1)[0] for i in ids}) == [WHITE, MODERN] and len(ids) == 21
    samples = {r["sample_id"]: r for r in snap.samples().to_pylist()}
    assert sorted(samples) == sorted([WHITE, MODERN, EMPTY, *ADC_ONLY])
    for b, triggers, rois in ((ADC_ONLY[0], 8, 7), (ADC_ONLY[1], 45, 33), (EMPTY, 0, 0)):
        meta = json.loads(samples[b]["meta"])
        assert (meta["triggers"], meta["rois"]) == (triggers, rois)
        assert samples[b]["start"] == bin_start(b)
    meta = json.loads(samples[ADC_ONLY[0]]["meta"])
    assert meta["trigger_count"] == 8
    assert meta["ml_analyzed"] == pytest.approx(0.25 * (1167.111111111111 - 0.5586328125) / 60)
    files = snap.source_files().to_pylist()
    assert sorted((f["sample_id"], f["name"]) for f in files) == sorted(
        (b, f"{b}{s}")
        for b in (WHITE, MODERN, EMPTY, *ADC_ONLY)
        for s in SUFFIXES
        if (WHERE[b] / f"{b}{s}").exists()
    )
    for b in ADC_ONLY:
        for s in (".hdr", ".adc"):
            assert snap.read_source(b, f"{b}{s}") == (WHERE[b] / f"{b}{s}").read_bytes()


def test_the_text_summary_lists_every_bin_and_exits_10(runner, repo, tmp_path):
    result = commit(runner, repo, mixed_folder(tmp_path / "bins"), "-q")
    assert result.exit_code == 10, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[main ") and lines[0].endswith(
        "] 21 image(s) and 13 original file(s) from IFCB012, IFCB013, IFCB134"
    )
    assert lines[1:] == [
        f"  with images: {WHITE}, {MODERN}",
        *(f"  kept without images: {r['sample']}: {r['reason']}" for r in WITHOUT_IMAGES),
        *(f"  skipped: {r['sample']}: {r['reason']}" for r in SKIPPED),
    ]
    again = commit(runner, repo, tmp_path / "bins", "-q")  # nothing new, the same report
    assert again.exit_code == 10
    assert again.stdout.splitlines()[0].startswith("Nothing new to commit")
    assert again.stdout.splitlines()[1:] == lines[1:]


def test_strict_bins_refuses_the_folder_and_writes_nothing(runner, repo, tmp_path):
    before = store_state(repo)
    result = commit(runner, repo, mixed_folder(tmp_path / "bins"), "--strict-bins")
    assert_error(result, 2, "3 bin(s) under", "--strict-bins", f"bin {HDR_ONLY[0]}: no .adc file")
    assert store_state(repo) == before
    assert list(Repository.open(repo).log()) == []
    complete = copy_bin(MODERN, tmp_path / "complete")
    out = json.loads(ok(commit(runner, repo, complete, "--strict-bins", "--json")).stdout)
    assert (out["samples"], out["skipped"], out["new_images"]) == ([MODERN], [], 2)


def test_a_folder_of_only_unusable_bins_is_an_error(runner, repo, tmp_path):
    for b in HDR_ONLY:
        copy_bin(b, tmp_path / "hdr")
    before = store_state(repo)
    assert_error(
        commit(runner, repo, tmp_path / "hdr"),
        2,
        f"bin {HDR_ONLY[0]}: no .adc file (header only); 2 other bin(s) cannot be ingested",
    )
    assert store_state(repo) == before


def _edit_adc(bin_id: str, row: int, column: int, value: str):
    def edit(directory: Path) -> None:
        path = directory / f"{bin_id}.adc"
        rows = adc_rows(path)
        rows[row][column] = value
        path.write_text("".join(",".join(r) + "\n" for r in rows))

    return edit


def _edit_header(key: str, value: str):
    def edit(directory: Path) -> None:
        path = directory / f"{MODERN}.hdr"
        lines = path.read_text(encoding="latin-1").splitlines()
        path.write_text(
            "\n".join(f"{key}: {value}" if line.startswith(f"{key}:") else line for line in lines)
        )

    return edit


def _roi_bytes(change):
    def edit(directory: Path) -> None:
        path = directory / f"{MODERN}.roi"
        path.write_bytes(change(path.read_bytes()))

    return edit


def _remove(suffix: str):
    return lambda directory: (directory / f"{MODERN}{suffix}").unlink()


BAD = {
    "truncated .roi": (
        _roi_bytes(lambda b: b[:30000]),
        "ROI 3 lies outside its 30000-byte .roi file",
    ),
    "bytes after the last ROI": (
        _roi_bytes(lambda b: b + b"\0\0"),
        "the .roi file has 2 bytes after its last ROI (ROI 3)",
    ),
    "ROIs that overlap": (
        _edit_adc(MODERN, 2, 17, "14000"),
        "ROI 3 starts at byte 14000, not where ROI 2 ends (byte 14432)",
    ),
    "a ROI not at the start": (
        _edit_adc(MODERN, 1, 17, "8"),
        "ROI 2 starts at byte 8, not at the start of the .roi file",
    ),
    "a non-numeric ADC cell": (
        _edit_adc(MODERN, 1, 4, "abc"),
        f"{MODERN}.adc: column 5 (pmt_c) is not numeric",
    ),
    "a negative ADC time": (
        _edit_adc(MODERN, 2, 1, "-3.5"),
        "ROI 3 has no usable adc_time (-3.5): not a time within a day of the bin's start",
    ),
    "ml_analyzed <= 0": (
        _edit_header("inhibitTime", "800"),
        f"ml_analyzed is {0.25 * (715.6575 - 800) / 60:.6g} ml, not positive",
    ),
    "an empty .hdr": (
        lambda d: (d / f"{MODERN}.hdr").write_bytes(b""),
        "empty .hdr file",
    ),
    "a header without fields": (
        lambda d: (d / f"{MODERN}.hdr").write_bytes(b"no fields here\n"),
        "the .hdr file holds no header fields",
    ),
    "no .hdr": (_remove(".hdr"), "no .hdr file"),
    "no .adc, a .roi": (_remove(".adc"), "no .adc file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_bad_bin_is_skipped_with_its_reason(runner, repo, tmp_path, case):
    edit, reason = BAD[case]
    source = tmp_path / "bins"
    copy_bin(WHITE, source / "good")
    edit(copy_bin(MODERN, source / "bad"))
    result = commit(runner, repo, source, "--json", "-q")
    assert result.exit_code == 10, result.output
    out = json.loads(result.stdout)
    assert out["skipped"] == [{"sample": MODERN, "reason": reason}]
    assert (out["samples"], out["new_images"], out["new_files"]) == ([WHITE], 19, 3)
    snap = Repository.open(repo).snapshot()
    assert snap.source_files(samples=[MODERN]).num_rows == 0
    assert snap.samples().column("sample_id").to_pylist() == [WHITE]


def test_a_bin_failing_while_written_leaves_nothing(tmp_path):
    """Pixels are read while the transaction streams them: a bin whose
    ``.roi`` vanishes after planning aborts the whole commit."""
    source = tmp_path / "bins"
    copy_bin(WHITE, source / "a")
    copy_bin(MODERN, source / "b")
    repo = Repository.init(tmp_path / "repo")
    plan = get_adapter("ifcb").plan(source, None, {})
    (source / "b" / f"{MODERN}.roi").unlink()
    before = store_state(tmp_path / "repo" / "refs")
    with pytest.raises(InvalidInputError, match=f"{MODERN}.roi"):
        with repo.transaction(message="two bins") as tx:
            apply_plan(tx, plan)
    assert store_state(tmp_path / "repo" / "refs") == before
    assert list(Repository.open(tmp_path / "repo").log()) == []


# -- 2. time per ROI ---------------------------------------------------------------


def white_times() -> dict[str, datetime]:
    """image id -> bin start + ADC_time (column 2), for the white bin's ROIs,
    from the raw ADC with plain Python."""
    start = bin_start(WHITE)
    return {
        f"{WHITE}_{n:05d}": start + timedelta(microseconds=round(float(row[1]) * 1e6))
        for n, row in enumerate(adc_rows(WHERE[WHITE] / f"{WHITE}.adc"), start=1)
        if int(row[15]) > 0 and int(row[16]) > 0
    }


@pytest.fixture
def white_repo(runner, repo, tmp_path) -> Path:
    ok(commit(runner, repo, copy_bin(WHITE, tmp_path / "white"), "-q"))
    return repo


def test_each_roi_carries_its_own_time(white_repo):
    expected = white_times()
    rows = Repository.open(white_repo).snapshot().query(samples=[WHITE]).to_pylist()
    assert {r["image_id"]: r["timestamp"] for r in rows} == expected
    assert {r["bin_time"] for r in rows} == {bin_start(WHITE)}
    assert len(set(expected.values())) == 19  # every ROI at its own time
    sample = Repository.open(white_repo).snapshot().samples().to_pylist()[0]
    assert sample["start"] == bin_start(WHITE)
    assert sample["end"] == bin_start(WHITE) + timedelta(microseconds=1231024861)
    assert all(sample["start"] <= t < sample["end"] for t in expected.values())


def test_a_window_inside_one_bin_selects_exactly_its_rois(runner, white_repo):
    expected = white_times()
    snap = Repository.open(white_repo).snapshot()
    start = bin_start(WHITE)

    @settings(max_examples=25)
    @given(st.integers(0, 1240), st.integers(1, 600))
    def window(offset: int, length: int) -> None:
        lo = start + timedelta(seconds=offset)
        hi = lo + timedelta(seconds=length)
        want = sorted(i for i, t in expected.items() if lo <= t < hi)
        got = snap.query(start=lo, end=hi, columns=("image_id",)).column("image_id")
        assert sorted(got.to_pylist()) == want

    window()
    lo, hi = start + timedelta(seconds=300), start + timedelta(seconds=700)
    inside = sorted(i for i, t in expected.items() if lo <= t < hi)
    assert 0 < len(inside) < 19
    out = ok(
        invoke(
            runner,
            "--repo",
            white_repo,
            "query",
            "--start",
            lo.isoformat(),
            "--end",
            hi.isoformat(),
            "-c",
            "image_id",
            "--json",
        )
    )
    assert sorted(r["image_id"] for r in json.loads(out.stdout)) == inside
    repo = Repository.open(white_repo)
    add_dataset_span(repo, "mid-run", "IFCB013", lo, hi)
    ids = repo.snapshot().query(dataset="mid-run", columns=("image_id",)).column("image_id")
    assert sorted(ids.to_pylist()) == inside


# -- 3. the volume of legacy bins ---------------------------------------------------


def legacy_volume(adc: Path, min_proc_time: float) -> float:
    """The schema-1 estimate, from the raw ADC: first row of each trigger;
    run time = last frame grab (column 9); processing time = trigger open
    (column 8) − the previous frame grab, at least min_proc_time; looked
    = run − Σ processing − min_proc_time; 40 steps/s of 5/48000 ml."""
    seen, opened, grabbed = set(), [], []
    for row in adc_rows(adc):
        if row[0] not in seen:
            seen.add(row[0])
            opened.append(float(row[7]) % 86400)
            grabbed.append(float(row[8]) % 86400)
    processing = [max(o - g, min_proc_time) for o, g in zip(opened[1:], grabbed[:-1])]
    return (grabbed[-1] - sum(processing) - min_proc_time) * 40 * 5 / 48000


def test_legacy_ml_analyzed_is_estimated_from_the_adc(runner, repo, tmp_path):
    adc = WHERE[OLD] / f"{OLD}.adc"
    expected = legacy_volume(adc, 0.073)
    assert 0.0033 < expected < 0.0035  # 0.8140 s looked at 0.25 ml/min
    ok(commit(runner, repo, copy_bin(OLD, tmp_path / "old"), "-q"))
    snap = Repository.open(repo).snapshot()
    volumes = snap.query(samples=[OLD]).column("bin_ml_analyzed").to_pylist()
    assert volumes == [pytest.approx(expected, rel=1e-12)] * 6
    meta = json.loads(snap.samples().to_pylist()[0]["meta"])
    assert meta["ml_analyzed"] == pytest.approx(expected, rel=1e-12)
    # IFCB5 from June 2015 on processes a trigger in 0.05 s at least
    late = "IFCB5_2015_200_081515"
    plan = get_adapter("ifcb").plan(copy_bin(OLD, tmp_path / "late", late), None, {})
    assert plan.samples[0]["meta"]["ml_analyzed"] == pytest.approx(
        legacy_volume(adc, 0.05), rel=1e-12
    )
    assert legacy_volume(adc, 0.05) != pytest.approx(expected)


def test_legacy_rois_are_timed_by_their_processing_end(runner, repo, tmp_path):
    ok(commit(runner, repo, copy_bin(OLD, tmp_path / "old"), "-q"))
    rows = Repository.open(repo).snapshot().query(samples=[OLD]).to_pylist()
    start = datetime(2012, 1, 28, 8, 15, 15, tzinfo=UTC)
    raw = adc_rows(WHERE[OLD] / f"{OLD}.adc")
    assert {r["image_id"]: r["timestamp"] for r in rows} == {
        f"{OLD}_{n:05d}": start + timedelta(microseconds=round(float(row[1]) * 1e6))
        for n, row in enumerate(raw, start=1)
        if int(row[11]) > 0
    }


# -- 4. the trigger table ------------------------------------------------------------

V2 = {"trigger_number": 0, "adc_time": 1, "roi_x": 13, "roi_width": 15, "start_byte": 17}


def test_the_trigger_table_is_every_adc_row(runner, repo, tmp_path):
    result = commit(runner, repo, mixed_folder(tmp_path / "bins"), "-q")
    assert result.exit_code == 10
    snap = Repository.open(repo).snapshot()
    table = snap.triggers(WHITE)
    raw = adc_rows(WHERE[WHITE] / f"{WHITE}.adc")
    assert table.num_rows == len(raw) == 118
    assert table.column("roi_number").to_pylist() == list(range(1, 119))
    for name, index in V2.items():
        column = table.column(name).to_pylist()
        cast = float if name == "adc_time" else int
        assert column == [cast(row[index]) for row in raw], name
    sizes = table.column("roi_width").to_numpy() * table.column("roi_height").to_numpy()
    assert int((sizes == 0).sum()) == 118 - 19
    assert table.column("timestamp").to_pylist() == [
        bin_start(WHITE) + timedelta(microseconds=round(float(row[1]) * 1e6)) for row in raw
    ]
    assert table.num_columns == 1 + 24 + 1
    # an ADC-only bin has its triggers too; an empty bin has none
    assert snap.triggers(ADC_ONLY[1]).num_rows == 45
    empty = snap.triggers(EMPTY)
    assert empty.num_rows == 0 and empty.schema == table.schema


def test_triggers_need_the_raw_files(runner, repo, tmp_path):
    ok(commit(runner, repo, copy_bin(MODERN, tmp_path / "m"), "--no-raw", "-q"))
    snap = Repository.open(repo).snapshot()
    with pytest.raises(NotFoundError, match=f"sample '{MODERN}' has no original .hdr and .adc"):
        snap.triggers(MODERN)
    with pytest.raises(NotFoundError, match="committed with --no-raw"):
        snap.triggers("no-such-sample")


# -- 5. the tiling rule, on generated layouts ------------------------------------------


def _rois(sizes: list[tuple[int, int]], starts: list[int]) -> pa.Table:
    return pa.table(
        {
            "roi_number": pa.array(range(1, len(sizes) + 1), pa.int64()),
            "roi_width": pa.array([w for w, _ in sizes], pa.int64()),
            "roi_height": pa.array([h for _, h in sizes], pa.int64()),
            "start_byte": pa.array(starts, pa.int64()),
        }
    )


@settings(max_examples=40)
@given(
    st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=8),
    st.booleans(),
    st.data(),
)
def test_rois_must_tile_the_roi_file(sizes, legacy, data):
    pad = 1 if legacy else 0
    starts = list(np.cumsum([pad] + [w * h for w, h in sizes])[:-1])
    size = starts[-1] + sizes[-1][0] * sizes[-1][1]
    check_tiling(_rois(sizes, starts), size, legacy)  # back to back: accepted
    check_tiling(_rois(sizes, starts), size + pad, legacy)  # a legacy trailing byte
    i = data.draw(st.integers(0, len(sizes) - 1))
    shift = data.draw(st.integers(-3, 3).filter(lambda s: s != 0))
    moved = starts.copy()
    moved[i] += shift
    if i == 0 and moved[0] in (0, pad):  # a legacy first ROI without its padding byte
        if len(sizes) == 1:
            check_tiling(_rois(sizes, moved), size, legacy)  # ends one byte early: padding
        else:
            with pytest.raises(InvalidInputError, match="ROI 2 starts at byte .*, not where ROI 1"):
                check_tiling(_rois(sizes, moved), size, legacy)
    else:
        with pytest.raises(InvalidInputError, match=f"ROI {i + 1} (lies outside|starts at byte)"):
            check_tiling(_rois(sizes, moved), size, legacy)
    with pytest.raises(InvalidInputError, match=f"ROI {len(sizes)} lies outside"):
        check_tiling(_rois(sizes, starts), size - 1, legacy)
    with pytest.raises(InvalidInputError, match=f"has {pad + 1} bytes after its last ROI"):
        check_tiling(_rois(sizes, starts), size + pad + 1, legacy)
