"""The web pages of ``improv serve`` over real HTTP.

A real uvicorn server (BackgroundServer, 127.0.0.1) serves the demo
repository; httpx plays the browser. Every figure a page shows is compared
with the Python API at the commit the page's URL names: redirects from refs,
sign-in by cookie, time travel, mosaics and class tables, an image's
provenance and the commits that added it, image bytes, downloads, citations,
curation (append-only, same-site only), and that nothing is loaded from
another site."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from improv_vcs import Repository
from improv_vcs.cite.citation import find_identifier
from improv_vcs.cite.citing import verify
from improv_vcs.cli.demo import build_demo
from improv_vcs.service.app import create_app
from improv_vcs.service.auth import Access, TokenEntry
from improv_vcs.service.server import BackgroundServer

READ = "r" * 20
WRITE = "w" * 20
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)
RUNS = ("demo-cnn-v1", "demo-cnn-v2")
HTML = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}


def access() -> Access:
    return Access(
        (
            TokenEntry(name="reader", token=READ, scopes=("read",)),
            TokenEntry(name="curator", token=WRITE, scopes=("write",)),
        )
    )


# -- reading pages ---------------------------------------------------------------------------------
URL_ATTRIBUTES = ("src", "href", "action", "formaction", "xlink:href", "srcset", "poster", "data")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None]):
        self.tag, self.attrs, self.children = tag, attrs, []  # type: ignore[var-annotated]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):  # type: ignore[no-untyped-def]
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.walk()

    def all(self, tag: str) -> list[Node]:
        return [n for n in self.walk() if n.tag == tag]

    def rows(self) -> list[list[str]]:
        """The cells' text of each body row of a table."""
        body = self.all("tbody")[0]
        return [
            [cell.text().strip() for cell in tr.children if isinstance(cell, Node)]
            for tr in body.all("tr")
        ]


class Page(HTMLParser):
    """A page as a small tree: elements by id, tables, forms and links."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        self.stack[-1].children.append(data)

    def by_id(self, id: str) -> Node:
        found = [n for n in self.root.walk() if n.attrs.get("id") == id]
        assert len(found) == 1, (id, len(found))
        return found[0]

    def who(self) -> str:
        """Who the page says is signed in, as its words."""
        found = [n for n in self.root.walk() if n.attrs.get("class") == "who"]
        assert len(found) == 1
        return " ".join(found[0].text().split())

    def has(self, id: str) -> bool:
        return any(n.attrs.get("id") == id for n in self.root.walk())

    def text(self, id: str) -> str:
        return self.by_id(id).text().strip()

    def urls(self, keys: tuple[str, ...] = URL_ATTRIBUTES) -> list[str]:
        """Every URL the page loads, links to or posts to."""
        return [
            value
            for node in self.root.walk()
            for key, value in node.attrs.items()
            if key in keys and value is not None
        ]

    def form(self, id: str) -> tuple[str, list[tuple[str, str]]]:
        """A form's action and the fields it would send as is (hidden inputs)."""
        form = self.by_id(id)
        fields = [
            (n.attrs["name"], n.attrs.get("value") or "")
            for n in form.all("input")
            if n.attrs.get("type") == "hidden"
        ]
        return form.attrs["action"] or "", fields


def page(response: httpx.Response, status: int = 200) -> Page:
    assert response.status_code == status, (response.request.url, response.text[:400])
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return Page(response.text)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def same_site(url: str, origin: str) -> bool:
    """Whether a page's URL stays on this server."""
    if url.startswith(origin + "/") or url == origin:
        return True
    parts = urlsplit(url)
    return not (parts.scheme or parts.netloc or url.startswith("//") or "\\" in url)


# -- the served repositories -----------------------------------------------------------------------
@dataclass
class Demo:
    path: Path
    repo: Repository
    url: str
    head: str
    day1: str

    def client(self, token: str | None = READ, **kwargs) -> httpx.Client:  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        secrets = [str(self.path), "Traceback"]

        def clean(response: httpx.Response) -> None:
            response.read()
            text = response.content.decode("latin-1")
            for secret in secrets:
                assert secret not in text, (response.request.url, secret)

        return httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=30,
            event_hooks={"response": [clean]},
            **kwargs,
        )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Two demo repositories, both built before any server starts (building
    forks worker processes, which must not inherit a server's threads)."""
    paths = {}
    for name in ("demo", "writable"):
        paths[name] = tmp_path_factory.mktemp(f"web-{name}") / "demo"
        build_demo(paths[name], images_per_bin=20, quiet=True)
    return paths


def serve(path: Path):  # type: ignore[no-untyped-def]
    repo = Repository.open(path)
    with BackgroundServer(create_app(str(path), access())) as url:
        yield Demo(path, repo, url, repo.resolve("main"), repo.resolve("day-1"))


@pytest.fixture(scope="module")
def demo(built):
    """The demo, read only: 240 images, 2 runs; its head never moves."""
    yield from serve(built["demo"])


@pytest.fixture(scope="module")
def writable(built):
    """Another demo, for the tests that add commits."""
    yield from serve(built["writable"])


@pytest.fixture
def reader(demo):
    with demo.client() as client:
        yield client


def bins(repo: Repository, rev: str) -> list[str]:
    return sorted(set(repo.snapshot(rev).images().column("sample_id").to_pylist()))


def ids_of_sample(repo: Repository, rev: str, sample: str) -> list[str]:
    return repo.snapshot(rev).query(samples=[sample]).column("image_id").to_pylist()


def added_by(repo: Repository, head: str, present) -> str:  # type: ignore[no-untyped-def]
    """The oldest commit (from ``head`` back) whose snapshot ``present`` accepts."""
    history = [oid for oid, _c in repo.log(head)]
    for oid in reversed(history):
        if present(repo.snapshot(oid)):
            return oid
    raise AssertionError("never added")


# -- refs and commit ids ---------------------------------------------------------------------------
def test_home_and_refs_redirect_to_a_commit(demo, reader):
    assert demo.head == demo.repo.branches()["main"]
    for path in ("/", "/ref/main"):
        response = reader.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/c/{demo.head}/?ref=main"
    response = reader.get("/ref/day-1")
    assert response.status_code == 303
    assert response.headers["location"] == f"/c/{demo.day1}/?ref=day-1"
    assert demo.day1 != demo.head
    # a page under a ref, and the query kept
    response = reader.get("/ref/day-1/-/log", params={"limit": "3"})
    assert response.status_code == 303
    assert response.headers["location"] == f"/c/{demo.day1}/log?limit=3&ref=day-1"
    # a full commit id works too
    response = reader.get(f"/ref/{demo.day1}")
    assert response.headers["location"] == f"/c/{demo.day1}/?ref={demo.day1}"


@pytest.mark.parametrize(
    "commit",
    [
        "z" * 64,  # not hex
        "abcdef0123",  # a prefix
        "A" * 64,  # upper case
        "0" * 63,
        "0" * 65,
    ],
)
def test_a_page_url_names_a_full_commit_id(reader, commit):
    response = reader.get(f"/c/{commit}/")
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "InvalidInputError",
            "message": "a page's URL names a full commit id (64 hex digits)",
        }
    }


def test_unknown_commits_and_refs_are_404(demo, reader):
    unknown = "0" * 64
    for path in (f"/c/{unknown}/", f"/c/{unknown}/log", f"/c/{unknown}/images/x/data"):
        response = reader.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "NotFoundError"
    response = reader.get("/ref/no-such-branch")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "type": "NotFoundError",
            "message": "no branch, tag or commit named 'no-such-branch'",
        }
    }
    # an image, a sample or a run the snapshot lacks
    assert reader.get(f"/c/{demo.head}/images/no-such-image").status_code == 404
    assert reader.get(f"/c/{demo.head}/samples/no-such-sample").status_code == 404
    assert reader.get(f"/c/{demo.head}/", params={"run": "no-such-run"}).status_code == 404
    # the first commit has no tag day-1 yet: the day-2 bins are not in it
    day2_image = ids_of_sample(demo.repo, demo.head, bins(demo.repo, demo.head)[-1])[0]
    assert reader.get(f"/c/{demo.day1}/images/{day2_image}").status_code == 404


# -- signing in ------------------------------------------------------------------------------------
def test_pages_need_a_token_and_send_a_browser_to_sign_in(demo):
    with demo.client(token=None) as anonymous:
        target = f"/c/{demo.head}/samples/{bins(demo.repo, demo.head)[0]}?size=small&per_page=50"
        response = anonymous.get(target, headers=HTML)
        assert response.status_code == 303
        location = response.headers["location"]
        assert urlsplit(location).path == "/login"
        assert parse_qs(urlsplit(location).query) == {"next": [target]}
        assert anonymous.get("/", headers=HTML).headers["location"] == "/login?next=%2F"
        # the sign-in page carries ``next`` on
        form = page(anonymous.get(location))
        nexts = [n.attrs for n in form.root.all("input") if n.attrs.get("name") == "next"]
        assert nexts == [{"type": "hidden", "name": "next", "value": target}]
        # an API client (no text/html) gets the API's 401
        response = anonymous.get("/")
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "AuthError"
        # a bad token is no better
        response = anonymous.get("/", headers={**HTML, "Authorization": "Bearer " + "x" * 20})
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2F"


def test_sign_in_sets_a_strict_cookie_and_redirects_locally(demo):
    log = f"/c/{demo.head}/log?limit=2"
    with demo.client(token=None) as browser:
        wrong = browser.post("/login", data={"token": "x" * 20, "next": log}, headers=HTML)
        shown = page(wrong, 401)
        assert shown.text("error") == "unknown token"
        assert "set-cookie" not in wrong.headers
        assert not browser.cookies

        response = browser.post("/login", data={"token": READ, "next": log}, headers=HTML)
        assert response.status_code == 303
        assert response.headers["location"] == log
        cookies = response.headers.get_list("set-cookie")
        assert len(cookies) == 1
        parts = [p.strip() for p in cookies[0].split(";")]
        assert parts[0] == f"improv_token={READ}"
        assert {p.lower() for p in parts[1:]} == {"httponly", "path=/", "samesite=strict"}
        assert browser.cookies["improv_token"] == READ

        # the cookie opens pages
        shown = page(browser.get(log, headers=HTML))
        assert len(shown.by_id("log").rows()) == 2
        assert shown.who() == "reader Sign out"

        # only a path on this site is a place to go next
        for target, expected in [
            ("/c/x/query?a=1&b=2", "/c/x/query?a=1&b=2"),
            ("https://evil.example/steal", "/"),
            ("http://127.0.0.1:1/", "/"),
            ("//evil.example/steal", "/"),
            ("///evil.example", "/"),
            ("evil.example", "/"),
            ("javascript:alert(1)", "/"),
            ("", "/"),
        ]:
            response = browser.post("/login", data={"token": READ, "next": target})
            assert response.status_code == 303
            assert response.headers["location"] == expected, target
        # a backslash, which browsers read as a slash, is sent escaped
        response = browser.post("/login", data={"token": READ, "next": "/\\evil.example"})
        location = response.headers["location"]
        assert location.startswith("/") and not location.startswith("//") and "\\" not in location

        # signing out forgets the cookie; pages send the browser back to sign in
        response = browser.post("/logout")
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
        removal = response.headers["set-cookie"]
        assert removal.startswith('improv_token=""') and "Max-Age=0" in removal
        assert "improv_token" not in browser.cookies
        response = browser.get(log, headers=HTML)
        assert response.status_code == 303
        assert urlsplit(response.headers["location"]).path == "/login"


def test_a_write_token_in_the_cookie_may_curate(writable):
    with writable.client(token=None) as browser:
        assert browser.post("/login", data={"token": WRITE}).headers["location"] == "/"
        head = writable.repo.resolve("main")
        image = ids_of_sample(writable.repo, head, bins(writable.repo, head)[1])[0]
        shown = page(browser.get(f"/c/{head}/images/{image}?ref=main"))
        action, fields = shown.form("curate-form")
        assert action == f"/c/{head}/images/{image}/curate"
        assert fields == [("branch", "main")]
        response = browser.post(
            action,
            data={**dict(fields), "action": "flag", "value": "bad", "reason": "out of focus"},
            headers={"Origin": writable.url},
        )
        assert response.status_code == 303
        after = writable.repo.resolve("main")
        assert after != head
        assert response.headers["location"] == f"/c/{after}/images/{image}?ref=main"
        assert shown.who() == "curator (may curate) Sign out"
        records = writable.repo.snapshot(after).provenance_records("curation")
        assert records.filter(pc.equal(records["image_id"], image))["by"].to_pylist() == ["curator"]


# -- time travel -----------------------------------------------------------------------------------
def total_images(shown: Page) -> int:
    return number(shown.text("total-images"))


def test_the_timeline_at_a_tag_shows_that_commit(demo, reader):
    at_tag = page(reader.get("/ref/day-1", follow_redirects=True))
    head = page(reader.get("/", follow_redirects=True))
    assert demo.repo.snapshot("day-1").count() == 120
    assert demo.repo.snapshot().count() == 240
    assert total_images(at_tag) == 120
    assert total_images(head) == 240
    assert at_tag.text("bucket") == head.text("bucket") == "sample"  # ranges under a week
    # one row per bin, 20 images each; the sample records (5 mL a bin) came after the tag
    for shown, rev, volumes in ((at_tag, demo.day1, ("–", "–")), (head, demo.head, ("5", "4"))):
        rows = shown.by_id("buckets").rows()
        images = demo.repo.snapshot(rev).images()
        expected = set(zip(images["instrument"].to_pylist(), images["sample_id"].to_pylist()))
        assert sorted((r[0], r[1]) for r in rows) == sorted(expected)
        assert {tuple(r[2:]) for r in rows} == {("20", *volumes)}
    assert demo.repo.snapshot(demo.day1).samples().num_rows == 0
    # the snapshot it shows is named on the page
    snapshot = at_tag.by_id("snapshot")
    assert [a.attrs["href"] for a in snapshot.all("a")] == [
        f"/c/{demo.day1}/commit?ref=day-1",
        "/ref/day-1",
    ]


def test_the_timeline_buckets_equal_the_python_api(demo, reader):
    start, end = "2024-05-01T00:00:00+00:00", "2024-05-03T00:00:00+00:00"
    snapshot = demo.repo.snapshot(demo.head)
    for bucket in ("hour", "day", "week", "sample"):
        shown = page(
            reader.get(f"/c/{demo.head}/", params={"start": start, "end": end, "bucket": bucket})
        )
        assert shown.text("bucket") == bucket
        found = snapshot.timeline(
            datetime.fromisoformat(start), datetime.fromisoformat(end), bucket=bucket
        )
        expected = [
            [
                r["instrument"],
                r["sample_id"] if bucket == "sample" else f"{r['bucket']:%Y-%m-%d %H:%M} UTC",
                f"{r['images']:,}",
            ]
            for r in found.table.to_pylist()
        ]
        assert [r[:3] for r in shown.by_id("buckets").rows()] == expected
        assert len(expected) == {"hour": 12, "day": 4, "week": 2, "sample": 12}[bucket]
        assert total_images(shown) == 240
    # one instrument
    shown = page(
        reader.get(
            f"/c/{demo.head}/",
            params={"start": start, "end": end, "bucket": "day", "instrument": "IFCB110"},
        )
    )
    assert [r[:3] for r in shown.by_id("buckets").rows()] == [
        ["IFCB110", "2024-05-01 00:00 UTC", "60"],
        ["IFCB110", "2024-05-02 00:00 UTC", "60"],
    ]
    # classes of the latest run over the range: the run's winners of the instrument's images
    winners = snapshot.provenance_records("classification", run="demo-cnn-v2")
    images = snapshot.query(instruments=["IFCB110"]).column("image_id")
    mine = winners.filter(pc.is_in(winners["image_id"], images))
    assert {r[0]: number(r[1]) for r in shown.by_id("classes").rows()} == dict(
        Counter(mine["winner"].to_pylist())
    )


def test_a_commit_url_keeps_showing_its_snapshot_after_new_commits(writable):
    repo = Repository.open(writable.path)
    with writable.client() as client:
        before = repo.resolve("main")
        url = f"/c/{before}/?ref=main"
        count = repo.snapshot(before).count()
        assert total_images(page(client.get(url))) == count
        when = datetime(2024, 5, 2, 20, tzinfo=timezone.utc)  # after the demo's last bin
        rows = pa.table(
            {
                "image_id": [f"D20240502T200000_IFCB107_{k:05d}" for k in range(1, 6)],
                "timestamp": pa.array([when] * 5, pa.timestamp("us", tz="UTC")),
                "sample_id": ["D20240502T200000_IFCB107"] * 5,
            }
        )
        with repo.transaction(message="five more") as tx:
            tx.append_bytes("IFCB107", rows, [f"new image {k}".encode() for k in range(5)])
        after = tx.commit_id
        assert after is not None and after != before
        assert total_images(page(client.get(url))) == count  # the permalink
        assert client.get("/").headers["location"] == f"/c/{after}/?ref=main"
        assert total_images(page(client.get("/", follow_redirects=True))) == count + 5


# -- samples ---------------------------------------------------------------------------------------
def tiles(shown: Page) -> list[str]:
    return [img.attrs["alt"] or "" for img in shown.by_id("mosaic").all("img")]


def test_a_sample_mosaic_pages_through_its_images(demo, reader):
    sample = bins(demo.repo, demo.head)[3]
    expected = ids_of_sample(demo.repo, demo.head, sample)
    assert len(expected) == 20
    seen: list[str] = []
    for offset, n in ((0, 7), (7, 7), (14, 6)):
        shown = page(
            reader.get(f"/c/{demo.head}/samples/{sample}", params={"per_page": 7, "offset": offset})
        )
        assert number(shown.text("image-count")) == 20
        assert shown.text("sample-id") == sample
        assert len(tiles(shown)) == n
        assert shown.root.all("img") == shown.by_id("mosaic").all("img")  # every <img is a tile
        assert [i.attrs["src"] for i in shown.by_id("mosaic").all("img")] == [
            f"/c/{demo.head}/images/{i}/data" for i in tiles(shown)
        ]
        seen += tiles(shown)
    assert seen == expected
    whole = page(reader.get(f"/c/{demo.head}/samples/{sample}"))
    assert tiles(whole) == expected
    assert not whole.has("next-page")


def test_a_sample_page_past_its_last_image(demo, reader):
    """An offset past the last image: the page, with no tiles (not a server error)."""
    sample = bins(demo.repo, demo.head)[0]
    response = reader.get(f"/c/{demo.head}/samples/{sample}", params={"offset": 20})
    shown = page(response)
    assert tiles(shown) == []
    assert number(shown.text("image-count")) == 20
    assert shown.has("previous-page")


def test_a_sample_page_counts_classes_of_each_run(demo, reader):
    sample = bins(demo.repo, demo.head)[2]
    snapshot = demo.repo.snapshot(demo.head)
    ids = pa.array(ids_of_sample(demo.repo, demo.head, sample))
    for asked, run in ((None, "demo-cnn-v2"), ("latest", "demo-cnn-v2"), *((r, r) for r in RUNS)):
        records = snapshot.provenance_records("classification", run=run)
        winners = records.filter(pc.is_in(records["image_id"], ids))["winner"].to_pylist()
        assert len(winners) == 20
        params = {"run": asked} if asked else {}
        shown = page(reader.get(f"/c/{demo.head}/samples/{sample}", params=params))
        counted = {r[0]: number(r[1]) for r in shown.by_id("classes").rows()}
        assert counted == dict(Counter(winners)), run
        heading = [h for h in shown.root.all("h2") if h.text().startswith("Classes")][0]
        assert [c.text() for c in heading.all("code")] == [run]
    # the two runs disagree somewhere in the demo, so the table does depend on the run
    v1 = snapshot.provenance_records("classification", run=RUNS[0])
    v2 = snapshot.provenance_records("classification", run=RUNS[1])
    assert sorted(v1["winner"].to_pylist()) != sorted(v2["winner"].to_pylist())


# -- an image --------------------------------------------------------------------------------------
def test_an_image_page_shows_every_run_and_the_commits_that_added_them(demo, reader):
    repo, head = demo.repo, demo.head
    image = ids_of_sample(repo, head, bins(repo, head)[0])[4]
    shown = page(reader.get(f"/c/{head}/images/{image}"))
    assert shown.text("image-id") == image
    table = shown.by_id("prov-classification")
    header = [th.text() for th in table.all("thead")[0].all("th")]
    rows = table.rows()
    assert len(rows) == 2
    assert sorted(r[0] for r in rows) == sorted(RUNS)
    links = {
        tr.all("td")[0].text(): [a.attrs["href"] for a in tr.all("a")]
        for tr in table.all("tbody")[0].all("tr")
    }
    snapshot = repo.snapshot(head)
    for run in RUNS:
        adder = added_by(
            repo,
            head,
            lambda s, run=run: any(r.run_id == run for r in s.provenance(image, "classification")),
        )
        assert links[run] == [f"/c/{adder}/commit"]
        assert repo.odb.get_commit(adder).message == f"Classifier demo-cnn, run {run}"
        records = snapshot.provenance_records("classification", run=run)
        winner = records.filter(pc.equal(records["image_id"], image))["winner"].to_pylist()
        row = next(r for r in rows if r[0] == run)
        assert [row[header.index("winner")]] == winner
    # the commit that added the image itself
    adder = added_by(repo, head, lambda s: s.count(samples=[bins(repo, head)[0]]) > 0)
    added = [p for p in shown.root.all("p") if p.text().startswith("Added by")]
    assert [a.attrs["href"] for a in added[0].all("a")] == [f"/c/{adder}/commit"]
    # the first bin is segmented: the mask's outline is drawn over the image
    assert [r[0] for r in shown.by_id("prov-segmentation").rows()] == ["threshold-v1"]
    outline = reader.get(shown.by_id("outline").attrs["src"] or "")
    assert outline.status_code == 200 and outline.headers["content-type"] == "image/png"
    assert outline.content.startswith(b"\x89PNG")
    # a reader does not see the curation form
    assert not shown.has("curate-form")


def test_image_bytes_are_the_blob_and_immutable(demo, reader):
    image = ids_of_sample(demo.repo, demo.head, bins(demo.repo, demo.head)[1])[0]
    row = demo.repo.snapshot(demo.head).record(image)
    response = reader.get(f"/c/{demo.head}/images/{image}/data")
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == row["blob_id"]
    assert response.content == demo.repo.snapshot(demo.head).read_image(image)
    assert response.headers["content-type"] == "image/png"
    assert response.headers["etag"] == f'"{row["blob_id"]}"'
    assert "immutable" in response.headers["cache-control"]
    again = reader.get(
        f"/c/{demo.head}/images/{image}/data", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == response.headers["etag"]
    other = reader.get(
        f"/c/{demo.head}/images/{image}/data", headers={"If-None-Match": '"' + "0" * 64 + '"'}
    )
    assert other.status_code == 200 and other.content == response.content
    # the same image at the tag: the same bytes, the same tag
    at_tag = reader.get(f"/c/{demo.day1}/images/{image}/data")
    assert at_tag.content == response.content
    assert at_tag.headers["etag"] == response.headers["etag"]


# -- downloads -------------------------------------------------------------------------------------
SELECTION = {
    "instrument": "IFCB107",
    "start": "2024-05-01T08:00:00Z",
    "end": "2024-05-02T08:00:00Z",
}


def expected_selection(demo: Demo) -> list[str]:
    snapshot = demo.repo.snapshot(demo.head)
    images = snapshot.images()
    rows = [
        (r["timestamp"], r["image_id"])
        for r in images.to_pylist()
        if r["instrument"] == "IFCB107"
        and "2024-05-01 08:00" <= r["timestamp"].strftime("%Y-%m-%d %H:%M") < "2024-05-02 08:00"
    ]
    return [i for _t, i in sorted(rows)]


def test_downloads_hold_the_query_rows(demo, reader):
    expected = expected_selection(demo)
    assert len(expected) == 60
    shown = page(reader.get(f"/c/{demo.head}/query", params=SELECTION))
    assert number(shown.text("match-count")) == 60
    links = {k: shown.by_id(f"download-{k}").attrs["href"] or "" for k in ("csv", "parquet", "zip")}

    response = reader.get(links["csv"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="improv-{demo.head[:12]}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["image_id"] for r in rows] == expected
    assert {r["instrument"] for r in rows} == {"IFCB107"}

    response = reader.get(links["parquet"])
    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.content))
    assert table["image_id"].to_pylist() == expected
    snapshot = demo.repo.snapshot(demo.head)
    blobs = dict(
        zip(snapshot.images()["image_id"].to_pylist(), snapshot.images()["blob_id"].to_pylist())
    )
    assert table["blob_id"].to_pylist() == [blobs[i] for i in expected]

    response = reader.get(links["zip"])
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        assert sorted(names) == sorted([f"images/{i}.png" for i in expected] + ["metadata.csv"])
        for image in expected:
            data = archive.read(f"images/{image}.png")
            assert hashlib.sha256(data).hexdigest() == blobs[image]
        listed = list(csv.DictReader(io.StringIO(archive.read("metadata.csv").decode())))
        assert [r["image_id"] for r in listed] == expected
        assert [r["blob_id"] for r in listed] == [blobs[i] for i in expected]


def test_an_unknown_download_format_is_400(demo, reader):
    response = reader.get(f"/c/{demo.head}/query/download.xlsx", params=SELECTION)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "InvalidInputError",
            "message": "no download as 'xlsx'; use csv, parquet or zip",
        }
    }


# -- citations -------------------------------------------------------------------------------------
def test_cite_a_selection_then_verify_it(demo, reader):
    snapshot = demo.repo.snapshot(demo.head)
    query = {
        "instrument": "IFCB110",
        "prov": "classification.winner = Diatom",
        "run": "classification=demo-cnn-v1",
    }
    records = snapshot.provenance_records("classification", run="demo-cnn-v1")
    diatoms = set(records.filter(pc.equal(records["winner"], "Diatom"))["image_id"].to_pylist())
    expected = sorted(
        i for i in snapshot.query(instruments=["IFCB110"])["image_id"].to_pylist() if i in diatoms
    )
    assert expected
    shown = page(reader.get(f"/c/{demo.head}/query", params=query))
    assert number(shown.text("match-count")) == len(expected)
    action, fields = shown.form("cite-form")
    assert action == f"/c/{demo.head}/cite"
    assert sorted(fields) == sorted(query.items())
    form: dict[str, list[str]] = {}
    for name, value in fields:
        form.setdefault(name, []).append(value)
    form |= {"title": ["Diatoms off the tower"], "authors": ["Ada Lovelace; Alan Turing"]}
    cited = page(reader.post(action, data=form))
    identifier = cited.text("identifier")
    assert identifier.startswith("improv:1:")
    pinned = find_identifier(identifier)
    assert pinned.commit == demo.head
    assert pinned.repository == demo.repo.id
    assert pinned.count == len(expected)
    assert find_identifier(cited.text("bibtex")) == pinned
    assert "Diatoms off the tower" in cited.text("citation-text")
    result = verify(demo.repo, pinned)
    assert (result.commit, result.count, result.images_checked) == (
        demo.head,
        len(expected),
        len(expected),
    )
    # the same citation made with the Python API
    made = snapshot.cite(query=pinned_query(pinned))
    assert made.pinned == pinned

    # the verify page
    verified = page(reader.post("/citations", data={"citation": identifier}))
    assert verified.has("verified") and not verified.has("error")
    assert f"/c/{demo.head}/" in [a.attrs["href"] for a in verified.by_id("verified").all("a")]
    assert re.search(rf"Verified: {len(expected)} image\(s\)", verified.text("verified"))
    # the citation as the page renders it, pasted whole, verifies too
    whole = cited.text("citation-text") + "\n" + cited.text("bibtex")
    assert page(reader.post("/citations", data={"citation": whole})).has("verified")
    # tampered: one character of its body changed
    body = identifier[len("improv:1:") :]
    flipped = "improv:1:" + ("B" if body[0] != "B" else "C") + body[1:]
    refused = page(reader.post("/citations", data={"citation": flipped}))
    assert refused.has("error") and not refused.has("verified")
    assert refused.text("error") == (
        "Not verified: the citation identifier is damaged (its checksum does not match)"
    )


def pinned_query(pinned):  # type: ignore[no-untyped-def]
    from improv_vcs.query.filters import Query

    return Query.model_validate(pinned.query)


# -- curation --------------------------------------------------------------------------------------
def commits(repo: Repository) -> list[str]:
    return [oid for oid, _c in repo.log("main")]


def test_curating_an_image_adds_one_record_in_one_commit(writable):
    repo = Repository.open(writable.path)
    head = repo.resolve("main")
    before = commits(repo)
    image = ids_of_sample(repo, head, bins(repo, head)[2])[3]
    curations = repo.snapshot(head).provenance_records("curation").num_rows
    with writable.client(WRITE) as curator:
        response = curator.post(
            f"/c/{head}/images/{image}/curate",
            data={"action": "tag", "value": "chain of three", "reason": "seen at 10x"},
            headers={"Origin": writable.url},
        )
    assert response.status_code == 303
    after = repo.resolve("main")
    assert commits(repo) == [after, *before]
    assert response.headers["location"] == f"/c/{after}/images/{image}?ref=main"
    commit = repo.odb.get_commit(after)
    assert commit.parents == (head,)
    assert commit.author == "curator"
    assert commit.message == f"Curation: tag 'chain of three' on {image}"
    records = repo.snapshot(after).provenance_records("curation")
    assert records.num_rows == curations + 1
    mine = records.filter(pc.equal(records["image_id"], image)).to_pylist()
    assert len(mine) == 1
    record = mine[0]
    assert (record["action"], record["value"], record["by"], record["reason"]) == (
        "tag",
        "chain of three",
        "curator",
        "seen at 10x",
    )
    assert (record["source"], record["run_id"]) == ("web", "curation")
    # nothing else changed
    assert repo.snapshot(after).count() == repo.snapshot(head).count()
    for run in RUNS:
        assert (
            repo.snapshot(after).provenance_records("classification", run=run).num_rows
            == repo.snapshot(head).provenance_records("classification", run=run).num_rows
        )
    # the new commit's image page lists it, with its commit
    with writable.client() as client:
        shown = page(client.get(response.headers["location"]))
    rows = shown.by_id("prov-curation").rows()
    assert len(rows) == 1 and rows[0][0] == "curation"
    links = [a.attrs["href"] for a in shown.by_id("prov-curation").all("a")]
    assert links == [f"/c/{after}/commit"]


@pytest.mark.parametrize(
    "token, headers",
    [
        (WRITE, {}),  # neither Origin nor Referer
        (WRITE, {"Origin": "http://evil.example"}),
        (WRITE, {"Origin": "null"}),
        (WRITE, {"Referer": "http://evil.example/c/"}),
        (READ, "own-origin"),  # same site, but a read token
    ],
)
def test_curation_from_elsewhere_or_without_write_is_403(writable, token, headers):
    repo = Repository.open(writable.path)
    head = repo.resolve("main")
    before = commits(repo)
    image = ids_of_sample(repo, head, bins(repo, head)[0])[0]
    if headers == "own-origin":
        headers = {"Origin": writable.url}
    with writable.client(token) as client:
        for url, data in (
            (f"/c/{head}/images/{image}/curate", {"action": "flag", "value": "bad"}),
            (f"/c/{head}/samples/{bins(repo, head)[0]}/quality", {"quality": "bad"}),
        ):
            response = client.post(url, data=data, headers=headers)
            assert response.status_code == 403
            assert response.json()["error"]["type"] == "AuthError"
            shown = page(client.post(url, data=data, headers={**headers, **HTML}), 403)
            assert shown.text("error") == response.json()["error"]["message"]
    assert commits(repo) == before


def test_flagging_a_sample_adds_a_version_of_its_record(writable):
    repo = Repository.open(writable.path)
    head = repo.resolve("main")
    sample = bins(repo, head)[4]
    history = repo.snapshot(head).samples(history=True).num_rows
    old = [r for r in repo.snapshot(head).samples().to_pylist() if r["sample_id"] == sample][0]
    assert old["quality"] is None
    with writable.client(WRITE) as curator:
        response = curator.post(
            f"/c/{head}/samples/{sample}/quality?ref=main",
            data={
                "quality": "questionable",
                "reason": "bubbles in the flow cell",
                "branch": "main",
            },
            headers={"Referer": f"{writable.url}/c/{head}/samples/{sample}?ref=main"},
        )
        assert response.status_code == 303
        after = repo.resolve("main")
        assert response.headers["location"] == f"/c/{after}/samples/{sample}?ref=main"
        assert repo.odb.get_commit(after).parents == (head,)
        snapshot = repo.snapshot(after)
        assert snapshot.samples(history=True).num_rows == history + 1
        latest = [r for r in snapshot.samples().to_pylist() if r["sample_id"] == sample]
        assert len(latest) == 1
        new = latest[0]
        assert new["quality"] == "questionable"
        assert (new["instrument"], new["start"], new["end"]) == (
            old["instrument"],
            old["start"],
            old["end"],
        )
        assert json.loads(new["meta"]) == {
            "ml_analyzed": 5.0,
            "quality_by": "curator",
            "quality_reason": "bubbles in the flow cell",
        }
        # the new commit's page shows it; the old commit's page does not
        assert page(curator.get(response.headers["location"])).text("quality") == "questionable"
        assert page(curator.get(f"/c/{head}/samples/{sample}")).text("quality") == "not flagged"
        # and a query by quality finds its images
        shown = page(curator.get(f"/c/{after}/query", params={"quality": "questionable"}))
        assert number(shown.text("match-count")) == snapshot.count(samples=[sample]) == 20


# -- nothing from elsewhere ------------------------------------------------------------------------
def test_pages_load_nothing_from_other_sites(demo, reader):
    head, repo = demo.head, demo.repo
    sample = bins(repo, head)[0]
    image = ids_of_sample(repo, head, sample)[0]
    paths = [
        f"/c/{head}/",
        f"/c/{head}/?bucket=hour&start=2024-05-01T00:00:00Z&end=2024-05-03T00:00:00Z",
        f"/c/{head}/map",
        f"/c/{head}/query",
        f"/c/{head}/query?instrument=IFCB107&dataset=dock-day-1",
        f"/c/{head}/samples/{sample}?ref=main",
        f"/c/{head}/images/{image}",
        f"/c/{head}/log",
        f"/c/{head}/commit",
        f"/c/{head}/diff?against=day-1",
        f"/c/{head}/datasets",
        "/citations",
        "/login",
    ]
    pages = {path: reader.get(path) for path in paths}
    pages["404"] = reader.get(f"/c/{'0' * 64}/", headers=HTML)
    cited = reader.post(f"/c/{head}/cite", data={"instrument": "IFCB107"})
    pages["cite"] = cited
    linked: set[str] = set()
    for name, response in pages.items():
        shown = page(response, 404 if name == "404" else 200)
        assert response.headers["content-security-policy"] == CSP, name
        assert response.headers["x-content-type-options"] == "nosniff"
        urls = shown.urls()
        assert urls, name
        foreign = [u for u in urls if not same_site(u, demo.url)]
        assert foreign == [], name
        assert "/static/improv.css" in urls and "/static/improv.js" in urls, name
        linked |= set(shown.urls(("src", "href")))
    # every link and image of these pages leads somewhere (no dead links)
    for url in sorted(linked):
        if url.startswith(("/c/", "/ref/", "/static/", "/citations", "/login", "/")):
            response = reader.get(url)
            assert response.status_code in (200, 303), (url, response.status_code)


@pytest.mark.parametrize(
    "name, media",
    [
        ("improv.css", "text/css; charset=utf-8"),
        ("improv.js", ("text/javascript; charset=utf-8", "application/javascript")),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_static_assets_are_served(demo, name, media):
    with demo.client(token=None) as anonymous:  # the sign-in page needs them too
        response = anonymous.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.content == (files("improv_vcs.service.web") / "static" / name).read_bytes()
    assert response.headers["content-type"] in (media if isinstance(media, tuple) else (media,))
    text = response.text
    loads = re.findall(r"(?:url\(|@import|src=|href=)\s*['\"]?(https?:)?//", text)
    assert loads == []


# -- errors: pages for browsers, JSON for the API --------------------------------------------------
@pytest.mark.parametrize(
    "path, status, kind, message",
    [
        (
            "/c/0123/",
            400,
            "InvalidInputError",
            "a page's URL names a full commit id (64 hex digits)",
        ),
        (f"/c/{'0' * 64}/", 404, "NotFoundError", f"object {'0' * 64} is missing"),
        ("/ref/nowhere", 404, "NotFoundError", "no branch, tag or commit named 'nowhere'"),
        ("/no/such/page", 404, "NotFoundError", None),
        (
            "HEAD/samples/no-such-bin",
            404,
            "NotFoundError",
            "no images of sample 'no-such-bin' in this snapshot",
        ),
        ("HEAD/?bucket=month", 400, "InvalidInputError", "unknown bucket 'month'"),
        (
            "HEAD/query/download.xlsx",
            400,
            "InvalidInputError",
            "no download as 'xlsx'; use csv, parquet or zip",
        ),
    ],
)
def test_errors_are_pages_for_browsers_and_json_otherwise(
    demo, reader, path, status, kind, message
):
    path = path.replace("HEAD", f"/c/{demo.head}")
    api = reader.get(path)
    assert api.status_code == status
    assert api.headers["content-type"] == "application/json"
    body = api.json()
    assert set(body) == {"error"} and body["error"]["type"] == kind
    if message is not None:
        assert body["error"]["message"] == message
    shown = page(reader.get(path, headers=HTML), status)
    assert api.headers.get("content-security-policy") is None
    assert shown.text("error") == (message if message is not None else "no such page")
    heading = shown.root.all("h1")[0].text()
    assert heading == {400: "Something went wrong", 404: "Not found"}[status]


def test_the_verify_page_finds_an_identifier_at_the_end_of_a_sentence(demo, reader):
    """The verify page takes "any text containing" an identifier: one that
    ends a sentence is followed by a full stop, which is not part of it."""
    identifier = demo.repo.snapshot(demo.head).cite(instruments=["IFCB107"]).identifier
    for text in (f"({identifier})", f"see {identifier}, p. 3", f"The data are {identifier}."):
        shown = page(reader.post("/citations", data={"citation": text}))
        assert shown.has("verified") and not shown.has("error"), (text, shown.text("error"))
