"""Shared fixtures: repositories on every store kind, and a real S3 endpoint
(moto's server) bound to 127.0.0.1 for the whole session."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from improv_vcs import Repository
from improv_vcs.cli import app

settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def s3_endpoint():
    """URL of a moto S3 server on a free loopback port."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_url(s3_endpoint):
    """A fresh, empty ``s3://`` prefix in a fresh bucket on the moto server."""
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/repo"


@pytest.fixture
def s3_options(s3_endpoint):
    return {"endpoint_url": s3_endpoint}


@pytest.fixture(params=["memory", "local", "s3"])
def store(request, tmp_path):
    """One empty store of each kind."""
    from improv_vcs.storage import open_store

    if request.param == "memory":
        return open_store(f"memory://store-{uuid.uuid4().hex}")
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    url = request.getfixturevalue("s3_url")
    return open_store(url, **request.getfixturevalue("s3_options"))


SERVE_TOKEN = "conftest-serve-token-0123456789"
"""The write token of servers started by :func:`serve`."""


@pytest.fixture
def serve():
    """``serve(path) -> url``: ``improv serve`` for ``path`` (which may not
    exist yet) on a free port of 127.0.0.1, a real uvicorn server that
    :data:`SERVE_TOKEN` may write to; every one is stopped when the test ends."""
    from improv_vcs.service.app import create_app
    from improv_vcs.service.auth import Access, TokenEntry
    from improv_vcs.service.server import BackgroundServer

    access = Access((TokenEntry(name="writer", token=SERVE_TOKEN, scopes=("write",)),))
    servers = []

    def start(path) -> str:  # type: ignore[no-untyped-def]
        server = BackgroundServer(create_app(str(path), access))
        url = server.__enter__()
        servers.append(server)
        return url

    yield start
    for server in servers:
        server.__exit__(None, None, None)


class TickingClock:
    """A :data:`improv_vcs.core.times.Clock` for tests: each reading is one
    ``step`` after the last, from ``start`` (no sleeping for distinct times)."""

    def __init__(
        self,
        start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc),
        step: timedelta = timedelta(seconds=1),
    ):
        self.now, self.step = start - step, step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock()


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="run long scale and crash tests"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: opt in with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def golden_figures(repo) -> dict:  # type: ignore[no-untyped-def]
    """What ``tests/data/golden-format1.expected.json`` records of the golden
    format-1 repository, computed anew from ``repo``."""
    import hashlib
    from datetime import datetime, timezone

    def digest(table) -> str:  # type: ignore[no-untyped-def]
        rows = sorted(
            zip(table.column("image_id").to_pylist(), table.column("blob_id").to_pylist())
        )
        return hashlib.sha256("".join(f"{a}\t{b}\n" for a, b in rows).encode()).hexdigest()

    day = datetime(2024, 5, 1, tzinfo=timezone.utc), datetime(2024, 5, 2, tzinfo=timezone.utc)
    ids = sorted(repo.snapshot().images().column("image_id").to_pylist())
    return {
        "head": repo.resolve(),
        "log": [[oid, c.message] for oid, c in repo.log()],
        "branches": repo.branches(),
        "tags": repo.tags(),
        "images": repo.snapshot().count(),
        "images_digest": digest(repo.snapshot().images()),
        "images_at_day1": repo.snapshot("day-1").count(),
        "images_day1_digest": digest(repo.snapshot("day-1").images()),
        "ifcb107_first_day": repo.snapshot().count(
            instruments=["IFCB107"], start=day[0], end=day[1]
        ),
        "dataset_spring": repo.snapshot().count(dataset="spring"),
        "classification_records": repo.snapshot().provenance_records("classification").num_rows,
        "classification_run2": repo.snapshot()
        .provenance_records("classification", run="run-2")
        .num_rows,
        "annotation_on_curation": repo.snapshot("curation")
        .provenance_records("annotation")
        .num_rows,
        "sources": [
            [r["sample_id"], r["name"], r["blob_id"]]
            for r in repo.snapshot().source_files().to_pylist()
        ],
        "first_image_sha256": hashlib.sha256(repo.snapshot().read_image(ids[0])).hexdigest(),
        "instruments": sorted(repo.snapshot().registry().instruments),
        "citation": repo.snapshot("day-1").cite().identifier,
    }


@pytest.fixture
def observed():
    """:func:`golden_figures`, for tests of the golden repository."""
    return golden_figures


# -- the CLI: a runner, invocations, clean failures, small image folders ---------
A1 = "D20240101T120000_IFCB107_00001"
A2 = "D20240101T120000_IFCB107_00002"
B1 = "D20240102T060000_IFCB107_00001"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("IMPROV_REPO", raising=False)
    monkeypatch.setenv("IMPROV_AUTHOR", "tester")


@pytest.fixture
def runner():
    return CliRunner()


def invoke(runner, *args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def ok(result):
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def images(directory: Path, *ids: str, salt: str = "", ext: str = ".png") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        (directory / f"{image_id}{ext}").write_bytes(f"{salt}image {image_id}".encode())
    return directory


def refs(url: Path) -> tuple[dict, dict]:
    repo = Repository.open(url)
    return repo.branches(), dict(repo.refs.tags())


def assert_error(result, code: int, *fragments: str) -> str:
    """A clean failure: the class's exit code, one ``error: ...`` line on stderr, no traceback."""
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == ""
    return lines[0]


def assert_json_error(result, code: int, kind: str, *fragments: str) -> str:
    """A clean failure under ``--json``: the exit code and one JSON error on stderr."""
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert result.exit_code == code, (result.exit_code, result.output)
    error = json.loads(result.stderr)["error"]
    assert error["type"] == kind, error
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error)
    assert result.stdout == ""
    return error["message"]


@pytest.fixture
def repo(runner, tmp_path):
    path = tmp_path / "repo"
    ok(invoke(runner, "init", path))
    return path


@pytest.fixture
def committed(runner, repo, tmp_path):
    """A repository with two commits on main: A1, A2 then B1 (with lat/lon)."""
    ok(
        invoke(
            runner,
            "--repo",
            repo,
            "commit",
            images(tmp_path / "day1", A1, A2),
            "-i",
            "IFCB107",
            "-m",
            "day one",
            "-q",
        )
    )
    day2 = images(tmp_path / "day2", "b1")
    (day2 / "metadata.csv").write_text(
        "image_id,timestamp,lat,lon,depth\nb1,2024-01-02T06:00:00Z,41.5,-70.25,2.0\n"
    )
    ok(invoke(runner, "--repo", repo, "commit", day2, "-i", "scope-2", "-m", "day two", "-q"))
    return repo


def sample_images(directory: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Images with a metadata table: (image_id, timestamp, sample_id)."""
    images(directory, *(r[0] for r in rows))
    lines = ["image_id,timestamp,sample_id", *(",".join(r) for r in rows)]
    (directory / "metadata.csv").write_text("\n".join(lines) + "\n")
    return directory


# -- tiny commits through the Python API ---------------------------------------
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def rows(prefix: str, n: int = 4) -> list[dict]:
    return [{"image_id": f"{prefix}{k}", "timestamp": T0} for k in range(n)]


def blobs(prefix: str, n: int = 4) -> list[bytes]:
    return [f"pixels of {prefix}{k}|".encode() * 40 for k in range(n)]


def add(repo: Repository, prefix: str, branch: str = "main") -> str:
    with repo.transaction(branch=branch, message=prefix) as tx:
        tx.append_bytes("CAM", rows(prefix), blobs(prefix))
    assert tx.commit_id is not None
    return tx.commit_id


def image_ids(repo: Repository) -> list[str]:
    return sorted(repo.snapshot().images().column("image_id").to_pylist())


# -- a real browser: Debian's chromium driven by Playwright ---------------------------------
CHROMIUM = "/usr/bin/chromium"
"""The browser the web tests drive (``IMPROV_CHROMIUM`` names another)."""
BROWSER_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    # loopback only: any other host goes to a proxy on a closed loopback port
    # (loopback itself always bypasses a proxy), and no host name resolves
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium under Playwright for the whole session, able to reach
    loopback addresses only. Playwright's Python package runs its bundled
    driver; the browser is the system's, so nothing is downloaded. Without
    the executable the test is skipped, or fails when
    ``IMPROV_REQUIRE_BROWSER=1`` (as in CI)."""
    executable = os.environ.get("IMPROV_CHROMIUM") or CHROMIUM
    required = os.environ.get("IMPROV_REQUIRE_BROWSER") == "1"

    def missing(what: str):  # type: ignore[no-untyped-def]
        if required:
            pytest.fail(f"{what}, and IMPROV_REQUIRE_BROWSER=1", pytrace=False)
        pytest.skip(f"{what} (install it, or set IMPROV_CHROMIUM to a Chromium)")

    if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
        missing(f"no Chromium executable at {executable}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(BROWSER_ARGS)
        )
        yield launched
        launched.close()
