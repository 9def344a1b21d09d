"""Ingest benchmark: ``improv commit`` against git, tar and read + SHA-256 on one tree.

Generates a deterministic IFCB-like tree once (cached in the work directory),
then times, on that same tree with a warm page cache:

* improv: ``improv commit TREE --instrument IFCB107 --quiet -m bench`` into a
  fresh repository, in a fresh process (wall time, peak RSS, repository size);
* git: ``git init`` + ``git add -A`` + ``git commit`` with a separate GIT_DIR;
* sha256: read and SHA-256 every file in one Python thread (os.walk order);
* tar: ``tar -cf OUT.tar -C TREE .`` to a real file.

Prints one JSON object with the medians of ``--repeat`` runs, the ratios the
performance targets are stated in, and whether each target is met.  Needs
``improv_vcs`` importable (``pip install -e .``).

    python benchmarks/bench_ingest.py                 # CI size: 2,000 images
    python benchmarks/bench_ingest.py --scale full    # 100,000 images, 3 runs
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCALES = {"ci": (2_000, 1), "full": (100_000, 3)}
TARGET_GIT_OVER_IMPROV = 10.0
TARGET_IMPROV_OVER_SHA256 = 2.0
TARGET_PEAK_RSS_MB = 500.0
DEFAULT_WORKDIR = Path(__file__).resolve().parent / "out" / "ingest"
IMPROV = [sys.executable, "-m", "improv_vcs.cli"]


def prepare_tree(workdir: Path, images: int, seed: int) -> tuple[Path, float | None]:
    """The cached tree for (images, seed, generator source), generating it if needed.

    Returns the tree and the generation time (None when the cache was reused).
    """
    from improv_vcs.ingest import synthetic

    tree, marker = workdir / "tree", workdir / "tree.json"
    wanted = {
        "images": images,
        "seed": seed,
        "generator": hashlib.sha256(inspect.getsource(synthetic).encode()).hexdigest(),
    }
    if tree.is_dir() and marker.is_file() and json.loads(marker.read_text()) == wanted:
        return tree, None
    shutil.rmtree(tree, ignore_errors=True)
    marker.unlink(missing_ok=True)
    started = time.perf_counter()
    written = synthetic.generate_tree(tree, images, seed=seed)
    elapsed = time.perf_counter() - started
    if written != images:
        sys.exit(f"generator wrote {written} images, expected {images}")
    marker.write_text(json.dumps(wanted))
    return tree, elapsed


def walk_files(root: Path) -> list[str]:
    """Every file under ``root`` in os.walk order."""
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def disk_usage(root: Path) -> tuple[int, int]:
    """(sum of file sizes, number of files) under ``root``."""
    paths = walk_files(root)
    return sum(os.path.getsize(p) for p in paths), len(paths)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run(cmd: list[str], **kwargs) -> None:
    """Run ``cmd`` and exit with its output if it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def time_improv(tree: Path, repo: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one ``improv commit`` in a fresh process."""
    run([*IMPROV, "init", str(repo)])
    cmd = [
        *IMPROV,
        "commit",
        str(tree),
        "--repo",
        str(repo),
        "--instrument",
        "IFCB107",
        "--quiet",
        "-m",
        "bench",
    ]
    log = repo.parent / (repo.name + ".log")
    with open(log, "w+") as out:
        started = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        # wait4 gives this child's own rusage (ru_maxrss in KiB on Linux).
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            out.seek(0)
            sys.exit(f"{' '.join(cmd)} failed ({child.returncode}):\n{out.read()}")
    log.unlink()
    return elapsed, usage.ru_maxrss / 1024


def time_git(tree: Path, git_dir: Path) -> float:
    """Wall seconds of git init + add -A + commit, isolated from user config."""
    env = {
        **os.environ,
        "GIT_DIR": str(git_dir),
        "GIT_WORK_TREE": str(tree),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    # gc.auto=0: a detached auto-gc would keep running into the next measurement.
    git = [
        "git",
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.invalid",
        "-c",
        "gc.auto=0",
    ]
    started = time.perf_counter()
    run([*git, "init", "-q"], env=env)
    run([*git, "add", "-A"], env=env, cwd=tree)
    run([*git, "commit", "-q", "-m", "x"], env=env, cwd=tree)
    return time.perf_counter() - started


def time_sha256(tree: Path) -> float:
    """Wall seconds to read and SHA-256 every file in one thread, os.walk order."""
    started = time.perf_counter()
    for path in walk_files(tree):
        with open(path, "rb") as f:
            hashlib.sha256(f.read()).digest()
    return time.perf_counter() - started


def time_tar(tree: Path, out: Path) -> float:
    started = time.perf_counter()
    run(["tar", "-cf", str(out), "-C", str(tree), "."])
    return time.perf_counter() - started


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="ci",
        help="ci: 2,000 images, 1 run; full: 100,000 images, 3 runs",
    )
    parser.add_argument("--images", type=int, help="number of images (overrides --scale)")
    parser.add_argument("--repeat", type=int, help="runs per tool; the median is reported")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"where the cached tree and outputs go (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the last run's repository, GIT_DIR and tarball"
    )
    args = parser.parse_args(argv)
    images, repeat = SCALES[args.scale]
    args.images = images if args.images is None else args.images
    args.repeat = repeat if args.repeat is None else args.repeat
    if args.images < 1 or args.repeat < 1:
        parser.error("--images and --repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tree, generated = prepare_tree(workdir, args.images, args.seed)
    total_bytes, files = disk_usage(tree)  # also warms the page cache's metadata
    time_sha256(tree)  # warm-up: every tool reads a cached tree

    repo, git_dir, tarball = workdir / "repo", workdir / "git-dir", workdir / "tree.tar"
    outputs = (repo, git_dir, tarball)
    seconds: dict[str, list[float]] = {"improv": [], "sha256": []}
    notes = []
    for tool in ("git", "tar"):
        if shutil.which(tool):
            seconds[tool] = []
        else:
            notes.append(f"{tool} not installed: skipped")

    peak_rss, repo_bytes, repo_files = 0.0, 0, 0
    for _ in range(args.repeat):
        for path in outputs:
            remove(path)
        elapsed, rss = time_improv(tree, repo)
        seconds["improv"].append(elapsed)
        peak_rss = max(peak_rss, rss)
        repo_bytes, repo_files = disk_usage(repo)
        seconds["sha256"].append(time_sha256(tree))
        if "git" in seconds:
            seconds["git"].append(time_git(tree, git_dir))
        if "tar" in seconds:
            seconds["tar"].append(time_tar(tree, tarball))
    if not args.keep:
        for path in outputs:
            remove(path)

    median = {tool: round(statistics.median(runs), 4) for tool, runs in seconds.items()}
    improv_s = median["improv"]
    git_over = round(median["git"] / improv_s, 2) if "git" in median else None
    over_sha = round(improv_s / median["sha256"], 2)
    report = {
        "images": files,
        "total_bytes": total_bytes,
        "mean_image_bytes": round(total_bytes / files),
        "repeat": args.repeat,
        "seconds": median,
        "runs": {tool: [round(s, 4) for s in runs] for tool, runs in seconds.items()},
        "generate_seconds": None if generated is None else round(generated, 2),
        "improv": {
            "images_per_s": round(files / improv_s),
            "mb_per_s": round(total_bytes / 1e6 / improv_s, 1),
            "peak_rss_mb": round(peak_rss, 1),
            "repo_bytes": repo_bytes,
            "repo_files": repo_files,
        },
        "ratios": {"git_over_improv": git_over, "improv_over_sha256": over_sha},
        "targets_met": {
            "git_over_improv_ge_10": (
                None if git_over is None else git_over >= TARGET_GIT_OVER_IMPROV
            ),
            "improv_over_sha256_le_2": over_sha <= TARGET_IMPROV_OVER_SHA256,
            "peak_rss_lt_500mb": peak_rss < TARGET_PEAK_RSS_MB,
        },
        "notes": notes,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
