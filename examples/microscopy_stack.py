"""A microscope stack: commit an OME-TIFF plane by plane, rebuild it as an array, export planes.

    python examples/microscopy_stack.py [DIRECTORY]

Writes a small generated OME-TIFF (T=2, C=2, Z=5 planes of 64x48, uint16) and
commits it with ``improv commit --format tiff`` (every 2-D plane an image with
t, c, z, p indices; the whole file and its OME-XML kept as original files),
together with the real OME-TIFF the repository keeps under
tests/data/aicsimageio (when the example runs outside the repository, without
it, only the generated stack). Then ``Repository.read_stack`` rebuilds each stack as an N-D array
(checked against tifffile's own read of the file), selects a sub-stack, and
``improv export --sample S --z 0:2`` writes a few planes as files.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from improv_vcs import Repository

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
REAL_STACK = DATA / "aicsimageio" / "s_1_t_1_c_1_z_1.ome.tiff"
SAMPLE = "plate1_well3"


def improv(*args: str) -> str:
    """Run the ``improv`` command line (this interpreter's copy) and return what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "improv_vcs.cli", *args], check=False, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"improv {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def main(directory: Path) -> None:
    repo_path = directory / "scope-repo"
    stacks = directory / "stacks"
    stacks.mkdir(parents=True, exist_ok=True)

    # A generated stack, (T, C, Z, Y, X); tifffile writes the OME-XML.
    rng = np.random.default_rng(5)
    written = rng.integers(0, 4096, size=(2, 2, 5, 64, 48), dtype=np.uint16)
    stack_file = stacks / f"{SAMPLE}.ome.tif"
    tifffile.imwrite(stack_file, written, ome=True, metadata={"axes": "TCZYX"})
    print(f"wrote {stack_file.name}: TCZYX {written.shape} {written.dtype}")

    improv("init", str(repo_path))
    improv(
        "commit",
        "--repo",
        str(repo_path),
        "--format",
        "tiff",
        str(stack_file),
        "-i",
        "scope-a",
        "--option",
        "time=2024-05-01T12:00:00Z",
        "-m",
        "plate 1, well 3",
        "--quiet",
    )
    files = {SAMPLE: stack_file}
    if REAL_STACK.is_file():
        improv(
            "commit",
            "--repo",
            str(repo_path),
            "--format",
            "tiff",
            str(REAL_STACK),
            "-i",
            "scope-b",
            "--option",
            "time=2024-05-02T12:00:00Z",
            "-m",
            "aicsimageio sample",
            "--quiet",
        )
        files[REAL_STACK.name.split(".")[0]] = REAL_STACK
    else:
        print(f"real data: no ({DATA} is absent), generated stack only")

    repo = Repository.open(repo_path)
    table = repo.snapshot().images()
    print(
        f"committed {table.num_rows} planes of {len(files)} stacks in "
        f"{sum(1 for _ in repo.log())} commits"
    )
    for name in files:
        n = len(repo.snapshot().source_files(samples=[name]))
        print(f"  {name}: {repo.snapshot().count(samples=[name])} planes, {n} original files kept")

    # Rebuild every stack as (P, T, C, Z, Y, X) and compare with tifffile's read.
    for name, path in files.items():
        array = repo.snapshot().read_stack(name)
        expected = tifffile.imread(path)
        assert array.dtype == expected.dtype
        assert np.array_equal(array.reshape(expected.shape), expected), name
        print(
            f"read_stack({name!r}): shape {array.shape} {array.dtype}, equal to tifffile's "
            f"{expected.shape}"
        )

    # A sub-stack: channel 0 (the axis drops), first three z planes (the axis stays).
    sub = repo.snapshot().read_stack(SAMPLE, c=0, z=slice(0, 3))
    assert np.array_equal(sub[0], written[:, 0, 0:3])
    print(f"read_stack({SAMPLE!r}, c=0, z=slice(0, 3)): shape {sub.shape}")
    plane = repo.snapshot().read_stack(SAMPLE, p=0, t=1, c=1, z=4)
    assert np.array_equal(plane, written[1, 1, 4])
    print(f"one plane (p=0, t=1, c=1, z=4): shape {plane.shape}")

    # Some planes as image files, with a metadata table beside them.
    dest = directory / "planes"
    improv(
        "export", str(dest), "--repo", str(repo_path), "--sample", SAMPLE, "--z", "0:2", "--quiet"
    )
    exported = sorted(p.name for p in dest.iterdir() if p.name.startswith(SAMPLE))
    print(f"exported {len(exported)} planes with --z 0:2: {exported[0]} ... {exported[-1]}")
    assert np.array_equal(tifffile.imread(dest / f"{SAMPLE}_p0_t1_c0_z1.tif"), written[1, 0, 1])
    print(f"  {SAMPLE}_p0_t1_c0_z1.tif equals plane t=1, c=0, z=1 of the file")
    others = sorted(p.name for p in dest.iterdir() if not p.name.startswith(SAMPLE))
    print(f"  beside them: {', '.join(others)}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
