"""Hostile input that used to get through, hang, balloon or crash: each is
refused with one line naming the file (line, column) or the limit passed and
how to raise it, and the repository is left as it was (same log, fsck clean,
no stray files).

Covered: non-UTF-8 metadata (values and header); FIFOs and outside links
among the images; the image size, metadata column and field limits
(IMPROV_MAX_IMAGE_BYTES, IMPROV_MAX_METADATA_COLUMNS, IMPROV_MAX_FIELD_BYTES);
huge ``offset`` and deeply nested JSON over HTTP; an unreachable S3 endpoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_error, images, invoke, ok

from improv_vcs import InvalidInputError, Repository, StorageError
from improv_vcs.ingest.folders import IngestWarning, scan_directory
from improv_vcs.maintenance.fsck import fsck

A1 = "D20240101T120000_IFCB107_00001"
A2 = "D20240102T060000_IFCB107_00002"
A3 = "D20240102T060000_IFCB107_00003"
TS = "2024-01-02T06:00:00Z"
LIMIT_VARIABLES = (
    "IMPROV_MAX_IMAGE_BYTES",
    "IMPROV_MAX_METADATA_COLUMNS",
    "IMPROV_MAX_FIELD_BYTES",
)


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch):
    for variable in LIMIT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def snapshot(path: Path) -> tuple[list, dict[str, bytes]]:
    """The log and every file (name → bytes, small files) of a local repository."""
    files = {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }
    return [oid for oid, _ in Repository.open(path).log()], files


@pytest.fixture
def base(runner, tmp_path):
    """A repository with one CLI commit, and its snapshot."""
    path = tmp_path / "repo"
    ok(invoke(runner, "init", path))
    ok(
        invoke(
            runner, "--repo", path, "commit", images(tmp_path / "day1", A1), "-i", "IFCB107", "-q"
        )
    )
    return path, snapshot(path)


def unchanged(path: Path, before) -> None:
    assert snapshot(path) == before
    assert fsck(Repository.open(path), full=True).ok


def refused(runner, repo: Path, src: Path, *fragments: str, code: int = 2) -> str:
    return assert_error(
        invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB107", "-q"), code, *fragments
    )


def csv_source(tmp_path: Path, data: bytes, *ids: str) -> Path:
    src = images(tmp_path / "src", *(ids or ("b1",)))
    (src / "metadata.csv").write_bytes(data)
    return src


# -- 1. metadata text must be UTF-8 ------------------------------------------------------------


def test_non_utf8_metadata_value_is_refused_with_file_line_and_column(runner, base, tmp_path):
    repo, before = base
    src = csv_source(tmp_path, f"image_id,timestamp,notes\nb1,{TS},caf\xe9\n".encode("latin-1"))
    line = refused(
        runner, repo, src, str(src / "metadata.csv"), "line 2", "column 'notes'", "not UTF-8"
    )
    assert "0xe9" in line
    with pytest.raises(InvalidInputError, match="line 2, column 'notes'"):
        scan_directory(src)
    unchanged(repo, before)


def test_non_utf8_after_quoted_commas_and_empty_lines_names_the_right_place(runner, base, tmp_path):
    repo, before = base
    data = f'\nimage_id,timestamp,"a,b",notes\n\nb1,{TS},"x,y",\xff\n'.encode("latin-1")
    refused(runner, repo, csv_source(tmp_path, data), "line 4", "column 'notes'")
    unchanged(repo, before)


def test_non_utf8_header_is_a_clear_line_not_a_traceback(runner, base, tmp_path):
    repo, before = base
    src = csv_source(tmp_path, f"image_id,timestamp,n\xffotes\nb1,{TS},x\n".encode("latin-1"))
    refused(runner, repo, src, "metadata.csv", "line 1", "column 3", "header", "UTF-8")
    unchanged(repo, before)


def test_binary_parquet_column_is_refused(runner, base, tmp_path):
    repo, before = base
    src = images(tmp_path / "src", "b1")
    stamp = pa.array([datetime(2024, 1, 2, 6, tzinfo=timezone.utc)])
    pq.write_table(
        pa.table({"image_id": ["b1"], "timestamp": stamp, "notes": pa.array([b"\xff"])}),
        src / "metadata.parquet",
    )
    refused(runner, repo, src, "metadata.parquet", "column 'notes'", "UTF-8")
    unchanged(repo, before)


def test_utf8_text_commits_and_later_text_commits_still_work(runner, base, tmp_path):
    repo, _ = base
    ok(
        invoke(
            runner,
            "--repo",
            repo,
            "commit",
            csv_source(tmp_path / "a", f"image_id,timestamp,notes\nb1,{TS},café\n".encode(), "b1"),
            "-i",
            "IFCB107",
            "-q",
        )
    )
    ok(
        invoke(
            runner,
            "--repo",
            repo,
            "commit",
            csv_source(tmp_path / "b", f"image_id,timestamp,notes\nb2,{TS},plain\n".encode(), "b2"),
            "-i",
            "IFCB107",
            "-q",
        )
    )
    table = Repository.open(repo).snapshot().images()
    assert table.schema.field("notes").type == pa.string()
    assert sorted(v for v in table.column("notes").to_pylist() if v) == ["café", "plain"]


# -- 2. only regular files are read ---------------------------------------------------------------

_COMMIT = [sys.executable, "-m", "improv_vcs.cli"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_among_the_images_is_skipped_with_a_warning_not_a_hang(base, tmp_path):
    repo, _ = base
    src = images(tmp_path / "src", A2)
    os.mkfifo(src / f"{A3}.png")
    env = dict(os.environ, IMPROV_AUTHOR="tester")
    done = subprocess.run(
        [*_COMMIT, "--repo", str(repo), "commit", str(src), "-i", "IFCB107", "-q"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert f"warning: skipped {src / f'{A3}.png'}: a FIFO, not a regular file" in done.stderr
    assert "Traceback" not in done.stderr
    ids = Repository.open(repo).snapshot().images().column("image_id").to_pylist()
    assert A2 in ids and A3 not in ids
    assert fsck(Repository.open(repo), full=True).ok

    with pytest.warns(IngestWarning, match="a FIFO"):
        _, paths = scan_directory(src)
    assert paths == [str(src / f"{A2}.png")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_metadata_csv_is_refused(base, tmp_path):
    repo, before = base
    src = images(tmp_path / "src", "b1")
    os.mkfifo(src / "metadata.csv")
    done = subprocess.run(
        [*_COMMIT, "--repo", str(repo), "commit", str(src), "-i", "IFCB107", "-q"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )  # in a subprocess: a regression hangs
    assert done.returncode == 2
    assert done.stderr == f"error: {src / 'metadata.csv'} is a FIFO, not a regular file\n"
    unchanged(repo, before)


def test_a_link_to_outside_source_is_skipped_with_a_warning(tmp_path):
    outside = images(tmp_path / "outside", A3)
    src = images(tmp_path / "src", A2)
    (src / f"{A3}.png").symlink_to(outside / f"{A3}.png")
    notes: list[str] = []
    _, paths = scan_directory(src, warn=notes.append)
    assert paths == [str(src / f"{A2}.png")]
    assert notes == [f"skipped {src / f'{A3}.png'}: a link to outside {src}"]


# -- 3. limits
# ----------------------------------------------------------------------------------------


def test_an_image_over_the_size_limit_is_refused_before_it_is_read(runner, base, tmp_path):
    repo, before = base
    src = images(tmp_path / "src", A2)
    with open(src / f"{A3}.png", "wb") as f:
        f.truncate(300 * 2**20)  # sparse: no disk used
    line = refused(runner, repo, src, f"{A3}.png", "300 MiB", "256 MiB", "IMPROV_MAX_IMAGE_BYTES")
    assert "IMPROV_MAX_IMAGE_BYTES=300M" in line
    unchanged(repo, before)


def test_the_image_size_limit_is_set_by_the_environment(runner, base, tmp_path, monkeypatch):
    repo, before = base
    src = images(tmp_path / "src", A2)
    (src / f"{A3}.png").write_bytes(b"x" * 3000)
    monkeypatch.setenv("IMPROV_MAX_IMAGE_BYTES", "2K")
    refused(
        runner, repo, src, f"{A3}.png", "over the limit of 2 KiB", "IMPROV_MAX_IMAGE_BYTES=3000"
    )
    monkeypatch.setenv("IMPROV_MAX_IMAGE_BYTES", "many")
    refused(runner, repo, src, "IMPROV_MAX_IMAGE_BYTES='many'", "whole number")
    unchanged(repo, before)
    monkeypatch.setenv("IMPROV_MAX_IMAGE_BYTES", "3000")
    ok(invoke(runner, "--repo", repo, "commit", src, "-i", "IFCB107", "-q"))
    assert Repository.open(repo).snapshot().read_image(A3) == b"x" * 3000


_WIDE = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from improv_vcs.core.errors import InvalidInputError
    from improv_vcs.ingest.folders import scan_directory

    src, columns = Path(sys.argv[1]), int(sys.argv[2])
    src.mkdir()
    (src / "b1.png").write_bytes(b"x")
    names = ",".join(f"c{i}" for i in range(columns))
    ones = ",".join("1" for _ in range(columns))
    (src / "metadata.csv").write_text(
        f"image_id,timestamp,{names}\\nb1,2024-01-02T06:00:00Z,{ones}\\n"
    )
    del names, ones
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        scan_directory(src)
        print("accepted")
    except InvalidInputError as exc:
        print(exc)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
    """
)


@pytest.mark.parametrize("columns, shown", [(50_000, "50,002 columns"), (1_000_000, "at least")])
def test_too_many_csv_columns_are_refused_before_parsing(tmp_path, columns, shown):
    done = subprocess.run(
        [sys.executable, "-c", _WIDE, str(tmp_path / "src"), str(columns)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    message, growth = done.stdout.splitlines()
    assert (
        shown in message
        and "over the limit of 1,000" in message
        and "IMPROV_MAX_METADATA_COLUMNS" in message
    )
    assert "metadata.csv" in message
    # refused before parsing: the peak grows by little (parsing the 50,000 columns took ~800 MiB)
    assert int(growth) < 150 * 2**20, f"peak RSS grew by {int(growth) / 2**20:.0f} MiB"


def test_the_column_limit_covers_parquet_and_can_be_raised(runner, base, tmp_path, monkeypatch):
    repo, before = base
    src = images(tmp_path / "src", "b1")
    stamp = pa.array([datetime(2024, 1, 2, 6, tzinfo=timezone.utc)])
    extra = {f"c{i}": [i] for i in range(1001)}
    pq.write_table(
        pa.table({"image_id": ["b1"], "timestamp": stamp, **extra}), src / "metadata.parquet"
    )
    refused(
        runner, repo, src, "metadata.parquet", "1,003 columns", "IMPROV_MAX_METADATA_COLUMNS=1003"
    )
    unchanged(repo, before)
    monkeypatch.setenv("IMPROV_MAX_METADATA_COLUMNS", "1003")
    table, _ = scan_directory(src)
    assert table.num_columns >= 1003


def test_a_field_over_the_limit_is_refused_with_line_and_column(runner, base, tmp_path):
    repo, before = base
    src = csv_source(
        tmp_path, f"image_id,timestamp,notes\n\nb1,{TS},{'x' * (2 * 2**20)}\n".encode()
    )
    line = refused(
        runner,
        repo,
        src,
        "metadata.csv, line 3, column 'notes'",
        "2 MiB",
        "1 MiB",
        "IMPROV_MAX_FIELD_BYTES=2M",
    )
    assert "one metadata field" in line
    unchanged(repo, before)


def test_a_huge_field_is_refused_in_bounded_memory_with_the_limit_named(runner, base, tmp_path):
    repo, before = base
    src = csv_source(
        tmp_path, f"image_id,timestamp,notes\nb1,{TS},".encode() + b"x" * (40 * 2**20) + b"\n"
    )
    line = refused(runner, repo, src, "metadata.csv, line 2", "40 MiB", "IMPROV_MAX_FIELD_BYTES")
    assert "straddl" not in line and "block" not in line  # no parser jargon
    unchanged(repo, before)


def test_the_field_limit_covers_parquet_and_column_names(tmp_path, monkeypatch):
    src = images(tmp_path / "src", "b1")
    stamp = pa.array([datetime(2024, 1, 2, 6, tzinfo=timezone.utc)])
    pq.write_table(
        pa.table({"image_id": ["b1"], "timestamp": stamp, "notes": ["y" * 5000]}),
        src / "metadata.parquet",
    )
    monkeypatch.setenv("IMPROV_MAX_FIELD_BYTES", "4K")
    with pytest.raises(InvalidInputError, match=r"row 1, column 'notes'.*IMPROV_MAX_FIELD_BYTES"):
        scan_directory(src)
    (src / "metadata.parquet").unlink()
    (src / "metadata.csv").write_text(f"image_id,timestamp,{'n' * 5000}\nb1,{TS},1\n")
    with pytest.raises(InvalidInputError, match="a column name of"):
        scan_directory(src)


# -- 4. HTTP: bounded offset, deep JSON
# -------------------------------------------------------------


@pytest.fixture
def served(tmp_path):
    from improv_vcs.service.app import create_app
    from improv_vcs.service.auth import Access, TokenEntry
    from improv_vcs.service.server import BackgroundServer

    repo = Repository.init(tmp_path / "served")
    with repo.transaction(message="one") as tx:
        tx.append_bytes(
            "IFCB1",
            [{"image_id": "x1", "timestamp": datetime(2024, 5, 1, tzinfo=timezone.utc)}],
            [b"pixels"],
        )
    token = "write-token-0123456789abcdef"
    app = create_app(str(repo.url), Access((TokenEntry(name="w", token=token, scopes=("write",)),)))
    with (
        BackgroundServer(app) as base,
        httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client,
    ):
        yield repo, client


def _one_line_400(response: httpx.Response, *fragments: str) -> None:
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["type"] == "InvalidInputError" and "\n" not in error["message"]
    for fragment in fragments:
        assert fragment in error["message"]


def test_a_huge_search_offset_is_400(served):
    _, client = served
    _one_line_400(client.get("/v1/images", params={"offset": 10**22}), "offset")
    _one_line_400(client.get("/v1/images", params={"offset": 10**9 + 1}), "offset")
    page = client.get("/v1/images", params={"offset": 10**9})
    assert page.status_code == 200 and page.json()["rows"] == []


@pytest.mark.parametrize(
    "path", ["/v1/citations", "/v1/datasets/x/spans", "/v1/provenance/classification"]
)
def test_deeply_nested_json_is_400(served, path):
    repo, client = served
    tip = repo.resolve()
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _one_line_400(
        client.post(path, content=deep, headers={"Content-Type": "application/json"}),
        "nests JSON too deeply",
    )
    assert client.get("/v1/refs").status_code == 200  # the server is fine
    assert Repository.open(repo.url).resolve() == tip


# -- 5. an unreachable S3 endpoint
# ---------------------------------------------------------------------


@pytest.fixture
def closed_port():
    """A loopback port nobody listens on (held, so nobody else takes it)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def _s3_env(port: int) -> dict[str, str]:
    return dict(
        os.environ,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        IMPROV_AUTHOR="tester",
    )


@pytest.mark.parametrize(
    "args",
    [
        ["init", "s3://bucket/x", "--endpoint-url", "ENDPOINT"],
        ["--repo", "s3://bucket/x", "log"],
        ["--repo", "s3://bucket/x", "log", "--json"],
    ],
    ids=["init", "log", "log-json"],
)
def test_unreachable_s3_endpoint_is_a_storage_error_exit_7(closed_port, args):
    endpoint = f"http://127.0.0.1:{closed_port}"
    argv = [a.replace("ENDPOINT", endpoint) for a in args]
    done = subprocess.run(
        [*_COMMIT, *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env=_s3_env(closed_port),
    )
    assert done.returncode == 7, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    if "--json" in argv:  # errors are JSON too
        error = json.loads(lines[0])["error"]
        assert error["type"] == "StorageError"
        message = error["message"]
    else:
        assert lines[0].startswith("error: ")
        message = lines[0]
    assert "s3://bucket/x" in message and endpoint in message
    assert done.stdout == ""


def test_unreachable_s3_endpoint_through_the_python_api(closed_port, monkeypatch):
    for key, value in _s3_env(closed_port).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(StorageError, match="s3://bucket/y"):
        Repository.open("s3://bucket/y", endpoint_url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(StorageError, match="s3://bucket/y"):
        Repository.init("s3://bucket/y", endpoint_url=f"http://127.0.0.1:{closed_port}")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_append_files_refuses_a_fifo_instead_of_blocking(tmp_path):
    repo = Repository.init(tmp_path / "repo")
    os.mkfifo(tmp_path / "pipe.png")
    script = textwrap.dedent(
        f"""
        from datetime import datetime, timezone
        from improv_vcs import Repository
        import pyarrow as pa
        when = datetime(2024, 5, 1, tzinfo=timezone.utc)
        rows = pa.Table.from_pylist([{{"image_id": "p1", "timestamp": when}}])
        with Repository.open({str(repo.url)!r}).transaction(message="x") as tx:
            tx.append_files("IFCB1", rows, [{str(tmp_path / "pipe.png")!r}])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "not a regular file" in done.stderr.splitlines()[-1]
    assert Repository.open(repo.url).branches() == {}
