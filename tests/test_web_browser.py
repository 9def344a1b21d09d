"""The web pages in a real browser: headless Chromium (conftest's ``browser``)
drives ``improv serve`` over the demo repository on 127.0.0.1.

One journey signs in through the form and goes timeline → a bar → the
sample's mosaic → an image with both classification runs → a query with a
provenance condition → its citation, verified; then the map, the log and a
commit. Time travel: a timeline URL at the ``day-1`` commit shows that
commit's images, and a commit's URL shows the same after main moves on.
Curation: a write token's tag becomes a new commit shown on the image; a
read token gets no form and a forged post is refused with no commit made.

Every page must load without console errors, page errors, failed requests
or error responses (except the one deliberate 403). Figures on the pages
are compared with ones computed in Python from the repository.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from PIL import Image

from improv_vcs import Repository
from improv_vcs.cite.citation import decode_identifier
from improv_vcs.cite.citing import verify
from improv_vcs.cli.demo import build_demo
from improv_vcs.service.app import create_app
from improv_vcs.service.auth import Access, TokenEntry
from improv_vcs.service.server import BackgroundServer

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under IMPROV_REQUIRE_BROWSER=1)
    expect = None

PER_BIN = 20
READ, WRITE = "r" * 20, "w" * 20
RUNS = ["demo-cnn-v1", "demo-cnn-v2"]
COMMIT_URL = re.compile(r"/c/(?P<commit>[0-9a-f]{64})/")
VIEWPORT = {"width": 1280, "height": 800}


# -- the site, a watched browser page, screenshots ------------------------------------------
@dataclass
class Site:
    url: str
    repo: Repository


@pytest.fixture
def site(tmp_path):
    """The demo repository served on 127.0.0.1 with a read and a write token."""
    path = tmp_path / "demo"
    repo = build_demo(path, images_per_bin=PER_BIN, quiet=True)
    access = Access(
        (
            TokenEntry(name="reader", token=READ, scopes=("read",)),
            TokenEntry(name="curator", token=WRITE, scopes=("write",)),
        )
    )
    with BackgroundServer(create_app(str(path), access)) as url:
        yield Site(url, repo)


@dataclass
class Tab:
    """A browser page and what went wrong on it: console errors, uncaught
    exceptions, failed requests and responses >= 400 (but for the URLs in
    ``refusals``). Each step waits for the page to settle, then checks."""

    page: Any
    problems: list[str] = field(default_factory=list)
    refusals: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on(
            "requestfailed",
            lambda r: self.problems.append(f"request failed: {r.method} {r.url}: {r.failure}"),
        )
        self.page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error" and message.location.get("url") not in self.refusals:
            self.problems.append(f"console: {message.text} ({message.location})")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and response.url not in self.refusals:
            self.problems.append(f"{response.status} {response.request.method} {response.url}")

    def settle(self) -> None:
        """Wait until the page and all it loads (images too) are done; no problem so far."""
        self.page.wait_for_load_state("load")
        self.page.wait_for_load_state("networkidle")
        assert self.problems == []

    def go(self, url: str) -> None:
        self.page.goto(url)
        self.settle()

    def click_to(self, locator: Any, url: re.Pattern[str]) -> None:
        """Click ``locator`` and land on a URL matching ``url``."""
        locator.click()
        self.page.wait_for_url(url)
        self.settle()


@pytest.fixture
def open_tab(browser, site):
    """``open_tab(token) -> Tab``: a fresh browser context signed in with
    ``token`` through the /login form, on the timeline."""
    contexts = []

    def start(token: str) -> Tab:
        context = browser.new_context(base_url=site.url, viewport=VIEWPORT)
        context.set_default_timeout(15_000)
        contexts.append(context)
        tab = Tab(context.new_page())
        tab.go("/")
        assert urlsplit(tab.page.url).path == "/login"  # / sends an unknown reader to sign in
        tab.page.fill("input[name=token]", token)
        tab.click_to(
            tab.page.get_by_role("button", name="Sign in"),
            re.compile(r"/c/[0-9a-f]{64}/\?ref=main$"),
        )
        return tab

    yield start
    for context in contexts:
        context.close()


def pinned_commit(page: Any) -> str:
    found = COMMIT_URL.search(urlsplit(page.url).path)
    assert found, page.url
    return found["commit"]


def shoot(page: Any, name: str, tmp_path: Path) -> None:
    """``web-<name>.png`` in ``tmp_path``, and in ``$IMPROV_WEB_SCREENSHOTS`` if set."""
    data = page.screenshot(path=tmp_path / f"web-{name}.png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    also = os.environ.get("IMPROV_WEB_SCREENSHOTS")
    if also:
        Path(also).mkdir(parents=True, exist_ok=True)
        (Path(also) / f"web-{name}.png").write_bytes(data)


def texts(locator: Any) -> list[str]:
    return [t.strip() for t in locator.all_inner_texts()]


def table_rows(page: Any, table: str) -> list[dict[str, str]]:
    """The body rows of ``table`` as {header: cell text}."""
    headers = texts(page.locator(f"{table} thead th"))
    rows = []
    for row in page.locator(f"{table} tbody tr").all():
        rows.append(dict(zip(headers, texts(row.locator("td")))))
    return rows


def number(locator: Any) -> int:
    return int(locator.inner_text().strip().replace(",", ""))


# -- Python's own answers -----------------------------------------------------------------
def winners(repo: Repository, commit: str, run: str) -> dict[str, str]:
    records = repo.snapshot(commit).provenance_records("classification", run=run)
    return dict(zip(records.column("image_id").to_pylist(), records.column("winner").to_pylist()))


def diatoms_of(repo: Repository, commit: str, instrument: str, run: str) -> int:
    """Images of ``instrument`` that ``run`` classifies as Diatom, counted from the records."""
    images = repo.snapshot(commit).images()
    mine = {
        i
        for i, inst in zip(
            images.column("image_id").to_pylist(), images.column("instrument").to_pylist()
        )
        if inst == instrument
    }
    return sum(1 for i, w in winners(repo, commit, run).items() if i in mine and w == "Diatom")


# -- the journey ---------------------------------------------------------------------------
def test_journey_from_sign_in_to_a_verified_citation(site, open_tab, tmp_path):
    repo = site.repo
    tab = open_tab(WRITE)
    page = tab.page
    head = pinned_commit(page)
    assert head == repo.resolve("main")
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"]) for c in cookies] == [("improv_token", True)]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads the token

    # timeline: one bar and one row per sample, every image counted, classes of the latest run
    snapshot = repo.snapshot(head)
    total = snapshot.count()
    samples = sorted(snapshot.samples().column("sample_id").to_pylist())
    assert total == 2 * 2 * 3 * PER_BIN
    assert number(page.locator("#total-images")) == total
    assert page.locator("#bucket").inner_text() == "sample"
    charts = page.locator("svg.timeline")
    assert charts.count() == 2  # images, and concentration (the samples name their volume)
    bars = charts.first.locator("a")
    assert bars.count() == charts.nth(1).locator("a").count() == len(samples) == 12
    assert page.locator("#buckets tbody tr").count() == len(samples)
    latest = Counter(winners(repo, head, "demo-cnn-v2").values())
    shown = {r["Class"]: int(r["Images"].replace(",", "")) for r in table_rows(page, "#classes")}
    assert shown == dict(latest)
    shoot(page, "timeline", tmp_path)

    # a bar → that sample's mosaic, one tile per image of the bin
    sample = urlsplit(bars.first.get_attribute("href")).path.rsplit("/", 1)[1]
    assert sample == samples[0]
    tab.click_to(bars.first, re.compile(rf"/c/{head}/samples/{sample}\?"))
    tiles = page.locator("#mosaic a")
    assert tiles.count() == snapshot.count(samples=[sample]) == PER_BIN
    assert number(page.locator("#image-count")) == PER_BIN
    assert page.locator("#sample-id").inner_text() == sample
    assert page.locator("#quality-form").count() == 1  # a write token may flag quality
    shoot(page, "sample", tmp_path)
    tiles.first.focus()
    page.keyboard.press("ArrowRight")
    expect(tiles.nth(1)).to_be_focused()
    tab.settle()

    # a tile → the image, with both classification runs side by side
    image = tiles.first.get_attribute("title")
    assert image == f"{sample}_00001"
    tab.click_to(tiles.first, re.compile(rf"/c/{head}/images/{image}\?ref=main$"))
    assert page.locator("#image-id").inner_text() == image
    width = Image.open(io.BytesIO(snapshot.read_image(image))).width
    expect(page.locator("#image")).to_have_js_property("naturalWidth", width)
    manifest = {
        r.locator("th").inner_text(): r.locator("td").inner_text()
        for r in page.locator("#manifest tr").all()
    }
    assert (manifest["image_id"], manifest["sample_id"]) == (image, sample)
    rows = table_rows(page, "#prov-classification")
    assert sorted(r["Run"] for r in rows) == RUNS
    for r in rows:
        assert (r["model"], r["winner"]) == ("demo-cnn", winners(repo, head, r["Run"])[image])
    assert page.locator("#curate-form").count() == 1
    shoot(page, "image", tmp_path)

    # query: IFCB107, classified Diatom by the first run
    query = page.get_by_role("link", name="Query", exact=True)
    tab.click_to(query, re.compile(rf"/c/{head}/query\?ref=main$"))
    form = page.locator("#query-form")
    form.locator("input[name=instrument][value=IFCB107]").check()
    form.locator("textarea[name=prov]").fill("classification.winner = Diatom")
    form.locator("textarea[name=run]").fill("classification=demo-cnn-v1")
    tab.click_to(form.get_by_role("button", name="Search"), re.compile(r"/query\?.*prov="))
    asked = parse_qs(urlsplit(page.url).query)
    assert asked["instrument"] == ["IFCB107"]
    assert asked["prov"] == ["classification.winner = Diatom"]
    assert asked["run"] == ["classification=demo-cnn-v1"]
    expected = diatoms_of(repo, head, "IFCB107", "demo-cnn-v1")
    assert 0 < expected < snapshot.count(instruments=["IFCB107"])
    assert number(page.locator("#match-count")) == expected
    assert page.locator("#mosaic a").count() == min(expected, 100)
    shoot(page, "query", tmp_path)

    # cite → the identifier pins this commit and these images, and verifies
    tab.click_to(page.locator("#cite"), re.compile(rf"/c/{head}/cite\?ref=main$"))
    identifier = page.locator("#identifier").inner_text().strip()
    pinned = decode_identifier(identifier)
    assert (pinned.commit, pinned.count) == (head, expected)
    assert verify(repo, pinned).count == expected
    assert identifier in page.locator("#bibtex").inner_text()
    shoot(page, "citation", tmp_path)
    tab.click_to(page.locator("#verify"), re.compile(r"/citations$"))
    expect(page.locator("#verified")).to_be_visible()
    assert page.locator("#verified a").get_attribute("href") == f"/c/{head}/"
    assert page.locator("#error").count() == 0

    # the map (a point per instrument and place), the log (every commit), a commit
    tab.go(f"/c/{head}/map?ref=main")
    places = {
        (b["instrument"], round((b["lat_min"] + b["lat_max"]) / 2, 4))
        for b in snapshot.reader.batches.to_pylist()
    }
    assert page.locator("#map circle.point").count() == len(places) == 2
    shoot(page, "map", tmp_path)
    tab.click_to(page.get_by_role("link", name="History"), re.compile(rf"/c/{head}/log"))
    log = list(repo.log(head))
    links = page.locator("#log tbody tr td:first-child a")
    assert [a.get_attribute("href") for a in links.all()] == [f"/c/{oid}/commit" for oid, _ in log]
    assert len(log) == 9
    shoot(page, "log", tmp_path)
    older, commit = log[3]  # the classification run demo-cnn-v1
    tab.click_to(links.nth(3), re.compile(rf"/c/{older}/commit$"))
    assert page.locator("#message").inner_text() == commit.message
    shoot(page, "commit", tmp_path)

    # the changes since day-1 (the second day's two batches), the dataset and its images
    tab.go(f"/c/{head}/diff?against=day-1&ref=main")
    changed = page.locator("table.batches")
    assert changed.count() == 1  # nothing is only in day-1
    assert texts(changed.locator("tbody td:first-child")) == ["IFCB107", "IFCB110"]
    tab.click_to(page.get_by_role("link", name="Datasets"), re.compile(rf"/c/{head}/datasets"))
    span = page.get_by_role("link", name="query", exact=True)
    assert span.count() == len(snapshot.dataset("dock-day-1").spans) == 1
    tab.click_to(span, re.compile(r"/query\?dataset=dock-day-1&ref=main$"))
    assert number(page.locator("#match-count")) == snapshot.count(dataset="dock-day-1")
    assert snapshot.count(dataset="dock-day-1") == 3 * PER_BIN


# -- time travel ----------------------------------------------------------------------------
def test_a_commit_url_shows_that_commit_forever(site, open_tab):
    repo = site.repo
    tab = open_tab(READ)
    page = tab.page
    head = pinned_commit(page)
    form = page.locator("#timeline-form")
    span = urlencode(
        {
            "start": form.locator("input[name=start]").input_value(),
            "end": form.locator("input[name=end]").input_value(),
        }
    )
    full = repo.snapshot(head).count()
    day1 = repo.resolve("day-1")
    older = repo.snapshot(day1).count()
    assert older * 2 == full == 2 * 2 * 3 * PER_BIN

    def total_at(url: str) -> int:
        tab.go(url)
        return number(page.locator("#total-images"))

    assert total_at(f"/c/{head}/?{span}") == full
    assert total_at(f"/c/{day1}/?{span}") == older
    assert total_at(f"/ref/day-1?{span}") == older  # the tag redirects to its commit
    assert pinned_commit(page) == day1
    assert parse_qs(urlsplit(page.url).query)["ref"] == ["day-1"]

    # main moves on; each commit's URL still shows what it showed
    added = [
        {
            "image_id": f"D20240502T120000_IFCB107_{k:05d}",
            "timestamp": datetime(2024, 5, 2, 12, 0, k, tzinfo=timezone.utc),
            "sample_id": "D20240502T120000_IFCB107",
        }
        for k in range(1, 4)
    ]
    with repo.transaction(message="three more images") as tx:
        tx.append_bytes("IFCB107", added, [png(k) for k in range(1, 4)])
    assert total_at(f"/ref/main?{span}") == full + len(added)
    assert pinned_commit(page) == repo.resolve("main") != head
    assert total_at(f"/c/{head}/?{span}") == full
    assert total_at(f"/c/{day1}/?{span}") == older


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (8, 8), seed * 40).save(out, "PNG")
    return out.getvalue()


# -- curation -------------------------------------------------------------------------------
IMAGE = "D20240501T080000_IFCB110_00003"


def test_curation_with_a_write_token_makes_a_commit(site, open_tab):
    repo = site.repo
    head = repo.resolve("main")
    tab = open_tab(WRITE)
    page = tab.page
    tab.go(f"/ref/main/-/images/{IMAGE}")
    assert pinned_commit(page) == head
    assert page.locator("#prov-curation").count() == 0
    form = page.locator("#curate-form")
    form.locator("select[name=action]").select_option("tag")
    form.locator("input[name=value]").fill("needs-review")
    form.locator("input[name=reason]").fill("two cells touching")
    tab.click_to(
        form.get_by_role("button", name="Record"),
        re.compile(rf"/c/(?!{head})[0-9a-f]{{64}}/images/{IMAGE}\?ref=main$"),
    )
    after = pinned_commit(page)
    assert after == repo.resolve("main")
    made = repo.odb.get_commit(after)
    assert (made.parents, made.author) == ((head,), "curator")
    curation = table_rows(page, "#prov-curation")
    assert [{k: v for k, v in r.items() if k != "Recorded"} for r in curation] == [
        {
            "Run": "curation",
            "Source": "web",
            "Commit": after[:10],
            "action": "tag",
            "by": "curator",
            "reason": "two cells touching",
            "value": "needs-review",
        }
    ]
    # the page at the commit before is unchanged
    tab.go(f"/c/{head}/images/{IMAGE}?ref=main")
    assert page.locator("#prov-curation").count() == 0


def test_curation_with_a_read_token_is_refused(site, open_tab):
    repo = site.repo
    head = repo.resolve("main")
    tab = open_tab(READ)
    page = tab.page
    tab.go(f"/c/{head}/images/{IMAGE}?ref=main")
    assert page.locator("#image-id").inner_text() == IMAGE
    assert page.locator("#curate-form").count() == 0
    tab.go(f"/c/{head}/samples/{IMAGE.rsplit('_', 1)[0]}?ref=main")
    assert page.locator("#quality-form").count() == 0
    refs = repo.branches(), repo.tags()

    # a form made in the page and submitted by the browser (so from this site)
    target = f"{site.url}/c/{head}/images/{IMAGE}/curate"
    fields = {"action": "tag", "value": "forged", "branch": "main"}
    tab.refusals.add(target)
    with page.expect_navigation() as navigation:
        page.evaluate(
            """([action, fields]) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = action;
                for (const [name, value] of Object.entries(fields)) {
                    const input = document.createElement("input");
                    input.name = name;
                    input.value = value;
                    form.appendChild(input);
                }
                document.body.appendChild(form);
                form.submit();
            }""",
            [target, fields],
        )
    assert navigation.value.status == 403
    tab.settle()
    assert page.locator("#error").count() == 1
    assert page.locator("#curate-form").count() == 0

    # the same post with the session's cookie and this site's Origin
    answer = page.request.post(target, form=fields, headers={"Origin": site.url}, max_redirects=0)
    assert answer.status == 403
    assert (repo.branches(), repo.tags()) == refs

    # the control: the very same post with the write token is taken
    writer = {"Origin": site.url, "Authorization": f"Bearer {WRITE}"}
    answer = page.request.post(target, form=fields, headers=writer, max_redirects=0)
    assert answer.status == 303
    after = repo.resolve("main")
    assert answer.headers["location"] == f"/c/{after}/images/{IMAGE}?ref=main"
    assert repo.odb.get_commit(after).parents == (head,)
