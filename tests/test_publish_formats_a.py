"""The EcoTaxa and data-package exports: EcoTaxa tables with the structure of
real EcoTaxa import tables (iRfcb's examples in tests/data/irfcb/ecotaxa),
parts that respect their size limit, data packages for a Zenodo deposition;
every export verified from its files and against the repository, every
changed byte caught, and an interrupted export resumed."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import invoke, ok
from hypothesis import given, settings
from hypothesis import strategies as st

from improv_vcs import Query, Repository, add_provenance, apply_plan, get_adapter, read_records
from improv_vcs.cli.demo import build_demo
from improv_vcs.core.errors import IntegrityError, InvalidInputError
from improv_vcs.publish.export import ExportOptions, export
from improv_vcs.publish.manifest import verify
from improv_vcs.publish.selection import Labels, select

DATA = Path(__file__).resolve().parent / "data" / "irfcb"
EXAMPLES = DATA / "ecotaxa"
BIN = "D20220522T003051_IFCB134"
TITLE, AUTHORS = "Demo plankton images", ["Doe, Jane", "John Smith"]
ANNOTATOR = "Jane Doe"
PLAIN_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
FILLED = (
    "img_file_name",
    "img_rank",
    "object_id",
    "object_lat",
    "object_lon",
    "object_date",
    "object_time",
    "object_depth_min",
    "object_depth_max",
    "object_annotation_date",
    "object_annotation_time",
    "object_annotation_category",
    "object_annotation_status",
    "process_id",
    "process_software",
    "acq_id",
    "sample_id",
)
"""Columns of the real ``ecotaxa_table_with_classification.tsv`` that a labelled export fills."""


# -- reading EcoTaxa tables ------------------------------------------------------------
def ecotaxa_table(data: bytes, encoding: str = "utf-8") -> tuple[list[str], list[str], list[dict]]:
    """Header, type row and rows of an EcoTaxa TSV, its structure checked:
    the column names on line 1, one ``[t]``/``[f]`` per column on line 2,
    then rows of as many cells."""
    lines = data.decode(encoding).split("\n")
    assert lines[-1] == "" and all(lines[:-1]), "LF-terminated lines, none empty"
    table = [line.split("\t") for line in lines[:-1]]
    header, types, body = table[0], table[1], table[2:]
    assert len(set(header)) == len(header)
    assert len(types) == len(header) and set(types) <= {"[t]", "[f]"}
    assert all(len(row) == len(header) for row in body)
    return header, types, [dict(zip(header, row)) for row in body]


def example(name: str) -> tuple[list[str], list[str], list[dict]]:
    data = (EXAMPLES / f"ecotaxa_table_{name}.tsv").read_bytes()
    return ecotaxa_table(data, "utf-8" if name != "without_classification" else "latin-1")


def parts(folder: Path) -> dict[str, zipfile.ZipFile]:
    return {p.name: zipfile.ZipFile(p) for p in sorted(folder.glob("ecotaxa_part*.zip"))}


def part_table(archive: zipfile.ZipFile) -> tuple[list[str], list[str], list[dict]]:
    name = Path(archive.filename or "").stem + ".tsv"
    assert archive.namelist()[0] == name, "the table comes first"
    return ecotaxa_table(archive.read(name))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- fixtures --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo repository with features for 12 images (a second run for 4
    of them, Area only) and a person's annotations of 30 images."""
    root = tmp_path_factory.mktemp("formats-a")
    repo = build_demo(root / "repo", images_per_bin=20, quiet=True)
    ids = sorted(repo.snapshot().images().column("image_id").to_pylist())
    first = [
        {"image_id": i, "Area": 100 + k, "Perimeter": 0.25 * k} for k, i in enumerate(ids[:12])
    ]
    add_provenance(repo, "ifcb_features", first, source="features", run_id="f1")
    second = [{"image_id": i, "Area": 1000.5 + k} for k, i in enumerate(ids[:4])]
    add_provenance(repo, "ifcb_features", second, source="features", run_id="f2")
    labels = [
        {"image_id": i, "label": "Diatom" if k % 2 else "Ciliate", "annotator": ANNOTATOR}
        for k, i in enumerate(ids[:30])
    ]
    add_provenance(repo, "annotation", labels, source="lab", run_id="lab-1")
    return root, repo, ids


def _select(repo: Repository, query: Query | None = None, labels: Labels | None = None):
    return select(
        repo.snapshot(),
        query or Query(),
        labels,
        title=TITLE,
        authors=AUTHORS,
        license="CC-BY-4.0",
        description="IFCB-like demo images, labelled by a classifier.",
    )


@pytest.fixture(scope="module")
def labelled(demo):
    return _select(demo[1], labels=Labels("classification", "demo-cnn-v1"))


@pytest.fixture(scope="module")
def ifcb(tmp_path_factory):
    """The real bin (raw files kept), its real features, its real class file
    and a person's annotation of both ROIs."""
    root = tmp_path_factory.mktemp("ifcb")
    source = root / "bin"
    source.mkdir()
    for suffix in (".adc", ".hdr", ".roi"):
        shutil.copyfile(DATA / f"{BIN}{suffix}", source / f"{BIN}{suffix}")
    repo = Repository.init(root / "repo")
    with repo.transaction(message="the real bin") as tx:
        apply_plan(tx, get_adapter("ifcb").plan(source, None, {}))
    features = read_records(DATA / f"{BIN}_fea_v2.csv")
    add_provenance(repo, "ifcb_features", features, source="ifcb-analysis", run_id="v2")
    add_provenance(
        repo,
        "annotation",
        [
            {"image_id": f"{BIN}_{n:05d}", "label": "Mesodinium_rubrum", "annotator": "A. T."}
            for n in (2, 3)
        ],
        source="manual",
        run_id="manual-1",
    )
    return root, repo


@pytest.fixture(scope="module")
def exported(demo, labelled, ifcb):
    """One export of each kind, made once (tests that change one copy it first)."""
    root, repo, _ = demo
    out = root / "exports"
    paths = {
        "ecotaxa": export(labelled, out / "ecotaxa", "ecotaxa").path,
        "ecotaxa-parts": export(
            labelled, out / "ecotaxa-parts", "ecotaxa", ExportOptions(part_bytes=50_000)
        ).path,
        "ecotaxa-unlabelled": export(
            _select(repo, Query(instruments=("IFCB110",))), out / "ecotaxa-unlabelled", "ecotaxa"
        ).path,
        "datapackage": export(labelled, out / "package.zip", "datapackage").path,
        "datapackage-metadata": export(
            labelled, out / "metadata.zip", "datapackage", ExportOptions(content="metadata")
        ).path,
    }
    ifcb_root, ifcb_repo = ifcb
    raw = _select(ifcb_repo, labels=Labels("annotation"))
    paths["datapackage-raw"] = export(
        raw, ifcb_root / "raw.zip", "datapackage", ExportOptions(content="raw")
    ).path
    paths["ecotaxa-ifcb"] = export(raw, ifcb_root / "ecotaxa", "ecotaxa").path
    repos = {
        name: ifcb_repo if name.endswith("ifcb") or name.endswith("raw") else repo for name in paths
    }
    return paths, repos


# -- the EcoTaxa table -----------------------------------------------------------------
def test_the_real_example_tables_have_the_structure_checked():
    header, types, rows = example("minimum")
    assert header == ["img_file_name", "object_id"] and types == ["[t]", "[t]"] and len(rows) == 3
    for name in ("with_classification", "without_classification"):
        header, types, rows = example(name)
        assert header[:3] == ["img_file_name", "img_rank", "object_id"] and rows
        assert all(h.split("_")[0] in ("img", "object", "process", "acq", "sample") for h in header)
    header, _, rows = example("with_classification")
    assert set(FILLED) <= set(header)
    assert {r["object_annotation_status"] for r in rows} == {"validated"}


def test_the_ecotaxa_table_follows_the_real_example(exported, labelled, demo):
    _, _, ids = demo
    found = parts(exported[0]["ecotaxa"])
    assert list(found) == ["ecotaxa_part001.zip"]  # 240 small images: one part
    archive = found["ecotaxa_part001.zip"]
    header, types, rows = part_table(archive)
    real_header, real_types, _ = example("with_classification")
    real = dict(zip(real_header, real_types))
    ours = dict(zip(header, types))
    assert header[0] == "img_file_name"
    assert set(FILLED) <= set(header), set(FILLED) - set(header)
    assert {n: ours[n] for n in header if n in real} == {n: real[n] for n in header if n in real}
    assert all(re.fullmatch(r"(img|object|process|acq|sample)_[a-z0-9_]+", n) for n in header)
    assert "object_annotation_person_name" not in header  # a classifier's labels: no person

    selected = {r["image_id"]: r for r in labelled.rows.to_pylist()}
    assert [r["object_id"] for r in rows] == sorted(selected)  # one row per image
    assert sorted(archive.namelist()[1:]) == sorted(r["img_file_name"] for r in rows)
    for row in rows:
        image = selected[row["object_id"]]
        assert row["object_annotation_category"] == image["label"]
        assert row["object_annotation_status"] == "predicted"
        assert sha256(archive.read(row["img_file_name"])) == image["blob_id"]
        assert row["object_date"] == f"{image['timestamp']:%Y%m%d}"
        assert row["object_time"] == f"{image['timestamp']:%H%M%S}" and len(row["object_time"]) == 6
        assert float(row["object_lat"]) == image["lat"] and float(row["object_lon"]) == image["lon"]
        assert row["object_depth_min"] == row["object_depth_max"] == ""  # no depth: empty
        assert row["acq_id"] == row["sample_id"] == image["sample_id"]
        assert row["acq_instrument"] == "IFCB" and row["acq_sn"] == image["instrument"]
        assert row["sample_ml_analyzed"] == "5"
        assert row["process_citation"] == labelled.citation.identifier
        assert row["process_software"].startswith("improv_vcs ")
        for name, kind in ours.items():
            assert kind == "[t]" or row[name] == "" or PLAIN_NUMBER.match(row[name]), (name, row)

    # features: each image's latest record (run f2 for the first four, which has no Perimeter)
    by_id = {r["object_id"]: r for r in rows}
    assert ours["object_area"] == ours["object_perimeter"] == "[f]"
    for k, image in enumerate(ids):
        row = by_id[image]
        if k < 4:
            assert (row["object_area"], row["object_perimeter"]) == (f"{1000.5 + k}", "")
        elif k < 12:
            assert float(row["object_area"]) == 100 + k
            assert float(row["object_perimeter"]) == 0.25 * k
        else:
            assert row["object_area"] == row["object_perimeter"] == ""


def test_a_persons_labels_are_validated_and_name_the_annotator(demo, tmp_path):
    _, repo, ids = demo
    selection = _select(repo, labels=Labels("annotation"))
    path = export(selection, tmp_path / "eco", "ecotaxa").path
    header, types, rows = part_table(parts(path)["ecotaxa_part001.zip"])
    real = dict(zip(*example("with_classification")[:2]))
    assert (
        dict(zip(header, types))["object_annotation_person_name"]
        == real["object_annotation_person_name"]
    )
    assert [r["object_id"] for r in rows] == ids[:30]
    for k, row in enumerate(rows):
        assert row["object_annotation_category"] == ("Diatom" if k % 2 else "Ciliate")
        assert row["object_annotation_status"] == "validated"
        assert row["object_annotation_person_name"] == ANNOTATOR
    verify(path, repo)


def test_without_labels_there_are_no_annotation_columns(exported):
    header, _, rows = part_table(parts(exported[0]["ecotaxa-unlabelled"])["ecotaxa_part001.zip"])
    assert not [h for h in header if h.startswith("object_annotation_")]
    assert "process_labels" not in header
    assert len(rows) == 120 and {r["acq_sn"] for r in rows} == {"IFCB110"}


def test_a_real_bin_gives_its_real_features_and_sample_metadata(exported, ifcb):
    _, repo = ifcb
    archive = parts(exported[0]["ecotaxa-ifcb"])["ecotaxa_part001.zip"]
    header, types, rows = part_table(archive)
    kinds = dict(zip(header, types))
    with open(DATA / f"{BIN}_fea_v2.csv", newline="") as f:
        features = {int(r["roi_number"]): r for r in csv.DictReader(f)}
    assert [r["object_id"] for r in rows] == [f"{BIN}_00002", f"{BIN}_00003"]
    meta = json.loads(repo.snapshot().samples().column("meta")[0].as_py())
    for row in rows:
        roi = int(row["object_id"][-5:])
        for name in ("Area", "Biovolume", "summedFeretDiameter", "Wedge01", "HOG81"):
            column = f"object_{name.lower()}"
            assert kinds[column] == "[f]" and PLAIN_NUMBER.match(row[column]), (column, row[column])
            assert float(row[column]) == float(features[roi][name])
        assert (
            kinds["object_roi_width"] == "[f]"
        )  # the manifest's extra columns are object_ columns
        assert float(row["sample_ml_analyzed"]) == meta["ml_analyzed"]
        assert row["object_annotation_person_name"] == "A. T."
        assert row["object_annotation_category"] == "Mesodinium_rubrum"
        assert (
            sha256(archive.read(row["img_file_name"]))
            == hashlib.sha256(repo.snapshot().read_image(row["object_id"])).hexdigest()
        )


# -- parts -----------------------------------------------------------------------------
def _check_parts(folder: Path, selection, limit: int) -> int:
    """Each part within ``limit`` and a complete import; every image exactly once."""
    found = parts(folder)
    assert list(found) == [f"ecotaxa_part{n:03d}.zip" for n in range(1, len(found) + 1)]
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    seen: list[str] = []
    for name, archive in found.items():
        assert (folder / name).stat().st_size <= limit
        _, _, rows = part_table(archive)
        assert sorted(archive.namelist()[1:]) == sorted(r["img_file_name"] for r in rows)
        for row in rows:
            assert manifest["images"][row["object_id"]] == {
                "blob_id": manifest["images"][row["object_id"]]["blob_id"],
                "file": name,
                "member": row["img_file_name"],
            }
        seen += [r["object_id"] for r in rows]
    assert sorted(seen) == sorted(selection.rows.column("image_id").to_pylist())
    assert len(seen) == len(set(seen))
    return len(found)


def test_a_small_part_size_splits_the_export(exported, labelled):
    assert _check_parts(exported[0]["ecotaxa-parts"], labelled, 50_000) > 5


@pytest.fixture(scope="module")
def one_day(demo):
    _, repo, _ = demo
    day = Query(instruments=("IFCB107",), samples=("D20240501T000000_IFCB107",))
    return _select(repo, day, Labels("classification", "demo-cnn-v2"))


@settings(max_examples=12, deadline=None)
@given(limit=st.integers(min_value=6_000, max_value=250_000))
def test_any_part_size_keeps_parts_within_it(one_day, demo, limit):
    largest = max(one_day.rows.column("size").to_pylist())
    with tempfile.TemporaryDirectory(dir=demo[0]) as tmp:
        dest = Path(tmp) / "eco"
        try:
            export(one_day, dest, "ecotaxa", ExportOptions(part_bytes=limit))
        except InvalidInputError as exc:
            assert "give a larger part size" in str(exc) and limit < largest + 4_000
            assert not list(dest.glob("*.zip"))  # refused before writing any part
            return
        count = _check_parts(dest, one_day, limit)
        if limit >= sum(one_day.rows.column("size").to_pylist()) + 40_000:
            assert count == 1  # everything fits in one part: no needless split
        verify(dest, demo[1])


def test_a_part_size_too_small_for_one_image_is_refused(labelled, tmp_path):
    with pytest.raises(InvalidInputError, match="larger part size"):
        export(labelled, tmp_path / "eco", "ecotaxa", ExportOptions(part_bytes=2_000))
    assert not list((tmp_path / "eco").glob("*.zip"))


# -- the data package ------------------------------------------------------------------
def test_the_data_package_holds_images_metadata_citation_and_readme(exported, labelled):
    path = exported[0]["datapackage"]
    archive = zipfile.ZipFile(path)
    rows = labelled.rows.to_pylist()
    images = {f"images/{r['image_id']}.png": r for r in rows}
    top = {"metadata.parquet", "metadata.csv", "datacite.json", "README.md", "MANIFEST.json"}
    assert set(archive.namelist()) == set(images) | top
    for name, row in images.items():
        assert sha256(archive.read(name)) == row["blob_id"]

    table = pq.read_table(pa.BufferReader(archive.read("metadata.parquet")))
    expected = labelled.rows.drop_columns(["pack", "offset"])
    assert table.column_names == [*expected.column_names, "file"]
    assert table.drop_columns(["file"]).equals(expected)
    assert table.column("file").to_pylist() == list(images)
    listed = list(csv.DictReader(io.StringIO(archive.read("metadata.csv").decode())))
    assert [r["image_id"] for r in listed] == [r["image_id"] for r in rows]
    assert "pack" not in listed[0] and "offset" not in listed[0]
    assert listed[0]["timestamp"].endswith("Z") and listed[0]["label"] == rows[0]["label"]

    datacite = json.loads(archive.read("datacite.json"))
    assert datacite == json.loads(json.dumps(labelled.citation.to_datacite(), default=str))
    readme = archive.read("README.md").decode()
    citation = labelled.citation
    for text in (TITLE, *AUTHORS, "CC-BY-4.0", citation.description, citation.identifier):
        assert text in readme, text
    assert f"improv cite verify {path.name}" in readme
    for name in top | {"images/"}:
        assert f"`{name}`" in readme, name


def test_a_raw_data_package_holds_the_original_files(exported):
    archive = zipfile.ZipFile(exported[0]["datapackage-raw"])
    raw = sorted(n for n in archive.namelist() if n.startswith("raw/"))
    assert raw == [f"raw/{BIN}/{BIN}{s}" for s in (".adc", ".hdr", ".roi")]
    for name in raw:
        assert archive.read(name) == (DATA / Path(name).name).read_bytes()
    assert not [n for n in archive.namelist() if n.startswith("images/")]
    manifest = json.loads(archive.read("MANIFEST.json"))
    assert sorted(manifest["images"]) == [f"{BIN}_00002", f"{BIN}_00003"]
    assert all(set(e) == {"blob_id"} for e in manifest["images"].values())
    assert "`raw/<sample_id>/`" in archive.read("README.md").decode()


def test_a_metadata_package_holds_no_image_bytes(exported, labelled):
    archive = zipfile.ZipFile(exported[0]["datapackage-metadata"])
    assert not [n for n in archive.namelist() if "/" in n]
    manifest = json.loads(archive.read("MANIFEST.json"))
    assert len(manifest["images"]) == labelled.rows.num_rows
    assert (
        "file" not in pq.read_table(pa.BufferReader(archive.read("metadata.parquet"))).column_names
    )


@pytest.mark.parametrize("content", ["thumbnails", "raw"])
def test_a_package_that_cannot_be_made_is_refused_and_leaves_nothing(labelled, tmp_path, content):
    # "raw": the demo's samples keep no original files
    with pytest.raises(InvalidInputError, match="thumbnails|no original files"):
        export(labelled, tmp_path / "p.zip", "datapackage", ExportOptions(content=content))
    assert list(tmp_path.iterdir()) == []


def test_the_readme_verification_commands_work(exported, demo, runner):
    path = exported[0]["datapackage"]
    assert "from its files alone" in ok(invoke(runner, "cite", "verify", path)).stdout
    result = ok(invoke(runner, "--repo", demo[0] / "repo", "cite", "verify", path))
    assert "against the repository" in result.stdout


# -- verification ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "ecotaxa",
        "ecotaxa-parts",
        "ecotaxa-unlabelled",
        "ecotaxa-ifcb",
        "datapackage",
        "datapackage-metadata",
        "datapackage-raw",
    ],
)
def test_every_export_verifies_from_its_files_and_against_the_repository(exported, name):
    paths, repos = exported
    alone = verify(paths[name])
    assert not alone.against_repository and alone.images > 0
    assert verify(paths[name], repos[name]).against_repository
    assert alone.export == name.split("-")[0]


def _flip(data: bytes, at: int) -> bytes:
    at %= len(data)
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _rewrite_zip(path: Path, member: str, at: int) -> None:
    """``path`` rewritten as a valid zip with one byte of ``member`` changed."""
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for info, data in members:
            out.writestr(info, _flip(data, at) if info.filename == member else data)


def _ecotaxa_copy(exported, tmp: Path) -> Path:
    return Path(shutil.copytree(exported[0]["ecotaxa-parts"], tmp / "eco"))


def _package_copy(exported, tmp: Path) -> Path:
    return Path(shutil.copy(exported[0]["datapackage"], tmp / "package.zip"))


def _part_member(folder: Path, which: str) -> tuple[Path, str]:
    archive = folder / "ecotaxa_part002.zip"
    names = zipfile.ZipFile(archive).namelist()
    return archive, names[0] if which == "table" else names[3]


@pytest.mark.parametrize(
    "target",
    [
        "ecotaxa zip",
        "ecotaxa table",
        "ecotaxa image",
        "metadata.csv",
        "metadata.parquet",
        "image",
        "datacite.json",
        "README.md",
    ],
)
def test_one_changed_byte_in_any_exported_file_fails_verification(exported, tmp_path, target):
    if target.startswith("ecotaxa"):
        path = _ecotaxa_copy(exported, tmp_path)
        archive, member = _part_member(path, target.split()[1])
        if target == "ecotaxa zip":
            archive.write_bytes(_flip(archive.read_bytes(), archive.stat().st_size // 2))
        else:
            _rewrite_zip(archive, member, 40)
    else:
        path = _package_copy(exported, tmp_path)
        names = zipfile.ZipFile(path).namelist()
        member = next(n for n in names if n.startswith("images/")) if target == "image" else target
        _rewrite_zip(path, member, 7)
    with pytest.raises(IntegrityError, match="changed|not the bytes"):
        verify(path)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_any_changed_byte_of_an_ecotaxa_part_fails_verification(exported, demo, data):
    with tempfile.TemporaryDirectory(dir=demo[0]) as tmp:
        folder = _ecotaxa_copy(exported, Path(tmp))
        archive = data.draw(st.sampled_from(sorted(folder.glob("ecotaxa_part*.zip"))))
        at = data.draw(st.integers(0, archive.stat().st_size - 1))
        archive.write_bytes(_flip(archive.read_bytes(), at))
        with pytest.raises(IntegrityError, match=archive.name):
            verify(folder)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_any_changed_byte_of_a_package_member_fails_verification(exported, demo, data):
    with tempfile.TemporaryDirectory(dir=demo[0]) as tmp:
        path = _package_copy(exported, Path(tmp))
        names = [n for n in zipfile.ZipFile(path).namelist() if n != "MANIFEST.json"]
        member = data.draw(st.sampled_from(sorted(names)))
        _rewrite_zip(path, member, data.draw(st.integers(0, 10**6)))
        with pytest.raises(IntegrityError, match=re.escape(member)):
            verify(path)


# -- resuming --------------------------------------------------------------------------
def test_an_interrupted_ecotaxa_export_writes_only_what_is_missing(exported, labelled, tmp_path):
    folder = _ecotaxa_copy(exported, tmp_path)
    before = {p.name: sha256(p.read_bytes()) for p in folder.iterdir()}
    (folder / "MANIFEST.json").unlink()
    (folder / "ecotaxa_part003.zip").unlink()
    again = export(labelled, folder, "ecotaxa", ExportOptions(part_bytes=50_000))
    assert again.written == 2  # the missing part and the manifest
    assert again.kept == len(before) - 2
    assert {p.name: sha256(p.read_bytes()) for p in folder.iterdir()} == before
    complete = export(labelled, folder, "ecotaxa", ExportOptions(part_bytes=50_000))
    assert complete.written == 1  # nothing missing: only the manifest is written again
    verify(folder)


def test_an_interrupted_data_package_resumes_from_its_staging_folder(exported, labelled, tmp_path):
    dest = _package_copy(exported, tmp_path)
    staging = tmp_path / "package.zip.partial"
    with zipfile.ZipFile(dest) as archive:
        archive.extractall(staging)
        expected = {n: sha256(archive.read(n)) for n in archive.namelist()}
    dest.unlink()
    (staging / "MANIFEST.json").unlink()
    image = sorted(staging.glob("images/*.png"))[5]
    image.unlink()
    again = export(labelled, dest, "datapackage")
    assert again.written == 2  # the missing image and the manifest
    assert again.kept == len(expected) - 2
    assert not staging.exists()
    with zipfile.ZipFile(dest) as archive:
        assert {n: sha256(archive.read(n)) for n in archive.namelist()} == expected
    verify(dest)
