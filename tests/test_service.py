"""``improv serve``: the REST API and the store protocol over real HTTP.

A real uvicorn server (BackgroundServer, 127.0.0.1 only) serves repositories
built from real IFCB bins; every answer is compared with the local Python
API at the same snapshot. Writes, citations, authentication, malformed
input, traversal, the server-side checks of the store protocol, and push /
pull / clone / fetch against ``http://127.0.0.1:PORT`` are exercised."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_error, invoke, ok
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from improv_vcs import Repository, add_dataset_span, add_provenance, cite
from improv_vcs.cite.citation import decode_identifier, encode_identifier
from improv_vcs.core.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    StorageError,
)
from improv_vcs.ingest.adapters import apply_plan, get_adapter
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.query.text import parse_where, query_from_options
from improv_vcs.service.app import create_app
from improv_vcs.service.auth import Access, TokenEntry
from improv_vcs.service.client import Client
from improv_vcs.service.server import BackgroundServer
from improv_vcs.storage.objects import object_key
from improv_vcs.storage.packs import index_key, pack_key
from improv_vcs.sync.sites import clone, fetch, pull, push

DATA = Path(__file__).resolve().parent / "data"
UTC = timezone.utc
WHITE, MODERN, OLD = "D20130526T095207_IFCB013", "D20220522T003051_IFCB134", "IFCB5_2012_028_081515"
BIN_DIRS = {
    WHITE: DATA / "pyifcb" / "white",
    MODERN: DATA / "irfcb",
    OLD: DATA / "pyifcb" / "old_format",
}

READ = "read-token-0123456789abcdef"
WRITE = "write-token-0123456789abcdef"
HASHED = "hashed-token-0123456789abcdef"  # configured only by its sha256
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def entries() -> tuple[TokenEntry, ...]:
    return (
        TokenEntry(name="reader", token=READ, scopes=("read",)),
        TokenEntry(name="writer", token=WRITE, scopes=("write",)),
        TokenEntry(
            name="hashed", sha256=hashlib.sha256(HASHED.encode()).hexdigest(), scopes=("write",)
        ),
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("IMPROV_REPO", raising=False)
    monkeypatch.delenv("IMPROV_TOKEN", raising=False)
    monkeypatch.delenv("IMPROV_SERVE_TOKENS", raising=False)
    monkeypatch.setenv("IMPROV_AUTHOR", "tester")


# -- building the served repository ---------------------------------------------------


def copy_bin(bin_id: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".adc", ".hdr", ".roi"):
        shutil.copyfile(BIN_DIRS[bin_id] / f"{bin_id}{suffix}", dest / f"{bin_id}{suffix}")
    return dest


def ingest(repo: Repository, work: Path, *bins: str, message: str) -> str:
    with repo.transaction(message=message) as tx:
        for b in bins:
            apply_plan(tx, get_adapter("ifcb").plan(copy_bin(b, work / b), None, {}))
    assert tx.commit_id is not None
    return tx.commit_id


def classify(repo: Repository, run: str, salt: float) -> str:
    ids = repo.snapshot().images().column("image_id").to_pylist()
    records = [
        {
            "image_id": i,
            "winner": "Diatom" if n % 2 else "Ciliate",
            "score": round((n * 0.037 + salt) % 1, 4),
            "model": run,
        }
        for n, i in enumerate(sorted(ids))
    ]
    return add_provenance(repo, "classification", records, source="clf", run_id=run)


class Built:
    def __init__(self, path: Path, work: Path):
        self.path = path
        repo = self.repo = Repository.init(path)
        self.c1 = ingest(repo, work, WHITE, message="white bin")
        repo.create_tag("v1", message="first release")
        self.c2 = ingest(repo, work, MODERN, OLD, message="two bins")
        self.c3 = classify(repo, "r1", 0.1)
        self.c4 = classify(repo, "r2", 0.55)  # a re-run with other scores
        self.c5 = add_dataset_span(
            repo,
            "bloom",
            "IFCB013",
            datetime(2013, 5, 26, tzinfo=UTC),
            datetime(2013, 5, 27, tzinfo=UTC),
            description="white",
        )
        assert None not in (self.c3, self.c4, self.c5)
        repo.remotes.add(
            "mirror", str(work / "mirror-nowhere")
        )  # site-local state that must stay hidden
        repo.remotes.set_tracking("mirror", "main", self.c1)


def build(tmp: Path) -> Built:
    return Built(tmp / "repo", tmp / "bins")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("served"))


class Leakless:
    """httpx clients whose every response is checked not to reveal the
    repository's filesystem path nor a traceback."""

    def __init__(self, base: str, secrets: list[str]):
        self.base, self.secrets, self.bodies = base, secrets, 0

    def check(self, response: httpx.Response) -> None:
        response.read()
        text = response.content.decode("latin-1")
        for secret in self.secrets:
            assert secret not in text, (response.request.url, text[:300])
        assert "Traceback" not in text
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
            assert "\n" not in body["error"]["message"]
        self.bodies += 1

    def client(self, token: str | None = None) -> httpx.Client:
        headers = bearer(token) if token else {}
        return httpx.Client(
            base_url=self.base, headers=headers, timeout=30, event_hooks={"response": [self.check]}
        )


@pytest.fixture(scope="module")
def server(built):
    app = create_app(str(built.path), Access(entries()))
    with BackgroundServer(app) as base:
        assert urlsplit(base).hostname == "127.0.0.1"
        yield base


@pytest.fixture(scope="module")
def leak(server, built):
    return Leakless(server, [str(built.path), str(built.path.parent)])


@pytest.fixture
def reader(leak):
    with leak.client(READ) as c:
        yield c


@pytest.fixture
def writer(leak):
    with leak.client(WRITE) as c:
        yield c


@pytest.fixture
def fresh(tmp_path):
    """A repository of its own and a server for it (for tests that write)."""
    made = build(tmp_path)
    with BackgroundServer(create_app(str(made.path), Access(entries()))) as base:
        yield made, Leakless(base, [str(made.path), str(tmp_path)])


# -- normalizing for comparison --------------------------------------------------------


def jsonish(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonish(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonish(v) for v in value]
    return value


def rows(table: pa.Table) -> list[dict]:
    return jsonish(table.to_pylist())


def local_select(repo: Repository, at=None, as_of=None, **opts) -> pa.Table:
    query = query_from_options(
        opts.get("instrument", []),
        opts.get("start"),
        opts.get("end"),
        opts.get("bbox"),
        opts.get("depth"),
        opts.get("dataset"),
        opts.get("sample", []),
        opts.get("where", []),
        opts.get("columns"),
        None,
        opts.get("kind", []),
        opts.get("prov", []),
        opts.get("run", []),
        opts.get("with", []),
    )
    return repo.snapshot(at, as_of=as_of).select(query).table


# == 1. every read endpoint equals the local API ========================================


def test_info_refs_commits(reader, built):
    repo = built.repo
    assert reader.get("/v1").json() == {
        "id": repo.id,
        "default_branch": "main",
        "created": repo.config.created.isoformat(),
    }
    assert reader.get("/v1/refs").json() == {
        "default": "main",
        "branches": repo.branches(),
        "tags": repo.tags(),
    }
    assert repo.tags() == {"v1": built.c1}
    log = reader.get("/v1/commits").json()
    assert (
        [c["id"] for c in log]
        == [oid for oid, _ in repo.log()]
        == [built.c5, built.c4, built.c3, built.c2, built.c1]
    )
    assert [c["message"] for c in log][-2:] == ["two bins", "white bin"]
    assert [c["images"] for c in log][-2:] == [8, 19]
    assert [c["id"] for c in reader.get("/v1/commits", params={"ref": "v1"}).json()] == [built.c1]
    assert [
        c["id"] for c in reader.get("/v1/commits", params={"ref": "main~2", "limit": 2}).json()
    ] == [built.c3, built.c2]
    one = reader.get(f"/v1/commits/{built.c2}").json()
    oid, commit = next(repo.log(built.c2, limit=1))
    assert one["id"] == oid and one["parents"] == [built.c1] and one["author"] == commit.author
    assert reader.get("/v1/commits/v1").json()["id"] == built.c1
    assert reader.get("/v1/commits/nosuch").status_code == 404
    assert reader.get("/v1/commits", params={"limit": 0}).status_code == 400


def test_client_matches_local_api(server, built):
    repo = built.repo
    with Client(server, token=READ) as client:
        assert client.refs()["tags"] == {"v1": built.c1}
        assert [c["id"] for c in client.log(limit=2)] == [built.c5, built.c4]
        assert client.commit("v1")["id"] == built.c1
        assert client.query().equals(repo.snapshot().query())
        assert client.query(at="v1").equals(repo.snapshot("v1").query())
        assert client.query(instrument="IFCB134", limit=1).num_rows == 1
        assert client.count() == repo.snapshot().count() == 27
        assert client.count(at=built.c1) == 19
        image = f"{MODERN}_00002"
        assert client.read_image(image) == repo.snapshot().read_image(image)
        assert client.image(image) == jsonish(repo.snapshot().record(image, extra=True))
        assert client.provenance(image) == jsonish(
            [r.to_json() for r in repo.snapshot().provenance(image)]
        )
        assert client.provenance_records("classification", run="r1").equals(
            repo.snapshot().provenance_records("classification", run="r1")
        )
        assert client.datasets() == {
            n: d.model_dump(mode="json") for n, d in repo.snapshot().datasets().items()
        }
        assert client.dataset("bloom", at=built.c5)["description"] == "white"
        with pytest.raises(NotFoundError):
            client.dataset("bloom", at=built.c4)
        with pytest.raises(ReadOnlyError):  # a read token cannot write
            client.add_dataset_span("x", "IFCB013", "2013-05-26", "2013-05-27")
    with Client(server, token="not-a-known-token-at-all") as client:
        with pytest.raises(ReadOnlyError) as caught:
            client.refs()
        assert caught.value.status == 401


def test_client_info(server, built):
    with Client(server, token=READ) as client:
        assert client.info() == {
            "id": built.repo.id,
            "default_branch": "main",
            "created": built.repo.config.created.isoformat(),
        }


SEARCHES = [
    {},
    {"instrument": ["IFCB013"]},
    {"instrument": ["IFCB134", "IFCB5"]},
    {"start": "2013-01-01", "end": "2022-06-01"},
    {"start": "2022-05-22T00:30:51Z"},
    {"where": ["roi_width > 100"]},
    {"where": ["roi_width > 100", "roi_height < 200"], "instrument": ["IFCB013"]},
    {"sample": [OLD]},
    {"dataset": "bloom"},
    {"kind": ["classification"]},
    {"prov": ["classification.score > 0.6"]},
    {"prov": ["classification.winner = 'Diatom'"], "run": ["r1"]},
    {"run": ["latest"], "with": ["classification.score"]},
    {"with": ["classification.winner", "classification.score"], "columns": "image_id,instrument"},
    {"columns": "image_id,timestamp,blob_id"},
]


@pytest.mark.parametrize("filters", SEARCHES, ids=[json.dumps(f) for f in SEARCHES])
def test_search_filters_equal_local_query(reader, built, filters):
    repo = built.repo
    expected = local_select(repo, **filters)
    assert expected.num_rows > 0 or filters == {"prov": ["classification.score > 0.6"]}
    params = {k: v for k, v in filters.items()}
    got = reader.get("/v1/images", params=params).json()
    assert got == {"offset": 0, "next_offset": None, "rows": rows(expected)}
    assert reader.get("/v1/images", params={**params, "count": "true"}).json() == {
        "count": expected.num_rows
    }
    arrow = reader.get("/v1/images", params=params, headers={"Accept": ARROW})
    assert arrow.headers["content-type"] == ARROW
    assert pa.ipc.open_stream(arrow.content).read_all().equals(expected)
    parquet = reader.get("/v1/images", params=params, headers={"Accept": PARQUET})
    assert parquet.headers["content-type"] == PARQUET
    assert rows(pq.read_table(io.BytesIO(parquet.content))) == got["rows"]


def test_search_at_older_commit_tag_and_as_of(reader, built):
    repo = built.repo
    for at in (built.c1, "v1", "main~4", built.c1[:12]):
        got = reader.get("/v1/images", params={"at": at}).json()["rows"]
        assert got == rows(repo.snapshot(at).query()) and len(got) == 19
    t2 = repo.odb.get_commit(built.c2).time
    assert repo.snapshot(as_of=t2).commit_id == built.c2
    got = reader.get("/v1/images", params={"as_of": t2.isoformat()}).json()["rows"]
    assert got == rows(repo.snapshot(as_of=t2).query()) == rows(repo.snapshot(built.c2).query())
    assert len(got) == 27
    # the provenance-dependent query differs before the classification
    before = reader.get(
        "/v1/images", params={"as_of": t2.isoformat(), "kind": "classification"}
    ).json()
    assert before["rows"] == []
    early = (repo.odb.get_commit(built.c1).time - timedelta(days=1)).isoformat()
    assert reader.get("/v1/images", params={"as_of": early}).status_code == 404
    assert reader.get("/v1/images", params={"as_of": "2024-01-01T00:00:00"}).status_code == 404


def test_paging_concatenates_to_the_full_result(reader, built):
    full = rows(built.repo.snapshot().query())
    pages, offset = [], 0
    while offset is not None:
        page = reader.get("/v1/images", params={"limit": 5, "offset": offset}).json()
        assert page["offset"] == offset
        pages += page["rows"]
        offset = page["next_offset"]
    assert pages == full and len(full) == 27
    assert reader.get("/v1/images", params={"limit": 27}).json()["next_offset"] == 27
    last = reader.get("/v1/images", params={"limit": 27, "offset": 27}).json()
    assert last == {"offset": 27, "next_offset": None, "rows": []}
    assert reader.get("/v1/images", params={"limit": 0}).json()["rows"] == []


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    limit=st.integers(0, 30),
    offset=st.integers(0, 30),
    inst=st.sampled_from([None, "IFCB013", "IFCB134"]),
)
def test_paging_property(reader, built, limit, offset, inst):
    params = {"limit": limit, "offset": offset, **({"instrument": inst} if inst else {})}
    full = rows(local_select(built.repo, instrument=[inst] if inst else []))
    page = reader.get("/v1/images", params=params).json()
    assert page["rows"] == full[offset : offset + limit]


def test_image_metadata_and_bytes(reader, built):
    repo = built.repo
    for image in (f"{WHITE}_00007", f"{MODERN}_00002", f"{OLD}_00003"):
        meta = reader.get(f"/v1/images/{image}").json()
        assert meta == jsonish(repo.snapshot().record(image, extra=True))
        data = reader.get(f"/v1/images/{image}/data")
        local = repo.snapshot().read_image(image)
        assert data.status_code == 200 and data.content == local
        assert (
            data.headers["etag"]
            == f'"{meta["blob_id"]}"'
            == f'"{hashlib.sha256(local).hexdigest()}"'
        )
        assert data.headers["content-type"] == "image/png"
        assert data.headers["cache-control"] == "no-cache"
    image = f"{WHITE}_00007"
    local = repo.snapshot().read_image(image)
    etag = f'"{hashlib.sha256(local).hexdigest()}"'
    assert reader.get(f"/v1/images/{image}", params={"at": "v1"}).json() == jsonish(
        repo.snapshot("v1").record(image, extra=True)
    )
    assert reader.get(f"/v1/images/{MODERN}_00002", params={"at": "v1"}).status_code == 404
    t1 = repo.odb.get_commit(built.c1).time.isoformat()
    assert reader.get(f"/v1/images/{image}", params={"as_of": t1}).json() == jsonish(
        repo.snapshot(built.c1).record(image, extra=True)
    )
    assert reader.get(f"/v1/images/{OLD}_00001", params={"as_of": t1}).status_code == 404
    assert reader.get(f"/v1/images/{image}/data", params={"as_of": t1}).content == repo.snapshot(
        built.c1
    ).read_image(image)
    assert reader.get(f"/v1/images/{image}/provenance", params={"as_of": t1}).json() == []
    full_id = reader.get(f"/v1/images/{image}/data", params={"at": built.c1})
    assert (
        full_id.headers["cache-control"] == "private, max-age=31536000, immutable"
    )  # reads need a token
    for at in ("v1", "main", built.c1[:12]):
        assert (
            reader.get(f"/v1/images/{image}/data", params={"at": at}).headers["cache-control"]
            == "no-cache"
        )
    part = reader.get(f"/v1/images/{image}/data", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == local[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(local)}"
    tail = reader.get(f"/v1/images/{image}/data", headers={"Range": "bytes=-7"})
    assert tail.status_code == 206 and tail.content == local[-7:]
    opened = reader.get(f"/v1/images/{image}/data", headers={"Range": f"bytes={len(local) - 3}-"})
    assert opened.content == local[-3:]
    bad = reader.get(f"/v1/images/{image}/data", headers={"Range": f"bytes={len(local)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(local)}"
    assert (
        reader.get(f"/v1/images/{image}/data", headers={"Range": "bytes=0-1,4-5"}).status_code
        == 416
    )
    cached = reader.get(f"/v1/images/{image}/data", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag
    assert (
        reader.get(f"/v1/images/{image}/data", headers={"If-None-Match": '"abc"'}).status_code
        == 200
    )
    assert reader.get("/v1/images/NOPE_00001/data").status_code == 404
    assert reader.get("/v1/images/..%2Fimprov.json").status_code == 404


def test_provenance_endpoints(reader, built):
    repo = built.repo
    image = f"{MODERN}_00002"
    got = reader.get(f"/v1/images/{image}/provenance").json()
    assert got == jsonish([r.to_json() for r in repo.snapshot().provenance(image)])
    assert [r["run_id"] for r in got] == ["r1", "r2"]
    assert reader.get(f"/v1/images/{image}/provenance", params={"at": built.c3}).json() == jsonish(
        [r.to_json() for r in repo.snapshot(built.c3).provenance(image)]
    )
    assert len(reader.get(f"/v1/images/{image}/provenance", params={"at": built.c3}).json()) == 1
    assert reader.get(f"/v1/images/{image}/provenance", params={"at": "v1"}).status_code == 404
    assert (
        reader.get(f"/v1/images/{image}/provenance", params={"kind": "classification"}).json()
        == got
    )
    for params in ({}, {"run": "r1"}, {"run": "r2"}, {"at": built.c3}):
        expected = repo.snapshot(params.get("at")).provenance_records(
            "classification", run=params.get("run")
        )
        assert reader.get("/v1/provenance/classification", params=params).json()["rows"] == rows(
            expected
        )
        arrow = reader.get(
            "/v1/provenance/classification", params=params, headers={"Accept": ARROW}
        )
        assert pa.ipc.open_stream(arrow.content).read_all().equals(expected)
        parquet = reader.get(
            "/v1/provenance/classification", params=params, headers={"Accept": PARQUET}
        )
        assert rows(pq.read_table(io.BytesIO(parquet.content))) == rows(expected)
    assert len(reader.get("/v1/provenance/classification").json()["rows"]) == 54
    t3 = repo.odb.get_commit(built.c3).time.isoformat()
    assert reader.get("/v1/provenance/classification", params={"as_of": t3}).json()["rows"] == rows(
        repo.snapshot(built.c3).provenance_records("classification")
    )
    bad_kind = reader.get("/v1/provenance/nosuchkind")
    assert (
        bad_kind.status_code == 400
        and "unknown provenance kind 'nosuchkind'" in bad_kind.json()["error"]["message"]
    )


def test_dataset_endpoints(reader, built):
    repo = built.repo
    assert reader.get("/v1/datasets").json() == {
        n: d.model_dump(mode="json") for n, d in repo.snapshot().datasets().items()
    }
    assert list(reader.get("/v1/datasets").json()) == ["bloom"]
    assert reader.get("/v1/datasets", params={"at": built.c4}).json() == {}
    assert reader.get("/v1/datasets/bloom").json() == repo.snapshot().dataset("bloom").model_dump(
        mode="json"
    )
    assert reader.get("/v1/datasets/nope").status_code == 404
    t4, t5 = (repo.odb.get_commit(c).time.isoformat() for c in (built.c4, built.c5))
    assert reader.get("/v1/datasets", params={"as_of": t4}).json() == {}
    assert reader.get("/v1/datasets", params={"as_of": t5}).json() == {
        n: d.model_dump(mode="json") for n, d in repo.snapshot(built.c5).datasets().items()
    }
    assert reader.get("/v1/datasets/bloom", params={"as_of": t4}).status_code == 404


# == 2. writes =========================================================================


def test_post_provenance_and_spans_commit_once(fresh):
    made, leak = fresh
    repo = made.repo
    image = f"{WHITE}_00013"
    body = {
        "records": [{"image_id": image, "winner": "Dino", "score": 0.99, "model": "m3"}],
        "source": "api",
        "run_id": "r3",
    }
    with leak.client(WRITE) as w:
        r = w.post("/v1/provenance/classification", json=body)
        assert r.status_code == 201, r.text
        made_commit = r.json()["commit"]
        assert r.json() == {"commit": made_commit, "added": 1}
        repo = Repository.open(made.path)
        assert repo.resolve() == made_commit and repo.odb.get_commit(made_commit).parents == (
            made.c5,
        )
        commit = repo.odb.get_commit(made_commit)
        assert commit.author == "writer" and commit.message == "Add classification records from api"
        assert [r.run_id for r in repo.snapshot().provenance(image)] == ["r1", "r2", "r3"]
        assert w.get(f"/v1/images/{image}/provenance").json()[-1]["run_id"] == "r3"
        assert (
            w.get("/v1/images", params={"run": "r3", "kind": "classification"}).json()["rows"][0][
                "image_id"
            ]
            == image
        )
        again = w.post("/v1/provenance/classification", json=body)
        assert again.status_code == 201 and again.json() == {"commit": None, "added": 0}
        assert Repository.open(made.path).resolve() == made_commit

        span = {
            "instrument": "IFCB134",
            "start": "2022-05-22T00:00:00Z",
            "end": "2022-05-23T00:00:00Z",
            "description": "d",
        }
        r = w.post("/v1/datasets/modern/spans", json=span)
        assert r.status_code == 201
        span_commit = r.json()["commit"]
        repo = Repository.open(made.path)
        assert repo.resolve() == span_commit and repo.odb.get_commit(span_commit).parents == (
            made_commit,
        )
        assert sorted(repo.snapshot().query(dataset="modern").column("image_id").to_pylist()) == [
            f"{MODERN}_00002",
            f"{MODERN}_00003",
        ]
        got = w.get("/v1/images", params={"dataset": "modern"}).json()["rows"]
        assert [x["image_id"] for x in got] == [f"{MODERN}_00002", f"{MODERN}_00003"]
        assert w.get("/v1/datasets/modern").json() == repo.snapshot().dataset("modern").model_dump(
            mode="json"
        )
        assert w.post("/v1/datasets/modern/spans", json=span).json() == {"commit": None}
        assert Repository.open(made.path).resolve() == span_commit
    with leak.client(HASHED) as h:  # a token configured by its sha256 writes too
        r = h.post("/v1/datasets/other/spans", json={**span, "description": None})
        assert (
            r.status_code == 201
            and Repository.open(made.path).odb.get_commit(r.json()["commit"]).author == "hashed"
        )
    with Client(leak.base, token=WRITE) as client:
        out = client.add_provenance(
            "classification",
            [{"image_id": image, "winner": "X", "score": 0.5, "model": "m"}],
            source="c",
            run_id="r4",
        )
        assert out["added"] == 1 and Repository.open(made.path).resolve() == out["commit"]


def test_write_body_errors(fresh):
    made, leak = fresh
    with leak.client(WRITE) as w:
        cases = [
            ("/v1/provenance/classification", {"records": [], "source": "x"}),
            (
                "/v1/provenance/classification",
                {"records": [{"image_id": "a"}], "source": "x", "extra": 1},
            ),
            ("/v1/provenance/classification", {"records": [{"image_id": "a"}]}),
            ("/v1/provenance/classification", [1, 2]),
            (
                "/v1/datasets/x/spans",
                {"instrument": "I", "start": "2020-01-01", "end": "2020-01-02", "color": "red"},
            ),
            (
                "/v1/datasets/x/spans",
                {"instrument": "I", "start": "yesterday", "end": "2020-01-02"},
            ),
            ("/v1/citations", {"title": "t", "bogus": True}),
            ("/v1/citations/verify", {"citation": "x", "more": 1}),
        ]
        for path, body in cases:
            r = w.post(path, json=body)
            assert r.status_code == 400, (path, body, r.text)
            assert r.json()["error"]["type"] == "InvalidInputError"
        assert w.post("/v1/datasets/x/spans", content=b"{not json").status_code == 400
        assert (
            "unknown field 'extra'"
            in w.post("/v1/provenance/classification", json=cases[1][1]).json()["error"]["message"]
        )
    assert Repository.open(made.path).resolve() == made.c5  # nothing committed


# == 3. citations ======================================================================


def test_citations_over_http(reader, built, server, tmp_path):
    repo = built.repo
    r = reader.post(
        "/v1/citations",
        json={"at": built.c2, "instrument": ["IFCB013"], "title": "White", "authors": ["Ada"]},
    )
    assert r.status_code == 200
    made = r.json()
    local = repo.snapshot(built.c2).cite(instruments=("IFCB013",), title="White", authors=("Ada",))
    assert made["identifier"] == local.identifier == encode_identifier(local.pinned)
    assert made["citation"]["urls"] == [server]
    assert str(built.path) not in json.dumps(made)
    assert made["citation"]["title"] == "White"
    pinned = decode_identifier(made["identifier"])
    assert (pinned.commit, pinned.count, pinned.repository) == (built.c2, 19, repo.id)

    verified = reader.post("/v1/citations/verify", json={"citation": made["identifier"]})
    assert verified.status_code == 200
    assert verified.json() == cite.verify(repo, pinned).to_json()
    assert verified.json()["count"] == 19 and verified.json()["digest"] == pinned.digest
    # any rendering that holds the identifier verifies
    assert (
        reader.post("/v1/citations/verify", json={"citation": made["text"]}).json()
        == verified.json()
    )

    tagged = reader.post(
        "/v1/citations", json={"tag": "v1", "instrument": "IFCB013", "where": ["roi_width > 100"]}
    )
    assert tagged.status_code == 200
    local_tagged = repo.snapshot("v1").cite(
        tag="v1", instruments=("IFCB013",), where=(parse_where("roi_width > 100"),)
    )
    assert tagged.json()["identifier"] == local_tagged.identifier
    assert decode_identifier(tagged.json()["identifier"]).count == repo.snapshot("v1").count(
        instruments=("IFCB013",), where=(parse_where("roi_width > 100"),)
    )
    by_tag = reader.post("/v1/citations", json={"tag": "v1"}).json()
    assert by_tag["identifier"] == repo.snapshot("v1").cite(tag="v1").identifier

    tampered = pinned.model_copy(update={"digest": "0" * 64})
    bad = reader.post("/v1/citations/verify", json={"citation": encode_identifier(tampered)})
    assert 400 <= bad.status_code < 500 and bad.json()["error"]["type"] == "IntegrityError"
    fewer = pinned.model_copy(update={"count": 18})
    assert (
        reader.post("/v1/citations/verify", json={"citation": encode_identifier(fewer)}).status_code
        == 422
    )
    mangled = made["identifier"][:-4] + (
        "AAAA" if not made["identifier"].endswith("AAAA") else "BBBB"
    )
    assert 400 <= reader.post("/v1/citations/verify", json={"citation": mangled}).status_code < 500

    on_disk = tmp_path / "citation.json"
    on_disk.write_text(made["identifier"])
    path_sent = reader.post("/v1/citations/verify", json={"citation": str(on_disk)})
    assert path_sent.status_code == 400
    assert "no improv citation identifier" in path_sent.json()["error"]["message"]
    with Client(server, token=READ) as client:
        assert client.verify(made["identifier"]) == verified.json()
        with pytest.raises(IntegrityError):
            client.verify(encode_identifier(tampered))
        assert (
            client.cite(at=built.c2, instrument="IFCB013", title="White", authors=["Ada"])[
                "identifier"
            ]
            == made["identifier"]
        )


# == 4. security ========================================================================


def test_authentication(leak, built):
    with leak.client() as anon:
        for path in ("/v1", "/v1/images", "/v1/store/improv.json", "/v1/refs"):
            r = anon.get(path)
            assert r.status_code == 401 and r.json()["error"]["type"] == "AuthError", path
        assert anon.post("/v1/datasets/x/spans", json={}).status_code == 401
        for header in ("Bearer", "Basic " + READ, READ, "Token " + READ, "Bearer\t" + READ):
            assert anon.get("/v1", headers={"Authorization": header}).status_code == 401, header
        assert anon.get("/v1", headers=bearer("unknown-token-0123456789")).status_code == 401
        assert anon.get("/v1", headers=bearer(READ)).status_code == 200
        assert anon.get("/v1", headers={"Authorization": f"bearer {READ}"}).status_code == 200
        assert anon.get("/v1", headers=bearer(HASHED)).status_code == 200
        assert (
            anon.get("/v1", headers=bearer(hashlib.sha256(HASHED.encode()).hexdigest())).status_code
            == 401
        )
        body = {
            "records": [{"image_id": f"{WHITE}_00007", "winner": "a", "score": 0.1, "model": "m"}],
            "source": "x",
        }
        r = anon.post("/v1/provenance/classification", json=body, headers=bearer(READ))
        assert r.status_code == 403 and r.json()["error"]["message"] == "this token may not write"
        assert anon.post("/v1/datasets/x/spans", json={}, headers=bearer(READ)).status_code == 403
        assert (
            anon.put(
                "/v1/store/objects/aa/" + "0" * 62, content=b"x", headers=bearer(READ)
            ).status_code
            == 403
        )
        assert (
            anon.post("/v1/store/refs/heads/main", json={}, headers=bearer(READ)).status_code == 403
        )
        assert (
            anon.get("/v1/images", headers=bearer(WRITE)).status_code == 200
        )  # write includes read
        assert (
            anon.post("/v1/citations", json={}, headers=bearer(READ)).status_code == 200
        )  # citing is a read
    assert Repository.open(built.path).resolve() == built.c5


def test_anonymous_read_on_and_off(built):
    leak_paths = [str(built.path)]
    on = create_app(str(built.path), Access(entries(), anonymous_read=True))
    with BackgroundServer(on) as base:
        with Leakless(base, leak_paths).client() as anon:
            assert anon.get("/v1").json()["id"] == built.repo.id
            assert anon.get(
                f"/v1/images/{WHITE}_00007/data"
            ).content == built.repo.snapshot().read_image(f"{WHITE}_00007")
            assert anon.get("/v1/store/improv.json").status_code == 200
            assert anon.post("/v1/datasets/x/spans", json={}).status_code == 401
            assert anon.put("/v1/store/objects/aa/" + "0" * 62, content=b"").status_code == 401
            assert anon.get("/v1", headers=bearer("unknown-token-0123456789")).status_code == 401
    off = create_app(str(built.path), Access((), anonymous_read=False))
    with BackgroundServer(off) as base:
        with Leakless(base, leak_paths).client() as anon:
            assert anon.get("/v1").status_code == 401
            assert anon.get("/v1", headers=bearer(READ)).status_code == 401


def test_tokens_file_and_env(tmp_path, monkeypatch):
    good = tmp_path / "tokens.json"
    digest = hashlib.sha256(HASHED.encode()).hexdigest()
    good.write_text(
        json.dumps(
            {
                "tokens": [
                    {"name": "a", "sha256": digest, "scopes": ["read"]},
                    {"name": "b", "token": WRITE, "scopes": ["write"]},
                ]
            }
        )
    )
    access = Access.load(good)
    assert access.configured
    assert access.check(f"Bearer {HASHED}", "read") == "a"
    assert access.check(f"Bearer {WRITE}", "write") == "b"
    with pytest.raises(ReadOnlyError):
        access.check(f"Bearer {HASHED}", "write")
    assert not Access.load(None).configured
    assert Access.load(None, anonymous_read=True).check(None, "read") == "anonymous"
    monkeypatch.setenv("IMPROV_SERVE_TOKENS", good.read_text())
    assert Access.load().check(f"Bearer {WRITE}", "read") == "b"
    bad_contents = [
        "not json",
        "[]",
        json.dumps({"tokens": [{"name": "a", "scopes": ["read"]}]}),  # no secret
        json.dumps({"tokens": [{"name": "a", "token": "short", "scopes": ["read"]}]}),
        json.dumps(
            {"tokens": [{"name": "a", "token": WRITE, "sha256": digest, "scopes": ["read"]}]}
        ),
        json.dumps({"tokens": [{"name": "a", "sha256": "ABC", "scopes": ["read"]}]}),
        json.dumps({"tokens": [{"name": "a", "token": WRITE, "scopes": ["admin"]}]}),
        json.dumps({"tokens": [{"name": "a", "token": WRITE, "scopes": []}]}),
        json.dumps({"tokens": [], "extra": 1}),
    ]
    for text in bad_contents:
        path = tmp_path / "bad.json"
        path.write_text(text)
        with pytest.raises(InvalidInputError, match="invalid"):
            Access.load(path)
        monkeypatch.setenv("IMPROV_SERVE_TOKENS", text)
        with pytest.raises(InvalidInputError, match="IMPROV_SERVE_TOKENS"):
            Access.load()
    with pytest.raises(InvalidInputError, match="cannot read"):
        Access.load(tmp_path / "missing.json")


BAD_SEARCHES = [
    {"where": "roi_width >>> 3"},
    {"where": "no_such_column > 3"},
    {"bbox": "1,2,3"},
    {"bbox": "5,0,1,1"},
    {"bbox": "a,b,c,d"},
    {"limit": "-1"},
    {"limit": "abc"},
    {"offset": "-5"},
    {"kind": "no such kind!"},
    {"start": "not-a-time"},
    {"start": "2020-01-02", "end": "2020-01-01"},
    {"depth": "5:1"},
    {"prov": "classification.score >"},
    {"as_of": "whenever"},
    {"count": "maybe"},
]


@pytest.mark.parametrize("params", BAD_SEARCHES, ids=[json.dumps(p) for p in BAD_SEARCHES])
def test_malformed_filters_are_400(reader, params):
    r = reader.get("/v1/images", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"]["type"] == "InvalidInputError" and body["error"]["message"]


@pytest.mark.parametrize("run", ["", "classification="])
def test_bad_run_is_a_one_line_400(reader, run):
    r = reader.get("/v1/images", params={"run": run})
    assert r.status_code == 400
    assert (
        "\n" not in r.json()["error"]["message"] and "pydantic" not in r.json()["error"]["message"]
    )


def test_errors_and_unknown_routes(reader, leak):
    r = reader.get("/v1/nothing/here")
    assert r.status_code == 404 and r.json() == {
        "error": {"type": "NotFoundError", "message": "no such endpoint"}
    }
    assert reader.get("/no/such/page").status_code == 404
    assert reader.delete("/v1/images").status_code == 405
    assert reader.get("/v1/images/nope").json()["error"]["type"] == "NotFoundError"
    assert reader.get("/v1/images", params={"at": "nosuchref"}).status_code == 404
    assert reader.get("/v1/images", params={"dataset": "nosuch"}).status_code == 404
    assert reader.get("/v1/images", params={"at": "x" * 301}).status_code == 400
    assert leak.bodies > 0


def test_no_path_in_5xx_or_integrity_errors(tmp_path):
    made = build(tmp_path)
    row = made.repo.snapshot().record(f"{WHITE}_00011")
    pack = made.path / "packs" / f"{row['pack']}.pack"
    data = bytearray(pack.read_bytes())
    data[row["offset"] + row["size"] // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    with BackgroundServer(create_app(str(made.path), Access(entries()))) as base:
        with Leakless(base, [str(made.path), str(tmp_path)]).client(READ) as c:
            r = c.get(f"/v1/images/{WHITE}_00011/data")
            assert r.status_code == 422 and r.json()["error"]["type"] == "IntegrityError"
            assert c.get(f"/v1/images/{WHITE}_00007/data").status_code == 200
            r = c.post(
                "/v1/citations/verify",
                json={"citation": made.repo.snapshot(made.c1).cite().identifier},
            )
            assert r.status_code == 422
    shutil.rmtree(made.path / "objects")  # commits gone: every snapshot read fails
    with BackgroundServer(create_app(str(made.path), Access(entries()))) as base:
        with Leakless(base, [str(made.path), str(tmp_path)]).client(READ) as c:
            for path in (
                "/v1/images",
                "/v1/commits",
                f"/v1/images/{WHITE}_00007",
                "/v1/datasets",
                f"/v1/commits/{made.c1}",
            ):
                r = c.get(path)
                assert 400 <= r.status_code < 600, path
                assert r.json()["error"]["type"] in (
                    "NotFoundError",
                    "IntegrityError",
                    "StorageError",
                    "InternalError",
                )
    empty = tmp_path / "empty"
    empty.mkdir()
    with BackgroundServer(create_app(str(empty), Access(entries()))) as base:
        with Leakless(base, [str(empty), str(tmp_path)]).client(READ) as c:
            r = c.get("/v1")
            assert (
                r.status_code == 404
                and "no repository is served here yet" in r.json()["error"]["message"]
            )
            assert c.get("/v1/store").json() == {"keys": [], "more": False}


def raw_get(base: str, path: str, token: str = READ) -> tuple[int, bytes]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path, headers=bearer(token))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


TRAVERSALS = [
    "/v1/store/../improv.json",
    "/v1/store/objects/../../x",
    "/v1/store/objects/../remotes.json",
    "/v1/store/%2e%2e/improv.json",
    "/v1/store/objects/%2e%2e/%2e%2e/etc/passwd",
    "/v1/store/objects%2F..%2F..%2Fimprov.json",
    "/v1/store/remotes.json",
    "/v1/store/refs/remotes/mirror/main",
    "/v1/store//etc/passwd",
    "/v1/store/%2Fetc%2Fpasswd",
    "/v1/store/refs/heads/../../remotes.json",
    "/v1/store/.lock",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_and_site_local_keys_are_refused(server, built, path):
    status, body = raw_get(server, path)
    assert 400 <= status < 500, (path, status, body[:200])
    text = body.decode("latin-1")
    assert str(built.path) not in text and "Traceback" not in text and "root:" not in text
    assert json.loads(body)["error"]["type"] in (
        "InvalidInputError",
        "NotFoundError",
        "ReadOnlyError",
    )


def test_store_reads_and_listing_hide_site_local_state(reader, built):
    repo = built.repo
    assert repo.store.exists("remotes.json") and repo.store.exists("refs/remotes/mirror/main")
    assert reader.get("/v1/store/improv.json").content == repo.store.get("improv.json")
    listed = reader.get("/v1/store").json()
    assert listed["more"] is False
    expected = sorted(
        k
        for k in repo.store.list("")
        if k == "improv.json" or k.startswith(("objects/", "packs/", "refs/heads/", "refs/tags/"))
    )
    assert sorted(listed["keys"]) == expected
    assert "remotes.json" not in listed["keys"] and not any(
        k.startswith("refs/remotes/") for k in listed["keys"]
    )
    assert reader.get("/v1/store", params={"prefix": "refs/"}).json()["keys"] == [
        "refs/heads/main",
        "refs/tags/v1",
    ]
    assert reader.get("/v1/store", params={"prefix": "refs/remotes/"}).status_code == 400
    assert reader.get("/v1/store", params={"prefix": "remotes"}).status_code == 400
    key = pack_key(repo.snapshot().record(f"{WHITE}_00007")["pack"])
    head = reader.head(f"/v1/store/{key}")
    assert int(head.headers["content-length"]) == repo.store.size(key)
    assert float(head.headers["x-improv-modified"]) == repo.store.modified(key)
    part = reader.get(f"/v1/store/{key}", headers={"Range": "bytes=3-9"})
    assert part.status_code == 206 and part.content == repo.store.get(key)[3:10]
    assert reader.get(f"/v1/store/{key}", headers={"Range": "bytes=999999999-"}).status_code == 416
    after = reader.get("/v1/store", params={"prefix": "refs/", "after": "refs/heads/main"}).json()
    assert after["keys"] == ["refs/tags/v1"]


def test_oversized_bodies_are_413(built):
    app = create_app(str(built.path), Access(entries()), max_body=200, max_upload=1000)
    with BackgroundServer(app) as base:
        with Leakless(base, [str(built.path)]).client(WRITE) as w:
            big = {"records": [{"image_id": f"{WHITE}_00007", "note": "x" * 500}], "source": "s"}
            r = w.post("/v1/provenance/classification", json=big)
            assert r.status_code == 413 and r.json()["error"]["type"] == "TooLargeError"
            assert w.post("/v1/citations", json={"title": "y" * 300}).status_code == 413
            assert w.put("/v1/store/objects/aa/" + "0" * 62, content=b"z" * 1001).status_code == 413
            assert (
                w.post(
                    "/v1/datasets/x/spans", content=b"1" * 201, headers={"Content-Length": "201"}
                ).status_code
                == 413
            )

            small = w.post("/v1/datasets/x/spans", json={"instrument": "I"})
            assert small.status_code == 400  # under the limit: read and refused for its content
    assert Repository.open(built.path).resolve() == built.c5


def _chunks(n: int):
    for _ in range(n):
        yield b"{" + b" " * 49


def test_chunked_oversized_bodies_are_413(built):
    app = create_app(str(built.path), Access(entries()), max_body=200, max_upload=1000)
    with BackgroundServer(app) as base:
        with Leakless(base, [str(built.path)]).client(WRITE) as w:
            r = w.post("/v1/datasets/x/spans", content=_chunks(10))
            assert "limit of 200 bytes" in r.json()["error"]["message"]
            oid = "0" * 64
            up = w.put(f"/v1/store/objects/{oid[:2]}/{oid[2:]}", content=_chunks(30))
            assert "limit of 1000 bytes" in up.json()["error"]["message"]
            assert (r.status_code, up.status_code) == (413, 413)


# == 5. store protocol safety ===========================================================


def foreign_pack(tmp_path: Path) -> tuple[str, bytes, bytes, str, bytes]:
    """A pack (and a loose commit) from another repository built from real bytes."""
    other = Repository.init(tmp_path / "other")
    data = [(DATA / "irfcb" / "png").iterdir()][0]
    files = sorted(p for p in data if p.is_file())[:3]
    rows = [
        {"image_id": f"x{n}", "timestamp": datetime(2020, 1, 1, n, tzinfo=UTC)}
        for n in range(len(files))
    ]
    with other.transaction(message="x") as tx:
        tx.append_bytes("CAM", rows, [p.read_bytes() for p in files])
    (pack,) = other.odb.get_commit(tx.commit_id).batches[0].packs
    return (
        pack,
        other.store.get(pack_key(pack)),
        other.store.get(index_key(pack)),
        tx.commit_id,
        other.store.get(object_key(tx.commit_id)),
    )


def test_store_protocol_checks_every_write(fresh, tmp_path):
    made, leak = fresh
    store = Repository.open(made.path).store
    with leak.client(WRITE) as w:
        # loose objects must hash to their key
        payload = b"some object bytes"
        oid = hashlib.sha256(payload).hexdigest()
        key = object_key(oid)
        wrong = w.put(f"/v1/store/{key}", content=b"other bytes")
        assert wrong.status_code == 422 and wrong.json()["error"]["type"] == "IntegrityError"
        assert not store.exists(key)
        assert w.put(f"/v1/store/{key}", content=payload).status_code == 201
        assert store.get(key) == payload
        assert w.put(f"/v1/store/{key}", content=payload).status_code == 200
        assert w.put(f"/v1/store/objects/{oid[:2]}/{oid[2:10]}", content=payload).status_code in (
            403,
            404,
        )

        # a pack index that does not match its pack
        pack, pack_bytes, idx_bytes, commit_id, commit_bytes = foreign_pack(tmp_path)
        early = w.put(f"/v1/store/{index_key(pack)}", content=idx_bytes)
        assert early.status_code == 409  # index before pack
        broken = bytearray(pack_bytes)
        broken[len(broken) // 2] ^= 0xFF
        assert w.put(f"/v1/store/{pack_key(pack)}", content=bytes(broken)).status_code == 201
        assert w.head(f"/v1/store/{pack_key(pack)}").status_code == 200
        bad = w.put(f"/v1/store/{index_key(pack)}", content=idx_bytes)
        assert bad.status_code == 422 and bad.json()["error"]["type"] == "IntegrityError"
        assert not store.exists(pack_key(pack)) and not store.exists(index_key(pack))
        assert (
            w.put(
                f"/v1/store/{index_key(pack)}", content=idx_bytes[:-1] + bytes([idx_bytes[-1] ^ 1])
            ).status_code
            == 422
        )
        assert w.put(f"/v1/store/{pack_key(pack)}", content=pack_bytes).status_code == 201
        assert w.put(f"/v1/store/{index_key(pack)}", content=idx_bytes).status_code == 201
        assert store.get(pack_key(pack)) == pack_bytes and store.get(index_key(pack)) == idx_bytes
        assert (
            w.put(f"/v1/store/{pack_key(pack)}", content=bytes(broken)).status_code == 200
        )  # published: ignored
        assert store.get(pack_key(pack)) == pack_bytes

        # improv.json is create-only
        config = store.get("improv.json")
        other_config = Repository.open(tmp_path / "other").store.get("improv.json")
        r = w.put("/v1/store/improv.json", content=other_config)
        assert r.status_code == 200 and r.content == b""  # put_if_absent: not written
        assert store.get("improv.json") == config
        assert w.put("/v1/store/improv.json", content=b"{garbage").status_code == 422
        assert store.get("improv.json") == config

        # refs only by compare-and-swap, to objects the repository has
        main = store.get("refs/heads/main").decode()
        missing = "ab" * 32
        r = w.post("/v1/store/refs/heads/x", json={"expected": None, "new": missing + "\n"})
        assert r.status_code == 409 and not store.exists("refs/heads/x")
        assert (
            w.post("/v1/store/refs/heads/x", json={"expected": None, "new": made.c1}).status_code
            == 400
        )  # no newline
        assert w.post("/v1/store/refs/heads/x", json={"expected": None}).status_code == 400
        assert (
            w.post(
                "/v1/store/refs/heads/x", json={"expected": None, "new": made.c1 + "\n"}
            ).status_code
            == 204
        )
        assert store.get("refs/heads/x") == (made.c1 + "\n").encode()
        stale = w.post(
            "/v1/store/refs/heads/x", json={"expected": made.c2 + "\n", "new": made.c3 + "\n"}
        )
        assert stale.status_code == 409 and store.get("refs/heads/x") == (made.c1 + "\n").encode()
        assert (
            w.post(
                "/v1/store/refs/heads/x", json={"expected": made.c1 + "\n", "new": made.c3 + "\n"}
            ).status_code
            == 204
        )
        assert store.get("refs/heads/x") == (made.c3 + "\n").encode()
        assert (
            w.post(
                "/v1/store/refs/heads/main", json={"expected": None, "new": made.c1 + "\n"}
            ).status_code
            == 409
        )
        assert store.get("refs/heads/main").decode() == main

        # tags are created, never moved
        tag = store.get("refs/tags/v1")
        moved = w.post(
            "/v1/store/refs/tags/v1", json={"expected": tag.decode(), "new": made.c5 + "\n"}
        )
        assert moved.status_code == 403 and store.get("refs/tags/v1") == tag
        assert (
            w.post(
                "/v1/store/refs/tags/v1", json={"expected": None, "new": made.c5 + "\n"}
            ).status_code
            == 409
        )
        assert (
            w.post(
                "/v1/store/refs/tags/v2", json={"expected": None, "new": made.c5 + "\n"}
            ).status_code
            == 204
        )
        assert store.get("refs/tags/v2") == (made.c5 + "\n").encode()

        # keys outside the writable set
        for key in (
            "remotes.json",
            "refs/remotes/mirror/main",
            "refs/heads/main",
            "refs/tags/v3",
            "blobs/aa/bb",
            "x",
        ):
            assert w.put(f"/v1/store/{key}", content=b"x").status_code == 403, key
            assert not store.exists(key) or store.get(key) != b"x", key
        for key in (
            "improv.json",
            "remotes.json",
            "refs/remotes/mirror/main",
            "objects/" + missing[:2] + "/" + missing[2:],
        ):
            assert (
                w.post(
                    f"/v1/store/{key}", json={"expected": None, "new": made.c1 + "\n"}
                ).status_code
                == 403
            ), key
        assert (
            w.post(
                "/v1/store/refs/heads/a..b", json={"expected": None, "new": made.c1 + "\n"}
            ).status_code
            == 400
        )
        assert store.get("remotes.json") == Repository.open(made.path).store.get("remotes.json")
    report = fsck(Repository.open(made.path), full=True)
    assert report.ok, report.problems


# == 6. sync over HTTP =================================================================


def sync_app(path: Path, budget: list[int] | None = None):
    """A write-enabled app for ``path``; with ``budget``, PUTs fail (503)
    once it is spent."""
    from fastapi.responses import JSONResponse

    app = create_app(str(path), Access(entries()))
    if budget is not None:

        @app.middleware("http")
        async def _fail(request, call_next):
            if request.method == "PUT":
                if budget[0] <= 0:
                    return JSONResponse(
                        {"error": {"type": "StorageError", "message": "injected"}}, status_code=503
                    )
                budget[0] -= 1
            return await call_next(request)

    return app


def data_keys(repo: Repository) -> set[str]:
    return set(repo.store.list("objects/")) | set(repo.store.list("packs/"))


def shared_state(repo: Repository) -> dict[str, bytes]:
    return {
        k: repo.store.get(k)
        for k in repo.store.list("")
        if k == "improv.json" or k.startswith(("objects/", "packs/", "refs/heads/", "refs/tags/"))
    }


def test_push_clone_pull_fetch_over_http(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPROV_TOKEN", WRITE)
    local = build(tmp_path / "a")
    target = tmp_path / "served"
    target.mkdir()
    with BackgroundServer(sync_app(target)) as base:
        first = push(local.repo, base, tags=True)
        assert first.action == "pushed" and first.commit == local.c5
        served = Repository.open(target)
        assert served.id == local.repo.id
        assert served.branches() == local.repo.branches() and served.tags() == local.repo.tags()
        assert data_keys(served) == data_keys(local.repo)
        moved = first.transfer
        assert (moved.commits, moved.packs) == (5, len(set(served.store.list("packs/"))) // 2)
        assert moved.objects == len(set(served.store.list("objects/")))
        assert moved.bytes == sum(served.store.size(k) for k in data_keys(served))
        assert not served.store.exists("remotes.json")
        assert push(local.repo, base).action == "up-to-date"

        # clone (full) and metadata-only clone over HTTP
        full, result = clone(base, tmp_path / "full")
        assert result.action == "cloned" and full.resolve() == local.c5 and full.id == local.repo.id
        assert full.snapshot().query().equals(local.repo.snapshot().query())
        assert full.tags() == local.repo.tags()
        assert full.remotes.all()["origin"].url == base
        light, result = clone(base, tmp_path / "light", metadata_only=True)
        assert result.transfer.packs == 0 and set(light.store.list("packs/")) == set()
        assert light.snapshot().read_image(f"{MODERN}_00002") == local.repo.snapshot().read_image(
            f"{MODERN}_00002"
        )
        assert (
            light.snapshot()
            .provenance_records("classification")
            .equals(local.repo.snapshot().provenance_records("classification"))
        )

        # only missing objects travel on an incremental push
        before = data_keys(served)
        new = classify(local.repo, "r3", 0.3)
        step = push(local.repo, base)
        arrived = data_keys(Repository.open(target)) - before
        assert (step.action, step.commit) == ("pushed", new)
        assert step.transfer.commits == 1 and step.transfer.packs == 0
        assert step.transfer.objects == len(arrived) and object_key(new) in arrived
        assert step.transfer.bytes == sum(served.store.size(k) for k in arrived)

        # pull of new commits, fetch
        pulled = pull(full)
        assert (pulled.action, pulled.commit) == ("fast-forward", new)
        assert pulled.transfer.commits == 1
        assert (
            full.snapshot()
            .provenance_records("classification")
            .equals(local.repo.snapshot().provenance_records("classification"))
        )
        assert fetch(full).transfer.commits == 0

        # divergent histories: merged by pull, a non-fast-forward push refused
        theirs = add_dataset_span(
            local.repo,
            "late",
            "IFCB134",
            datetime(2022, 5, 1, tzinfo=UTC),
            datetime(2022, 6, 1, tzinfo=UTC),
        )
        assert push(local.repo, base).commit == theirs
        mine = add_dataset_span(
            full,
            "early",
            "IFCB5",
            datetime(2012, 1, 1, tzinfo=UTC),
            datetime(2012, 2, 1, tzinfo=UTC),
        )
        with pytest.raises(ConflictError, match="not a fast-forward"):
            push(full)
        assert Repository.open(target).resolve() == theirs
        merged = pull(full)
        assert merged.action == "merge" and full.odb.get_commit(merged.commit).parents == (
            mine,
            theirs,
        )
        assert set(full.snapshot().datasets()) == {"bloom", "late", "early"}
        assert push(full).action == "pushed"
        assert Repository.open(target).resolve() == merged.commit
        assert pull(local.repo, base).action == "fast-forward"
        assert local.repo.resolve() == merged.commit
        for repo in (Repository.open(target), full, local.repo):
            report = fsck(repo, full=True)
            assert not report.problems, report.problems


def test_cli_sync_over_http(runner_fixture, tmp_path, monkeypatch):
    runner = runner_fixture
    monkeypatch.setenv("IMPROV_TOKEN", WRITE)
    local = build(tmp_path / "a")
    target = tmp_path / "served"
    target.mkdir()
    with BackgroundServer(sync_app(target)) as base:
        pushed = json.loads(
            ok(invoke(runner, "--repo", local.path, "push", base, "--tags", "--json")).stdout
        )
        assert (pushed["action"], pushed["commit"], pushed["commits"]) == ("pushed", local.c5, 5)
        assert Repository.open(target).id == local.repo.id
        cloned = json.loads(ok(invoke(runner, "clone", base, tmp_path / "c", "--json")).stdout)
        assert (cloned["action"], cloned["commit"], cloned["commits"]) == ("cloned", local.c5, 5)
        light = json.loads(
            ok(invoke(runner, "clone", base, tmp_path / "l", "--metadata-only", "--json")).stdout
        )
        assert light["packs"] == 0
        image = f"{WHITE}_00021"
        assert Repository.open(tmp_path / "l").snapshot().read_image(
            image
        ) == local.repo.snapshot().read_image(image)

        new = add_dataset_span(
            local.repo,
            "d",
            "IFCB013",
            datetime(2013, 1, 1, tzinfo=UTC),
            datetime(2013, 2, 1, tzinfo=UTC),
        )
        ok(invoke(runner, "--repo", local.path, "push", base, "-q"))
        fetched = json.loads(
            ok(invoke(runner, "--repo", tmp_path / "c", "fetch", "--json", "-q")).stdout
        )
        assert fetched["commits"] == 1 and fetched["refs"] == {"refs/remotes/origin/main": new}
        pulled = json.loads(
            ok(invoke(runner, "--repo", tmp_path / "c", "pull", "--json", "-q")).stdout
        )
        assert (pulled["action"], pulled["commit"]) == ("fast-forward", new)

        mine = add_dataset_span(
            Repository.open(tmp_path / "c"),
            "e",
            "IFCB5",
            datetime(2012, 1, 1, tzinfo=UTC),
            datetime(2012, 2, 1, tzinfo=UTC),
        )
        add_dataset_span(
            local.repo,
            "f",
            "IFCB5",
            datetime(2012, 1, 1, tzinfo=UTC),
            datetime(2012, 2, 1, tzinfo=UTC),
        )
        ok(invoke(runner, "--repo", local.path, "push", base, "-q"))
        theirs = local.repo.resolve()
        assert_error(
            invoke(runner, "--repo", tmp_path / "c", "push", "-q"), 4, "not a fast-forward"
        )
        assert Repository.open(target).resolve() == theirs
        forced = json.loads(
            ok(invoke(runner, "--repo", tmp_path / "c", "push", "--force", "--json")).stdout
        )
        assert (forced["action"], forced["commit"]) == ("forced", mine)
        assert Repository.open(target).resolve() == mine
        ok(invoke(runner, "--repo", target, "fsck", "--full"))
        ok(invoke(runner, "--repo", tmp_path / "c", "fsck", "--full"))

        monkeypatch.setenv("IMPROV_TOKEN", READ)
        assert_error(
            invoke(runner, "--repo", local.path, "push", base, "--force", "-q"), 6, "may not write"
        )
        monkeypatch.delenv("IMPROV_TOKEN")
        assert_error(invoke(runner, "clone", base, tmp_path / "denied", "-q"), 6, "bearer token")


@pytest.fixture
def runner_fixture():
    from typer.testing import CliRunner

    return CliRunner()


def test_interrupted_push_resumes_identically(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPROV_TOKEN", WRITE)
    local = build(tmp_path / "a")
    reference = tmp_path / "reference"
    reference.mkdir()
    with BackgroundServer(sync_app(reference)) as base:
        push(local.repo, base, tags=True)
    expected = shared_state(Repository.open(reference))
    puts = len([k for k in expected if k.startswith(("objects/", "packs/"))]) + 1  # + improv.json
    for allowed in sorted({1, 2, puts // 3, puts // 2, puts - 2}):
        target = tmp_path / f"t{allowed}"
        target.mkdir()
        budget = [allowed]
        with BackgroundServer(sync_app(target, budget)) as base:
            with pytest.raises(StorageError):
                push(local.repo, base, tags=True)
            partial = Repository.open(target)
            assert partial.branches() == {} and partial.tags() == {}, allowed
            budget[0] = 10**9
            resumed = push(local.repo, base, tags=True)
            assert resumed.action == "pushed"
        done = Repository.open(target)
        assert shared_state(done) == expected, allowed
        assert not fsck(done, full=True).problems
    # a server restart in the middle: a new server over the same directory resumes
    target = tmp_path / "restart"
    target.mkdir()
    with BackgroundServer(sync_app(target, [puts // 2])) as base:
        with pytest.raises(StorageError):
            push(local.repo, base, tags=True)
    with pytest.raises(StorageError):  # the server is gone
        push(local.repo, base, tags=True)
    with BackgroundServer(sync_app(target)) as base2:
        assert push(local.repo, base2, tags=True).action == "pushed"
    assert shared_state(Repository.open(target)) == expected


# == 7. the CLI command ================================================================


def test_improv_serve_cli(runner_fixture, tmp_path):
    runner = runner_fixture
    result = ok(invoke(runner, "serve", "--help"))
    assert "--tokens" in result.stdout and "--anonymous-read" in result.stdout
    repo = Repository.init(tmp_path / "repo")
    assert_error(invoke(runner, "serve", repo.url), 2, "no tokens configured")
    bad = tmp_path / "tokens.json"
    bad.write_text("{nope")
    assert_error(invoke(runner, "serve", repo.url, "--tokens", bad), 2, "invalid")
    assert_error(
        invoke(runner, "serve", repo.url, "--tokens", tmp_path / "missing.json"), 2, "cannot read"
    )


def test_registry_and_samples_endpoints(reader, built):
    repo = built.repo
    doc = reader.get("/v1/registry").json()
    assert doc == repo.snapshot().registry().model_dump(
        mode="json", include={"instruments", "taxonomies", "strict_instruments"}
    )
    rows = reader.get("/v1/samples").json()["rows"]
    assert (
        [r["sample_id"] for r in rows]
        == repo.snapshot().samples().column("sample_id").to_pylist()
        == sorted([WHITE, MODERN, OLD])
    )
    assert [
        r["sample_id"] for r in reader.get("/v1/samples", params={"at": built.c1}).json()["rows"]
    ] == [WHITE]
    arrow = pa.ipc.open_stream(
        reader.get("/v1/samples", headers={"Accept": ARROW}).content
    ).read_all()
    assert arrow.equals(repo.snapshot().samples())
    assert reader.get("/v1/samples", params={"history": "true"}).json()["rows"] == json.loads(
        json.dumps(
            repo.snapshot().samples(history=True).to_pylist(), default=lambda v: v.isoformat()
        )
    )
