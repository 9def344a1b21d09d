"""The ``ifcb`` ingest adapter on real IFCB bins: images, original files kept
byte for byte, raw export, errors, sync, fsck and concurrent writers."""

from __future__ import annotations

import csv
import filecmp
import hashlib
import io
import json
import os
import random
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_error, invoke, ok
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from improv_vcs import Repository
from improv_vcs.core.errors import ConflictError
from improv_vcs.ingest.adapters import apply_plan, get_adapter
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.snapshot.sources import SourceFile
from improv_vcs.storage.objects import object_key

DATA = Path(__file__).resolve().parent / "data"
UTC = timezone.utc

WHITE, OLD, EMPTY, MODERN = (
    "D20130526T095207_IFCB013",
    "IFCB5_2012_028_081515",
    "D20150411T205456_IFCB012",
    "D20220522T003051_IFCB134",
)
ROI3_SHA256 = "4cdca846303677d14d3b653d0906c05b9ecf0306162c6570a394537988aef343"

# bin id -> (source dir, instrument, timestamp, legacy, ADC rows, ROI numbers)
BINS = {
    WHITE: (
        DATA / "pyifcb" / "white",
        "IFCB013",
        datetime(2013, 5, 26, 9, 52, 7, tzinfo=UTC),
        False,
        118,
        None,
    ),
    OLD: (
        DATA / "pyifcb" / "old_format",
        "IFCB5",
        datetime(2012, 1, 28, 8, 15, 15, tzinfo=UTC),
        True,
        7,
        [1, 2, 3, 4, 5, 6],
    ),
    EMPTY: (
        DATA / "pyifcb" / "empty",
        "IFCB012",
        datetime(2015, 4, 11, 20, 54, 56, tzinfo=UTC),
        False,
        0,
        [],
    ),
    MODERN: (
        DATA / "irfcb",
        "IFCB134",
        datetime(2022, 5, 22, 0, 30, 51, tzinfo=UTC),
        False,
        3,
        [2, 3],
    ),
}
SUFFIXES = (".adc", ".hdr", ".roi")


# -- helpers -------------------------------------------------------------------


def copy_bin(bin_id: str, dest: Path) -> Path:
    """The bin's three files copied into ``dest`` (created)."""
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in SUFFIXES:
        shutil.copyfile(BINS[bin_id][0] / f"{bin_id}{suffix}", dest / f"{bin_id}{suffix}")
    return dest


def reference_rois(directory: Path, bin_id: str) -> dict[int, dict]:
    """Every ADC row decoded independently of the product: roi number ->
    geometry, seconds since the run started and the raw pixels sliced from the
    .roi (None for no image)."""
    legacy = BINS[bin_id][3] if bin_id in BINS else bin_id.startswith("IFCB")
    x, y, w, h, s = (9, 10, 11, 12, 13) if legacy else (13, 14, 15, 16, 17)
    roi_path = directory / f"{bin_id}.roi"
    data = roi_path.read_bytes() if roi_path.exists() else b""
    rows = {}
    with open(directory / f"{bin_id}.adc", newline="") as f:
        for number, cells in enumerate(csv.reader(f), start=1):
            width, height, start = int(cells[w]), int(cells[h]), int(cells[s])
            pixels = None
            if width > 0 and height > 0:
                pixels = np.frombuffer(data[start : start + width * height], np.uint8).reshape(
                    height, width
                )
            seconds = float(cells[1])  # adc_time, or processing_end_time in legacy bins
            rows[number] = {
                "seconds": seconds + 86400 if legacy and seconds < 0 else seconds,
                "trigger_number": int(cells[0]),
                "roi_x": int(cells[x]),
                "roi_y": int(cells[y]),
                "roi_width": width,
                "roi_height": height,
                "start_byte": start,
                "pixels": pixels,
            }
    return rows


def decode(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.mode == "L"
    return np.asarray(img)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative posix path) -> sha256."""
    return {p.relative_to(root).as_posix(): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def store_state(repo_path: Path) -> dict[str, str]:
    """Every file of a local repository: proof that nothing was written."""
    return tree(repo_path)


def n_commits(repo_path: Path) -> int:
    return len(list(Repository.open(repo_path).log()))


@pytest.fixture
def repo_path(repo):
    return repo


@pytest.fixture
def bins(tmp_path) -> dict[str, Path]:
    """Each real bin copied into its own directory."""
    return {b: copy_bin(b, tmp_path / "in" / b.lower()) for b in BINS}


def commit_cli(runner, repo_path: Path, source: Path, *extra) -> dict:
    return json.loads(
        ok(
            invoke(
                runner, "--repo", repo_path, "commit", "--format", "ifcb", source, "--json", *extra
            )
        ).stdout
    )


# -- 1. real bins: ids, metadata, pixels --------------------------------------------


def check_bin(repo: Repository, bin_id: str, directory: Path) -> None:
    _, instrument, when, _, adc_rows, numbers = BINS[bin_id]
    ref = reference_rois(directory, bin_id)
    assert len(ref) == adc_rows
    expected = [n for n, r in ref.items() if r["pixels"] is not None]
    if numbers is not None:
        assert expected == numbers
    rows = repo.snapshot().query(samples=[bin_id]).to_pylist()
    rows.sort(key=lambda r: r["roi_number"])
    assert [r["image_id"] for r in rows] == [f"{bin_id}_{n:05d}" for n in expected]
    assert [r["roi_number"] for r in rows] == expected
    for r in rows:
        want = ref[r["roi_number"]]
        assert r["sample_id"] == bin_id
        assert r["instrument"] == instrument
        assert r["bin_time"] == when
        assert r["timestamp"] == when + timedelta(microseconds=round(want["seconds"] * 1e6))
        for column in ("trigger_number", "roi_x", "roi_y", "roi_width", "roi_height", "start_byte"):
            assert r[column] == want[column], (r["image_id"], column)
        pixels = decode(repo.snapshot().read_image(r["image_id"]))
        assert pixels.shape == (want["roi_height"], want["roi_width"])
        assert pixels.tobytes() == want["pixels"].tobytes()
    files = repo.snapshot().source_files(samples=[bin_id]).to_pylist()
    assert [(f["path"], f["size"], f["instrument"]) for f in files] == [
        (f"{bin_id}{s}", (directory / f"{bin_id}{s}").stat().st_size, instrument) for s in SUFFIXES
    ]
    for f in files:
        assert (
            repo.snapshot().read_source(bin_id, f["path"]) == (directory / f["path"]).read_bytes()
        )


@pytest.mark.parametrize("bin_id", list(BINS))
def test_each_real_bin_through_the_cli(runner, repo_path, bins, bin_id):
    numbers = [
        n for n, r in reference_rois(bins[bin_id], bin_id).items() if r["pixels"] is not None
    ]
    source = bins[bin_id] / f"{bin_id}.adc"  # any of the bin's files names the bin
    out = commit_cli(runner, repo_path, source)
    assert (
        out["format"],
        out["instruments"],
        out["images"],
        out["new_images"],
        out["files"],
        out["new_files"],
    ) == ("ifcb", [BINS[bin_id][1]], len(numbers), len(numbers), 3, 3)
    assert n_commits(repo_path) == 1
    check_bin(Repository.open(repo_path), bin_id, bins[bin_id])


def test_known_facts_of_the_real_bins(runner, repo_path, bins):
    for b in BINS:
        commit_cli(runner, repo_path, bins[b])
    repo = Repository.open(repo_path)
    assert n_commits(repo_path) == 4
    white = repo.snapshot().query(samples=[WHITE]).sort_by("roi_number")
    assert white.num_rows == 19
    assert white.column("roi_number").to_pylist()[:5] == [7, 11, 13, 21, 32]
    first = decode(repo.snapshot().read_image(f"{WHITE}_00007"))
    assert first.shape == (34, 88)
    assert repo.snapshot().query(samples=[EMPTY]).num_rows == 0
    assert repo.snapshot().query(instruments=["IFCB012"]).num_rows == 0

    old = repo.snapshot().query(samples=[OLD]).sort_by("roi_number")
    assert old.column("start_byte").to_pylist()[0] == 1  # byte 0 is padding
    last = old.slice(5).to_pylist()[0]
    assert last["start_byte"] + last["roi_width"] * last["roi_height"] == 71082
    first_old = old.to_pylist()[0]
    assert (
        first_old["roi_x"],
        first_old["roi_y"],
        first_old["roi_width"],
        first_old["roi_height"],
    ) == (202, 673, 96, 45)

    modern = {r["roi_number"]: r for r in repo.snapshot().query(samples=[MODERN]).to_pylist()}
    assert sorted(modern) == [2, 3]
    assert (modern[2]["roi_width"], modern[2]["roi_height"], modern[2]["start_byte"]) == (
        176,
        82,
        0,
    )
    assert (modern[3]["roi_width"], modern[3]["roi_height"], modern[3]["start_byte"]) == (
        144,
        114,
        14432,
    )
    assert (modern[2]["roi_x"], modern[2]["roi_y"]) == (788, 711)
    assert modern[3]["adc_time"] == pytest.approx(715.6077424)
    roi3 = decode(repo.snapshot().read_image(f"{MODERN}_00003"))
    assert roi3.shape == (114, 144)
    assert hashlib.sha256(roi3.tobytes()).hexdigest() == ROI3_SHA256
    exported = np.asarray(Image.open(DATA / "irfcb" / "png" / f"{MODERN}_00003.png").convert("L"))
    assert exported.shape == (114, 144)
    assert np.corrcoef(roi3.ravel().astype(float), exported.ravel().astype(float))[0, 1] > 0.999

    # header fields as bin_* columns
    assert modern[2]["bin_trigger_count"] == 3
    assert modern[2]["bin_temperature"] == pytest.approx(19.940374608987575)
    assert modern[2]["bin_humidity"] == pytest.approx(53.2310231174182)
    assert modern[2]["bin_run_time"] == pytest.approx(715.6575)
    assert modern[2]["bin_inhibit_time"] == pytest.approx(0.15215060763888888)
    assert modern[2]["bin_syringe_sample_volume"] == 5.0
    assert modern[2]["bin_ml_analyzed"] == pytest.approx(
        0.25 * (715.6575 - 0.15215060763888888) / 60
    )
    w = white.to_pylist()[0]
    assert (
        w["bin_temperature"],
        w["bin_humidity"],
        w["bin_run_time"],
        w["bin_inhibit_time"],
    ) == pytest.approx((35.270397, 2.486850, 1231.024861, 11.622980))
    assert w["bin_trigger_count"] is None
    o = old.to_pylist()[0]
    assert (o["bin_temperature"], o["bin_humidity"]) == pytest.approx(
        (11.4799732421875, 32.167437512207)
    )
    assert o["bin_run_time"] is None  # legacy headers have no run time: volume from the ADC
    assert o["bin_ml_analyzed"] > 0


def test_python_plan_and_apply(tmp_path, bins):
    repo = Repository.init(tmp_path / "repo")
    adapter = get_adapter("ifcb")
    assert adapter.name == "ifcb" and adapter.needs_instrument is False
    before = store_state(tmp_path / "repo")
    plan = adapter.plan(tmp_path / "in", None, {})  # every bin, one plan
    assert plan.images == 19 + 6 + 0 + 2
    assert plan.files == 12
    assert plan.instruments == ["IFCB012", "IFCB013", "IFCB134", "IFCB5"]
    assert store_state(tmp_path / "repo") == before  # planning writes nothing
    with repo.transaction(message="python ingest") as tx:
        assert apply_plan(tx, plan) == (27, 12)
    assert n_commits(tmp_path / "repo") == 1
    # paths are relative to the directory given: <bin dir>/<file>
    paths = sorted(repo.snapshot().source_files().column("path").to_pylist())
    assert paths == sorted(f"{b.lower()}/{b}{s}" for b in BINS for s in SUFFIXES)
    for b in BINS:
        rows = repo.snapshot().query(samples=[b]).to_pylist()
        ref = reference_rois(bins[b], b)
        assert sorted(r["image_id"] for r in rows) == [
            f"{b}_{n:05d}" for n, r in ref.items() if r["pixels"] is not None
        ]
        for r in rows:
            assert (
                decode(repo.snapshot().read_image(r["image_id"])).tobytes()
                == ref[r["roi_number"]]["pixels"].tobytes()
            )
    # --instrument overrides the id's instrument
    other = Repository.init(tmp_path / "other")
    plan = adapter.plan(bins[MODERN] / f"{MODERN}.roi", "CAM9", {})
    assert plan.instruments == ["CAM9"] and plan.images == 2
    with other.transaction(message="x") as tx:
        apply_plan(tx, plan)
    assert set(other.snapshot().query().column("instrument").to_pylist()) == {"CAM9"}
    # --no-raw keeps no original file
    plan = adapter.plan(bins[MODERN], None, {}, keep_raw=False)
    assert plan.files == 0 and plan.sources == {}


# -- 2. raw export and `improv sources` ---------------------------------------------


def test_raw_export_is_byte_identical_for_every_bin(runner, repo_path, bins, tmp_path):
    for b in BINS:
        commit_cli(runner, repo_path, bins[b])
    base = ["--repo", repo_path]
    for b in BINS:
        dest = tmp_path / "by-sample" / b
        out = json.loads(
            ok(invoke(runner, *base, "export", dest, "--raw", "--sample", b, "--json")).stdout
        )
        assert (out["files"], out["written"], out["skipped"]) == (3, 3, 0)
        assert sorted(os.listdir(dest)) == [f"{b}{s}" for s in SUFFIXES]
        for s in SUFFIXES:
            assert filecmp.cmp(dest / f"{b}{s}", BINS[b][0] / f"{b}{s}", shallow=False), (b, s)
    # empty bin: its zero-byte files come back as zero-byte files
    assert (tmp_path / "by-sample" / EMPTY / f"{EMPTY}.roi").stat().st_size == 0
    # again: nothing to write
    out = json.loads(
        ok(
            invoke(
                runner,
                *base,
                "export",
                tmp_path / "by-sample" / WHITE,
                "--raw",
                "--sample",
                WHITE,
                "--json",
            )
        ).stdout
    )
    assert (out["written"], out["skipped"]) == (0, 3)

    dest = tmp_path / "by-instrument"
    ok(
        invoke(
            runner,
            *base,
            "export",
            dest,
            "--raw",
            "--instrument",
            "IFCB013",
            "--instrument",
            "IFCB012",
            "-q",
        )
    )
    assert tree(dest) == {
        f"{b}{s}": sha(BINS[b][0] / f"{b}{s}") for b in (WHITE, EMPTY) for s in SUFFIXES
    }

    dest = tmp_path / "all"
    out = json.loads(ok(invoke(runner, *base, "export", dest, "--raw", "--json")).stdout)
    assert out["files"] == 12
    assert tree(dest) == {f"{b}{s}": sha(BINS[b][0] / f"{b}{s}") for b in BINS for s in SUFFIXES}

    listed = json.loads(ok(invoke(runner, *base, "sources", "--json")).stdout)
    assert sorted((r["sample_id"], r["path"], r["size"], r["blob_id"]) for r in listed) == sorted(
        (b, f"{b}{s}", (BINS[b][0] / f"{b}{s}").stat().st_size, sha(BINS[b][0] / f"{b}{s}"))
        for b in BINS
        for s in SUFFIXES
    )
    assert {r["role"] for r in listed} == {"raw"}
    assert {(r["path"][-4:], r["media_type"]) for r in listed} == {
        (".hdr", "text/plain"),
        (".adc", "text/csv"),
        (".roi", "application/octet-stream"),
    }
    only = json.loads(ok(invoke(runner, *base, "sources", "--json", "--sample", OLD)).stdout)
    assert [r["path"] for r in only] == [f"{OLD}{s}" for s in SUFFIXES]
    by_instrument = json.loads(
        ok(invoke(runner, *base, "sources", "--json", "-i", "IFCB012")).stdout
    )
    assert [(r["path"], r["size"]) for r in by_instrument] == [
        (f"{EMPTY}.adc", 0),
        (f"{EMPTY}.hdr", 3303),
        (f"{EMPTY}.roi", 0),
    ]

    formats = json.loads(ok(invoke(runner, "formats", "--json")).stdout)
    ifcb = [f for f in formats if f["name"] == "ifcb"]
    assert len(ifcb) == 1 and ifcb[0]["needs_instrument"] is False


def test_raw_export_with_an_image_filter(runner, repo_path, bins, tmp_path):
    for b in BINS:
        commit_cli(runner, repo_path, bins[b])
    wide = set()
    for b in BINS:
        if any(
            r["roi_width"] > 100
            for r in reference_rois(bins[b], b).values()
            if r["pixels"] is not None
        ):
            wide.add(b)
    assert MODERN in wide and EMPTY not in wide and OLD in wide
    dest = tmp_path / "wide"
    result = invoke(
        runner, "--repo", repo_path, "export", dest, "--raw", "--where", "roi_width > 100", "-q"
    )
    assert isinstance(result.exception, (SystemExit, type(None))), repr(result.exception)
    ok(result)
    assert tree(dest) == {f"{b}{s}": sha(BINS[b][0] / f"{b}{s}") for b in wide for s in SUFFIXES}
    listed = json.loads(ok(invoke(runner, "--repo", repo_path, "sources", "--json")).stdout)
    assert len(listed) == 12


# -- 3. idempotence, dated trees, conflicts ------------------------------------------


def test_recommit_is_a_noop(runner, repo_path, bins):
    commit_cli(runner, repo_path, bins[MODERN])
    before = store_state(repo_path)
    again = ok(invoke(runner, "--repo", repo_path, "commit", "--format", "ifcb", bins[MODERN]))
    assert again.stdout.startswith("Nothing new to commit")
    assert n_commits(repo_path) == 1
    out = commit_cli(
        runner, repo_path, bins[MODERN] / f"{MODERN}.hdr"
    )  # same bin named by one file, same paths
    assert (out["commit"], out["new_images"], out["new_files"]) == (None, 0, 0)
    assert n_commits(repo_path) == 1
    refs_before = {k: v for k, v in before.items() if k.startswith("refs")}
    assert {k: v for k, v in store_state(repo_path).items() if k.startswith("refs")} == refs_before


def test_the_same_bin_from_another_root_adds_nothing(runner, repo_path, bins, tmp_path):
    """Original files are keyed by sample and file name: the ingest root (and
    so the recorded path) does not make a second copy."""
    first = commit_cli(runner, repo_path, bins[MODERN])  # paths are bare file names
    nested = copy_bin(MODERN, tmp_path / "other" / "D2022" / "D20220522")
    again = commit_cli(runner, repo_path, tmp_path / "other")  # paths would be D2022/D20220522/...
    assert first["new_files"] == 3
    assert (again["commit"], again["new_images"], again["new_files"]) == (None, 0, 0)
    listed = Repository.open(repo_path).snapshot().source_files()
    assert listed.column("path").to_pylist() == [f"{MODERN}{s}" for s in SUFFIXES]
    assert listed.column("name").to_pylist() == [f"{MODERN}{s}" for s in SUFFIXES]
    (nested / f"{MODERN}.hdr").write_bytes((nested / f"{MODERN}.hdr").read_bytes() + b"x: 1\n")
    result = invoke(runner, "--repo", repo_path, "commit", "--format", "ifcb", tmp_path / "other")
    assert_error(result, 4, f"{MODERN}/{MODERN}.hdr")


def test_a_dated_tree_in_one_commit_keeps_its_paths(runner, repo_path, tmp_path):
    root = tmp_path / "tree"
    layout = {
        WHITE: root / "D2013" / "D201305" / "D20130526",
        OLD: root / "2012" / "IFCB5_2012_028",
        EMPTY: root / "D2015" / "D20150411",
        MODERN: root / "D2022" / "D20220522",
    }
    for b, directory in layout.items():
        copy_bin(b, directory)
    (root / "D2022" / "notes.txt").write_text("ignored")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "junk.adc").write_text("not a bin")
    out = commit_cli(runner, repo_path, root)
    assert (out["images"], out["files"], out["instruments"]) == (
        27,
        12,
        ["IFCB012", "IFCB013", "IFCB134", "IFCB5"],
    )
    assert n_commits(repo_path) == 1
    dest = tmp_path / "out"
    ok(invoke(runner, "--repo", repo_path, "export", dest, "--raw", "-q"))
    assert tree(dest) == {
        (d / f"{b}{s}").relative_to(root).as_posix(): sha(BINS[b][0] / f"{b}{s}")
        for b, d in layout.items()
        for s in SUFFIXES
    }
    assert "D2013/D201305/D20130526/D20130526T095207_IFCB013.roi" in tree(dest)


def test_same_bin_with_other_roi_bytes_is_a_conflict(runner, repo_path, tmp_path):
    commit_cli(runner, repo_path, copy_bin(MODERN, tmp_path / "a"))
    changed = copy_bin(MODERN, tmp_path / "b")
    roi = bytearray((changed / f"{MODERN}.roi").read_bytes())
    roi[14432 + 10] ^= 0xFF  # a pixel of ROI 3
    (changed / f"{MODERN}.roi").write_bytes(bytes(roi))
    before = store_state(repo_path)
    result = invoke(runner, "--repo", repo_path, "commit", "--format", "ifcb", changed, "-q")
    assert_error(result, 4, "already committed with different bytes")
    assert n_commits(repo_path) == 1
    assert {k for k in store_state(repo_path) if k.startswith("refs")} == {
        k for k in before if k.startswith("refs")
    }
    repo = Repository.open(repo_path)
    assert (
        repo.snapshot().read_source(MODERN, f"{MODERN}.roi")
        == (BINS[MODERN][0] / f"{MODERN}.roi").read_bytes()
    )


def test_changed_padding_byte_is_a_conflict_on_the_original_file(runner, repo_path, tmp_path):
    """Only the legacy padding byte differs: every image is identical, the .roi is not."""
    commit_cli(runner, repo_path, copy_bin(OLD, tmp_path / "a"))
    changed = copy_bin(OLD, tmp_path / "b")
    roi = bytearray((changed / f"{OLD}.roi").read_bytes())
    roi[0] ^= 0xFF
    (changed / f"{OLD}.roi").write_bytes(bytes(roi))
    tip = Repository.open(repo_path).resolve()
    result = invoke(runner, "--repo", repo_path, "commit", "--format", "ifcb", changed, "-q")
    assert_error(result, 4, f"{OLD}.roi", "different bytes")
    repo = Repository.open(repo_path)
    assert repo.resolve() == tip
    assert (
        repo.snapshot().read_source(OLD, f"{OLD}.roi") == (BINS[OLD][0] / f"{OLD}.roi").read_bytes()
    )


# -- 4. errors ---------------------------------------------------------------------


def _modern_with_adc_cell(tmp_path: Path, row: int, column: int, value: str | None) -> Path:
    d = copy_bin(MODERN, tmp_path / "edited")
    path = d / f"{MODERN}.adc"
    lines = path.read_text().splitlines()
    cells = lines[row].split(",")
    if value is None:
        del cells[column]
    else:
        cells[column] = value
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return d


def _short_rows(tmp_path: Path) -> Path:
    d = copy_bin(MODERN, tmp_path / "short")
    path = d / f"{MODERN}.adc"
    path.write_text(
        "".join(line.rsplit(",", 1)[0] + "\n" for line in path.read_text().splitlines())
    )
    return d


def _hdr_only(tmp_path: Path) -> Path:
    d = tmp_path / "hdr_only"
    shutil.copytree(DATA / "pyifcb" / "hdr_only", d)
    return d


def _truncated(tmp_path: Path) -> Path:
    d = copy_bin(MODERN, tmp_path / "trunc")
    path = d / f"{MODERN}.roi"
    path.write_bytes(path.read_bytes()[:30000])
    return d


def _bad_name(tmp_path: Path) -> Path:
    d = tmp_path / "bad"
    d.mkdir()
    for s in SUFFIXES:
        shutil.copyfile(BINS[MODERN][0] / f"{MODERN}{s}", d / f"sample42{s}")
    return d


ERRORS = {
    "hdr-only directory": (
        _hdr_only,
        ["bin D20190929T185847_IFCB122: no .adc file (header only)", "2 other bin(s)"],
    ),
    "hdr-only file": (
        lambda p: _hdr_only(p) / "D20231021T154635_IFCB199.hdr",
        ["bin D20231021T154635_IFCB199: no .adc file (header only)"],
    ),
    "truncated .roi": (_truncated, [MODERN, "ROI 3", "outside", "30000-byte"]),
    "non-numeric cell": (
        lambda p: _modern_with_adc_cell(p, 1, 1, "abc"),
        ["not numeric", "adc_time"],
    ),
    "non-numeric width": (
        lambda p: _modern_with_adc_cell(p, 2, 15, "wide"),
        ["not numeric", "roi_width"],
    ),
    "a row lacks a value": (lambda p: _modern_with_adc_cell(p, 0, 23, None), [f"{MODERN}.adc"]),
    "rows lack a value": (_short_rows, ["rows have 23 values", "names 24 columns"]),
    "unparseable bin name": (_bad_name, ["sample42", "not an IFCB bin id"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_unreadable_input_is_one_error_line_and_writes_nothing(runner, repo_path, tmp_path, case):
    commit_cli(runner, repo_path, copy_bin(WHITE, tmp_path / "good"))
    make, fragments = ERRORS[case]
    source = make(tmp_path)
    before = store_state(repo_path)
    result = invoke(runner, "--repo", repo_path, "commit", "--format", "ifcb", source)
    assert_error(result, 2, *fragments)
    assert store_state(repo_path) == before
    assert n_commits(repo_path) == 1


def test_plan_raises_before_writing(tmp_path):
    from improv_vcs.core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="D20190929T185847_IFCB122: no .adc file"):
        get_adapter("ifcb").plan(_hdr_only(tmp_path), None, {})
    with pytest.raises(InvalidInputError, match="has no option"):
        get_adapter("ifcb").plan(copy_bin(MODERN, tmp_path / "ok"), None, {"split": "planes"})
    with pytest.raises(InvalidInputError, match="neither a directory nor"):
        get_adapter("ifcb").plan(tmp_path / "missing.adc", None, {})
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    with pytest.raises(InvalidInputError, match="no IFCB bins"):
        get_adapter("ifcb").plan(empty_dir, None, {})


def test_an_empty_start_byte_of_a_roi_is_a_clear_error(runner, repo_path, tmp_path):
    source = _modern_with_adc_cell(
        tmp_path, 2, 17, ""
    )  # ROI 3 has width and height but no start byte
    before = store_state(repo_path)
    result = invoke(runner, "--repo", repo_path, "commit", "--format", "ifcb", source)
    assert_error(result, 2, MODERN)
    assert store_state(repo_path) == before


def test_a_negative_start_byte_names_the_faulty_roi(runner, repo_path, tmp_path):
    source = _modern_with_adc_cell(tmp_path, 2, 17, "-5")  # ROI 3 starts before the file
    result = invoke(runner, "--repo", repo_path, "commit", "--format", "ifcb", source)
    assert_error(result, 2, "ROI 3 ", MODERN, "outside")


# -- 5. property: synthesized bins round-trip exactly ---------------------------------

LEGACY_HDR = (
    '"Imaging FlowCytobot Acquisition Software version 1.0; October 2005"\r\n'
    '"Temp Humidity BinarizeThresh PMT1hv(ssc) PMT2hv(chl) BlobSizeThresh"\r\n'
    '" 11.5"," 32.25"," 30"," .675"," .6"," 10"\r\n'
)
ADC_FORMAT = (
    "trigger#, ADC_time, PMTA, PMTB, PMTC, PMTD, peakA, peakB, peakC, peakD, time of flight, "
    "grabtimestart, "
    "grabtimeend, ROIx, ROIy, ROIwidth, ROIheight,start_byte, comparator_out, STartPoint, "
    "SignalLength, status, "
    "runTime, inhibitTime"
)


@st.composite
def synthetic_bins(draw):
    legacy = draw(st.booleans())
    listed = draw(st.booleans())  # modern header with or without ADCFileFormat
    sizes = draw(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=0, max_size=6))
    seed = draw(st.integers(0, 2**32 - 1))
    return legacy, listed, sizes, seed


def write_bin(
    directory: Path, legacy: bool, listed: bool, sizes, seed: int
) -> tuple[str, dict[int, np.ndarray], float]:
    rng = random.Random(seed)
    bin_id = "IFCB7_2020_100_123456" if legacy else "D20240102T030405_IFCB9"
    roi = bytearray(b"\x00" if legacy else b"")  # legacy bins start with a padding byte
    rows, expected = [], {}
    for number, (w, h) in enumerate(sizes, start=1):
        start = len(roi) if w and h else 0
        pixels = bytes(rng.randrange(256) for _ in range(w * h)) if w and h else b""
        roi += pixels
        if w and h:
            expected[number] = np.frombuffer(pixels, np.uint8).reshape(h, w)
        x, y = rng.randrange(1000), rng.randrange(1000)
        if legacy:
            cells = [number, 0.5, 0.1, -0.2, 0.3, 0.4, 0.5, 0.6, 0.7, x, y, w, h, start, -0.25]
            rows.append(",".join(str(c) for c in cells) + ",")
        else:
            cells = [
                number,
                1.5,
                0.1,
                0.2,
                0.3,
                0.4,
                0.5,
                0.6,
                0.7,
                0.8,
                -999.0,
                1.5,
                1.6,
                x,
                y,
                w,
                h,
                start,
                0,
                0,
                0,
                0,
                2.5,
                0.1,
            ]
            rows.append(",".join(str(c) for c in cells))
    if legacy:
        header = LEGACY_HDR
    else:
        header = "softwareVersion: 2.0\r\nrunTime: 120.5\r\ninhibitTime: 0.5\r\n" + (
            f"ADCFileFormat: {ADC_FORMAT}\r\n" if listed else ""
        )
    (directory / f"{bin_id}.hdr").write_text(header)
    (directory / f"{bin_id}.adc").write_text("".join(r + "\r\n" for r in rows))
    (directory / f"{bin_id}.roi").write_bytes(bytes(roi))
    # legacy: (last frame grab − Σ max(trigger open − previous frame grab, 0.073) − 0.073) × flow
    legacy_ml = (0.7 - len(sizes) * 0.073) * 40 * 5 / 48000 if sizes else None
    ml = legacy_ml if legacy else 0.25 * 120.0 / 60
    return bin_id, expected, ml


@settings(max_examples=15)
@given(synthetic_bins())
def test_synthesized_bins_round_trip_exactly(spec):
    legacy, listed, sizes, seed = spec
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "bins"
        source.mkdir()
        bin_id, expected, ml = write_bin(source, legacy, listed, sizes, seed)
        repo = Repository.init(tmp / "repo")
        plan = get_adapter("ifcb").plan(source, None, {})
        assert plan.images == len(expected) and plan.files == 3
        with repo.transaction(message="synthetic") as tx:
            assert apply_plan(tx, plan) == (len(expected), 3)
        rows = repo.snapshot().query(samples=[bin_id]).to_pylist()
        assert sorted(r["image_id"] for r in rows) == [
            f"{bin_id}_{n:05d}" for n in sorted(expected)
        ]
        for r in rows:
            pixels = decode(repo.snapshot().read_image(r["image_id"]))
            assert pixels.shape == expected[r["roi_number"]].shape
            assert pixels.tobytes() == expected[r["roi_number"]].tobytes()
            assert r["instrument"] == ("IFCB7" if legacy else "IFCB9")
            assert r["bin_ml_analyzed"] == (pytest.approx(ml) if ml is not None else None)
            assert r["trigger_number"] == r["roi_number"]
        repo.snapshot().export_sources(tmp / "out")
        for s in SUFFIXES:
            assert (tmp / "out" / f"{bin_id}{s}").read_bytes() == (
                source / f"{bin_id}{s}"
            ).read_bytes()


# -- 6. sources travel; fsck ---------------------------------------------------------


def test_gc_keeps_original_files_and_collects_abandoned_ones(runner, repo_path, bins, tmp_path):
    from improv_vcs.maintenance.gc import gc
    from improv_vcs.storage.packs import index_key, pack_key

    for b in (MODERN, EMPTY):
        commit_cli(runner, repo_path, bins[b])
    repo = Repository.open(repo_path)
    abandoned = repo.transaction(message="never committed")
    abandoned.add_source_files(
        "IFCB999", [SourceFile("S1", "s1.bin", datetime(2024, 1, 1, tzinfo=UTC), data=b"orphan")]
    )
    orphan_pack = abandoned._packer.finish()[0]  # published, never referenced
    abandoned.abort()
    done = gc(repo, grace=0)
    assert done.removed == [index_key(orphan_pack), pack_key(orphan_pack)]
    assert not fsck(Repository.open(repo_path), full=True).problems
    for b in (MODERN, EMPTY):
        out = tmp_path / f"raw-{b}"
        ok(invoke(runner, "--repo", repo_path, "export", out, "--raw", "--sample", b))
        assert tree(out) == tree(bins[b])


def test_sources_travel_with_push_and_clone_and_fsck_checks_them(runner, repo_path, bins, tmp_path):
    for b in (WHITE, OLD, EMPTY):
        commit_cli(runner, repo_path, bins[b])
    base = ["--repo", repo_path]
    backup = tmp_path / "backup"
    ok(invoke(runner, *base, "remote", "add", "backup", backup))
    ok(invoke(runner, *base, "push", "backup", "-q"))
    clone_path = tmp_path / "clone"
    ok(invoke(runner, "clone", backup, clone_path, "-q"))
    expected = {
        f"{b}{s}": sha(BINS[b][0] / f"{b}{s}") for b in (WHITE, OLD, EMPTY) for s in SUFFIXES
    }
    for site in (backup, clone_path):
        dest = tmp_path / f"out-{site.name}"
        ok(invoke(runner, "--repo", site, "export", dest, "--raw", "-q"))
        assert tree(dest) == expected
        assert Repository.open(site).snapshot().read_image(f"{WHITE}_00007") == Repository.open(
            repo_path
        ).snapshot().read_image(f"{WHITE}_00007")

    # a later bin travels by pull
    commit_cli(runner, repo_path, bins[MODERN])
    ok(invoke(runner, *base, "push", "backup", "-q"))
    ok(invoke(runner, "--repo", clone_path, "pull", "-q"))
    dest = tmp_path / "pulled"
    ok(invoke(runner, "--repo", clone_path, "export", dest, "--raw", "--sample", MODERN, "-q"))
    assert tree(dest) == {f"{MODERN}{s}": sha(BINS[MODERN][0] / f"{MODERN}{s}") for s in SUFFIXES}

    report = json.loads(ok(invoke(runner, "--repo", clone_path, "fsck", "--full", "--json")).stdout)
    assert report["ok"] is True and report["problems"] == []
    repo = Repository.open(clone_path)
    _, tip = next(repo.log(limit=1))
    assert (
        len(tip.sources) == 1
        and tip.sources[0].instrument == "IFCB134"
        and tip.sources[0].rows == 3
    )
    table_id = tip.sources[0].table
    path = clone_path / object_key(table_id)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    problems = fsck(Repository.open(clone_path), full=True).problems
    assert table_id in {p.object_id for p in problems}, problems
    result = invoke(runner, "--repo", clone_path, "fsck", "--full")
    assert result.exit_code != 0 and table_id in result.stdout


# -- 7. concurrent writers ------------------------------------------------------------


def _raw_files(directory: Path, bin_id: str) -> list[SourceFile]:
    return [
        SourceFile(
            sample_id=bin_id,
            path=f"{bin_id}{s}",
            timestamp=BINS[bin_id][2],
            location=directory / f"{bin_id}{s}",
        )
        for s in SUFFIXES
    ]


def test_concurrent_transactions_with_the_same_files_store_them_once(tmp_path):
    directory = copy_bin(MODERN, tmp_path / "bin")
    repo = Repository.init(tmp_path / "repo")
    first = repo.transaction(message="first")
    second = Repository.open(tmp_path / "repo").transaction(message="second")
    assert first.add_source_files("IFCB134", _raw_files(directory, MODERN)) == 3
    assert second.add_source_files("IFCB134", _raw_files(directory, MODERN)) == 3
    one = first.commit()
    second.commit()  # rebased on the first: nothing of its own left, no error
    assert one is not None
    repo = Repository.open(tmp_path / "repo")
    files = repo.snapshot().source_files()
    assert files.num_rows == 3
    assert sorted(files.column("path").to_pylist()) == [f"{MODERN}{s}" for s in SUFFIXES]
    listed = sum(c.sources[0].rows for _, c in repo.log() if c.sources)
    assert listed == 3  # the files are listed once across history
    for s in SUFFIXES:
        assert (
            repo.snapshot().read_source(MODERN, f"{MODERN}{s}")
            == (directory / f"{MODERN}{s}").read_bytes()
        )
    assert fsck(repo, full=True).ok


def test_concurrent_transactions_with_other_bytes_conflict(tmp_path):
    a = copy_bin(MODERN, tmp_path / "a")
    b = copy_bin(MODERN, tmp_path / "b")
    (b / f"{MODERN}.hdr").write_bytes((b / f"{MODERN}.hdr").read_bytes() + b"extra: 1\r\n")
    repo = Repository.init(tmp_path / "repo")
    first = repo.transaction(message="first")
    second = Repository.open(tmp_path / "repo").transaction(message="second")
    first.add_source_files("IFCB134", _raw_files(a, MODERN))
    second.add_source_files("IFCB134", _raw_files(b, MODERN))
    tip = first.commit()
    with pytest.raises(ConflictError, match=f"{MODERN}.hdr"):
        second.commit()
    repo = Repository.open(tmp_path / "repo")
    assert repo.resolve() == tip
    assert (
        repo.snapshot().read_source(MODERN, f"{MODERN}.hdr") == (a / f"{MODERN}.hdr").read_bytes()
    )
    # and afterwards, in one transaction, the same key with other bytes is refused at once
    with pytest.raises(ConflictError, match="different bytes"):
        with repo.transaction(message="third") as tx:
            tx.add_source_files("IFCB134", _raw_files(b, MODERN))
    assert Repository.open(tmp_path / "repo").resolve() == tip
