"""A newcomer's first hour on the network: every failure is one line with its
exit code (unreachable endpoints, missing S3 credentials, a missing bucket,
a refused token), the network may blink (repeatable requests are retried, a
ref's compare-and-swap is resolved by reading the ref, never blindly
repeated), and the HTTP service speaks HTTP.

Dropped connections come from :class:`DroppingProxy`, a proxy on 127.0.0.1
that drops chosen requests by count (before the server sees them, or after
it answered so that the answer is lost). Only loopback addresses are used.
"""

from __future__ import annotations

import collections
import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import assert_error, invoke, ok
from typer.testing import CliRunner

from improv_vcs import Repository
from improv_vcs.core.errors import ConflictError, ImprovError, NotFoundError, StorageError
from improv_vcs.core.http import AuthError
from improv_vcs.maintenance.fsck import fsck
from improv_vcs.service.app import create_app
from improv_vcs.service.auth import Access, TokenEntry
from improv_vcs.service.client import Client
from improv_vcs.service.server import BackgroundServer
from improv_vcs.storage import S3Store
from improv_vcs.storage.http_store import HttpStore
from improv_vcs.storage.s3_store import S3CredentialsError
from improv_vcs.sync.sites import push

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
WRITE = "network-write-token-0123456789"
READ = "network-read-token-0123456789"
ACCESS = Access(
    (
        TokenEntry(name="writer", token=WRITE, scopes=("write",)),
        TokenEntry(name="reader", token=READ, scopes=("read",)),
    )
)
FAST = {
    "retries": {"mode": "standard", "total_max_attempts": 3}
}  # botocore config for bounded S3 tests


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("IMPROV_REPO", raising=False)
    monkeypatch.delenv("IMPROV_HTTP_RETRIES", raising=False)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask a metadata service
    monkeypatch.setenv("IMPROV_TOKEN", WRITE)
    monkeypatch.setenv("IMPROV_AUTHOR", "tester")


@pytest.fixture
def runner():
    return CliRunner()


# -- a proxy that drops requests, by count --------------------------------------------


class DroppingProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of ``upstream``: one request
    per connection, forwarded with ``Connection: close``. :meth:`drop`
    schedules the next matching requests to be dropped ``before`` they are
    forwarded, ``after`` the upstream answered (the answer is lost), or
    answered with a ``503`` without forwarding. Every request is recorded
    in :attr:`seen` as ``(method, path, outcome)``."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        assert parts.hostname == "127.0.0.1"
        self.rules: list[dict] = []
        self.seen: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closing = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._closing = True
        self._thread.join(timeout=10)
        self._listener.close()

    def drop(
        self,
        times: int,
        when: str = "before",
        method: str | None = None,
        path: str = "",
        then: Callable[[], None] | None = None,
    ) -> None:
        assert when in ("before", "after", "503")
        with self._lock:
            self.rules.append(
                {"times": times, "when": when, "method": method, "path": path, "then": then}
            )

    def done(self) -> bool:
        """Whether every scheduled drop happened."""
        return all(rule["times"] == 0 for rule in self.rules)

    def count(self, method: str | None = None, outcome: str | None = None, path: str = "") -> int:
        return sum(
            1
            for m, p, o in self.seen
            if (method is None or m == method) and (outcome is None or o == outcome) and path in p
        )

    def _decide(self, method: str, path: str) -> tuple[str, Callable[[], None] | None]:
        with self._lock:
            for rule in self.rules:
                if rule["times"] > 0 and rule["method"] in (None, method) and rule["path"] in path:
                    rule["times"] -= 1
                    self.seen.append((method, path, rule["when"]))
                    return rule["when"], rule["then"]
            self.seen.append((method, path, "forwarded"))
            return "forwarded", None

    def _serve(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = [
                tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if line
            ]
            named = {k.lower(): v for k, v in headers}
            if named.get("expect", "").lower() == "100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if "chunked" in named.get("transfer-encoding", "").lower():
                while not body.endswith(b"0\r\n\r\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    body += chunk
            else:
                while len(body) < int(named.get("content-length", 0)):
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    body += chunk
            outcome, then = self._decide(method, urlsplit(target).path)
            if outcome == "before":
                return  # the connection closes: the server never saw the request
            if outcome == "503":
                conn.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: "
                    b"close\r\n\r\n"
                )
                return
            skip = ("connection", "keep-alive", "proxy-connection", "expect")
            kept = [f"{k}: {v}" for k, v in headers if k.lower() not in skip]
            request = (
                "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
            )
            with socket.create_connection(self.upstream, timeout=30) as up:
                up.sendall(request)
                response = b""
                while chunk := up.recv(65536):
                    response += chunk
            if then is not None:
                then()
            if outcome == "after":
                return  # the server acted, but its answer is lost
            rhead, _, rbody = response.partition(b"\r\n\r\n")
            rlines = [
                line for line in rhead.split(b"\r\n") if not line.lower().startswith(b"connection:")
            ]
            conn.sendall(b"\r\n".join([*rlines, b"Connection: close"]) + b"\r\n\r\n" + rbody)


def dead_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- repositories ---------------------------------------------------------------------


def commit(repo: Repository, ids: list[str], day: int = 0) -> str:
    rows = [
        {"image_id": i, "timestamp": T0 + timedelta(days=day, seconds=n)} for n, i in enumerate(ids)
    ]
    with repo.transaction(message=f"add {len(ids)}") as tx:
        tx.append_bytes("IFCB1", rows, [f"pixels of {i}|".encode() * 50 for i in ids])
    assert tx.commit_id is not None
    return tx.commit_id


def image_ids(day: int, n: int = 3) -> list[str]:
    return [f"D2024050{day + 1}T000000_IFCB1_{k:05d}" for k in range(1, n + 1)]


@pytest.fixture
def served(tmp_path):
    """A repository with two commits, served on 127.0.0.1: (path, url)."""
    path = tmp_path / "served"
    repo = Repository.init(path)
    commit(repo, image_ids(0))
    commit(repo, image_ids(1), day=1)
    with BackgroundServer(create_app(str(path), ACCESS)) as url:
        yield path, url


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real ``improv`` in a child process (its stderr as a user sees it)."""
    return subprocess.run(
        [sys.executable, "-m", "improv_vcs.cli", *args],
        check=False,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_error_line(stderr: str, *fragments: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# == 1. failures are one line with their exit code =====================================


def test_unreachable_s3_endpoint_is_one_line_exit_7(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    endpoint = f"http://127.0.0.1:{dead_port()}"
    line = assert_error(
        invoke(runner, "init", "s3://bucket/repo", "--endpoint-url", endpoint), 7, "cannot reach"
    )
    assert endpoint in line


def test_unreachable_http_server_is_one_line_exit_7(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("IMPROV_HTTP_RETRIES", "1")
    url = f"http://127.0.0.1:{dead_port()}"
    assert_error(invoke(runner, "clone", url, tmp_path / "copy"), 7, "cannot reach", url)
    assert not (tmp_path / "copy").exists()


def test_a_bad_endpoint_url_is_bad_input(runner):
    assert_error(
        invoke(runner, "init", "s3://bucket/repo", "--endpoint-url", "127.0.0.1:9000"), 2, "http://"
    )


def without_s3_credentials(monkeypatch, tmp_path) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("BOTO_CONFIG", str(tmp_path / "no-boto-config"))


def test_missing_s3_credentials_are_one_line_exit_6(
    runner, s3_endpoint, s3_url, tmp_path, monkeypatch
):
    without_s3_credentials(monkeypatch, tmp_path)
    assert_error(
        invoke(runner, "init", s3_url, "--endpoint-url", s3_endpoint),
        6,
        "no S3 credentials",
        "AWS_ACCESS_KEY_ID",
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    assert_error(invoke(runner, "--repo", s3_url, "log"), 6, "AWS_ACCESS_KEY_ID")
    store = S3Store(s3_url, endpoint_url=s3_endpoint)
    for call in (
        lambda: store.get("improv.json"),
        lambda: store.exists("improv.json"),
        lambda: list(store.list("")),
        lambda: store.put_if_absent("objects/aa/bb", b"x"),
        lambda: store.compare_and_swap("refs/heads/x", None, b"y"),
    ):
        with pytest.raises(S3CredentialsError) as caught:
            call()
        assert caught.value.exit_code == 6


def test_a_server_without_s3_credentials_answers_503_not_401(
    s3_endpoint, s3_url, tmp_path, monkeypatch
):
    """The server's own storage failing is not the client's token's fault."""
    Repository.init(s3_url, endpoint_url=s3_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    without_s3_credentials(monkeypatch, tmp_path)
    with BackgroundServer(create_app(s3_url, ACCESS)) as url:
        r = httpx.get(f"{url}/v1/refs", headers={"Authorization": f"Bearer {READ}"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "StorageError", r.text
    assert "AWS" not in r.text  # the server's configuration stays in its log


def test_missing_bucket_says_how_to_create_it(runner, s3_endpoint, tmp_path, monkeypatch):
    bucket = f"missing-{uuid.uuid4().hex[:10]}"
    url = f"s3://{bucket}/survey"
    line = assert_error(
        invoke(runner, "init", url, "--endpoint-url", s3_endpoint),
        3,
        f"bucket {bucket!r} does not exist",
    )
    assert f"improv init --create-bucket {url}" in line
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    assert_error(invoke(runner, "--repo", url, "log"), 3, "does not exist", "--create-bucket")
    with pytest.raises(NotFoundError, match="does not exist"):
        Repository.open(url, endpoint_url=s3_endpoint)

    made = ok(invoke(runner, "init", url, "--create-bucket", "--endpoint-url", s3_endpoint))
    assert f"Created bucket {bucket}" in made.stdout
    assert ok(invoke(runner, "--repo", url, "log")).stdout.strip() == "No commits yet."
    again = json.loads(
        ok(invoke(runner, "init", f"s3://{bucket}/other", "--create-bucket", "--json")).stdout
    )
    assert again["bucket_created"] is False  # it exists: nothing to create
    assert_error(invoke(runner, "init", tmp_path / "local", "--create-bucket"), 2, "s3://")


def test_refused_token_is_one_line_exit_6(runner, served, tmp_path, monkeypatch):
    _, url = served
    monkeypatch.setenv("IMPROV_TOKEN", "not-a-token-of-this-server")
    assert_error(invoke(runner, "clone", url, tmp_path / "a"), 6, "unknown token", "IMPROV_TOKEN")
    monkeypatch.delenv("IMPROV_TOKEN")
    assert_error(invoke(runner, "clone", url, tmp_path / "b"), 6, "bearer token", "IMPROV_TOKEN")
    with pytest.raises(AuthError) as caught:
        HttpStore(url, token="not-a-token-of-this-server").get("improv.json")
    assert caught.value.status == 401 and caught.value.exit_code == 6


class NotImprov(http.server.BaseHTTPRequestHandler):
    """Some other web server: HTML for everything."""

    def do_GET(self) -> None:
        body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def test_python_api_raises_only_improv_errors(s3_endpoint, s3_url, monkeypatch):
    """Unreachable S3 and HTTP endpoints and a server that is not improv's:
    ImprovError subclasses, never botocore, aiohttp or httpx exceptions."""
    monkeypatch.setenv("IMPROV_HTTP_RETRIES", "0")
    dead = f"http://127.0.0.1:{dead_port()}"
    s3 = S3Store(s3_url, endpoint_url=dead, config_kwargs={"retries": {"total_max_attempts": 1}})
    calls = {
        "get": lambda st: st.get("improv.json"),
        "get_range": lambda st: st.get_range("improv.json", 0, 2),
        "exists": lambda st: st.exists("improv.json"),
        "size": lambda st: st.size("improv.json"),
        "modified": lambda st: st.modified("improv.json"),
        "list": lambda st: list(st.list("refs/")),
        "put_if_absent": lambda st: st.put_if_absent("objects/aa/bb", b"x"),
        "freshen": lambda st: st.freshen("objects/aa/bb"),
        "compare_and_swap": lambda st: st.compare_and_swap("refs/heads/main", b"a\n", b"b\n"),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotImprov)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    other = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for store in (s3, HttpStore(dead), HttpStore(other)):
            for name, call in calls.items():
                if isinstance(store, HttpStore) and name == "freshen":
                    continue
                try:
                    call(store)
                except ImprovError as exc:
                    assert "\n" not in str(exc), (store, name, exc)
                except Exception as exc:  # noqa: BLE001
                    pytest.fail(
                        f"{store!r}.{name} raised {type(exc).__module__}.{type(exc).__name__}: "
                        f"{exc}"
                    )
        for client in (Client(dead), Client(other)):
            for call in (client.info, client.refs, lambda c=client: c.query()):
                with pytest.raises(StorageError):
                    call()
            with pytest.raises(ImprovError):  # unreachable, or bytes that do not match their hash
                client.read_image("x")
    finally:
        server.shutdown()


# == 2. the network may blink =========================================================


def test_s3_reads_and_writes_survive_dropped_connections(s3_endpoint, s3_url, caplog):
    with DroppingProxy(s3_endpoint) as proxy:
        store = S3Store(s3_url, endpoint_url=proxy.url)
        proxy.drop(2, "before")
        assert store.put_if_absent("objects/aa/bb", b"content")
        proxy.drop(1, "after", method="PUT")  # written, but the answer is lost
        assert store.put_or_freshen("objects/aa/cc", b"more") in (True, False)
        proxy.drop(2, "before", method="GET")
        assert store.get("objects/aa/bb") == b"content"
        assert store.get("objects/aa/cc") == b"more"
        proxy.drop(1, "503", method="HEAD")
        assert store.exists("objects/aa/bb")
        assert proxy.done()
    # botocore's retries are announced (aiohttp's own single resend on a dropped connection is not)
    notes = [r.getMessage() for r in caplog.records if r.name == "improv_vcs.network"]
    assert notes and all(n.startswith("note: retrying S3 ") for n in notes), notes


def test_s3_retries_are_bounded(s3_endpoint, s3_url):
    with DroppingProxy(s3_endpoint) as proxy:
        store = S3Store(s3_url, endpoint_url=proxy.url, config_kwargs=FAST)
        proxy.drop(100, "before")
        with pytest.raises(StorageError):
            store.exists("improv.json")
        # three attempts (total_max_attempts), each of which aiohttp may resend once
        assert 3 <= len(proxy.seen) <= 6, proxy.seen


def test_s3_compare_and_swap_whose_answer_is_lost_reads_the_ref(s3_endpoint, s3_url):
    """botocore repeats the conditional PUT; the repeat is refused (the first
    one landed), and the ref is read to tell that from a real conflict."""
    with DroppingProxy(s3_endpoint) as proxy:
        store = S3Store(s3_url, endpoint_url=proxy.url)
        key = "refs/heads/main"
        proxy.drop(1, "after", method="PUT")
        store.compare_and_swap(
            key, None, b"a\n"
        )  # created; the answer to the first attempt was lost
        proxy.drop(1, "after", method="PUT")
        store.compare_and_swap(key, b"a\n", b"b\n")
        assert store.get(key) == b"b\n"
        assert (
            proxy.count("PUT") == 4 and proxy.done()
        )  # each swap: the lost attempt, then the refused repeat

        # a real conflict after a retry is still a conflict
        direct = S3Store(s3_url, endpoint_url=s3_endpoint)
        proxy.drop(
            1, "after", method="PUT", then=lambda: direct.compare_and_swap(key, b"c\n", b"d\n")
        )
        with pytest.raises(ConflictError):
            store.compare_and_swap(key, b"b\n", b"c\n")  # landed, then another writer moved it on
        assert store.get(key) == b"d\n"
        with pytest.raises(ConflictError):
            store.compare_and_swap(key, b"b\n", b"x\n")  # no retry at all: an ordinary conflict


def test_s3_compare_and_swap_when_every_answer_is_lost(s3_endpoint, s3_url):
    with DroppingProxy(s3_endpoint) as proxy:
        store = S3Store(s3_url, endpoint_url=proxy.url, config_kwargs=FAST)
        key = "refs/heads/main"
        store.compare_and_swap(key, None, b"a\n")
        proxy.drop(3, "after", method="PUT")  # the first lands; no answer ever comes back
        store.compare_and_swap(key, b"a\n", b"b\n")  # retries give up, but the ref shows it moved
        assert store.get(key) == b"b\n"
        assert proxy.done()
        proxy.drop(100, "before", method="PUT")  # nothing reaches S3
        with pytest.raises(StorageError):
            store.compare_and_swap(key, b"b\n", b"c\n")
        assert store.get(key) == b"b\n"


def test_http_store_retries_repeatable_requests_only(served, monkeypatch):
    path, url = served
    monkeypatch.setenv("IMPROV_HTTP_RETRIES", "2")
    with DroppingProxy(url) as proxy:
        store = HttpStore(proxy.url)
        proxy.drop(2, "before", method="GET")
        assert store.get("improv.json") == (path / "improv.json").read_bytes()
        proxy.drop(1, "503", method="HEAD")
        proxy.drop(1, "after", method="HEAD")
        assert store.exists("improv.json")
        proxy.drop(100, "before", method="GET")
        with pytest.raises(StorageError, match="cannot reach"):
            store.get("improv.json")
        assert proxy.count("GET", "before") == 2 + 3  # bounded: three attempts, then the error
        proxy.rules.clear()

        # a write that is not repeatable is sent once
        proxy.drop(1, "before", method="POST")
        with Client(proxy.url) as client, pytest.raises(StorageError):
            client.add_dataset_span("bloom", "IFCB1", T0, T0 + timedelta(days=1))
        assert proxy.count("POST") == 1


def test_http_compare_and_swap_is_resolved_by_reading_the_ref(served):
    path, url = served
    repo = Repository.open(path)
    tip = repo.branches()["main"]
    parent = repo.odb.get_commit(tip).parents[0]
    key = "refs/heads/main"
    with DroppingProxy(url) as proxy:
        store = HttpStore(proxy.url)
        proxy.drop(1, "after", method="POST")  # moved; the answer is lost
        store.compare_and_swap(key, f"{tip}\n".encode(), f"{parent}\n".encode())
        assert repo.branches()["main"] == parent
        assert proxy.count("POST") == 1  # not sent again: the ref said it had moved

        proxy.drop(1, "before", method="POST")  # never arrived
        store.compare_and_swap(key, f"{parent}\n".encode(), f"{tip}\n".encode())
        assert repo.branches()["main"] == tip
        assert proxy.count("POST") == 3  # sent again once the ref showed it had not moved

        # lost answer, and another writer moved the ref on meanwhile: a conflict
        third = commit(repo, image_ids(2), day=2)
        proxy.drop(
            1, "after", method="POST", then=lambda: repo.refs.set_branch("main", parent, tip)
        )
        with pytest.raises(ConflictError):
            store.compare_and_swap(key, f"{third}\n".encode(), f"{parent}\n".encode())
        assert repo.branches()["main"] == tip and proxy.done()
        assert proxy.count("POST") == 4


def test_push_over_http_survives_dropped_connections(tmp_path):
    local = Repository.init(tmp_path / "local")
    first = commit(local, image_ids(0))
    remote_path = tmp_path / "remote"
    with BackgroundServer(create_app(str(remote_path), ACCESS)) as url, DroppingProxy(url) as proxy:
        proxy.drop(2, "before")  # the first two requests, whatever they are
        proxy.drop(1, "after", method="PUT")  # an object lands, its answer is lost
        proxy.drop(1, "after", method="POST")  # the branch moves, the answer is lost
        result = push(local, proxy.url)
        assert result.refs == {"refs/heads/main": first} and proxy.done()

        second = commit(local, image_ids(1), day=1)
        proxy.drop(1, "before", method="PUT")
        proxy.drop(1, "before", method="POST")  # the branch move never arrives: sent again
        result = push(local, proxy.url)
        assert result.refs == {"refs/heads/main": second} and proxy.done()
    remote = Repository.open(remote_path)
    assert remote.branches() == {"main": second}
    assert fsck(remote, full=True).ok
    assert sorted(remote.snapshot().images().column("image_id").to_pylist()) == sorted(
        image_ids(0) + image_ids(1)
    )


def test_cli_clone_over_http_survives_dropped_connections_and_says_so(served, tmp_path):
    path, url = served
    with DroppingProxy(url) as proxy:
        proxy.drop(2, "before")
        proxy.drop(2, "after", method="GET", path="/v1/store/")
        done = cli("clone", proxy.url, str(tmp_path / "copy"), "--json")
        assert done.returncode == 0, done.stderr
        assert proxy.done()
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: retrying")]
    assert len(notes) == 4, done.stderr
    assert all(proxy.url in n for n in notes)
    source = Repository.open(path)
    copy = Repository.open(tmp_path / "copy")
    assert json.loads(done.stdout)["refs"]["refs/heads/main"] == source.branches()["main"]
    assert copy.branches() == source.branches()
    assert fsck(copy, full=True).ok


# == 3. the HTTP service speaks HTTP ===================================================


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"start": "2020-01-02", "end": "2020-01-01"}, "start"),
        ({"bbox": "1,2,3"}, "bbox"),
        ({"depth": "5:1"}, "depth"),
        ({"where": "nonsense"}, "where"),
        ({"as_of": "whenever"}, "as_of"),
    ],
)
def test_service_errors_name_http_parameters_not_cli_options(served, params, named):
    _, url = served
    r = httpx.get(f"{url}/v1/images", params=params, headers={"Authorization": f"Bearer {READ}"})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "--" not in message and named in message, message


def test_citation_errors_name_body_fields(served):
    _, url = served
    r = httpx.post(
        f"{url}/v1/citations",
        json={"at": "main", "tag": "v1"},
        headers={"Authorization": f"Bearer {READ}"},
    )
    assert r.status_code == 400 and "--" not in r.json()["error"]["message"], r.text


def test_missing_or_unknown_token_is_401_auth_error(served):
    _, url = served
    for headers in (
        {},
        {"Authorization": "Bearer unknown-token-0123456789"},
        {"Authorization": "Basic abc"},
    ):
        r = httpx.get(f"{url}/v1", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["type"] == "AuthError", r.json()
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.put(
        f"{url}/v1/store/objects/aa/{'0' * 62}",
        content=b"x",
        headers={"Authorization": f"Bearer {READ}"},
    )
    assert r.status_code == 403 and r.json()["error"]["type"] == "AuthError"
    with (
        pytest.raises(AuthError) as caught,
        Client(url, token="unknown-token-0123456789") as client,
    ):
        client.info()
    assert caught.value.status == 401


def test_openapi_operation_ids_are_unique(tmp_path, recwarn):
    spec = create_app(str(tmp_path / "repo"), ACCESS).openapi()
    ids = collections.Counter(
        op["operationId"] for ops in spec["paths"].values() for op in ops.values()
    )
    assert ids and max(ids.values()) == 1, [k for k, n in ids.items() if n > 1]
    assert not [w for w in recwarn if "Duplicate Operation ID" in str(w.message)]
    store_ops = spec["paths"]["/v1/store/{key}"]
    assert {"get", "head", "put", "post"} <= set(store_ops)


def test_retry_notes_go_to_the_network_logger(served, monkeypatch, caplog):
    _, url = served
    with DroppingProxy(url) as proxy, caplog.at_level(logging.WARNING, logger="improv_vcs.network"):
        proxy.drop(1, "before")
        assert HttpStore(proxy.url).exists("improv.json")
    (note,) = [r.getMessage() for r in caplog.records if r.name == "improv_vcs.network"]
    assert note.startswith("note: retrying HEAD ") and "(attempt 2 of 5)" in note
