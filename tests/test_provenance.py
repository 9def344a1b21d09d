"""Provenance: real IFCB products, runs side by side, validation, masks,
plugins, dedup, concurrency and time travel."""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import assert_error, invoke, ok
from PIL import Image
from pydantic import BaseModel

from improv_vcs import Repository, add_provenance
from improv_vcs.core.errors import InvalidInputError, NotFoundError
from improv_vcs.provenance import kinds as kinds_module
from improv_vcs.provenance.catalog import known_kinds
from improv_vcs.query.text import parse_provenance, parse_run

DATA = Path(__file__).resolve().parent / "data" / "irfcb"
BIN = "D20220522T003051_IFCB134"
ROI2, ROI3 = f"{BIN}_00002", f"{BIN}_00003"
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def decode_bin(directory: Path, bin_id: str = BIN) -> Path:
    """Write each ROI of an IFCB bin as a lossless PNG named ``<bin>_<roi:05d>.png``."""
    header = (DATA / f"{bin_id}.hdr").read_text()
    fields = next(line for line in header.splitlines() if line.startswith("ADCFileFormat"))
    names = [n.strip() for n in fields.split(":", 1)[1].split(",")]
    pixels = np.fromfile(DATA / f"{bin_id}.roi", dtype=np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    with open(DATA / f"{bin_id}.adc") as adc:
        for number, values in enumerate(csv.reader(adc), start=1):
            row = dict(zip(names, values))
            width, height, start = (
                int(row["RoiWidth"]),
                int(row["RoiHeight"]),
                int(row["StartByte"]),
            )
            if width * height:
                roi = pixels[start : start + width * height].reshape(height, width)
                Image.fromarray(roi).save(directory / f"{bin_id}_{number:05d}.png")
    return directory


@pytest.fixture
def ifcb_repo(runner, tmp_path, monkeypatch):
    """A repository holding the two ROIs of the real bin, committed by the CLI."""
    monkeypatch.setenv("IMPROV_AUTHOR", "tester")
    path = tmp_path / "repo"
    ok(invoke(runner, "init", path))
    ok(
        invoke(
            runner, "--repo", path, "commit", decode_bin(tmp_path / "bin"), "-i", "IFCB134", "-q"
        )
    )
    return path


def second_run(tmp_path: Path) -> Path:
    """The class file with a different winner and scores: a later classifier run."""
    rows = list(csv.DictReader(open(DATA / f"{BIN}_class.csv")))
    rows[0].update(class_name="Ciliate", class_name_auto="Ciliate", score="0.97")
    rows[1].update(score="0.91")
    out = tmp_path / f"{BIN}_class_v2.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_real_ifcb_products_and_a_rerun_side_by_side(runner, ifcb_repo, tmp_path):
    base = ["--repo", ifcb_repo]
    images = json.loads(
        ok(invoke(runner, *base, "query", "-f", "json", "-c", "image_id,sample_id")).stdout
    )
    assert images == [{"image_id": ROI2, "sample_id": BIN}, {"image_id": ROI3, "sample_id": BIN}]

    features = ok(
        invoke(
            runner,
            *base,
            "provenance",
            "add",
            "ifcb_features",
            DATA / f"{BIN}_fea_v2.csv",
            "--source",
            "ifcb-analysis",
            "--run-id",
            "v2",
            "--json",
        )
    )
    assert json.loads(features.stdout)["added"] == 2
    first = ok(
        invoke(
            runner,
            *base,
            "provenance",
            "add",
            "classification",
            DATA / f"{BIN}_class.csv",
            "--source",
            "ifcb-classifier",
            "--run-id",
            "cnn-2022",
            "--set",
            "model=cnn",
            "--set",
            "model_version=2022",
            "--json",
        )
    )
    assert json.loads(first.stdout)["added"] == 2
    first_commit = json.loads(first.stdout)["commit"]
    again = ok(
        invoke(
            runner,
            *base,
            "provenance",
            "add",
            "classification",
            DATA / f"{BIN}_class.csv",
            "--source",
            "ifcb-classifier",
            "--run-id",
            "cnn-2022",
            "--set",
            "model=cnn",
            "--set",
            "model_version=2022",
            "--json",
        )
    )
    assert json.loads(again.stdout) | {"commit": None} == {
        "kind": "classification",
        "records": 2,
        "added": 0,
        "commit": None,
        "runs": [],
    }
    ok(
        invoke(
            runner,
            *base,
            "provenance",
            "add",
            "classification",
            second_run(tmp_path),
            "--source",
            "ifcb-classifier",
            "--run-id",
            "cnn-2024",
            "--set",
            "model=cnn",
            "--set",
            "model_version=2024",
        )
    )

    history = json.loads(ok(invoke(runner, *base, "provenance", "show", ROI2, "--json")).stdout)
    assert [(r["kind"], r["run_id"]) for r in history] == [
        ("ifcb_features", "v2"),
        ("classification", "cnn-2022"),
        ("classification", "cnn-2024"),
    ]
    times = [r["recorded_at"] for r in history]
    assert times == sorted(times)
    features_csv = list(csv.DictReader(open(DATA / f"{BIN}_fea_v2.csv")))
    assert history[0]["values"]["Area"] == float(features_csv[0]["Area"])
    assert len(history[0]["values"]) == len(features_csv[0]) - 1  # every feature but roi_number
    assert history[1]["values"] | {} == {
        "model": "cnn",
        "model_version": "2022",
        "winner": "Mesodinium_rubrum",
        "label": "Mesodinium_rubrum",
        "score": 0.63,
    }
    assert history[2]["values"]["winner"] == "Ciliate"
    only = json.loads(
        ok(
            invoke(
                runner,
                *base,
                "provenance",
                "show",
                ROI2,
                "--kind",
                "classification",
                "--at",
                first_commit,
                "--json",
            )
        ).stdout
    )
    assert [r["run_id"] for r in only] == ["cnn-2022"]  # the past is unchanged
    text = ok(invoke(runner, *base, "provenance", "show", ROI2)).stdout
    assert "cnn-2022" in text and "cnn-2024" in text and "winner: Ciliate" in text

    def winners(*options):
        out = ok(
            invoke(
                runner,
                *base,
                "query",
                "-f",
                "json",
                "-c",
                "image_id",
                "--with",
                "classification.winner",
                "--with",
                "classification.run_id",
                *options,
            )
        )
        return [
            (r["image_id"], r["classification.winner"], r["classification.run_id"])
            for r in json.loads(out.stdout)
        ]

    assert winners("--run", "latest") == [
        (ROI2, "Ciliate", "cnn-2024"),
        (ROI3, "Mesodinium_rubrum", "cnn-2024"),
    ]
    assert winners("--run", "cnn-2022") == [
        (ROI2, "Mesodinium_rubrum", "cnn-2022"),
        (ROI3, "Mesodinium_rubrum", "cnn-2022"),
    ]
    assert winners("--run", "latest", "--prov", "classification.winner = Mesodinium_rubrum") == [
        (ROI3, "Mesodinium_rubrum", "cnn-2024")
    ]
    assert winners("--prov", "classification.winner = Mesodinium_rubrum", "--run", "cnn-2022") == [
        (ROI2, "Mesodinium_rubrum", "cnn-2022"),
        (ROI3, "Mesodinium_rubrum", "cnn-2022"),
    ]
    assert winners(
        "--prov",
        "classification.score > 0.9",
        "--prov",
        "classification.winner = Mesodinium_rubrum",
    ) == [(ROI3, "Mesodinium_rubrum", "cnn-2024")]
    assert winners("--prov", "ifcb_features.Area > 5100") == [
        (ROI3, "Mesodinium_rubrum", "cnn-2024")
    ]
    count = ok(
        invoke(runner, *base, "query", "--count", "--kind", "classification", "--at", first_commit)
    )
    assert count.stdout == "2\n"
    assert ok(invoke(runner, *base, "query", "--count", "--kind", "segmentation")).stdout == "0\n"
    log = ok(invoke(runner, *base, "log")).stdout
    assert "classification: 2 record(s), run cnn-2024 (ifcb-classifier)" in log


def _repo_with_images(url, n: int = 4, **extra) -> Repository:
    repo = Repository.init(url)
    rows = [{"image_id": f"img{i}", "timestamp": T0.replace(hour=i), **extra} for i in range(n)]
    with repo.transaction(message="images") as tx:
        tx.append_bytes("CAM1", rows, [f"image {i}".encode() for i in range(n)])
    return repo


def _classified(image: str, winner: str, score: float) -> dict:
    return {"image_id": image, "winner": winner, "score": score, "model": "m"}


@pytest.mark.parametrize(
    "kind, rows, fragment",
    [
        (
            "classification",
            [{"image_id": "img0", "winner": "A", "model": "m", "colour": "red"}],
            "unknown column 'colour'",
        ),
        (
            "classification",
            [{"image_id": "img0", "winner": "A", "model": "m", "score": "high"}],
            "'score'",
        ),
        (
            "classification",
            [{"image_id": "img0", "winner": "A", "model": "m", "score": 1.5}],
            "'score' must be <= 1",
        ),
        ("classification", [{"image_id": "img0", "model": "m"}], "'winner' is required"),
        ("classification", [{"winner": "A", "model": "m"}], "image_id"),
        ("classification", [{"image_id": "nope", "winner": "A", "model": "m"}], "'nope'"),
        (
            "classification",
            [{"image_id": "img0", "winner": "A", "model": "m", "run_id": "x"}],
            "'run_id' is filled in",
        ),
        ("geolocation", [{"image_id": "img0", "lat": 95.0, "lon": 0.0}], "'lat' must be <= 90"),
        (
            "annotation",
            [{"image_id": "img0", "label": "x", "annotator": "me", "region": "circle"}],
            "one of frame, bbox",
        ),
        (
            "annotation",
            [{"image_id": "img0", "label": "x", "annotator": "me", "region": "bbox"}],
            "needs bbox_x",
        ),
        (
            "sample_context",
            [{"image_id": "img0", "sample_id": "s", "extra": "{not json"}],
            "not JSON",
        ),
        ("segmentation", [{"image_id": "img0"}], "need masks"),
        ("nosuchkind", [{"image_id": "img0"}], "unknown provenance kind 'nosuchkind'"),
    ],
)
def test_invalid_records_are_refused_and_nothing_is_written(tmp_path, kind, rows, fragment):
    repo = _repo_with_images(tmp_path / "repo")
    before = repo.resolve()
    with pytest.raises(InvalidInputError) as info:
        add_provenance(repo, kind, rows, source="s")
    assert fragment in str(info.value)
    assert repo.resolve() == before


class Anything(BaseModel):
    """A kind with no fixed columns."""


def test_schema_evolution_new_columns_yes_type_changes_no(tmp_path):
    repo = _repo_with_images(tmp_path / "repo")
    add_provenance(
        repo, "ifcb_features", [{"image_id": "img0", "Area": 10}], source="f", run_id="a"
    )
    add_provenance(
        repo,
        "ifcb_features",
        [{"image_id": "img1", "Area": 12.5, "Perimeter": 3.0}],
        source="f",
        run_id="a",
    )
    table = repo.snapshot().provenance_records("ifcb_features").sort_by("image_id")
    assert table.column("Area").to_pylist() == [10.0, 12.5]
    assert table.column("Perimeter").to_pylist() == [None, 3.0]
    with pytest.raises(InvalidInputError, match="'Perimeter'"):
        add_provenance(
            repo, "ifcb_features", [{"image_id": "img2", "Perimeter": "long"}], source="f"
        )
    known_kinds()["free"] = kinds_module.Kind("free", Anything, open_columns="any")
    try:
        add_provenance(repo, "free", [{"image_id": "img0", "note": "text"}], source="f")
        with pytest.raises(InvalidInputError, match="column 'note' of kind 'free' held string"):
            add_provenance(repo, "free", [{"image_id": "img1", "note": 3}], source="f")
    finally:
        del known_kinds()["free"]


def test_identical_records_are_added_once_and_runs_sit_side_by_side(tmp_path):
    repo = _repo_with_images(tmp_path / "repo")
    rows = [_classified("img0", "A", 0.5), _classified("img1", "B", 0.7)]
    first = add_provenance(repo, "classification", rows, source="clf")
    assert first is not None
    assert add_provenance(repo, "classification", rows, source="clf") is None
    assert (
        add_provenance(repo, "classification", rows[::-1], source="clf") is None
    )  # order is not content
    with repo.transaction() as tx:
        assert tx.add_provenance("classification", rows + rows, source="clf", run_id="x") == 2
        assert tx.add_provenance("classification", rows, source="clf", run_id="x") == 0
    assert (
        add_provenance(repo, "classification", rows, source="other") is not None
    )  # another source
    table = repo.snapshot().provenance_records("classification")
    assert table.num_rows == 6
    assert len(set(table.column("record_id").to_pylist())) == 6
    assert sorted(set(table.column("run_id").to_pylist()))[-1] == "x"
    auto = [r for r in set(table.column("run_id").to_pylist()) if r.startswith("auto-")]
    assert len(auto) == 2  # the same records from two sources: two auto runs


def test_history_at_an_old_commit_does_not_change(tmp_path):
    repo = _repo_with_images(tmp_path / "repo")
    old = add_provenance(
        repo, "classification", [_classified("img0", "A", 0.5)], source="clf", run_id="r1"
    )
    before = (
        repo.snapshot(old).provenance("img0"),
        repo.snapshot(old).query(kinds=("classification",)),
    )
    add_provenance(
        repo,
        "classification",
        [_classified("img0", "B", 0.9), _classified("img1", "B", 0.9)],
        source="clf",
        run_id="r2",
    )
    assert (
        repo.snapshot(old).provenance("img0"),
        repo.snapshot(old).query(kinds=("classification",)),
    ) == before
    assert [r.run_id for r in repo.snapshot().provenance("img0")] == ["r1", "r2"]
    assert repo.snapshot().count(kinds=("classification",)) == 2


def test_records_may_name_images_added_in_the_same_transaction(tmp_path):
    repo = _repo_with_images(tmp_path / "repo")
    with repo.transaction(message="new images with their classes") as tx:
        tx.append_bytes("CAM1", [{"image_id": "new", "timestamp": T0}], [b"new image"])
        assert (
            tx.add_provenance("classification", [_classified("new", "A", 0.1)], source="clf") == 1
        )
    assert [r.values["winner"] for r in repo.snapshot().provenance("new")] == ["A"]
    with pytest.raises(NotFoundError):
        repo.snapshot().provenance("absent")


def _mask(box: tuple[int, int, int, int], size: int = 16) -> bytes:
    pixels = np.zeros((size, size), np.uint8)
    x, y, w, h = box
    pixels[y : y + h, x : x + w] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_segmentation_masks_are_packed_verified_and_measured(runner, tmp_path):
    repo = _repo_with_images(tmp_path / "repo")
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "img0.png").write_bytes(_mask((2, 3, 4, 5)))
    (masks / "img1.png").write_bytes(_mask((0, 0, 1, 1)))
    records = tmp_path / "seg.csv"
    records.write_text("image_id,method\nimg0,otsu\nimg1,otsu\n")
    out = ok(
        invoke(
            runner,
            "--repo",
            repo.url,
            "provenance",
            "add",
            "segmentation",
            records,
            "--masks",
            masks,
            "--run-id",
            "otsu-1",
            "--json",
        )
    )
    assert json.loads(out.stdout)["added"] == 2
    assert repo.snapshot().read_mask("img0") == (masks / "img0.png").read_bytes()
    [record] = repo.snapshot().provenance("img0", kind="segmentation")
    assert record.values == {
        "area": 20,
        "bbox_x": 2,
        "bbox_y": 3,
        "bbox_width": 4,
        "bbox_height": 5,
        "method": "otsu",
    }
    assert record.blob_id is not None and len(record.blob_id) == 64
    add_provenance(
        repo,
        "segmentation",
        [{"image_id": "img0", "area": 7}],
        source="s",
        run_id="other",
        masks={"img0": _mask((0, 0, 2, 2))},
    )
    assert repo.snapshot().read_mask("img0") == _mask((0, 0, 2, 2))  # the latest run
    assert repo.snapshot().read_mask("img0", run="otsu-1") == (masks / "img0.png").read_bytes()
    assert (
        repo.snapshot().provenance("img0", kind="segmentation")[-1].values["area"] == 7
    )  # given, not computed
    with pytest.raises(NotFoundError, match="no segmentation mask"):
        repo.snapshot().read_mask("img2")
    assert repo.snapshot().count(provenance=(parse_provenance("segmentation.area > 10"),)) == 1


def test_annotations_and_sample_context(tmp_path):
    repo = _repo_with_images(tmp_path / "repo")
    add_provenance(
        repo,
        "annotation",
        [
            {"image_id": "img0", "label": "diatom", "annotator": "ann"},
            {
                "image_id": "img0",
                "label": "ciliate",
                "annotator": "ann",
                "region": "bbox",
                "bbox_x": 1,
                "bbox_y": 2,
                "bbox_width": 3,
                "bbox_height": 4,
                "comment": "upper left",
            },
        ],
        source="lab",
    )
    values = sorted(
        (r.values for r in repo.snapshot().provenance("img0", kind="annotation")),
        key=lambda v: v["label"],
    )
    assert values[0]["region"] == "bbox" and values[0]["bbox_width"] == 3
    assert values[1] == {"label": "diatom", "annotator": "ann", "region": "frame"}
    add_provenance(
        repo,
        "sample_context",
        [
            {
                "image_id": "img1",
                "sample_id": "S1",
                "cruise": "EN700",
                "extra": {"b": 1, "a": [1, 2]},
            }
        ],
        source="log",
    )
    [context] = repo.snapshot().provenance("img1", kind="sample_context")
    assert context.values["extra"] == '{"a":[1,2],"b":1}'
    assert repo.snapshot().query(
        provenance=(parse_provenance("sample_context.cruise = EN700"),)
    ).column("image_id").to_pylist() == ["img1"]


def test_geolocation_places_images_without_a_position(tmp_path):
    repo = Repository.init(tmp_path / "repo")
    with repo.transaction() as tx:
        tx.append_bytes(
            "CAM1",
            [
                {"image_id": "fixed", "timestamp": T0, "lat": 41.5, "lon": -70.5},
                {"image_id": "unplaced", "timestamp": T0.replace(hour=1)},
                {"image_id": "far", "timestamp": T0.replace(hour=2)},
            ],
            [b"1", b"2", b"3"],
        )
    box = (41.0, -71.0, 42.0, -70.0)
    assert repo.snapshot().query(bbox=box).column("image_id").to_pylist() == ["fixed"]
    add_provenance(
        repo,
        "geolocation",
        [
            {"image_id": "unplaced", "lat": 41.2, "lon": -70.1, "method": "ship track"},
            {"image_id": "far", "lat": 10.0, "lon": 10.0},
            {"image_id": "fixed", "lat": 0.0, "lon": 0.0},  # the manifest's position wins
        ],
        source="nav",
    )
    assert repo.snapshot().query(bbox=box).column("image_id").to_pylist() == ["fixed", "unplaced"]
    assert repo.snapshot().count(bbox=box) == 2
    add_provenance(
        repo,
        "geolocation",
        [{"image_id": "unplaced", "lat": 0.0, "lon": 0.0}],
        source="nav",
        run_id="fix",
    )
    assert repo.snapshot().query(bbox=box).column("image_id").to_pylist() == [
        "fixed"
    ]  # its latest position moved


def test_classes_scores_keep_their_names(tmp_path):
    repo = _repo_with_images(tmp_path / "repo")
    add_provenance(
        repo,
        "classification",
        pa.table(
            {
                "image_id": ["img0", "img1"],
                "model": ["m", "m"],
                "winner": ["Diatom", "Ciliate"],
                "scores.Diatom": [0.8, 0.1],
                "scores.Ciliate": [0.2, 0.9],
            }
        ),
        source="clf",
        run_id="r1",
    )
    add_provenance(
        repo,
        "classification",
        [
            {
                "image_id": "img0",
                "model": "m",
                "winner": "Dino",
                "scores": {"Dino": 0.7, "Diatom": 0.3},
            },
        ],
        source="clf",
        run_id="r2",
    )
    history = repo.snapshot().provenance("img0")
    assert history[0].values["scores"] == pytest.approx({"Ciliate": 0.2, "Diatom": 0.8})
    assert history[1].values["scores"] == pytest.approx({"Diatom": 0.3, "Dino": 0.7})
    table = repo.snapshot().provenance_records("classification")
    assert set(table.schema.field("scores").type.names) >= {"Ciliate", "Diatom", "Dino"}


def test_query_errors_name_the_problem(tmp_path):
    repo = _repo_with_images(tmp_path / "repo")
    add_provenance(repo, "classification", [_classified("img0", "A", 0.5)], source="clf")
    with pytest.raises(InvalidInputError, match="unknown column 'nope' of kind 'classification'"):
        repo.snapshot().query(provenance=(parse_provenance("classification.nope = 1"),))
    with pytest.raises(InvalidInputError, match="unknown provenance kind"):
        repo.snapshot().query(kinds=("nosuch",))
    with pytest.raises(InvalidInputError, match="score"):
        repo.snapshot().query(provenance=(parse_provenance("classification.score > high"),))
    with pytest.raises(InvalidInputError, match="--prov"):
        parse_provenance("score > 1")
    assert parse_run("classification=latest").kind == "classification"


def test_cli_errors_are_one_line(runner, tmp_path):
    repo = _repo_with_images(tmp_path / "repo")
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,winner,model,colour\nimg0,A,m,red\n")
    assert_error(
        invoke(runner, "--repo", repo.url, "provenance", "add", "classification", bad), 2, "colour"
    )
    assert_error(
        invoke(
            runner, "--repo", repo.url, "provenance", "add", "classification", tmp_path / "none.csv"
        ),
        2,
        "no such file",
    )
    keyless = tmp_path / "keyless.csv"
    keyless.write_text("winner,model\nA,m\n")
    assert_error(
        invoke(runner, "--repo", repo.url, "provenance", "add", "classification", keyless),
        2,
        "image_id",
    )
    assert_error(invoke(runner, "--repo", repo.url, "provenance", "show", "absent"), 3, "absent")
    assert_error(
        invoke(runner, "--repo", repo.url, "query", "--prov", "classification.winner"), 2, "--prov"
    )
    kinds = json.loads(ok(invoke(runner, "provenance", "kinds", "--json")).stdout)
    assert {k["name"] for k in kinds} >= {
        "geolocation",
        "sample_context",
        "segmentation",
        "classification",
        "annotation",
        "ifcb_features",
    }


def test_concurrent_writers_keep_every_record_once(tmp_path):
    repo = _repo_with_images(tmp_path / "repo", n=8)
    barrier = threading.Barrier(4)
    errors = []

    def write(worker: int) -> None:
        try:
            mine = Repository.open(tmp_path / "repo")
            shared = [_classified("img0", "A", 0.5)]  # identical in every writer
            own = [_classified(f"img{worker + 1}", "B", 0.1 * worker)]
            with mine.transaction(message=f"writer {worker}") as tx:
                tx.add_provenance("classification", shared + own, source="clf", run_id="same")
                barrier.wait()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    table = repo.snapshot().provenance_records("classification")
    assert sorted(table.column("image_id").to_pylist()) == ["img0", "img1", "img2", "img3", "img4"]
    assert len(list(repo.log())) == 1 + 4


PLUGIN = """
from pydantic import BaseModel, Field
from improv_vcs.provenance.kinds import Kind

class Colour(BaseModel):
    hue: float = Field(ge=0, le=360)
    name: str | None = None

KIND = Kind("colour", Colour, "dominant colour of an image", indexed=("hue",))
"""


def test_a_third_party_kind_installs_through_an_entry_point(runner, tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "colour_kind").mkdir(parents=True)
    (site / "colour_kind" / "__init__.py").write_text(PLUGIN)
    dist = site / "colour_kind-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: colour-kind\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[improv_vcs.kinds]\ncolour = colour_kind:KIND\n")
    monkeypatch.syspath_prepend(str(site))
    known_kinds.cache_clear()
    try:
        assert "colour" in known_kinds()
        repo = _repo_with_images(tmp_path / "repo")
        add_provenance(
            repo,
            "colour",
            [{"image_id": "img0", "hue": 120.0}, {"image_id": "img1", "hue": 300.0}],
            source="c",
        )
        assert repo.snapshot().query(provenance=(parse_provenance("colour.hue < 200"),)).column(
            "image_id"
        ).to_pylist() == ["img0"]
        with pytest.raises(InvalidInputError, match="'hue' must be <= 360"):
            add_provenance(repo, "colour", [{"image_id": "img0", "hue": 400.0}], source="c")
        listed = json.loads(ok(invoke(runner, "provenance", "kinds", "--json")).stdout)
        assert any(k["name"] == "colour" and k["indexed"] == ["hue"] for k in listed)
    finally:
        known_kinds.cache_clear()
        sys.modules.pop("colour_kind", None)
