"""TIFF / OME-TIFF ingest: a real OME-TIFF, synthetic N-D stacks, numpy-style
plane selection, whole-file ingest, partial export, errors and third-party
ingest adapters installed through an entry point."""

from __future__ import annotations

import io
import json
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from conftest import assert_error, invoke, ok
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from improv_vcs import Repository
from improv_vcs.core.errors import InvalidInputError, NotFoundError
from improv_vcs.ingest import adapters as adapters_module
from improv_vcs.ingest.adapters import get_adapter, known_adapters, parse_options
from improv_vcs.ingest.adapters.tiff import encode_plane, parse_ome
from improv_vcs.ingest.adapters.units import Quantity
from improv_vcs.query.filters import build_query
from improv_vcs.query.stack import decode, parse_selector

DATA = Path(__file__).resolve().parent / "data" / "aicsimageio"
REAL = DATA / "s_1_t_1_c_1_z_1.ome.tiff"
REAL_SAMPLE = "s_1_t_1_c_1_z_1"
WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
SIX = "PTCZ"


# -- helpers -----------------------------------------------------------------


def ome_stack(
    path: Path, data: np.ndarray, axes: str, channels=None, acquired="2024-05-01T12:00:00", **extra
) -> Path:
    """Write ``data`` as an OME-TIFF with ``axes``, channel names and an acquisition date."""
    metadata = {"axes": axes, **extra}
    if channels is not None:
        metadata["Channel"] = {"Name": list(channels)}
    if acquired is not None:
        metadata["AcquisitionDate"] = acquired
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"photometric": "rgb" if axes.endswith("S") else "minisblack"}
    tifffile.imwrite(path, data, ome=True, metadata=metadata, **kwargs)
    return path


def full_array(data: np.ndarray, axes: str) -> np.ndarray:
    """``data`` (axes some of T, C, Z then Y, X[, S]) as read_stack shapes it: (P, T, C, Z, Y, X[,
    S])."""
    out = data
    for position, axis in enumerate(SIX):
        if axis not in axes:
            out = np.expand_dims(out, position)
    return out


def new_repo(path: Path) -> Repository:
    return Repository.init(path)


def ingest(
    repo: Repository, source: Path, instrument: str = "scope1", **options: str
) -> tuple[int, int]:
    plan = get_adapter("tiff").plan(source, instrument, options)
    with repo.transaction(message="ingest") as tx:
        return adapters_module.apply_plan(tx, plan)


def history(url: Path) -> list[str]:
    return [oid for oid, _ in Repository.open(url).log()]


@pytest.fixture
def repo(runner, tmp_path):  # noqa: F811
    path = tmp_path / "repo"
    ok(invoke(runner, "init", path))
    return path


@pytest.fixture
def stack4d():
    """A (T=2, C=3, Z=4, Y=5, X=6) uint16 stack with distinct planes."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 65535, (2, 3, 4, 5, 6), dtype=np.uint16)


@pytest.fixture
def stack_repo(tmp_path, stack4d):
    """A repository holding stack4d as sample 'cells' (channels a, b, c; DeltaT = plane number)."""
    path = ome_stack(
        tmp_path / "in" / "cells.ome.tif",
        stack4d,
        "TCZYX",
        channels=["a", "b", "c"],
        Plane={"DeltaT": [float(i) for i in range(24)]},
    )
    repo = new_repo(tmp_path / "repo")
    assert ingest(repo, path) == (24, 2)
    return repo


# -- 1. the real OME-TIFF ----------------------------------------------------


def test_real_ome_tiff_through_the_cli(runner, repo, tmp_path):
    assert REAL.is_file(), REAL
    original = REAL.read_bytes()
    result = json.loads(
        ok(
            invoke(
                runner, "--repo", repo, "commit", "--format", "tiff", REAL, "-i", "scope1", "--json"
            )
        ).stdout
    )
    assert result["format"] == "tiff"
    assert result["instruments"] == ["scope1"]
    assert (result["images"], result["new_images"], result["files"], result["new_files"]) == (
        1,
        1,
        2,
        2,
    )
    assert result["commit"] is not None

    expected = tifffile.imread(REAL)
    assert expected.shape == (325, 475) and expected.dtype == np.uint16
    stack = Repository.open(repo).snapshot().read_stack(REAL_SAMPLE)
    assert stack.shape == (1, 1, 1, 1, 325, 475)
    assert stack.dtype == np.uint16
    assert np.array_equal(stack[0, 0, 0, 0], expected)
    # one plane picked by ints drops every index axis
    assert np.array_equal(
        Repository.open(repo).snapshot().read_stack(REAL_SAMPLE, p=0, t=0, c=0, z=0), expected
    )

    rows = Repository.open(repo).snapshot().query().to_pylist()
    assert len(rows) == 1
    row = rows[0]
    assert row["image_id"] == f"{REAL_SAMPLE}_p0_t0_c0_z0"
    assert row["instrument"] == "scope1"
    assert row["sample_id"] == REAL_SAMPLE
    assert row["media_type"] == "image/tiff"
    assert (row["t"], row["c"], row["z"], row["p"]) == (0, 0, 0, 0)
    assert row["channel"] == "Bright"
    assert (row["height"], row["width"]) == (325, 475)
    assert row["dtype"] == "uint16"
    assert row["physical_size_x"] == pytest.approx(1.0833333333333333)
    assert row["physical_size_y"] == pytest.approx(1.0833333333333333)
    assert row["physical_size_z"] is None
    assert row["series_name"] == "s_1_t_1_c_1_z_1.czi #1"
    assert row["source_path"] == REAL.name
    assert row["exposure_time"] == 10.0
    assert row["delta_t"] == pytest.approx(0.496, abs=1e-6)
    acquired = datetime(2019, 6, 27, 18, 33, 40, 619000, tzinfo=timezone.utc)
    assert row["timestamp"] == acquired + timedelta(seconds=0.496)
    assert row["timestamp"].utcoffset() == timedelta(0)

    # the stored plane is a TIFF that decodes to exactly the file's pixels
    stored = Repository.open(repo).snapshot().read_image(row["image_id"])
    assert stored[:4] == b"II*\x00"
    assert np.array_equal(tifffile.imread(io.BytesIO(stored)), expected)

    # the original file comes back byte for byte, the OME-XML as a metadata document
    dest = tmp_path / "raw"
    out = json.loads(
        ok(
            invoke(
                runner, "--repo", repo, "export", dest, "--raw", "--sample", REAL_SAMPLE, "--json"
            )
        ).stdout
    )
    assert out["files"] == 2
    assert (dest / REAL.name).read_bytes() == original
    with tifffile.TiffFile(REAL) as tif:
        ome_xml = tif.ome_metadata.encode("utf-8")
    assert (dest / f"{REAL_SAMPLE}.ome.xml").read_bytes() == ome_xml
    assert sorted(p.name for p in dest.iterdir()) == sorted([REAL.name, f"{REAL_SAMPLE}.ome.xml"])

    listed = json.loads(ok(invoke(runner, "--repo", repo, "sources", "--json")).stdout)
    by_role = {r["role"]: r for r in listed}
    assert set(by_role) == {"raw", "metadata"}
    assert by_role["raw"]["path"] == REAL.name
    assert by_role["raw"]["size"] == len(original)
    assert by_role["raw"]["media_type"] == "image/tiff"
    assert by_role["metadata"]["path"] == f"{REAL_SAMPLE}.ome.xml"
    assert by_role["metadata"]["media_type"] == "application/xml"
    assert by_role["metadata"]["size"] == len(ome_xml)
    assert all(r["sample_id"] == REAL_SAMPLE and r["instrument"] == "scope1" for r in listed)
    assert (
        Repository.open(repo).snapshot().read_source(REAL_SAMPLE, f"{REAL_SAMPLE}.ome.xml")
        == ome_xml
    )


def test_real_ome_xml_parses_to_its_fields():
    with tifffile.TiffFile(REAL) as tif:
        images = parse_ome(tif.ome_metadata)
    assert len(images) == 1
    image = images[0]
    assert image.name == "s_1_t_1_c_1_z_1.czi #1"
    assert image.acquired == datetime(2019, 6, 27, 18, 33, 40, 619000, tzinfo=timezone.utc)
    assert image.channels == ["Bright"]
    size = 1.0833333333333333
    assert image.sizes == {
        "physical_size_x": Quantity(size, "µm", size),
        "physical_size_y": Quantity(size, "µm", size),
    }
    assert set(image.planes) == {(0, 0, 0)}
    assert image.planes[(0, 0, 0)]["exposure_time"] == Quantity(10.0, "s", 10.0)
    assert image.planes[(0, 0, 0)]["delta_t"] == Quantity(
        0.4960000514984131, "s", 0.4960000514984131
    )
    assert image.planes[(0, 0, 0)]["position_x"] == Quantity(43427.982, "reference frame", None)


def test_ome_delta_t_units_and_offsets():
    xml = (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0" '
        'Name="one"><AcquisitionDate>2024-05-01T14:00:00+02:00</AcquisitionDate>'
        '<Pixels DimensionOrder="XYZCT" Type="uint8" SizeX="2" SizeY="2" SizeZ="2" SizeC="1" '
        'SizeT="1" PhysicalSizeZ="0.5">'
        '<Channel ID="Channel:0:0" Name="dapi"/>'
        '<Plane TheZ="0" TheC="0" TheT="0" DeltaT="250" DeltaTUnit="ms"/>'
        '<Plane TheZ="1" TheC="0" TheT="0" DeltaT="2" DeltaTUnit="min" ExposureTime="nan"/>'
        "</Pixels></Image>"
        '<Image ID="Image:1"/>'
        '<Image ID="Image:2"><AcquisitionDate>2024-05-01T12:00:00.1234567Z'
        "</AcquisitionDate></Image>"
        '<Image ID="Image:3"><AcquisitionDate>last tuesday</AcquisitionDate></Image></OME>'
    )
    first, second, ticks, unreadable = parse_ome(xml)
    assert ticks.acquired == WHEN + timedelta(
        microseconds=123456
    )  # OME's 100-ns ticks, cut to microseconds
    assert unreadable.acquired is None  # like any unreadable OME value
    assert first.acquired == WHEN  # 14:00+02:00 is 12:00 UTC
    assert first.sizes == {"physical_size_z": Quantity(0.5, "µm", 0.5)}
    assert first.channels == ["dapi"]
    assert first.planes == {
        (0, 0, 0): {"delta_t": Quantity(250.0, "ms", 0.25)},
        (0, 0, 1): {"delta_t": Quantity(2.0, "min", 120.0)},
    }
    assert second.name is None and second.acquired is None and second.planes == {}
    with pytest.raises(InvalidInputError, match="not well-formed"):
        parse_ome("<OME><Image>")


# -- 2. synthetic N-D stacks and selectors -----------------------------------


@pytest.mark.parametrize(
    ("axes", "shape", "dtype"),
    [
        ("TCZYX", (2, 3, 2, 5, 6), np.uint16),
        ("CZYX", (2, 3, 4, 5), np.uint8),
        ("ZYX", (4, 5, 6), np.float32),
        ("TYX", (3, 7, 2), np.int16),
        ("TCYX", (2, 2, 3, 3), np.float32),
        ("YX", (9, 4), np.int16),
    ],
)
def test_synthetic_stacks_round_trip_exactly(tmp_path, axes, shape, dtype):
    rng = np.random.default_rng(len(axes) * 100 + sum(shape))
    if np.dtype(dtype).kind == "f":
        data = rng.normal(size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    channels = [f"ch{i}" for i in range(shape[axes.index("C")])] if "C" in axes else None
    path = ome_stack(tmp_path / "s.ome.tiff", data, axes, channels=channels)
    repo = new_repo(tmp_path / "repo")
    planes = int(np.prod(shape[:-2]))
    assert ingest(repo, path) == (planes, 2)
    got = repo.snapshot().read_stack("s")
    expected = full_array(data, axes)
    assert got.shape == expected.shape
    assert got.dtype == np.dtype(dtype)
    assert np.array_equal(got, expected)
    rows = (
        repo.snapshot()
        .query(columns=("image_id", "t", "c", "z", "p", "channel", "dtype", "height", "width"))
        .to_pylist()
    )
    assert len(rows) == planes
    for row in rows:
        assert row["image_id"] == f"s_p{row['p']}_t{row['t']}_c{row['c']}_z{row['z']}"
        assert row["channel"] == (channels[row["c"]] if channels else None)
        assert row["dtype"] == np.dtype(dtype).name
        assert (row["height"], row["width"]) == shape[-2:]
        index = tuple(row[a.lower()] for a in axes[:-2])
        assert np.array_equal(decode(repo.snapshot().read_image(row["image_id"])), data[index])


def test_rgb_planes_keep_their_samples_axis(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    path = ome_stack(tmp_path / "rgb.ome.tif", rgb, "ZYXS")
    repo = new_repo(tmp_path / "repo")
    assert ingest(repo, path) == (2, 2)
    got = repo.snapshot().read_stack("rgb")
    assert got.shape == (1, 1, 1, 2, 5, 6, 3)
    assert np.array_equal(got[0, 0, 0], rgb)
    assert np.array_equal(repo.snapshot().read_stack("rgb", z=-1, p=0, t=0, c=0), rgb[1])
    rows = repo.snapshot().query(columns=("image_id", "height", "width", "dtype")).to_pylist()
    assert [(r["height"], r["width"], r["dtype"]) for r in rows] == [(5, 6, "uint8")] * 2


def test_series_become_positions(tmp_path):
    rng = np.random.default_rng(11)
    first = rng.integers(0, 255, (2, 4, 5), dtype=np.uint8)
    second = rng.integers(0, 255, (2, 4, 5), dtype=np.uint8)
    path = tmp_path / "multi.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        for name, data in (("left", first), ("right", second)):
            tif.write(
                data,
                photometric="minisblack",
                metadata={"axes": "ZYX", "Name": name, "AcquisitionDate": "2024-05-01T12:00:00"},
            )
    repo = new_repo(tmp_path / "repo")
    assert ingest(repo, path) == (4, 2)
    got = repo.snapshot().read_stack("multi")
    assert got.shape == (2, 1, 1, 2, 4, 5)
    assert np.array_equal(got[0, 0, 0], first) and np.array_equal(got[1, 0, 0], second)
    assert np.array_equal(repo.snapshot().read_stack("multi", p=-1, z=0), second[None, None, 0])
    rows = repo.snapshot().query(columns=("image_id", "p", "series_name")).to_pylist()
    assert sorted((r["image_id"], r["p"], r["series_name"]) for r in rows) == [
        ("multi_p0_t0_c0_z0", 0, "left"),
        ("multi_p0_t0_c0_z1", 0, "left"),
        ("multi_p1_t0_c0_z0", 1, "right"),
        ("multi_p1_t0_c0_z1", 1, "right"),
    ]


def test_plane_timestamps_are_acquisition_plus_delta_t(stack_repo):
    rows = (
        stack_repo.snapshot()
        .query(columns=("image_id", "t", "c", "z", "timestamp", "delta_t"))
        .to_pylist()
    )
    assert len(rows) == 24
    for row in rows:
        number = (row["t"] * 3 + row["c"]) * 4 + row["z"]  # tifffile numbers planes in TCZ order
        assert row["delta_t"] == float(number)
        assert row["timestamp"] == WHEN + timedelta(seconds=number)


SELECTIONS = [
    ({"c": 1}, np.s_[:, :, 1]),
    ({"z": slice(0, 3)}, np.s_[:, :, :, 0:3]),
    ({"z": slice(1, None)}, np.s_[:, :, :, 1:]),
    ({"z": slice(None, None, -1)}, np.s_[:, :, :, ::-1]),
    ({"z": slice(None, None, 2)}, np.s_[:, :, :, ::2]),
    ({"t": -1}, np.s_[:, -1]),
    ({"c": [2, 0]}, np.s_[:, :, [2, 0]]),
    ({"p": 0}, np.s_[0]),
    ({"p": 0, "t": 1, "c": -2, "z": 3}, np.s_[0, 1, -2, 3]),
    ({"t": [1], "c": 0, "z": slice(-2, None)}, np.s_[:, [1], 0, -2:]),
    ({"c": np.int64(2)}, np.s_[:, :, 2]),
]


@pytest.mark.parametrize(("selectors", "index"), SELECTIONS, ids=[str(s) for s, _ in SELECTIONS])
def test_selectors_index_like_numpy(stack_repo, stack4d, selectors, index):
    full = full_array(stack4d, "TCZYX")
    # numpy applies several list indices jointly; apply them one axis at a time instead
    expected = full
    offset = 0
    for position, axis in enumerate("ptcz"):
        if axis not in selectors:
            continue
        sel = selectors[axis]
        where = position - offset
        expected = (
            np.take(expected, sel, axis=where)
            if isinstance(sel, list)
            else expected[(slice(None),) * where + (sel,)]
        )
        if not isinstance(sel, (list, slice)):
            offset += 1
    got = stack_repo.snapshot().read_stack("cells", **selectors)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_duplicate_indices_in_a_list_repeat_planes_like_numpy(stack_repo, stack4d):
    full = full_array(stack4d, "TCZYX")
    got = stack_repo.snapshot().read_stack("cells", z=[1, 1])
    assert np.array_equal(got, np.take(full, [1, 1], axis=3))


@pytest.mark.parametrize(
    ("selectors", "fragment"),
    [
        ({"c": 3}, "out of range"),
        ({"c": -4}, "out of range"),
        ({"z": [0, 4]}, "out of range"),
        ({"p": 1}, "out of range"),
        ({"t": 2}, "out of range"),
        ({"z": 1.5}, "must be an int"),
    ],
)
def test_bad_selectors_are_refused(stack_repo, selectors, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        stack_repo.snapshot().read_stack("cells", **selectors)


@pytest.mark.parametrize("text", ["x", "12"])
def test_string_selectors_are_refused(stack_repo, text):
    with pytest.raises(InvalidInputError, match="must be an int"):
        stack_repo.snapshot().read_stack("cells", c=text)


def test_empty_selection_is_refused(stack_repo):
    with pytest.raises(InvalidInputError, match="no planes selected"):
        stack_repo.snapshot().read_stack("cells", z=slice(2, 2))


def test_read_stack_needs_one_sample_with_planes(tmp_path, stack4d):
    repo = new_repo(tmp_path / "repo")
    ingest(repo, ome_stack(tmp_path / "in" / "one.ome.tif", stack4d, "TCZYX"))
    ingest(repo, ome_stack(tmp_path / "in2" / "two.ome.tif", stack4d[:1, :1], "TCZYX"))
    assert repo.snapshot().read_stack("two").shape == (1, 1, 1, 4, 5, 6)
    with pytest.raises(InvalidInputError, match="matches 2 samples"):
        repo.snapshot().read_stack(query=build_query(instruments=("scope1",)))
    # a query matching the planes of one sample is fine
    assert np.array_equal(
        repo.snapshot().read_stack(query=build_query(samples=("one",)), c=2),
        full_array(stack4d, "TCZYX")[:, :, 2],
    )
    with pytest.raises(InvalidInputError, match="either a sample or a query"):
        repo.snapshot().read_stack()
    with pytest.raises(InvalidInputError, match="either a sample or a query"):
        repo.snapshot().read_stack("one", query=build_query(samples=("one",)))
    with pytest.raises(NotFoundError):
        repo.snapshot().read_stack("absent")

    whole = new_repo(tmp_path / "whole")
    ingest(whole, tmp_path / "in" / "one.ome.tif", split="none")
    with pytest.raises(InvalidInputError, match="no plane indices"):
        whole.snapshot().read_stack("one")


def test_samples_without_plane_columns_are_refused(runner, repo, tmp_path):
    (tmp_path / "pngs").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(
        tmp_path / "pngs" / "D20240101T120000_IFCB107_00001.png"
    )
    ok(invoke(runner, "--repo", repo, "commit", tmp_path / "pngs", "-i", "IFCB107", "-q"))
    with pytest.raises(InvalidInputError, match="no plane indices"):
        Repository.open(repo).snapshot().read_stack(query=build_query(instruments=("IFCB107",)))
    assert_error(
        invoke(runner, "--repo", repo, "export", tmp_path / "out", "--c", "0"),
        2,
        "no plane indices",
    )


_DTYPES = st.sampled_from(["uint8", "uint16", "int16", "float32"])


def _selector(n: int):
    return st.one_of(
        st.none(),
        st.integers(-n, n - 1),
        st.tuples(st.integers(0, n - 1), st.integers(1, n))
        .filter(lambda ab: ab[0] < ab[1])
        .map(lambda ab: slice(*ab)),
        st.lists(st.integers(-n, n - 1), min_size=1, max_size=n).map(
            lambda xs: list(dict.fromkeys(x % n for x in xs))
        ),
    )


@st.composite
def stacks_and_selectors(draw):
    t, c, z = (draw(st.integers(1, 3)) for _ in range(3))
    y, x = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = np.dtype(draw(_DTYPES))
    if dtype.kind == "f":
        values = st.floats(-4, 4, width=32, allow_nan=False)
    else:
        values = st.integers(0, 2)  # small range: identical planes (shared blobs) are common
    flat = draw(st.lists(values, min_size=t * c * z * y * x, max_size=t * c * z * y * x))
    data = np.array(flat, dtype=dtype).reshape(t, c, z, y, x)
    picks = [{a: draw(_selector(n)) for a, n in zip("ptcz", (1, t, c, z))} for _ in range(3)]
    return data, picks


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stacks_and_selectors())
def test_read_stack_equals_numpy_indexing_property(case):
    data, picks = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = ome_stack(root / "in" / "prop.ome.tif", data, "TCZYX")
        repo = new_repo(root / "repo")
        ingest(repo, path)
        full = full_array(data, "TCZYX")
        assert np.array_equal(repo.snapshot().read_stack("prop"), full)
        for selectors in picks:
            expected = full
            dropped = 0
            for position, axis in enumerate("ptcz"):
                sel = selectors[axis]
                if sel is None:
                    continue
                where = position - dropped
                if isinstance(sel, list):
                    expected = np.take(expected, sel, axis=where)
                else:
                    expected = expected[(slice(None),) * where + (sel,)]
                    dropped += isinstance(sel, int)
            got = repo.snapshot().read_stack("prop", **selectors)
            assert got.dtype == data.dtype
            assert got.shape == expected.shape, selectors
            assert np.array_equal(got, expected), selectors


def test_parse_selector():
    assert parse_selector("3", "z") == 3
    assert parse_selector("-1", "z") == -1
    assert parse_selector("0:5", "z") == slice(0, 5)
    assert parse_selector(":2", "z") == slice(None, 2)
    assert parse_selector("1:", "z") == slice(1, None)
    assert parse_selector("2,0,1", "c") == [2, 0, 1]
    for bad in ("a", "1:b", "1,,2", ""):
        with pytest.raises(InvalidInputError, match="--c needs N, A:B or A,B,C"):
            parse_selector(bad, "c")


def test_encode_plane_is_deterministic_and_lossless():
    plane = np.arange(30, dtype=np.float32).reshape(5, 6) / 7
    first = encode_plane(plane)
    assert first == encode_plane(plane.copy())
    assert np.array_equal(decode(first), plane)
    assert decode(first).dtype == np.float32


# -- 3. plain multi-page TIFF ------------------------------------------------


def test_plain_multipage_tiff_needs_axes_and_time(runner, repo, tmp_path):
    pages = np.arange(5 * 8 * 6, dtype=np.uint16).reshape(5, 8, 6)
    path = tmp_path / "in" / "zstack.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, pages)
    base = ("--repo", repo, "commit", "--format", "tiff", path, "-i", "scope1")
    assert_error(invoke(runner, *base), 2, "axes")
    assert_error(invoke(runner, *base, "--option", "axes=ZYX"), 2, "time=")
    assert_error(
        invoke(runner, *base, "--option", "axes=ZY", "--option", "time=2024-05-01T12:00:00Z"),
        2,
        "axes=ZY",
    )
    assert_error(
        invoke(runner, *base, "--option", "axes=ZYX", "--option", "time=yesterday"), 2, "time"
    )
    assert history(repo) == []
    ok(
        invoke(
            runner,
            *base,
            "--option",
            "axes=ZYX",
            "--option",
            "time=2024-05-01T14:00:00+02:00",
            "-q",
        )
    )
    opened = Repository.open(repo)
    rows = (
        opened.snapshot()
        .query(columns=("image_id", "t", "c", "z", "p", "timestamp", "channel", "height", "width"))
        .to_pylist()
    )
    assert [r["image_id"] for r in rows] == [f"zstack_p0_t0_c0_z{z}" for z in range(5)]
    assert [r["z"] for r in rows] == list(range(5))
    assert {(r["t"], r["c"], r["p"], r["channel"], r["height"], r["width"]) for r in rows} == {
        (0, 0, 0, None, 8, 6)
    }
    assert {r["timestamp"] for r in rows} == {WHEN}
    assert np.array_equal(opened.snapshot().read_stack("zstack"), pages[None, None, None])
    assert np.array_equal(opened.snapshot().read_stack("zstack", z=2, p=0, t=0, c=0), pages[2])
    # no OME-XML: only the file itself is kept
    files = opened.snapshot().source_files().to_pylist()
    assert [(f["path"], f["role"]) for f in files] == [("zstack.tif", "raw")]


def test_plain_tiff_time_comes_from_the_datetime_tag(tmp_path):
    pages = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    path = tmp_path / "tagged.tif"
    tifffile.imwrite(path, pages, metadata=None, datetime="2024:05:01 12:00:00")
    repo = new_repo(tmp_path / "repo")
    assert ingest(repo, path, axes="TYX") == (2, 1)
    rows = repo.snapshot().query(columns=("t", "timestamp")).to_pylist()
    assert [(r["t"], r["timestamp"]) for r in rows] == [(0, WHEN), (1, WHEN)]
    # the time option wins over the tag
    other = new_repo(tmp_path / "other")
    ingest(other, path, axes="TYX", time="2020-01-01")
    assert {r["timestamp"] for r in other.snapshot().query(columns=("timestamp",)).to_pylist()} == {
        datetime(2020, 1, 1, tzinfo=timezone.utc)
    }
    assert np.array_equal(repo.snapshot().read_stack("tagged"), pages[None, :, None, None])


def test_datetime_tag_is_read_while_the_file_is_open(tmp_path):
    import warnings

    path = tmp_path / "tagged.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), datetime="2024:05:01 12:00:00")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = get_adapter("tiff").plan(path, "s", {})
    assert plan.batches[0].metadata.column("timestamp").to_pylist() == [WHEN]


def test_axes_option_renames_ome_axes(tmp_path, stack4d):
    path = ome_stack(tmp_path / "in" / "swap.ome.tif", stack4d[0], "CZYX", channels=["a", "b", "c"])
    repo = new_repo(tmp_path / "repo")
    ingest(repo, path, axes="TZYX")  # call the channel axis time and keep z
    got = repo.snapshot().read_stack("swap")
    assert got.shape == (1, 3, 1, 4, 5, 6)
    assert np.array_equal(got[0, :, 0], stack4d[0])


# -- 4. split none -------------------------------------------------------------


def test_split_none_keeps_each_file_as_one_image(runner, repo, tmp_path, stack4d):
    directory = tmp_path / "in"
    stack = ome_stack(
        directory / "cells.ome.tif",
        stack4d,
        "TCZYX",
        channels=["a", "b", "c"],
        PhysicalSizeX=0.25,
        PhysicalSizeZ=2.0,
    )
    (directory / "sub").mkdir()
    tifffile.imwrite(
        directory / "sub" / "flat.tif", np.ones((3, 3), np.uint8), datetime="2024:05:01 12:00:00"
    )
    result = json.loads(
        ok(
            invoke(
                runner,
                "--repo",
                repo,
                "commit",
                "--format",
                "tiff",
                directory,
                "-i",
                "scope1",
                "--split",
                "none",
                "--json",
            )
        ).stdout
    )
    assert (result["images"], result["new_images"], result["files"]) == (2, 2, 3)
    out = tmp_path / "cells.tif"
    ok(invoke(runner, "--repo", repo, "get", "cells", "-o", out))
    assert out.read_bytes() == stack.read_bytes()
    flat = tmp_path / "flat.tif"
    ok(invoke(runner, "--repo", repo, "get", "flat", "-o", flat))
    assert flat.read_bytes() == (directory / "sub" / "flat.tif").read_bytes()

    rows = {r["image_id"]: r for r in Repository.open(repo).snapshot().query().to_pylist()}
    assert set(rows) == {"cells", "flat"}
    cells = rows["cells"]
    assert cells["sample_id"] == "cells"
    assert cells["media_type"] == "image/tiff"
    assert cells["axes"] == "TCZYX"
    assert cells["shape"] == "2x3x4x5x6"
    assert cells["dtype"] == "uint16"
    assert (cells["size_t"], cells["size_c"], cells["size_z"], cells["size_p"]) == (2, 3, 4, 1)
    assert cells["channels"] == "a,b,c"
    assert cells["physical_size_x"] == 0.25
    assert cells["physical_size_z"] == 2.0
    assert cells["source_path"] == "cells.ome.tif"
    assert cells["timestamp"] == WHEN
    assert "t" not in cells and "c" not in cells
    f = rows["flat"]
    assert (f["axes"], f["shape"], f["dtype"]) == ("YX", "3x3", "uint8")
    assert (f["size_t"], f["size_c"], f["size_z"], f["size_p"]) == (1, 1, 1, 1)
    assert f["channels"] is None
    assert f["source_path"] == "sub/flat.tif"
    assert f["timestamp"] == WHEN

    listed = json.loads(ok(invoke(runner, "--repo", repo, "sources", "--json")).stdout)
    assert sorted((r["sample_id"], r["path"], r["role"]) for r in listed) == [
        ("cells", "cells.ome.tif", "raw"),
        ("cells", "cells.ome.xml", "metadata"),
        ("flat", "sub/flat.tif", "raw"),
    ]


def test_no_raw_keeps_only_the_ome_xml(runner, repo, tmp_path, stack4d):
    stack = ome_stack(tmp_path / "in" / "cells.ome.tif", stack4d, "TCZYX")
    result = json.loads(
        ok(
            invoke(
                runner,
                "--repo",
                repo,
                "commit",
                "-f",
                "tiff",
                stack,
                "-i",
                "s",
                "--no-raw",
                "--json",
            )
        ).stdout
    )
    assert (result["images"], result["files"]) == (24, 1)
    listed = json.loads(ok(invoke(runner, "--repo", repo, "sources", "--json")).stdout)
    assert [(r["path"], r["role"]) for r in listed] == [("cells.ome.xml", "metadata")]


# -- 5. partial export ---------------------------------------------------------


def test_partial_export_writes_exactly_the_selected_planes(runner, repo, tmp_path, stack4d):
    ome_stack(tmp_path / "in" / "cells.ome.tif", stack4d, "TCZYX", channels=["a", "b", "c"])
    other = stack4d[:, :, :, ::-1].copy()
    ome_stack(tmp_path / "in" / "other.ome.tif", other, "TCZYX", channels=["a", "b", "c"])
    ok(
        invoke(
            runner,
            "--repo",
            repo,
            "commit",
            "--format",
            "tiff",
            tmp_path / "in",
            "-i",
            "scope1",
            "-q",
        )
    )

    dest = tmp_path / "out"
    out = json.loads(
        ok(
            invoke(
                runner,
                "--repo",
                repo,
                "export",
                dest,
                "--sample",
                "cells",
                "--c",
                "1",
                "--z",
                "0:2",
                "--json",
            )
        ).stdout
    )
    expected = {f"cells_p0_t{t}_c1_z{z}": (t, z) for t in range(2) for z in range(2)}
    assert (out["images"], out["written"], out["skipped"]) == (4, 4, 0)
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [f"{i}.tif" for i in expected] + ["metadata.parquet"]
    )
    for image, (t, z) in expected.items():
        assert np.array_equal(tifffile.imread(dest / f"{image}.tif"), stack4d[t, 1, z])
    meta = pq.read_table(dest / "metadata.parquet").to_pylist()
    assert sorted(r["image_id"] for r in meta) == sorted(expected)
    assert {(r["c"], r["channel"], r["sample_id"]) for r in meta} == {(1, "b", "cells")}
    assert sorted((r["t"], r["z"]) for r in meta) == sorted(expected.values())
    assert all(r["file"] == f"{r['image_id']}.tif" for r in meta)

    # selectors apply to every sample on its own; negative and list forms
    both = tmp_path / "both"
    ok(invoke(runner, "--repo", repo, "export", both, "--t", "-1", "--c", "2,0", "--z", "3", "-q"))
    names = sorted(p.name for p in both.iterdir() if p.suffix == ".tif")
    assert names == sorted(f"{s}_p0_t1_c{c}_z3.tif" for s in ("cells", "other") for c in (0, 2))
    assert np.array_equal(tifffile.imread(both / "other_p0_t1_c2_z3.tif"), other[1, 2, 3])

    # errors: out of range, bad text, --raw with selectors
    assert_error(
        invoke(runner, "--repo", repo, "export", tmp_path / "bad", "--sample", "cells", "--c", "5"),
        2,
        "out of range",
    )
    assert_error(invoke(runner, "--repo", repo, "export", tmp_path / "bad", "--z", "a:b"), 2, "--z")
    assert_error(
        invoke(runner, "--repo", repo, "export", tmp_path / "bad", "--raw", "--c", "1"), 2, "--raw"
    )
    assert not (tmp_path / "bad").exists()


# -- 6. errors and re-commits --------------------------------------------------


@pytest.fixture
def a_stack(tmp_path, stack4d):
    return ome_stack(tmp_path / "in" / "cells.ome.tif", stack4d, "TCZYX")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--format", "bogus", "-i", "s"), "unknown format 'bogus'"),
        (("--format", "tiff", "-i", "s", "--option", "colour=red"), "no option 'colour'"),
        (("--format", "tiff", "-i", "s", "--option", "novalue"), "KEY=VALUE"),
        (("--format", "tiff", "-i", "s", "--split", "bogus"), "split must be planes or none"),
        (("--format", "tiff"), "--instrument"),
        (("--format", "files", "-i", "s", "--split", "none"), "no option 'split'"),
    ],
)
def test_commit_errors_are_one_line_and_commit_nothing(runner, repo, a_stack, extra, fragment):
    ok(invoke(runner, "--repo", repo, "commit", "--format", "tiff", REAL, "-i", "first", "-q"))
    before = history(repo)
    assert_error(invoke(runner, "--repo", repo, "commit", a_stack, *extra), 2, fragment)
    assert history(repo) == before


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("junk.tif", b"this is not a TIFF file at all\n"),
        ("trunc.ome.tiff", b"II*\x00\xff\xff\xff\x7f"),
        ("empty.tiff", b""),
    ],
)
def test_unreadable_tiff_files_are_refused(runner, repo, tmp_path, a_stack, name, content):
    ok(invoke(runner, "--repo", repo, "commit", "--format", "tiff", a_stack, "-i", "s", "-q"))
    before = history(repo)
    bad = a_stack.parent / name
    bad.write_bytes(content)
    # alone, or next to a good file: nothing of the directory is written
    assert_error(
        invoke(runner, "--repo", repo, "commit", "--format", "tiff", bad, "-i", "s"), 2, name
    )
    assert_error(
        invoke(runner, "--repo", repo, "commit", "--format", "tiff", a_stack.parent, "-i", "s2"),
        2,
        name,
    )
    assert history(repo) == before


def test_source_errors(runner, repo, tmp_path, a_stack):
    assert_error(
        invoke(runner, "--repo", repo, "commit", "-f", "tiff", tmp_path / "missing.tif", "-i", "s"),
        2,
        "missing.tif",
    )
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("x")
    assert_error(
        invoke(runner, "--repo", repo, "commit", "-f", "tiff", tmp_path / "nothing", "-i", "s"),
        2,
        "no .tif/.tiff files",
    )
    (a_stack.parent / "cells.tif").write_bytes(a_stack.read_bytes())  # same stem as cells.ome.tif
    assert_error(
        invoke(runner, "--repo", repo, "commit", "-f", "tiff", a_stack.parent, "-i", "s"),
        2,
        "'cells'",
    )
    assert history(repo) == []


def test_recommitting_the_same_stack_is_a_no_op(runner, repo, a_stack):
    first = json.loads(
        ok(
            invoke(runner, "--repo", repo, "commit", "-f", "tiff", a_stack, "-i", "s", "--json")
        ).stdout
    )
    assert (first["new_images"], first["new_files"]) == (24, 2)
    before = history(repo)
    again = json.loads(
        ok(
            invoke(runner, "--repo", repo, "commit", "-f", "tiff", a_stack, "-i", "s", "--json")
        ).stdout
    )
    assert again["commit"] is None
    assert (again["images"], again["new_images"], again["files"], again["new_files"]) == (
        24,
        0,
        2,
        0,
    )
    text = ok(invoke(runner, "--repo", repo, "commit", "-f", "tiff", a_stack, "-i", "s")).stdout
    assert text.startswith(
        "Nothing new to commit: all 24 images and 2 original files are already on main"
    )
    assert history(repo) == before
    assert Repository.open(repo).snapshot().count() == 24


def test_parse_options():
    assert parse_options(["a=1", " b = x=y ", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    for bad in ("novalue", "=1", " =1"):
        with pytest.raises(InvalidInputError, match="KEY=VALUE"):
            parse_options([bad])


# -- 7. third-party adapters through an entry point ----------------------------


ADAPTER_PLUGIN = '''
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from improv_vcs.ingest.adapters import Adapter, IngestPlan, PlannedBatch
from improv_vcs.ingest.adapters.tiff import encode_plane
from improv_vcs.core.errors import InvalidInputError
from improv_vcs.snapshot.sources import SourceFile


class NpyAdapter(Adapter):
    """Each .npy file a (Z, Y, X) stack; planes stored as TIFF."""

    name = "npy"
    description = "numpy .npy z-stacks"
    options = {"time": "acquisition time (ISO 8601)"}

    def plan(self, source, instrument, options, keep_raw=True):
        self.check_options(options)
        if instrument is None:
            raise InvalidInputError("--format npy needs --instrument")
        paths = sorted(source.glob("*.npy")) if source.is_dir() else [source]
        when = datetime.fromisoformat(options.get("time", "2024-05-01T12:00:00+00:00"))
        rows, planes, files = [], [], []
        for path in paths:
            try:
                data = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InvalidInputError(f"cannot read {path.name}: {exc}") from None
            for z, plane in enumerate(data):
                rows.append({"image_id": f"{path.stem}_z{z}", "timestamp": when,
                             "sample_id": path.stem, "media_type": "image/tiff",
                             "p": 0, "t": 0, "c": 0, "z": z})
                planes.append(encode_plane(plane))
            if keep_raw:
                raw = "application/octet-stream"
                files.append(SourceFile(path.stem, path.name, when, media_type=raw, location=path))
        schema = pa.schema([
            ("image_id", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")),
            ("sample_id", pa.string()), ("media_type", pa.string()),
            ("p", pa.int64()), ("t", pa.int64()), ("c", pa.int64()), ("z", pa.int64())])
        table = pa.Table.from_pylist(rows, schema=schema)
        plan = IngestPlan(batches=[PlannedBatch(instrument, table, blobs=lambda: iter(planes))])
        if files:
            plan.sources[instrument] = files
        return plan


class Impostor(NpyAdapter):
    name = "tiff"
    description = "tries to replace the built-in tiff adapter"


WRONG = NpyAdapter()
'''


def _install(site: Path, module: str, entry_points: str, monkeypatch) -> None:
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(ADAPTER_PLUGIN)
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(f"[improv_vcs.adapters]\n{entry_points}\n")
    monkeypatch.syspath_prepend(str(site))


def test_a_third_party_adapter_installs_through_an_entry_point(runner, repo, tmp_path, monkeypatch):
    _install(
        tmp_path / "site",
        "npy_adapter",
        "npy = npy_adapter:NpyAdapter\ntiff = npy_adapter:Impostor",
        monkeypatch,
    )
    known_adapters.cache_clear()
    try:
        known = known_adapters()
        assert "npy" in known and type(known["npy"]).__name__ == "NpyAdapter"
        assert (
            type(known["tiff"]).__module__ == "improv_vcs.ingest.adapters.tiff"
        )  # built-ins cannot be replaced
        listed = json.loads(ok(invoke(runner, "formats", "--json")).stdout)
        by_name = {a["name"]: a for a in listed}
        assert set(by_name) >= {"files", "ifcb", "tiff", "npy"}
        assert [a["name"] for a in listed] == sorted(by_name)
        assert by_name["npy"] == {
            "name": "npy",
            "description": "numpy .npy z-stacks",
            "options": {"time": "acquisition time (ISO 8601)"},
            "needs_instrument": True,
        }
        assert by_name["tiff"]["options"].keys() == {"split", "axes", "time", "timezone"}
        assert "npy" in ok(invoke(runner, "formats")).stdout

        data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 30
        source = tmp_path / "arrays"
        source.mkdir()
        np.save(source / "blob.npy", data)
        result = json.loads(
            ok(
                invoke(
                    runner,
                    "--repo",
                    repo,
                    "commit",
                    "--format",
                    "npy",
                    source,
                    "-i",
                    "np1",
                    "--option",
                    "time=2024-05-01T12:00:00+00:00",
                    "--json",
                )
            ).stdout
        )
        assert (result["format"], result["images"], result["new_images"], result["files"]) == (
            "npy",
            3,
            3,
            1,
        )
        opened = Repository.open(repo)
        assert np.array_equal(opened.snapshot().read_stack("blob"), data[None, None, None])
        rows = (
            opened.snapshot()
            .query(columns=("image_id", "instrument", "timestamp", "z"))
            .to_pylist()
        )
        assert [(r["image_id"], r["instrument"], r["timestamp"], r["z"]) for r in rows] == [
            (f"blob_z{z}", "np1", WHEN, z) for z in range(3)
        ]
        assert (
            opened.snapshot().read_source("blob", "blob.npy") == (source / "blob.npy").read_bytes()
        )
        assert_error(
            invoke(
                runner,
                "--repo",
                repo,
                "commit",
                "--format",
                "npy",
                source,
                "-i",
                "np1",
                "--option",
                "axes=ZYX",
            ),
            2,
            "no option 'axes'",
        )
        assert_error(
            invoke(runner, "--repo", repo, "commit", "--format", "npy", source), 2, "--instrument"
        )
        assert len(history(repo)) == 1
    finally:
        known_adapters.cache_clear()
        sys.modules.pop("npy_adapter", None)


def test_an_entry_point_must_name_its_adapter(runner, tmp_path, monkeypatch):
    _install(tmp_path / "site", "wrong_adapter", "numpy = wrong_adapter:WRONG", monkeypatch)
    known_adapters.cache_clear()
    try:
        with pytest.raises(
            InvalidInputError, match="entry point 'numpy'.*does not give an Adapter named 'numpy'"
        ):
            known_adapters()
        assert_error(invoke(runner, "formats"), 2, "numpy")
    finally:
        known_adapters.cache_clear()
        sys.modules.pop("wrong_adapter", None)
