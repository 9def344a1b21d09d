"""The shipped examples run and say what they did."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_quickstart_example_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "100 images at first-release" in result.stdout
    assert result.stdout.count("committed ") == 2
    assert (tmp_path / "survey" / "improv.json").is_file()


def run_example(script: Path, out: Path, timeout: int = 120) -> str:
    command = ["bash", str(script)] if script.suffix == ".sh" else [sys.executable, str(script)]
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    result = subprocess.run(
        [*command, str(out)], check=False, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def without_real_data(tmp_path: Path, name: str) -> Path:
    """A copy of an example outside this repository, where tests/data (the real files) is absent."""
    copy = tmp_path / "project" / "examples" / name
    copy.parent.mkdir(parents=True)
    shutil.copy(EXAMPLES / name, copy)
    return copy


def test_ifcb_pipeline_example(tmp_path):
    out = run_example(EXAMPLES / "ifcb_pipeline.py", tmp_path)
    assert "committed " in out and "40 ROIs and 6 raw files (IFCB134) from generated-bins" in out
    assert "real data: yes" in out
    assert "2 ROIs and 3 raw files (IFCB134) from D20220522T003051_IFCB134" in out
    assert "19 ROIs and 3 raw files (IFCB013) from D20130526T095207_IFCB013" in out
    assert "61 images in 4 bins" in out
    assert "features: 2 records, 236 columns (Area of D20220522T003051_IFCB134_00002: 5022)" in out
    assert "classifications: 42 records (run cnn-2022)" in out
    assert "dataset may22: 42 images" in out
    assert "bloom: 23 of 42 images are Mesodinium_rubrum with score > 0.8 (35 have it" in out
    assert (
        "exported 3 raw files of D20220522T003051_IFCB134, byte-identical: "
        "D20220522T003051_IFCB134.adc (620 B), "
        "D20220522T003051_IFCB134.hdr (3280 B), D20220522T003051_IFCB134.roi (30848 B)" in out
    )
    assert "6 commits on main" in out
    assert (tmp_path / "ifcb-repo" / "improv.json").is_file()


def test_ifcb_pipeline_example_without_real_data(tmp_path):
    out = run_example(without_real_data(tmp_path, "ifcb_pipeline.py"), tmp_path / "out")
    assert "real data: no, generated bins only" in out
    assert "40 images in 2 bins" in out
    assert "classifications: 40 records (run cnn-2022)" in out
    assert "bloom: 23 of 40 images are Mesodinium_rubrum with score > 0.8 (33 have it" in out
    assert "exported 3 raw files of D20220522T060000_IFCB134, byte-identical" in out
    assert "3 commits on main" in out


def test_microscopy_stack_example(tmp_path):
    out = run_example(EXAMPLES / "microscopy_stack.py", tmp_path)
    assert "wrote plate1_well3.ome.tif: TCZYX (2, 2, 5, 64, 48) uint16" in out
    assert "plate1_well3: 20 planes, 2 original files kept" in out
    assert (
        "read_stack('plate1_well3'): shape (1, 2, 2, 5, 64, 48) uint16, equal to tifffile's (2, "
        "2, 5, 64, 48)" in out
    )
    assert "read_stack('plate1_well3', c=0, z=slice(0, 3)): shape (1, 2, 3, 64, 48)" in out
    assert "one plane (p=0, t=1, c=1, z=4): shape (64, 48)" in out
    assert (
        "exported 8 planes with --z 0:2: plate1_well3_p0_t0_c0_z0.tif ... "
        "plate1_well3_p0_t1_c1_z1.tif" in out
    )
    assert "beside them: metadata.parquet" in out
    assert "committed 21 planes of 2 stacks in 2 commits" in out
    assert (
        "read_stack('s_1_t_1_c_1_z_1'): shape (1, 1, 1, 1, 325, 475) uint16, equal to tifffile's "
        "(325, 475)" in out
    )
    assert len(list((tmp_path / "planes").glob("plate1_well3_*.tif"))) == 8


def test_microscopy_stack_example_without_real_data(tmp_path):
    out = run_example(without_real_data(tmp_path, "microscopy_stack.py"), tmp_path / "out")
    assert "real data: no" in out
    assert "committed 20 planes of 1 stacks in 1 commits" in out
    assert "exported 8 planes" in out


def test_classifier_rerun_example(tmp_path):
    out = run_example(EXAMPLES / "classifier_rerun.py", tmp_path)
    assert "committed 60 images" in out
    assert "records: 60 in cnn-2022, 60 in cnn-2024, 120 in all" in out
    assert "winners changed between runs: 20 of 60" in out
    assert "history of D20240501T000000_IFCB107_00001: 2 records" in out
    assert "  cnn-2022: winner Mesodinium_rubrum" in out
    assert "  cnn-2024: winner Dinophysis_acuminata" in out
    assert "Mesodinium_rubrum: 25 images with run latest, 15 with run cnn-2022" in out
    assert "at classified-2022: 15 Mesodinium_rubrum with run latest" in out
    assert "has 1 record (cnn-2022)" in out


def test_two_sites_example(tmp_path):
    out = run_example(EXAMPLES / "two_sites.sh", tmp_path, timeout=240)
    total = 62
    assert "30 image(s) from IFCB107" in out
    assert out.count("15 image(s) from IFCB110") == 2
    assert "2 image(s) and 3 original file(s) from IFCB134" in out
    assert "site B: push refused (not a fast-forward), pulling" in out
    assert "merge: " in out and "fast-forward: " in out
    assert f"site B: merged, {total} images" in out
    assert "Identifier: improv:1:" in out
    assert "refs/tags/v1 -> " in out
    assert f"site A: pulled, {total} images" in out
    assert "Verified: commit " in out and f"{total} image(s) re-read, every byte matches." in out
    assert out.rstrip().endswith("verified at site A")
    assert (tmp_path / "v1.bib").is_file()
