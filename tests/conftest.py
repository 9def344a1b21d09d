"""Shared fixtures: repositories on every store kind, and a real S3 endpoint
(moto's server) bound to 127.0.0.1 for the whole session."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings

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


class TickingClock:
    """A :data:`improv_vcs.core.times.Clock` for tests: each reading is one
    ``step`` after the last, from ``start`` (no sleeping for distinct times)."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc), step: timedelta = timedelta(seconds=1)):
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
        rows = sorted(zip(table.column("image_id").to_pylist(), table.column("blob_id").to_pylist()))
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
        "ifcb107_first_day": repo.snapshot().count(instruments=["IFCB107"], start=day[0], end=day[1]),
        "dataset_spring": repo.snapshot().count(dataset="spring"),
        "classification_records": repo.snapshot().provenance_records("classification").num_rows,
        "classification_run2": repo.snapshot().provenance_records("classification", run="run-2").num_rows,
        "annotation_on_curation": repo.snapshot("curation").provenance_records("annotation").num_rows,
        "sources": [[r["sample_id"], r["name"], r["blob_id"]] for r in repo.snapshot().source_files().to_pylist()],
        "first_image_sha256": hashlib.sha256(repo.snapshot().read_image(ids[0])).hexdigest(),
        "instruments": sorted(repo.snapshot().registry().instruments),
        "citation": repo.snapshot("day-1").cite().identifier,
    }


@pytest.fixture
def observed():
    """:func:`golden_figures`, for tests of the golden repository."""
    return golden_figures
