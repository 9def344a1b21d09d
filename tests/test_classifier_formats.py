"""Classifier outputs, human annotations, embeddings and mask zips as inputs
of ``improv provenance add``: the real iRfcb class files (v1 ``.mat``, v3
``.h5``) and classlist annotation decode to what h5py and scipy read from
them; generated v4 CSV, per-class Parquet and embeddings Parquet round-trip;
a zip of masks comes back byte for byte; bad input is one line and commits
nothing."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import string
import tempfile
import uuid
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.io
from conftest import T0, assert_error, assert_json_error, invoke, ok
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from improv_vcs import Repository
from improv_vcs.provenance import catalog, kinds, vectors

DATA = Path(__file__).resolve().parent / "data" / "irfcb"
BIN = "D20220522T003051_IFCB134"
ROI2, ROI3 = f"{BIN}_00002", f"{BIN}_00003"
H5 = DATA / "class" / f"{BIN}_class.h5"
MAT = DATA / "class" / f"{BIN}_class_v1.mat"
MANUAL = DATA / "manual" / f"{BIN}.mat"
CLASS2USE = DATA / "manual" / "class2use.mat"
WINNER = "classification.winner = Mesodinium_rubrum"
GENERATED_BIN = "D20240501T120000_IFCB107"


@pytest.fixture
def ifcb_repo(runner, tmp_path):
    """A repository holding ROIs 2 and 3 of the real bin, committed with ``--format ifcb``."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for ext in ("hdr", "adc", "roi"):
        shutil.copy(DATA / f"{BIN}.{ext}", raw)
    path = tmp_path / "repo"
    ok(invoke(runner, "init", path))
    ok(invoke(runner, "--repo", path, "commit", raw, "--format", "ifcb", "-i", "IFCB134", "-q"))
    return path


def attach(runner, repo, *args) -> dict:
    return json.loads(
        ok(invoke(runner, "--repo", repo, "provenance", "add", *args, "--json")).stdout
    )


def version_of(classes: list[str]) -> str:
    """The documented model version of a class list whose file names none."""
    text = json.dumps(classes, separators=(",", ":"), ensure_ascii=False)
    return "classes-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def texts(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.ravel(values)]


def mat_texts(value) -> list[str]:
    return ["".join(texts(item)) for item in np.ravel(value)]


def records(repo, kind: str, run: str | None = None) -> list[dict]:
    table = Repository.open(repo).snapshot().provenance_records(kind, run=run)
    return table.sort_by("image_id").to_pylist()


# -- the real iRfcb files ----------------------------------------------------------
def test_real_class_files_decode_to_what_h5py_and_scipy_read(runner, ifcb_repo):
    with h5py.File(H5) as f:
        scores = f["output_scores"][()]
        classes = texts(f["class_labels"][()])
        rois = f["roi_numbers"][()].tolist()
        model = texts(f["classifier_name"][()])[0]
        winners, labels = texts(f["class_name_auto"][()]), texts(f["class_name"][()])
        thresholds = f["thresholds"][()].tolist()
    v1 = scipy.io.loadmat(MAT)
    v1_scores = v1["TBscores"]
    v1_classes = mat_texts(v1["class2useTB"])[: v1_scores.shape[1]]
    v1_model = mat_texts(v1["classifierName"])[0]

    assert attach(runner, ifcb_repo, "classification", H5, "--run-id", "h5")["added"] == 2
    out = attach(runner, ifcb_repo, "classification", MAT, "--run-id", "mat")
    assert out["added"] == 2 and out["runs"] == ["mat"]
    version = version_of(classes)

    taxonomies = Repository.open(ifcb_repo).snapshot().registry().taxonomies
    assert {key: t.classes for key, t in taxonomies.items()} == {
        f"{model}@{version}": tuple(classes),
        f"{v1_model}@{version}": tuple(v1_classes),
    }
    assert v1_classes == classes
    expected = {
        "h5": (model, scores, winners, labels, [thresholds] * 2),
        "mat": (
            v1_model,
            v1_scores,
            mat_texts(v1["TBclass"]),
            mat_texts(v1["TBclass_above_threshold"]),
            [None, None],
        ),
    }
    for run, (name, matrix, best, thresholded, kept) in expected.items():
        found = records(ifcb_repo, "classification", run)
        assert [r["image_id"] for r in found] == [f"{BIN}_{n:05d}" for n in rois] == [ROI2, ROI3]
        assert [r["score_vector"] for r in found] == matrix.tolist()
        assert [r["class_scores"] for r in found] == [list(zip(classes, row)) for row in matrix]
        assert [r["winner"] for r in found] == best == ["Mesodinium_rubrum"] * 2
        assert [r["score"] for r in found] == matrix.max(axis=1).tolist()
        assert [r["label"] for r in found] == thresholded
        assert [r["thresholds"] for r in found] == kept
        assert {(r["model"], r["model_version"]) for r in found} == {(name, version)}


def test_query_by_winner_finds_rois_2_and_3_in_either_run(runner, ifcb_repo, tmp_path):
    class_dir = tmp_path / "class2022_h5"
    class_dir.mkdir()
    shutil.copy(H5, class_dir)  # a directory of class files is read file by file
    assert attach(runner, ifcb_repo, "classification", class_dir, "--run-id", "h5")["added"] == 2
    assert attach(runner, ifcb_repo, "classification", MAT, "--run-id", "mat")["added"] == 2
    models = {
        "h5": "SMHI NIVA ResNet50 V5",
        "mat": mat_texts(scipy.io.loadmat(MAT)["classifierName"])[0],
    }
    for run in ("h5", "mat", "latest"):
        found = ok(
            invoke(
                runner,
                "--repo",
                ifcb_repo,
                "query",
                "--prov",
                WINNER,
                "--run",
                run,
                "-c",
                "image_id",
                "--with",
                "classification.model",
                "-f",
                "json",
            )
        )
        rows = json.loads(found.stdout)
        model = models.get(run, models["mat"])  # latest: the mat run, added last
        assert rows == [
            {"image_id": ROI2, "classification.model": model},
            {"image_id": ROI3, "classification.model": model},
        ]
    other = invoke(
        runner,
        "--repo",
        ifcb_repo,
        "query",
        "--prov",
        "classification.winner = Ciliates",
        "--count",
    )
    assert ok(other).stdout.strip() == "0"
    history = ok(
        invoke(
            runner,
            "--repo",
            ifcb_repo,
            "provenance",
            "show",
            ROI2,
            "-k",
            "classification",
            "--json",
        )
    )
    assert sorted(r["run_id"] for r in json.loads(history.stdout)) == ["h5", "mat"]


def test_real_manual_annotation_labels_rois_2_and_3(runner, ifcb_repo):
    manual = scipy.io.loadmat(MANUAL)["classlist"]
    class2use = mat_texts(scipy.io.loadmat(CLASS2USE)["class2use"])
    annotated = manual[~np.isnan(manual[:, 1])]
    assert annotated[:, 0].tolist() == [2, 3] and annotated[:, 1].tolist() == [5, 5]

    out = attach(runner, ifcb_repo, "annotation", MANUAL, "--source", "expert-a", "--run-id", "m")
    assert out["added"] == 2
    found = [(r["image_id"], r["label"], r["annotator"]) for r in records(ifcb_repo, "annotation")]
    assert found == [(ROI2, class2use[4], "expert-a"), (ROI3, class2use[4], "expert-a")]
    assert class2use[4] == "Mesodinium_rubrum"
    # the list of --class-list names the same classes: the same records, nothing new
    again = attach(
        runner,
        ifcb_repo,
        "annotation",
        MANUAL,
        "--class-list",
        CLASS2USE,
        "--source",
        "expert-a",
        "--run-id",
        "m",
    )
    assert again["added"] == 0 and again["commit"] is None


# -- generated class tables and embeddings -----------------------------------------
def memory_repo(rois: int) -> str:
    """A fresh in-memory repository holding ROIs 1..rois of :data:`GENERATED_BIN`."""
    url = f"memory://classes-{uuid.uuid4().hex}"
    repo = Repository.init(url)
    ids = [f"{GENERATED_BIN}_{n:05d}" for n in range(1, rois + 1)]
    with repo.transaction(message="images") as tx:
        tx.append_bytes(
            "IFCB107", [{"image_id": i, "timestamp": T0} for i in ids], [i.encode() for i in ids]
        )
    return url


CLASS_NAMES = st.lists(
    st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=12).filter(
        lambda name: name not in ("pid", "image_id")
    ),
    min_size=1,
    max_size=6,
    unique=True,
)


@st.composite
def score_tables(draw):
    classes = draw(CLASS_NAMES)
    rows = draw(st.integers(1, 4))
    width = draw(st.sampled_from([32, 64]))
    numbers = st.floats(0, 1, width=width)
    scores = draw(
        st.lists(
            st.lists(numbers, min_size=len(classes), max_size=len(classes)),
            min_size=rows,
            max_size=rows,
        )
    )
    return classes, np.array(scores, np.float64), width


@settings(max_examples=12)
@given(table=score_tables(), layout=st.sampled_from(["v4 csv", "parquet"]), named=st.booleans())
def test_generated_class_tables_attach_and_decode(table, layout, named):
    classes, scores, width = table
    repo = memory_repo(len(scores))
    ids = [f"{GENERATED_BIN}_{n:05d}" for n in range(1, len(scores) + 1)]
    with tempfile.TemporaryDirectory() as scratch:
        if layout == "v4 csv":  # pid, then one column per class, numbers written exactly
            path = Path(scratch) / f"{GENERATED_BIN}_class_v4.csv"
            lines = [",".join(["pid", *classes])]
            lines += [",".join([i, *map(repr, row.tolist())]) for i, row in zip(ids, scores)]
            path.write_text("\n".join(lines) + "\n")
        else:  # an inference service's table: image_id, one float column per class
            path = Path(scratch) / "scores.parquet"
            kind = pa.float32() if width == 32 else pa.float64()
            columns = {
                "image_id": ids,
                **{c: pa.array(scores[:, k], kind) for k, c in enumerate(classes)},
            }
            pq.write_table(pa.table(columns), path)
        extra = ["--model-version", "v7"] if named else []
        out = attach(
            CliRunner(), repo, "classification", path, "--model", "svc", "--run-id", "r", *extra
        )
    version = "v7" if named else version_of(classes)
    assert out["added"] == len(ids)
    taxonomies = Repository.open(repo).snapshot().registry().taxonomies
    assert {k: t.classes for k, t in taxonomies.items()} == {f"svc@{version}": tuple(classes)}
    found = records(repo, "classification")
    assert [r["image_id"] for r in found] == ids
    assert [r["score_vector"] for r in found] == scores.tolist()
    assert [r["class_scores"] for r in found] == [
        list(zip(classes, row.tolist())) for row in scores
    ]
    assert [r["winner"] for r in found] == [classes[k] for k in scores.argmax(axis=1)]
    assert [r["score"] for r in found] == scores.max(axis=1).tolist()
    assert {(r["model"], r["model_version"]) for r in found} == {("svc", version)}


FLOAT_TYPES = {16: (pa.float16(), np.float16, np.uint16), 32: (pa.float32(), np.float32, np.uint32)}


@st.composite
def embeddings(draw):
    width = draw(st.sampled_from([16, 32]))
    dims, rows = draw(st.integers(1, 12)), draw(st.integers(1, 4))
    number = st.floats(width=width, allow_nan=False, allow_infinity=False)
    values = draw(st.lists(number, min_size=dims * rows, max_size=dims * rows))
    return width, np.array(values, FLOAT_TYPES[width][1]).reshape(rows, dims), draw(st.booleans())


@settings(max_examples=12)
@given(embedded=embeddings())
def test_embeddings_are_stored_and_queried_as_fixed_size_vectors(embedded):
    width, matrix, fixed = embedded
    element, _, bits = FLOAT_TYPES[width]
    rows, dims = matrix.shape
    repo = memory_repo(rows)
    ids = [f"{GENERATED_BIN}_{n:05d}" for n in range(1, rows + 1)]
    flat = pa.array(matrix.ravel(), element)
    column = (
        pa.FixedSizeListArray.from_arrays(flat, dims)
        if fixed
        else pa.ListArray.from_arrays(
            pa.array(np.arange(0, rows * dims + 1, dims, dtype=np.int32)), flat
        )
    )
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "embeddings.parquet"
        pq.write_table(pa.table({"pid": ids, "embedding": column}), path)
        out = attach(runner, repo, "embedding", path, "--model", "dino", "--run-id", "e1")
        assert out["added"] == rows
        result = Path(scratch) / "out.parquet"
        ok(
            invoke(
                runner,
                "--repo",
                repo,
                "query",
                "--with",
                "embedding.vector",
                "-c",
                "image_id",
                "-o",
                result,
            )
        )
        queried = pq.read_table(result)
    stored = Repository.open(repo).snapshot().provenance_records("embedding").sort_by("image_id")
    for table in (stored, queried):
        vector = table.column("vector" if table is stored else "embedding.vector")
        assert pa.types.is_fixed_size_list(vector.type) and vector.type.list_size == dims
        assert vector.type.value_type == element
        got = vector.combine_chunks().flatten().to_numpy(zero_copy_only=False)
        assert np.array_equal(got.view(bits), matrix.ravel().view(bits))  # bit for bit
    assert queried.column("image_id").to_pylist() == ids


def test_vectors_are_joined_never_compared(runner, ifcb_repo, tmp_path):
    path = tmp_path / "emb.parquet"
    vectors_ = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(6, np.float16)), 3)
    pq.write_table(
        pa.table({"image_id": [ROI2, ROI3], "vector": vectors_, "model": ["m", "m"]}), path
    )
    assert attach(runner, ifcb_repo, "embedding", path)["added"] == 2
    result = invoke(runner, "--repo", ifcb_repo, "query", "--prov", "embedding.vector = 1")
    assert_error(result, 2, "embedding.vector holds vectors")
    shown = ok(invoke(runner, "--repo", ifcb_repo, "provenance", "show", ROI2, "-k", "embedding"))
    assert "vector: [1, 1, 1]" in shown.stdout


@settings(max_examples=30)
@given(
    rows=st.lists(
        st.one_of(
            st.none(), st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=5)
        ),
        min_size=1,
        max_size=6,
    ),
    repeat=st.sampled_from(["no", "each twice", "the first everywhere"]),
)
def test_list_digests_hash_each_lists_bytes(rows, repeat):
    if repeat == "each twice":  # lists equal to the one before them are hashed once
        rows = [row for row in rows for _ in range(2)]
    elif repeat == "the first everywhere":
        rows = [rows[0]] * len(rows)
    values = pa.array(rows, pa.list_(pa.float64()))
    expected = []
    for row in rows:
        numbers = np.array(row or [], "<f8") + 0.0
        count = len(row or []).to_bytes(4, "little")
        expected.append(count + hashlib.sha256(numbers.tobytes()).digest())
    assert vectors.digests(values).to_pylist() == expected


def test_json_score_vectors_stay_text_where_earlier_records_held_text():
    kind = catalog.get_kind("classification")
    table = pa.table(
        {
            "image_id": ["a"],
            "model": ["m"],
            "model_version": ["v"],
            "winner": ["x"],
            "score_vector": ["[0.7, 0.2, 1]"],
        }
    )
    assert kinds.normalize(kind, table, {}).column("score_vector").to_pylist() == [[0.7, 0.2, 1.0]]
    legacy = kinds.normalize(kind, table, {"score_vector": "string"})
    assert legacy.column("score_vector").to_pylist() == ["[0.7,0.2,1]"]


# -- masks --------------------------------------------------------------------------
def mask_png(box: tuple[int, int, int, int], size: tuple[int, int] = (12, 16)) -> bytes:
    pixels = np.zeros(size, np.uint8)
    x, y, w, h = box
    pixels[y : y + h, x : x + w] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def blob_zip(path: Path, masks: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for image_id, data in masks.items():
            archive.writestr(f"{image_id}.png", data)
    return path


def test_a_zip_of_masks_round_trips(runner, ifcb_repo, tmp_path):
    masks = {ROI2: mask_png((1, 2, 3, 4)), ROI3: mask_png((0, 0, 5, 1))}
    archive = blob_zip(tmp_path / f"{BIN}_blob.zip", masks)
    out = attach(runner, ifcb_repo, "segmentation", archive, "--run-id", "blobs")
    assert out["added"] == 2
    for image_id, data in masks.items():
        target = tmp_path / f"{image_id}.png"
        ok(invoke(runner, "--repo", ifcb_repo, "get", image_id, "--mask", "-o", target, "-q"))
        assert target.read_bytes() == data
        assert Repository.open(ifcb_repo).snapshot().read_mask(image_id) == data
    found = [
        (r["area"], r["bbox_x"], r["bbox_y"], r["bbox_width"], r["bbox_height"])
        for r in records(ifcb_repo, "segmentation")
    ]
    assert found == [(12, 1, 2, 3, 4), (5, 0, 0, 5, 1)]
    # the same zip as --masks of a records table
    table = tmp_path / "seg.csv"
    table.write_text(f"image_id,method\n{ROI2},otsu\n{ROI3},otsu\n")
    out = attach(runner, ifcb_repo, "segmentation", table, "--masks", archive, "--run-id", "otsu")
    assert out["added"] == 2
    assert {r["method"] for r in records(ifcb_repo, "segmentation", "otsu")} == {"otsu"}


# -- bad input ----------------------------------------------------------------------
def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["truncated"] = tmp_path / f"{BIN}_class.h5"
    files["truncated"].write_bytes(H5.read_bytes()[:300])
    files["garbage_mat"] = tmp_path / f"{BIN}_class_v1.mat"
    files["garbage_mat"].write_bytes(b"MATLAB 5.0 MAT-file, but not really" * 10)
    files["unnamed"] = tmp_path / "scores.h5"
    shutil.copy(H5, files["unnamed"])
    files["csv"] = tmp_path / "scores.csv"
    files["csv"].write_text(f"pid,a,b\n{ROI2},0.4,0.6\n")
    files["ragged"] = tmp_path / "ragged.parquet"
    pq.write_table(
        pa.table({"image_id": [ROI2, ROI3], "v": [[1.0, 2.0], [3.0]], "model": ["m", "m"]}),
        files["ragged"],
    )
    files["nan"] = tmp_path / "nan.parquet"
    pq.write_table(
        pa.table({"image_id": [ROI2, ROI3], "v": [[1.0], [float("nan")]], "model": ["m", "m"]}),
        files["nan"],
    )
    files["bad_zip"] = tmp_path / "blob.zip"
    files["bad_zip"].write_bytes(b"PK\x03\x04 not a zip")
    files["stranger"] = blob_zip(
        tmp_path / "stranger.zip", {f"{BIN}_00009": mask_png((0, 0, 1, 1))}
    )
    files["index"] = tmp_path / f"{BIN}.mat"
    scipy.io.savemat(
        files["index"],
        {
            "classlist": np.array([[2.0, 9.0, np.nan]]),
            "class2use_manual": np.array(["a", "b"], dtype=object),
        },
    )
    files["text"] = tmp_path / "notes.txt"
    files["text"].write_text("hello\n")
    return files


BAD = [
    (["annotation", H5], 2, "holds classification records, not annotation"),
    (["classification", MANUAL], 2, "holds annotation records, not classification"),
    (["classification", CLASS2USE], 2, "neither a class file (TBscores) nor a manual annotation"),
    (["classification", "truncated"], 2, "cannot read D20220522T003051_IFCB134_class.h5 as HDF5"),
    (["classification", "garbage_mat"], 2, "as a MATLAB file"),
    (["classification", "unnamed"], 2, "named after its IFCB bin"),
    (["classification", "csv"], 2, "names no classifier; give --model"),
    (["embedding", "ragged"], 2, "vectors of one length"),
    (["embedding", "nan"], 2, "must be finite"),
    (["segmentation", "bad_zip"], 2, "as a zip file"),
    (["segmentation", "stranger"], 2, "refer to images not in commit"),
    (["annotation", "index"], 2, "ROI 2 is labelled class 9, not one of the 2 classes"),
    (["classification", H5, "--class-list", CLASS2USE], 2, "--class-list is for manual annotation"),
    (["classification", H5, "--format", "h5"], 2, "--format must be one of"),
    (["classification", "text"], 2, "cannot tell its format"),
    (["segmentation", "stranger", "--masks", "stranger"], 2, "holds the masks already"),
    (["classification", DATA / "class" / "missing.h5"], 2, "no such file"),
]


@pytest.mark.parametrize(
    "args, code, fragment", BAD, ids=[" ".join(map(str, b[0][:2])) for b in BAD]
)
def test_bad_input_is_one_line_and_commits_nothing(
    runner, ifcb_repo, tmp_path, args, code, fragment
):
    files = _bad_inputs(tmp_path)
    args = [files.get(a, a) if isinstance(a, str) else a for a in args]
    before = Repository.open(ifcb_repo).resolve()
    assert_error(invoke(runner, "--repo", ifcb_repo, "provenance", "add", *args), code, fragment)
    assert Repository.open(ifcb_repo).resolve() == before


def test_another_class_list_for_a_model_version_is_a_conflict(runner, ifcb_repo, tmp_path):
    attach(runner, ifcb_repo, "classification", H5, "--model-version", "v5")
    before = Repository.open(ifcb_repo).resolve()
    scores = tmp_path / f"{BIN}_class_v4.csv"
    scores.write_text(f"pid,Mesodinium_rubrum,Ciliates\n{ROI2},0.9,0.1\n{ROI3},0.8,0.2\n")
    result = invoke(
        runner,
        "--repo",
        ifcb_repo,
        "provenance",
        "add",
        "classification",
        scores,
        "--model",
        "SMHI NIVA ResNet50 V5",
        "--model-version",
        "v5",
        "--json",
    )
    assert_json_error(result, 4, "ConflictError", "already has a different class list")
    assert Repository.open(ifcb_repo).resolve() == before
