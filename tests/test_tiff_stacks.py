"""Microscopy stacks kept exactly: series of different shapes read one at a time,
planar RGB stored samples last, big-endian and non-finite pixels, and OME
quantities (physical sizes, times, positions) in µm and seconds beside the
values and units the file wrote; TIFF resolution tags for files without OME."""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import assert_error, invoke, ok
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_tiff import REAL, REAL_SAMPLE, WHEN, full_array, history, ingest, new_repo, ome_stack

from improv_vcs import Repository
from improv_vcs.core.errors import InvalidInputError
from improv_vcs.ingest.adapters.tiff import encode_plane
from improv_vcs.ingest.adapters.units import Quantity, quantity
from improv_vcs.query.filters import build_query
from improv_vcs.query.stack import decode

ACQUIRED = "2024-05-01T12:00:00"


def plane_rows(repo: Repository, *columns: str) -> list[dict]:
    return sorted(
        repo.snapshot().query(columns=("image_id", *columns)).to_pylist(),
        key=lambda r: r["image_id"],
    )


def same(got: np.ndarray, expected: np.ndarray) -> None:
    """Pixel-exact: equal shape, equal native dtype, equal values (NaN equal to NaN)."""
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype.newbyteorder("=")
    assert np.array_equal(got, expected, equal_nan=expected.dtype.kind == "f")


# -- series of different shapes ------------------------------------------------


@pytest.fixture
def scenes(tmp_path):
    """A three-scene OME-TIFF: (C=2, Z=3) uint8, (Z=5) uint16 of another size, one RGB plane."""
    rng = np.random.default_rng(5)
    data = [
        rng.integers(0, 256, (2, 3, 4, 5), dtype=np.uint8),
        rng.integers(0, 65536, (5, 6, 7), dtype=np.uint16),
        rng.integers(0, 256, (3, 4, 3), dtype=np.uint8),
    ]
    path = tmp_path / "in" / "scenes.ome.tif"
    path.parent.mkdir()
    with tifffile.TiffWriter(path, ome=True) as tif:
        for name, array, axes in zip(("a", "b", "c"), data, ("CZYX", "ZYX", "YXS")):
            metadata = {"axes": axes, "Name": name, "AcquisitionDate": ACQUIRED}
            photometric = "rgb" if axes.endswith("S") else "minisblack"
            tif.write(array, photometric=photometric, metadata=metadata)
    return path, data


def test_each_series_reads_with_its_own_shape(tmp_path, scenes):
    path, (first, second, rgb) = scenes
    repo = new_repo(tmp_path / "repo")
    assert ingest(repo, path) == (6 + 5 + 1, 2)
    snap = repo.snapshot()
    same(snap.read_stack("scenes", p=0), full_array(first, "CZYX")[0])
    same(snap.read_stack("scenes", p=1), full_array(second, "ZYX")[0])
    same(snap.read_stack("scenes", p=2), full_array(rgb, "YXS")[0])
    same(snap.read_stack("scenes", p=-2), full_array(second, "ZYX")[0])
    same(snap.read_stack("scenes", p=[1]), full_array(second, "ZYX"))
    same(snap.read_stack("scenes", p=[2, 2]), np.stack([full_array(rgb, "YXS")[0]] * 2))
    # t, c, z index the series picked, like numpy on its own array
    same(snap.read_stack("scenes", p=1, z=slice(1, 4)), second[None, None, 1:4])
    same(snap.read_stack("scenes", p=1, z=-1, t=0, c=0), second[-1])
    same(snap.read_stack("scenes", p=0, c=[1, 0], z=2), first[[1, 0], 2][None])
    same(
        snap.read_stack(query=build_query(samples=("scenes",)), p=0, c=1),
        first[None, 1],
    )
    rows = plane_rows(repo, "p", "height", "width", "samples", "dtype", "series_name")
    assert [(r["image_id"], r["p"], r["series_name"]) for r in rows] == [
        *((f"scenes_p0_t0_c{c}_z{z}", 0, "a") for c in range(2) for z in range(3)),
        *((f"scenes_p1_t0_c0_z{z}", 1, "b") for z in range(5)),
        ("scenes_p2_t0_c0_z0", 2, "c"),
    ]
    assert {(r["p"], r["height"], r["width"], r["samples"], r["dtype"]) for r in rows} == {
        (0, 4, 5, 1, "uint8"),
        (1, 6, 7, 1, "uint16"),
        (2, 3, 4, 3, "uint8"),
    }


@pytest.mark.parametrize(
    ("selectors", "message"),
    [
        (
            {},
            "series 0 is (T=1, C=2, Z=3, Y=4, X=5) uint8 and series 1 is "
            "(T=1, C=1, Z=5, Y=6, X=7) uint16: they do not fit one array; "
            "read one series at a time (p=0 or p=1)",
        ),
        (
            {"p": [2, 1], "z": 0},
            "series 2 is (T=1, C=1, Z=1, Y=3, X=4, S=3) uint8 and series 1 is "
            "(T=1, C=1, Z=5, Y=6, X=7) uint16",
        ),
        ({"p": slice(0, 2), "c": 0, "z": 0}, "series 0 is (T=1, C=2, Z=3, Y=4, X=5) uint8"),
        ({"p": 0, "z": 3}, "z=3 is out of range: series 0 has 3 z position(s)"),
        ({"p": 1, "c": 1}, "c=1 is out of range: series 1 has 1 c position(s)"),
        ({"p": 3}, "p=3 is out of range: the stack has 3 p position(s)"),
        ({"p": slice(3, None)}, "no planes selected"),
    ],
)
def test_reads_mixing_shapes_are_refused(tmp_path, scenes, selectors, message):
    repo = new_repo(tmp_path / "repo")
    ingest(repo, scenes[0])
    with pytest.raises(InvalidInputError) as caught:
        repo.snapshot().read_stack("scenes", **selectors)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_export_selects_in_each_series_on_its_own(runner, repo, tmp_path, scenes):
    path, (first, second, rgb) = scenes
    ok(invoke(runner, "--repo", repo, "commit", "-f", "tiff", path, "-i", "scope1", "-q"))
    dest = tmp_path / "out"
    out = json.loads(
        ok(invoke(runner, "--repo", repo, "export", dest, "--z", "-1", "--json")).stdout
    )
    assert (out["images"], out["written"]) == (4, 4)
    written = sorted(p.name for p in dest.iterdir() if p.suffix == ".tif")
    assert written == [
        "scenes_p0_t0_c0_z2.tif",
        "scenes_p0_t0_c1_z2.tif",
        "scenes_p1_t0_c0_z4.tif",
        "scenes_p2_t0_c0_z0.tif",
    ]
    same(tifffile.imread(dest / "scenes_p0_t0_c1_z2.tif"), first[1, 2])
    same(tifffile.imread(dest / "scenes_p1_t0_c0_z4.tif"), second[4])
    same(tifffile.imread(dest / "scenes_p2_t0_c0_z0.tif"), rgb)
    assert_error(
        invoke(runner, "--repo", repo, "export", tmp_path / "bad", "--c", "1"),
        2,
        "c=1 is out of range: series 1 of 'scenes' has 1 c position(s)",
    )
    assert not (tmp_path / "bad").exists()


# -- planar RGB ----------------------------------------------------------------


def test_planar_rgb_is_stored_samples_last(runner, repo, tmp_path):
    rgb = np.random.default_rng(9).integers(0, 65536, (2, 3, 4, 5), dtype=np.uint16)  # Z S Y X
    planar = tmp_path / "in" / "planar.ome.tif"
    planar.parent.mkdir()
    metadata = {"axes": "ZSYX", "AcquisitionDate": ACQUIRED}
    tifffile.imwrite(
        planar, rgb, ome=True, photometric="rgb", planarconfig="separate", metadata=metadata
    )
    with tifffile.TiffFile(planar) as tif:
        assert (tif.series[0].axes, tif.pages[0].planarconfig) == ("ZSYX", 2)
    ome_stack(tmp_path / "in" / "contig.ome.tif", np.moveaxis(rgb, 1, -1), "ZYXS")
    ok(invoke(runner, "--repo", repo, "commit", "-f", "tiff", tmp_path / "in", "-i", "s", "-q"))

    snap = Repository.open(repo).snapshot()
    samples_last = np.moveaxis(rgb, 1, -1)
    same(snap.read_stack("planar"), samples_last[None, None, None])
    same(snap.read_stack("planar", p=0, t=0, c=0, z=1), samples_last[1])
    rows = plane_rows(Repository.open(repo), "blob_id", "height", "width", "samples", "dtype")
    assert [(r["image_id"], r["height"], r["width"], r["samples"], r["dtype"]) for r in rows] == [
        (f"{stem}_p0_t0_c0_z{z}", 4, 5, 3, "uint16")
        for stem in ("contig", "planar")
        for z in (0, 1)
    ]
    # the same pixels give the same stored plane, planar or not
    blobs = {r["image_id"]: r["blob_id"] for r in rows}
    assert blobs["planar_p0_t0_c0_z1"] == blobs["contig_p0_t0_c0_z1"]
    stored = decode(snap.read_image("planar_p0_t0_c0_z0"))
    same(stored, samples_last[0])


def test_planar_rgb_without_ome(tmp_path):
    rgb = np.arange(3 * 2 * 4, dtype=np.uint8).reshape(3, 2, 4)
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", planarconfig="separate")
    repo = new_repo(tmp_path / "repo")
    assert ingest(repo, path, time=ACQUIRED) == (1, 1)
    same(repo.snapshot().read_stack("flat", p=0, t=0, c=0, z=0), np.moveaxis(rgb, 0, -1))


# -- pixel types and byte orders -------------------------------------------------


def test_big_endian_and_non_finite_pixels_round_trip(tmp_path):
    values = np.linspace(-3, 3, 2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    values[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    values[1, 2, 3, 4] = -0.0
    counts = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5) * 541
    for name, data in (("floats", values), ("counts", counts)):
        for order in "<>":
            path = tmp_path / order / f"{name}.ome.tif"
            path.parent.mkdir(exist_ok=True)
            metadata = {"axes": "TZYX", "AcquisitionDate": ACQUIRED}
            tifffile.imwrite(
                path, data, ome=True, byteorder=order, metadata=metadata, photometric="minisblack"
            )
    with tifffile.TiffFile(tmp_path / ">" / "floats.ome.tif") as tif:
        assert tif.byteorder == ">"
    little, big = new_repo(tmp_path / "little"), new_repo(tmp_path / "big")
    ingest(little, tmp_path / "<")
    ingest(big, tmp_path / ">")
    for name, data in (("floats", values), ("counts", counts)):
        got = big.snapshot().read_stack(name)
        same(got, full_array(data, "TZYX"))
        assert np.signbit(got[0, 1, 0, 2, 3, 4]) == (name == "floats")
    # the same pixels give the same stored planes whatever the file's byte order
    assert plane_rows(big, "blob_id", "dtype") == plane_rows(little, "blob_id", "dtype")


def test_encoded_planes_do_not_depend_on_byte_order():
    plane = np.arange(12, dtype=np.float32).reshape(3, 4) / 3
    stored = encode_plane(plane)
    assert encode_plane(plane.astype(">f4")) == stored
    same(decode(stored), plane)


_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]


@st.composite
def five_d_stacks(draw):
    shape = tuple(draw(st.integers(1, 2)) for _ in range(3)) + (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
    )
    dtype = np.dtype(draw(st.sampled_from(_DTYPES))).newbyteorder(draw(st.sampled_from("<>")))
    elements = st.floats(width=dtype.itemsize * 8) if dtype.kind == "f" else None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(five_d_stacks())
def test_five_d_stacks_round_trip_exactly_property(data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "in" / "tczyx.ome.tif"
        path.parent.mkdir()
        metadata = {"axes": "TCZYX", "AcquisitionDate": ACQUIRED}
        tifffile.imwrite(
            path,
            data,
            ome=True,
            byteorder=">" if data.dtype.byteorder == ">" else "<",
            metadata=metadata,
            photometric="minisblack",
        )
        repo = new_repo(root / "repo")
        assert ingest(repo, path)[0] == int(np.prod(data.shape[:3]))
        same(repo.snapshot().read_stack("tczyx"), full_array(data, "TCZYX"))
        t, c, z = (n - 1 for n in data.shape[:3])
        same(repo.snapshot().read_stack("tczyx", p=0, t=t, c=c, z=z), data[t, c, z])


# -- units -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "unit", "kind", "expected"),
    [
        ("1500", "nm", "length", Quantity(1500.0, "nm", 1.5)),
        ("854.06", "nm", "length", Quantity(854.06, "nm", 0.85406)),  # floats: 0.85405999…
        ("0.1", "mm", "length", Quantity(0.1, "mm", 100.0)),
        ("1e3", "nm", "length", Quantity(1000.0, "nm", 1.0)),
        ("2", "μm", "length", Quantity(2.0, "µm", 2.0)),  # Greek mu: the micro sign's twin
        ("3", "Å", "length", Quantity(3.0, "Å", 3e-4)),
        ("1", "in", "length", Quantity(1.0, "in", 25400.0)),
        ("1", "thou", "length", Quantity(1.0, "thou", 25.4)),
        ("1", "mi", "length", Quantity(1.0, "mi", 1_609_344_000.0)),
        ("72", "pt", "length", Quantity(72.0, "pt", 25400.0)),
        ("4", "pixel", "length", Quantity(4.0, "pixel", None)),
        ("-7.5", "reference frame", "length", Quantity(-7.5, "reference frame", None)),
        ("250", "ms", "time", Quantity(250.0, "ms", 0.25)),
        ("20", "µs", "time", Quantity(20.0, "µs", 2e-5)),
        ("2", "min", "time", Quantity(2.0, "min", 120.0)),
        ("1.5", "h", "time", Quantity(1.5, "h", 5400.0)),
        ("1", "d", "time", Quantity(1.0, "d", 86400.0)),
        ("nan", "s", "time", None),
        ("inf", "furlong", "length", None),  # no value: nothing to refuse
        ("ten", "s", "time", None),
        (None, "s", "time", None),
    ],
)
def test_ome_units_convert_exactly(text, unit, kind, expected):
    assert quantity(text, unit, kind, "X") == expected


@pytest.mark.parametrize(
    ("unit", "kind", "message"),
    [
        ("um", "length", "PhysicalSizeZ is in 'um', which is not an OME length unit"),
        ("furlong", "length", "'furlong', which is not an OME length unit"),
        ("sec", "time", "'sec', which is not an OME time unit"),
        ("s", "length", "'s', which is not an OME length unit"),
    ],
)
def test_units_outside_ome_are_refused(unit, kind, message):
    with pytest.raises(InvalidInputError, match=message):
        quantity("1", unit, kind, "PhysicalSizeZ")


@pytest.fixture
def units_stack(tmp_path):
    """A (Z=2) OME-TIFF whose quantities are in mixed units."""
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    metadata = {
        "axes": "ZYX",
        "AcquisitionDate": ACQUIRED,
        "PhysicalSizeX": 0.25,  # no unit: OME's µm
        "PhysicalSizeY": 0.0005,
        "PhysicalSizeYUnit": "mm",
        "PhysicalSizeZ": 1500,
        "PhysicalSizeZUnit": "nm",
        "TimeIncrement": 250,
        "TimeIncrementUnit": "ms",
        "Plane": {
            "DeltaT": [0, 1500],
            "DeltaTUnit": ["ms", "ms"],
            "ExposureTime": [20, 0.03],
            "ExposureTimeUnit": ["ms", "s"],
            "PositionX": [12.5, 12.5],
            "PositionZ": [1.5, 2.5],
            "PositionZUnit": ["mm", "µm"],
        },
    }
    path = tmp_path / "in" / "units.ome.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, data, ome=True, metadata=metadata, photometric="minisblack")
    return path


def test_ome_quantities_are_kept_in_canonical_units(tmp_path, units_stack):
    repo = new_repo(tmp_path / "repo")
    ingest(repo, units_stack)
    series = {
        "physical_size_x": 0.25,
        "physical_size_x_unit": "µm",
        "physical_size_x_um": 0.25,
        "physical_size_y": 0.0005,
        "physical_size_y_unit": "mm",
        "physical_size_y_um": 0.5,
        "physical_size_z": 1500.0,
        "physical_size_z_unit": "nm",
        "physical_size_z_um": 1.5,
        "time_increment": 250.0,
        "time_increment_unit": "ms",
        "time_increment_s": 0.25,
    }
    planes = [
        {
            "delta_t": 0.0,
            "delta_t_unit": "ms",
            "delta_t_s": 0.0,
            "exposure_time": 20.0,
            "exposure_time_unit": "ms",
            "exposure_time_s": 0.02,
            "position_x": 12.5,
            "position_x_unit": "reference frame",
            "position_x_um": None,
            "position_y": None,
            "position_y_unit": None,
            "position_y_um": None,
            "position_z": 1.5,
            "position_z_unit": "mm",
            "position_z_um": 1500.0,
            "timestamp": WHEN,
        },
        {
            "delta_t": 1500.0,
            "delta_t_unit": "ms",
            "delta_t_s": 1.5,
            "exposure_time": 0.03,
            "exposure_time_unit": "s",
            "exposure_time_s": 0.03,
            "position_x": 12.5,
            "position_x_unit": "reference frame",
            "position_x_um": None,
            "position_y": None,
            "position_y_unit": None,
            "position_y_um": None,
            "position_z": 2.5,
            "position_z_unit": "µm",
            "position_z_um": 2.5,
            "timestamp": WHEN + timedelta(seconds=1.5),
        },
    ]
    rows = plane_rows(repo, *series, *planes[0])
    assert rows == [
        {"image_id": f"units_p0_t0_c0_z{z}", **series, **plane} for z, plane in enumerate(planes)
    ]
    # split=none keeps the series' quantities on the file's one image
    whole = new_repo(tmp_path / "whole")
    ingest(whole, units_stack, split="none")
    assert plane_rows(whole, *series) == [{"image_id": "units", **series}]


def test_a_unit_outside_ome_refuses_the_commit(runner, repo, tmp_path, units_stack):
    ok(invoke(runner, "--repo", repo, "commit", "-f", "tiff", units_stack, "-i", "s", "-q"))
    before = history(repo)
    bad = units_stack.parent / "bad.ome.tif"
    metadata = {"axes": "YX", "AcquisitionDate": ACQUIRED, "PhysicalSizeZ": 3}
    metadata["PhysicalSizeZUnit"] = "furlong"
    tifffile.imwrite(bad, np.zeros((2, 2), np.uint8), ome=True, metadata=metadata)
    line = assert_error(
        invoke(runner, "--repo", repo, "commit", "-f", "tiff", units_stack.parent, "-i", "s2"),
        2,
        "bad.ome.tif: PhysicalSizeZ is in 'furlong', which is not an OME length unit",
    )
    assert "cannot read" not in line
    assert history(repo) == before
    assert Repository.open(repo).snapshot().count() == 2


def test_real_ome_tiff_sizes_in_micrometres(tmp_path):
    repo = new_repo(tmp_path / "repo")
    assert ingest(repo, REAL) == (1, 2)
    size = 1.0833333333333333
    columns = {
        "physical_size_x": size,
        "physical_size_x_unit": "µm",
        "physical_size_x_um": size,
        "physical_size_y": size,
        "physical_size_y_unit": "µm",
        "physical_size_y_um": size,
        "physical_size_z": None,
        "physical_size_z_unit": None,
        "physical_size_z_um": None,
        "time_increment_s": None,
        "exposure_time": 10.0,
        "exposure_time_unit": "s",
        "exposure_time_s": 10.0,
        "delta_t_s": 0.4960000514984131,
        "position_x": 43427.982,
        "position_x_unit": "reference frame",
        "position_x_um": None,
        "samples": 1,
    }
    assert plane_rows(repo, *columns) == [{"image_id": f"{REAL_SAMPLE}_p0_t0_c0_z0", **columns}]
    same(repo.snapshot().read_stack(REAL_SAMPLE, p=0, t=0, c=0, z=0), tifffile.imread(REAL))


# -- TIFF resolution tags --------------------------------------------------------


@pytest.mark.parametrize(
    ("resolution", "unit", "x", "y"),
    [
        ((2540, 2540), "INCH", (1 / 2540, "in", 10.0), (1 / 2540, "in", 10.0)),
        ((1000, 250), "CENTIMETER", (0.001, "cm", 10.0), (0.004, "cm", 40.0)),
        ((4, 2), "MILLIMETER", (0.25, "mm", 250.0), (0.5, "mm", 500.0)),
        ((2, 2), "MICROMETER", (0.5, "µm", 0.5), (0.5, "µm", 0.5)),
        ((2540, 2540), "NONE", (None, None, None), (None, None, None)),
        (None, None, (None, None, None), (None, None, None)),
    ],
)
def test_resolution_tags_give_physical_sizes_without_ome(tmp_path, resolution, unit, x, y):
    path = tmp_path / "plain.tif"
    kwargs = {"resolution": resolution, "resolutionunit": unit} if resolution else {}
    tifffile.imwrite(path, np.ones((2, 3), np.uint8), datetime="2024:05:01 12:00:00", **kwargs)
    repo = new_repo(tmp_path / "repo")
    ingest(repo, path)
    row = repo.snapshot().query().to_pylist()[0]
    for axis, expected in (("x", x), ("y", y)):
        suffixes = ("", "_unit", "_um")
        assert tuple(row[f"physical_size_{axis}{s}"] for s in suffixes) == expected
    assert row["physical_size_z_um"] is None


def test_ome_sizes_win_over_resolution_tags(tmp_path):
    path = tmp_path / "both.ome.tif"
    metadata = {"axes": "YX", "AcquisitionDate": ACQUIRED, "PhysicalSizeX": 2}
    tifffile.imwrite(
        path,
        np.ones((2, 3), np.uint8),
        ome=True,
        metadata=metadata,
        resolution=(100, 100),
        resolutionunit="CENTIMETER",
    )
    repo = new_repo(tmp_path / "repo")
    ingest(repo, path)
    row = repo.snapshot().query().to_pylist()[0]
    assert (row["physical_size_x_um"], row["physical_size_y_um"]) == (2.0, None)
