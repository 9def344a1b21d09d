"""The ``improv`` command line, driven through typer's CliRunner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import A1, A2, B1, assert_error, images, invoke, ok, refs

from improv_vcs.repository.repository import Repository

# -- init ------------------------------------------------------------------------


def test_init(runner, tmp_path):
    result = ok(invoke(runner, "init", tmp_path / "r"))
    repo = Repository.open(tmp_path / "r")
    assert repo.id in result.stdout and "Initialized empty improv repository" in result.stdout
    assert repo.config.default_branch == "main"
    data = json.loads(
        ok(invoke(runner, "init", tmp_path / "j", "--json", "--default-branch", "trunk")).stdout
    )
    assert data["default_branch"] == "trunk"
    assert data["id"] == Repository.open(tmp_path / "j").id


def test_init_defaults_to_current_directory(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ok(invoke(runner, "init"))
    assert (tmp_path / "improv.json").is_file()


def test_init_on_existing_repository_fails(runner, repo):
    before = (repo / "improv.json").read_bytes()
    assert_error(invoke(runner, "init", repo), 4, "already an improv repository")
    assert (repo / "improv.json").read_bytes() == before


def test_global_repo_option_is_not_ignored_by_init(runner, tmp_path, monkeypatch):
    """BUG: ``improv --repo X init`` ignores X and silently creates a repository
    in the current directory."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    result = invoke(runner, "--repo", tmp_path / "wanted", "init")
    assert not (work / "improv.json").exists(), "init wrote a repository into the current directory"
    if result.exit_code == 0:
        Repository.open(tmp_path / "wanted")


# -- commit ----------------------------------------------------------------------


def test_commit_text_output(runner, repo, tmp_path):
    src = images(tmp_path / "src", A1, A2)
    result = ok(invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB107", "-m", "first"))
    r = Repository.open(repo)
    head = r.resolve()
    assert result.stdout.strip() == f"[main {head[:12]}] 2 image(s) from IFCB107"
    assert next(r.log(limit=1))[1].message == "first"
    assert next(r.log(limit=1))[1].author == "tester"
    assert sorted(r.snapshot().images().column("image_id").to_pylist()) == [A1, A2]


def test_commit_default_message(runner, repo, tmp_path):
    ok(
        invoke(
            runner, "--repo", repo, "commit", images(tmp_path / "src", A1), "-i", "IFCB107", "-q"
        )
    )
    assert next(Repository.open(repo).log(limit=1))[1].message == "Add 1 images from IFCB107"


def test_commit_json_and_recommit(runner, repo, tmp_path):
    src = images(tmp_path / "src", A1, A2)
    data = json.loads(
        ok(invoke(runner, "commit", src, "-i", "IFCB107", "--json", "--repo", repo)).stdout
    )
    head = Repository.open(repo).resolve()
    common = {
        "task": None,
        "format": "files",
        "instruments": ["IFCB107"],
        "files": 0,
        "new_files": 0,
        "samples": [],
        "samples_without_images": [],
        "skipped": [],
    }
    assert data == {"commit": head, "branch": "main", "images": 2, "new_images": 2, **common}

    # the same tree again: nothing new, no commit
    result = ok(invoke(runner, "commit", src, "-i", "IFCB107", "--repo", repo))
    assert "Nothing new" in result.stdout
    assert Repository.open(repo).resolve() == head
    data = json.loads(
        ok(invoke(runner, "commit", src, "-i", "IFCB107", "--json", "--repo", repo)).stdout
    )
    assert data == {"commit": None, "branch": "main", "images": 2, "new_images": 0, **common}
    assert len(list(Repository.open(repo).log())) == 1

    # one more file: only it is new
    images(src, B1)
    result = ok(invoke(runner, "commit", src, "-i", "IFCB107", "--repo", repo, "-q"))
    assert "1 image(s) from IFCB107 (2 already committed)" in result.stdout
    assert len(list(Repository.open(repo).log())) == 2


def test_commit_to_a_branch(runner, committed, tmp_path):
    main_before = Repository.open(committed).resolve("main")
    ok(invoke(runner, "--repo", committed, "branch", "dev"))
    src = images(tmp_path / "dev", "D20240105T000000_IFCB107_00001")
    result = ok(
        invoke(runner, "--repo", committed, "commit", src, "-i", "IFCB107", "--branch", "dev", "-q")
    )
    r = Repository.open(committed)
    assert result.stdout.startswith(f"[dev {r.resolve('dev')[:12]}]")
    assert r.resolve("main") == main_before
    assert next(r.log("dev", limit=1))[1].parents == (main_before,)
    assert (
        "D20240105T000000_IFCB107_00001"
        in r.snapshot("dev").images().column("image_id").to_pylist()
    )
    assert (
        "D20240105T000000_IFCB107_00001"
        not in r.snapshot("main").images().column("image_id").to_pylist()
    )


def test_commit_to_a_missing_branch(runner, committed, tmp_path):
    before = refs(committed)
    src = images(tmp_path / "x", "D20240105T000000_IFCB107_00001")
    assert_error(
        invoke(runner, "--repo", committed, "commit", src, "-i", "IFCB107", "-b", "nope", "-q"),
        3,
        "nope",
    )
    assert refs(committed) == before


# -- log ---------------------------------------------------------------------------


def test_log(runner, committed):
    r = Repository.open(committed)
    second, first = [oid for oid, _ in r.log()]
    text = ok(invoke(runner, "--repo", committed, "log")).stdout
    assert text.index(f"commit {second}") < text.index(f"commit {first}")
    assert "day one" in text and "day two" in text and "Author: tester" in text
    assert "IFCB107: 2 image(s)" in text and "scope-2: 1 image(s)" in text

    one = ok(invoke(runner, "--repo", committed, "log", "-n", "1")).stdout
    assert f"commit {second}" in one and first not in one

    data = json.loads(ok(invoke(runner, "--repo", committed, "log", "--json")).stdout)
    assert [c["id"] for c in data] == [second, first]
    assert [c["message"] for c in data] == ["day two", "day one"]
    assert [c["images"] for c in data] == [1, 2]
    assert data[0]["parents"] == [first]

    for ref in ("main~1", first[:10], first):
        older = ok(invoke(runner, "--repo", committed, "log", ref)).stdout
        assert f"commit {first}" in older and second not in older, ref
    assert (
        len(
            json.loads(
                ok(invoke(runner, "--repo", committed, "log", "--json", "-n", "1", "main")).stdout
            )
        )
        == 1
    )


def test_log_of_empty_repository(runner, repo):
    assert "No commits yet" in ok(invoke(runner, "--repo", repo, "log")).stdout
    assert json.loads(ok(invoke(runner, "--repo", repo, "log", "--json")).stdout) == []


def test_log_rejects_zero_count(runner, committed):
    result = invoke(runner, "--repo", committed, "log", "-n", "0")
    assert result.exit_code == 2


# -- show --------------------------------------------------------------------------


def test_show_text(runner, committed):
    r = Repository.open(committed)
    text = ok(invoke(runner, "--repo", committed, "show", "main~1")).stdout
    assert f"commit {r.resolve('main~1')}" in text
    assert "day one" in text
    assert "IFCB107" in text
    assert "1 batch(es), 2 image(s)" in text
    assert "2024-01-01 12:00:00" in text  # time range of the batch
    head = ok(invoke(runner, "--repo", committed, "show")).stdout
    assert "scope-2" in head and "2024-01-02 06:00:00" in head
    assert "41.5" in head and "-70.25" in head


def test_show_json(runner, committed):
    data = json.loads(ok(invoke(runner, "--repo", committed, "show", "--json")).stdout)
    assert data["id"] == Repository.open(committed).resolve()
    assert data["message"] == "day two"
    (batch,) = data["batches"]
    assert batch["instrument"] == "scope-2"
    assert batch["rows"] == 1
    assert batch["time_min"].startswith("2024-01-02T06:00:00") and batch["time_max"].startswith(
        "2024-01-02T06:00:00"
    )
    assert (batch["lat_min"], batch["lat_max"]) == (41.5, 41.5)
    assert (batch["lon_min"], batch["lon_max"]) == (-70.25, -70.25)
    assert (batch["depth_min"], batch["depth_max"]) == (2.0, 2.0)
    assert isinstance(data["index"], list) and data["index"]

    older = json.loads(ok(invoke(runner, "--repo", committed, "show", "main~1", "--json")).stdout)
    (batch,) = older["batches"]
    assert batch["rows"] == 2
    assert batch["time_min"].startswith("2024-01-01T12:00:00")
    assert batch["lat_min"] is None and batch["lon_max"] is None


# -- branch and tag -----------------------------------------------------------------


def test_branch_list_and_create(runner, committed):
    r = Repository.open(committed)
    head, first = r.resolve(), r.resolve("main~1")
    listing = ok(invoke(runner, "--repo", committed, "branch")).stdout
    assert listing.splitlines() == [f"* {'main':<24} {head[:12]}"]

    out = ok(invoke(runner, "--repo", committed, "branch", "old", "main~1")).stdout
    assert out.strip() == f"Created branch old at {first[:12]}"
    ok(invoke(runner, "--repo", committed, "branch", "dev"))
    assert Repository.open(committed).branches() == {"main": head, "old": first, "dev": head}
    listing = ok(invoke(runner, "--repo", committed, "branch")).stdout
    assert f"  {'old':<24} {first[:12]}" in listing.splitlines()
    data = json.loads(ok(invoke(runner, "--repo", committed, "branch", "--json")).stdout)
    assert data == {"default": "main", "branches": {"main": head, "old": first, "dev": head}}

    before = refs(committed)
    assert_error(
        invoke(runner, "--repo", committed, "branch", "dev", "main~1"), 4, "already exists"
    )
    assert_error(invoke(runner, "--repo", committed, "branch", "bad..name"), 2, "invalid ref name")
    assert refs(committed) == before


def test_tags(runner, committed):
    r = Repository.open(committed)
    head, first = r.resolve(), r.resolve("main~1")
    assert (
        ok(invoke(runner, "--repo", committed, "tag", "v1", "main~1")).stdout.strip()
        == f"Tagged {first[:12]} as v1"
    )
    ok(invoke(runner, "--repo", committed, "tag", "v2", "-m", "second release"))
    r = Repository.open(committed)
    assert r.tags() == {"v1": first, "v2": head}
    assert r.refs.tag("v1") == first  # lightweight: points at the commit
    assert r.refs.tag("v2") != head  # annotated: points at a tag object
    assert r.odb.get_object(r.refs.tag("v2")).message == "second release"

    listing = ok(invoke(runner, "--repo", committed, "tag")).stdout.splitlines()
    assert listing == [f"{'v1':<24} {first[:12]}", f"{'v2':<24} {head[:12]}"]
    assert json.loads(ok(invoke(runner, "--repo", committed, "tag", "--json")).stdout) == {
        "v1": first,
        "v2": head,
    }

    # tags name revisions
    assert "day one" in ok(invoke(runner, "--repo", committed, "show", "v1")).stdout
    assert (
        f"commit {head}" in ok(invoke(runner, "--repo", committed, "log", "v2", "-n", "1")).stdout
    )

    # tags never move
    before = refs(committed)
    assert_error(invoke(runner, "--repo", committed, "tag", "v1"), 6, "v1")
    assert_error(invoke(runner, "--repo", committed, "tag", "v2", "main~1", "-m", "again"), 6, "v2")
    assert_error(invoke(runner, "--repo", committed, "tag", "v3", "-m", "  "), 2, "empty")
    assert refs(committed) == before


def test_tag_list_empty(runner, repo):
    assert ok(invoke(runner, "--repo", repo, "tag")).stdout == "No tags yet.\n"
    assert json.loads(ok(invoke(runner, "--repo", repo, "tag", "--json")).stdout) == {}


# -- get ------------------------------------------------------------------------------


def test_get_to_file(runner, repo, tmp_path):
    src = images(tmp_path / "src", A1, A2)
    ok(invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB107", "-q"))
    out = tmp_path / "out.png"
    result = ok(invoke(runner, "--repo", repo, "get", A1, "-o", out))
    assert out.read_bytes() == (src / f"{A1}.png").read_bytes()
    assert f"Wrote {out.stat().st_size} bytes" in result.stderr
    assert result.stdout == ""
    assert not list(tmp_path.glob(".*improv-tmp"))

    # refuses to overwrite without --force
    out.write_bytes(b"precious")
    assert_error(invoke(runner, "--repo", repo, "get", A2, "-o", out), 2, "--force")
    assert out.read_bytes() == b"precious"
    ok(invoke(runner, "--repo", repo, "get", A2, "-o", out, "--force"))
    assert out.read_bytes() == (src / f"{A2}.png").read_bytes()


def test_get_real_png_to_stdout(runner, repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    pngs = Path(__file__).resolve().parent / "data" / "irfcb" / "png"
    sample = pngs / "D20220522T003051_IFCB134_00003.png"
    (src / sample.name).write_bytes(sample.read_bytes())
    ok(invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB134", "-q"))
    result = ok(invoke(runner, "--repo", repo, "get", sample.stem))
    assert result.stdout_bytes == sample.read_bytes()


def test_get_at_an_older_commit(runner, committed, tmp_path):
    r = Repository.open(committed)
    first = r.resolve("main~1")
    ok(invoke(runner, "--repo", committed, "tag", "v1", "main~1"))
    for rev in ("main~1", first, first[:8], "v1"):
        out = tmp_path / f"a1-{rev.replace('~', '_')}.png"
        ok(invoke(runner, "--repo", committed, "get", A1, "--at", rev, "-o", out))
        assert out.read_bytes() == (tmp_path / "day1" / f"{A1}.png").read_bytes()
    # b1 only exists from the second commit on
    out = tmp_path / "b1.png"
    assert_error(invoke(runner, "--repo", committed, "get", "b1", "--at", "v1", "-o", out), 3, "b1")
    assert not out.exists()
    ok(invoke(runner, "--repo", committed, "get", "b1", "-o", out))
    assert out.read_bytes() == (tmp_path / "day2" / "b1.png").read_bytes()


def test_get_unknown_image(runner, committed, tmp_path):
    assert_error(
        invoke(runner, "--repo", committed, "get", "nope", "-o", tmp_path / "x"), 3, "nope"
    )
    assert not (tmp_path / "x").exists()


def test_get_into_a_missing_directory_is_a_clean_error(runner, committed, tmp_path):
    """BUG: ``get -o missing/dir/file`` dies with a FileNotFoundError traceback
    (exit 1) instead of a one-line ``error:`` message."""
    result = invoke(
        runner, "--repo", committed, "get", A1, "-o", tmp_path / "no" / "such" / "dir.png"
    )
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ")


def test_get_onto_a_directory_is_a_clean_error(runner, committed, tmp_path):
    """BUG: ``get -o DIR --force`` dies with a traceback (ValueError for '.',
    IsADirectoryError otherwise) instead of a one-line ``error:`` message."""
    target = tmp_path / "adir"
    target.mkdir()
    result = invoke(runner, "--repo", committed, "get", A1, "-o", target, "--force")
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ")
    assert target.is_dir()


# -- finding the repository --------------------------------------------------------------


def test_repo_option_before_and_after_the_subcommand(runner, committed):
    head = Repository.open(committed).resolve()
    before = ok(invoke(runner, "--repo", committed, "log", "--json")).stdout
    after = ok(invoke(runner, "log", "--json", "--repo", committed)).stdout
    short = ok(invoke(runner, "-R", committed, "log", "--json")).stdout
    assert before == after == short
    assert json.loads(before)[0]["id"] == head


def test_repo_after_subcommand_wins_over_before(runner, committed, tmp_path):
    other = tmp_path / "other"
    ok(invoke(runner, "init", other))
    data = json.loads(
        ok(invoke(runner, "--repo", other, "log", "--json", "--repo", committed)).stdout
    )
    assert len(data) == 2


def test_repo_from_environment(runner, committed, tmp_path, monkeypatch):
    head = Repository.open(committed).resolve()
    monkeypatch.chdir(tmp_path)
    result = ok(invoke(runner, "show", "--json", env={"IMPROV_REPO": str(committed)}))
    assert json.loads(result.stdout)["id"] == head
    monkeypatch.setenv("IMPROV_REPO", str(committed))
    src = images(tmp_path / "more", "D20240107T000000_IFCB107_00001")
    ok(invoke(runner, "commit", src, "-i", "IFCB107", "-q"))
    assert next(Repository.open(committed).log(limit=1))[1].parents == (head,)
    monkeypatch.setenv("IMPROV_REPO", str(tmp_path / "nowhere"))
    assert_error(invoke(runner, "log"), 3, "not an improv repository")
    # --repo after the subcommand beats the environment
    ok(invoke(runner, "log", "--repo", committed))


def test_global_repo_option_beats_environment(runner, committed, tmp_path, monkeypatch):
    """BUG: with IMPROV_REPO set, ``improv --repo X log`` uses $IMPROV_REPO, not X:
    the subcommand's own --repo option also reads the environment variable, and
    _open() prefers it over the global option."""
    monkeypatch.setenv("IMPROV_REPO", str(tmp_path / "nowhere"))
    ok(invoke(runner, "--repo", committed, "log"))


def test_inside_a_repository_directory(runner, committed, tmp_path, monkeypatch):
    head = Repository.open(committed).resolve()
    monkeypatch.chdir(committed)
    assert json.loads(ok(invoke(runner, "log", "--json")).stdout)[0]["id"] == head
    nested = committed / "notes" / "deeper"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert f"commit {head}" in ok(invoke(runner, "show")).stdout
    src = images(tmp_path / "here", "D20240108T000000_IFCB107_00001")
    ok(invoke(runner, "commit", src, "-i", "IFCB107", "-q"))
    ok(invoke(runner, "get", "D20240108T000000_IFCB107_00001", "-o", tmp_path / "got.png"))
    assert (tmp_path / "got.png").read_bytes() == (
        src / "D20240108T000000_IFCB107_00001.png"
    ).read_bytes()


def test_outside_any_repository(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["log"], ["show"], ["branch"], ["tag"], ["get", A1, "-o", "x.png"]):
        assert_error(invoke(runner, *args), 3, "not inside an improv repository")
    src = images(tmp_path / "src", A1)
    assert_error(invoke(runner, "commit", src, "-i", "IFCB107", "-q"), 3)
    assert not (tmp_path / "improv.json").exists()
    assert not (tmp_path / "x.png").exists()


# -- bad input: a one-line error, the right exit code, no ref moved ------------------------


def test_not_a_repository(runner, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    src = images(tmp_path / "src", A1)
    for args in (
        ["--repo", empty, "log"],
        ["log", "--repo", empty],
        ["--repo", empty, "commit", src, "-i", "IFCB107", "-q"],
        ["--repo", tmp_path / "missing", "show"],
        ["--repo", empty, "tag", "v1"],
        ["--repo", empty, "branch", "dev"],
    ):
        assert_error(invoke(runner, *args), 3, "not an improv repository")
    assert list(empty.iterdir()) == []


@pytest.fixture
def base(runner, repo, tmp_path):
    """A repository with one commit of A1, A2 (and its refs before any bad input)."""
    ok(
        invoke(
            runner,
            "--repo",
            repo,
            "commit",
            images(tmp_path / "base", A1, A2),
            "-i",
            "IFCB107",
            "-q",
        )
    )
    ok(invoke(runner, "--repo", repo, "tag", "v1"))
    return repo, refs(repo)


def commit_fails(runner, repo, src, code, *fragments, quiet=True):
    args = ["--repo", repo, "commit", src, "-i", "IFCB107", "-m", "bad"] + (["-q"] if quiet else [])
    return assert_error(invoke(runner, *args), code, *fragments)


def test_missing_metadata_column(runner, base, tmp_path):
    repo, before = base
    src = images(tmp_path / "src", "a")
    (src / "metadata.csv").write_text("name,timestamp\na,2024-01-01T00:00:00Z\n")
    commit_fails(runner, repo, src, 2, "image_id or a filename column")
    (src / "metadata.csv").write_text("image_id,lat\na,1.0\n")  # no timestamp for a non-IFCB name
    commit_fails(runner, repo, src, 2, "'a'")
    assert refs(repo) == before


@pytest.mark.parametrize("value", ["not-a-time", "2024-13-45T00:00:00"])  # without an offset is UTC
def test_bad_timestamp(runner, base, tmp_path, value):
    repo, before = base
    src = images(tmp_path / "src", "a")
    (src / "metadata.csv").write_text(f"image_id,timestamp\na,{value}\n")
    commit_fails(runner, repo, src, 2, "timestamp", value, quiet=False)
    assert refs(repo) == before


def test_duplicate_ids(runner, base, tmp_path):
    repo, before = base
    src = tmp_path / "src"
    images(src / "copy1", B1)
    images(src / "copy2", B1)
    commit_fails(runner, repo, src, 2, B1, "more than once")
    assert refs(repo) == before


def test_invalid_instrument_and_missing_source(runner, base, tmp_path):
    repo, before = base
    src = images(tmp_path / "src", B1)
    assert_error(
        invoke(runner, "--repo", repo, "commit", src, "-i", "bad name!", "-q"), 2, "instrument"
    )
    commit_fails(runner, repo, tmp_path / "nowhere", 2, "not a directory")
    commit_fails(runner, repo, images(tmp_path / "empty"), 2, "no image files")
    assert refs(repo) == before


def test_unreadable_file(runner, base, tmp_path):
    repo, before = base
    src = images(tmp_path / "src", B1, "D20240102T060000_IFCB107_00002")
    locked = src / f"{B1}.png"
    locked.chmod(0)
    try:
        try:
            locked.read_bytes()
        except PermissionError:
            pass
        else:
            pytest.skip("running as root: chmod 000 does not make the file unreadable")
        commit_fails(runner, repo, src, 2, "cannot read", B1)
    finally:
        locked.chmod(0o644)
    assert refs(repo) == before


def test_dangling_symlink_is_an_unreadable_file(runner, base, tmp_path):
    """Works as root too: an image entry that cannot be opened."""
    repo, before = base
    src = images(tmp_path / "src", "D20240102T060000_IFCB107_00002")
    (src / f"{B1}.png").symlink_to(tmp_path / "gone.png")
    commit_fails(runner, repo, src, 2, "cannot read", B1)
    assert refs(repo) == before


def test_same_id_different_bytes(runner, base, tmp_path):
    repo, before = base
    src = images(tmp_path / "src", A1, salt="changed ")
    images(src, B1)
    commit_fails(runner, repo, src, 4, A1, "different bytes", quiet=False)
    assert refs(repo) == before
    assert B1 not in Repository.open(repo).snapshot().images().column("image_id").to_pylist()


def test_unknown_ref(runner, base, tmp_path):
    repo, before = base
    for args in (
        ["log", "nope"],
        ["show", "nope"],
        ["show", "main~5"],
        ["branch", "dev", "nope"],
        ["tag", "v2", "nope"],
        ["get", A1, "--at", "nope", "-o", tmp_path / "x.png"],
    ):
        assert_error(invoke(runner, "--repo", repo, *args), 3)
    assert refs(repo) == before
    assert not (tmp_path / "x.png").exists()


def test_show_in_empty_repository(runner, repo):
    assert_error(invoke(runner, "--repo", repo, "show"), 3)


# -- the real entry point ---------------------------------------------------------------------


def test_module_help_in_a_subprocess():
    env = {k: v for k, v in os.environ.items() if k != "IMPROV_REPO"}
    proc = subprocess.run(
        [sys.executable, "-m", "improv_vcs.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("init", "commit", "log", "show", "branch", "tag", "get"):
        assert command in proc.stdout
    assert proc.stderr == ""


def test_no_arguments_shows_help(runner):
    result = invoke(runner)
    assert "commit" in result.output
    assert result.exit_code == 2  # no command: the overview, as for a usage error
