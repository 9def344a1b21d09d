"""Citations: made at one site, verified at another; pinned against later
commits; corruption, damage and missing history detected; every rendering
read back by a standard reader; exports of exactly the cited selection."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import assert_error, invoke, ok
from PIL import Image

from improv_vcs import Repository, add_dataset_span, add_provenance, cite, remove_dataset_span
from improv_vcs.cite.citation import Citation, Pinned, decode_identifier, encode_identifier
from improv_vcs.core.errors import (
    ConflictError,
    ImprovError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
)
from improv_vcs.core.model import Span
from improv_vcs.query.text import parse_provenance, parse_run
from improv_vcs.sync.sites import clone, pull, push

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
FORMATS = ("text", "bibtex", "csl-json", "datacite", "json")
HIGH = (parse_provenance("classification.score > 0.9"),)
LATEST = (parse_run("latest"),)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("IMPROV_REPO", raising=False)
    monkeypatch.setenv("IMPROV_AUTHOR", "tester")


# -- helpers -----------------------------------------------------------------------


def at_hour(hour: float) -> datetime:
    return T0 + timedelta(hours=hour)


def iso(hour: float) -> str:
    return at_hour(hour).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_bytes(image_id: str) -> bytes:
    return f"pixels of {image_id} ".encode() * 3


def blob(image_id: str) -> str:
    return hashlib.sha256(image_bytes(image_id)).hexdigest()


def add_images(repo: Repository, images: dict[str, float], branch: str | None = None) -> str:
    """Commit ``image id → hour`` (one pack, in the order given)."""
    rows = [
        {"image_id": i, "timestamp": at_hour(h), "media_type": "image/png"}
        for i, h in images.items()
    ]
    with repo.transaction(branch, message=f"{len(rows)} images") as tx:
        tx.append_bytes("CAM1", rows, [image_bytes(i) for i in images])
    return tx.commit_id


def make_site(path: Path, n: int = 6) -> Repository:
    """img0 … img{n-1}, one an hour from T0, in one commit and one pack."""
    repo = Repository.init(path)
    add_images(repo, {f"img{i}": i for i in range(n)})
    return repo


def classify(repo: Repository, run: str, scores: dict[str, float]) -> str:
    records = [
        {"image_id": i, "winner": "Diatom", "score": s, "model": "m"} for i, s in scores.items()
    ]
    return add_provenance(repo, "classification", records, source="clf", run_id=run)


def record_ids(
    repo: Repository, commit: str, *pairs: tuple[str, str], kind: str = "classification"
) -> list[str]:
    """The record ids of ``(run, image id)`` pairs at ``commit``."""
    table = repo.snapshot(commit).provenance_records(kind).to_pylist()
    found = {(r["run_id"], r["image_id"]): r["record_id"] for r in table}
    return [found[pair] for pair in pairs]


def expected_digest(images: list[str], records: list[str] = ()) -> str:
    """The documented sha256-v1 digest, computed independently of the library."""
    text = "".join(f"{i}\t{blob(i)}\n" for i in sorted(images))
    text += "".join(f"record\t{r}\n" for r in sorted(records))
    return hashlib.sha256(text.encode()).hexdigest()


def verification(pinned: Pinned, images: list[str]) -> cite.Verification:
    return cite.Verification(
        pinned.commit,
        len(images),
        pinned.digest,
        len(images),
        sum(len(image_bytes(i)) for i in images),
    )


def flip_byte(site: Path, repo: Repository, image_id: str):
    """Flip one bit in the middle of an image's bytes inside its pack file;
    return the row and a function that restores the pack."""
    [row] = [r for r in repo.snapshot().images().to_pylist() if r["image_id"] == image_id]
    pack = site / "packs" / f"{row['pack']}.pack"
    original = pack.read_bytes()
    data = bytearray(original)
    data[row["offset"] + row["size"] // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    return row, lambda: pack.write_bytes(original)


def cli_cite(runner, site, *options) -> dict:
    return json.loads(ok(invoke(runner, "--repo", site, "cite", *options, "-f", "json")).stdout)


def pinned_of(data: dict) -> Pinned:
    return Pinned.model_validate(data["pinned"])


# -- 1. across sites ---------------------------------------------------------------


def test_a_citation_made_at_one_site_verifies_at_others_in_every_format(runner, tmp_path):
    a = make_site(tmp_path / "a")
    a.remotes.add("mirror", str(tmp_path / "b"))
    window = ["--start", iso(1), "--end", iso(4)]
    files = {}
    for style in FORMATS:
        files[style] = tmp_path / f"citation.{style}"
        result = ok(
            invoke(
                runner,
                "--repo",
                a.url,
                "cite",
                *window,
                "--title",
                "Three hours",
                "--author",
                "Ada Lovelace",
                "-f",
                style,
                "-o",
                files[style],
            )
        )
        assert result.stdout == ""
        identifier = result.stderr.split("Identifier: ")[1].strip()
        assert decode_identifier(identifier) == cite.load(str(files[style]))
    cited = ["img1", "img2", "img3"]
    pinned = cite.load(str(files["json"]))
    assert pinned == Pinned(
        repository=a.id,
        commit=a.resolve(),
        count=3,
        digest=expected_digest(cited),
        query={"start": "2024-05-01T01:00:00Z", "end": "2024-05-01T04:00:00Z"},
    )
    assert {style: cite.load(str(path)) for style, path in files.items()} == {
        style: pinned for style in FORMATS
    }
    assert (
        a.snapshot().cite(start=at_hour(1), end=at_hour(4)).pinned == pinned
    )  # the API pins the same

    assert push(a, "mirror").action == "pushed"
    b = Repository.open(tmp_path / "b")
    c, _ = clone(a.url, tmp_path / "c")
    for site in (b, c):
        assert site.id == a.id
        assert cite.verify(site, pinned) == verification(pinned, cited)
        by_id = ok(
            invoke(
                runner, "--repo", site.url, "cite", "verify", encode_identifier(pinned), "--json"
            )
        )
        assert json.loads(by_id.stdout) == {
            "verified": True,
            **verification(pinned, cited).__dict__,
        }
        for style, path in files.items():
            result = ok(invoke(runner, "--repo", site.url, "cite", "verify", path))
            assert result.stdout.startswith(
                f"Verified: commit {pinned.commit[:12]}, 3 image(s), digest {pinned.digest[:12]}; "
                f"3 image(s) re-read"
            ), (style, result.stdout)


# -- 2. later commits do not change a citation -------------------------------------


def test_a_citation_still_verifies_after_the_repository_moves_on(tmp_path):
    a = make_site(tmp_path / "a")
    add_dataset_span(a, "cruise", "CAM1", at_hour(0), at_hour(3))
    classify(a, "r1", {"img0": 0.95, "img1": 0.5, "img2": 0.99})
    a.remotes.add("mirror", str(tmp_path / "b"))
    push(a, "mirror")
    b = Repository.open(tmp_path / "b")
    queries = {
        "range": {"start": at_hour(1), "end": at_hour(4)},
        "dataset": {"dataset": "cruise"},
        "prov": {"provenance": HIGH, "runs": LATEST},
    }
    first = a.resolve()
    cited = {name: a.snapshot().cite(**q) for name, q in queries.items()}
    assert {n: (c.pinned.commit, c.pinned.count, c.pinned.digest) for n, c in cited.items()} == {
        "range": (first, 3, expected_digest(["img1", "img2", "img3"])),
        "dataset": (first, 3, expected_digest(["img0", "img1", "img2"])),
        "prov": (
            first,
            2,
            expected_digest(["img0", "img2"], record_ids(a, first, ("r1", "img0"), ("r1", "img2"))),
        ),
    }

    # the branches move on: a side branch, new images inside the cited range,
    # a new dataset span and a re-run that changes what `--run latest` picks
    a.create_branch("side")
    add_images(a, {"side1": 1.25}, branch="side")
    add_images(a, {"late1": 1.5, "late2": 2.5})
    add_dataset_span(a, "cruise", "CAM1", at_hour(4), at_hour(6))
    classify(a, "r2", {"img0": 0.2, "img1": 0.97, "late1": 0.99})
    push(a, "mirror")
    tip = a.resolve()
    assert tip != first and b.resolve() == tip

    for name, citation in cited.items():
        pinned = citation.pinned
        assert decode_identifier(citation.identifier) == pinned
        for site in (a, b):
            result = cite.verify(site, pinned)
            assert (result.commit, result.count, result.digest) == (
                first,
                pinned.count,
                pinned.digest,
            ), (name, site)
        assert a.snapshot(first).cite(**queries[name]).pinned == pinned, (
            name
        )  # re-deriving it pins the same
    now = {name: a.snapshot().cite(**q).pinned for name, q in queries.items()}
    assert {n: (p.commit, p.count, p.digest) for n, p in now.items()} == {
        "range": (tip, 5, expected_digest(["img1", "late1", "img2", "late2", "img3"])),
        "dataset": (
            tip,
            7,
            expected_digest(["img0", "late1", "img1", "late2", "img2", "img4", "img5"]),
        ),
        "prov": (
            tip,
            3,
            expected_digest(
                ["img1", "img2", "late1"],
                record_ids(a, tip, ("r2", "img1"), ("r1", "img2"), ("r2", "late1")),
            ),
        ),
    }
    assert all(now[n].digest != cited[n].pinned.digest for n in queries)


# -- 3. corrupt bytes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "options, cited",
    [
        (["--where", "image_id = img1"], ["img1"]),  # read alone
        (["--start", iso(0), "--end", iso(2)], ["img0", "img1"]),  # read in one ranged read
    ],
    ids=["one-image", "two-images"],
)
def test_a_flipped_byte_in_a_cited_image_fails_verification_but_not_elsewhere(
    runner, tmp_path, options, cited
):
    site = tmp_path / "a"
    a = make_site(site)
    pinned = pinned_of(cli_cite(runner, site, *options))
    identifier = encode_identifier(pinned)
    assert (pinned.count, pinned.digest) == (len(cited), expected_digest(cited))

    row, restore = flip_byte(site, a, "img3")  # not cited, in the same pack
    assert {r["pack"] for r in a.snapshot().images().to_pylist()} == {row["pack"]}
    with pytest.raises(IntegrityError):
        a.snapshot().read_image("img3")  # the flip did damage a stored image
    assert cite.verify(a, pinned) == verification(pinned, cited)
    ok(invoke(runner, "--repo", site, "cite", "verify", identifier))
    restore()

    flip_byte(site, a, "img1")
    with pytest.raises(IntegrityError) as info:
        cite.verify(a, pinned)
    assert "corrupt" in str(info.value) and "improv fsck" in str(info.value)
    assert blob("img1") in str(info.value)
    assert_error(
        invoke(runner, "--repo", site, "cite", "verify", identifier), 5, "corrupt", "improv fsck"
    )
    with pytest.raises(IntegrityError):
        cite.export(a, pinned, tmp_path / "out")
    assert not (tmp_path / "out" / "img1.png").exists()  # corrupt bytes are never written out


# -- 4. provenance-filtered citations pin the run -------------------------------------


def test_a_provenance_citation_pins_its_run_and_records(runner, tmp_path):
    site = tmp_path / "a"
    a = make_site(site, 4)
    classify(a, "r1", {"img0": 0.95, "img1": 0.5})
    first = a.resolve()
    prov = ["--prov", "classification.score > 0.9"]
    latest = cli_cite(runner, site, *prov, "--run", "latest")
    named = cli_cite(runner, site, *prov, "--run", "r1")
    r1_img0 = record_ids(a, first, ("r1", "img0"))
    for data, run in ((latest, "latest"), (named, "r1")):
        assert pinned_of(data).query == {
            "provenance": [
                {"kind": "classification", "column": "score", "op": ">", "value": "0.9"}
            ],
            "runs": [{"run": run}],
        }
        assert (pinned_of(data).count, pinned_of(data).digest) == (
            1,
            expected_digest(["img0"], r1_img0),
        )

    # a re-run: `--run latest` now selects other images and other records
    classify(a, "r2", {"img0": 0.97, "img1": 0.99, "img2": 0.2})
    tip = a.resolve()
    for data in (latest, named):
        assert cite.verify(a, pinned_of(data)) == verification(pinned_of(data), ["img0"])
        ok(invoke(runner, "--repo", site, "cite", "verify", data["identifier"]))
    again = pinned_of(cli_cite(runner, site, *prov, "--run", "latest"))
    r2 = record_ids(a, tip, ("r2", "img0"), ("r2", "img1"))
    assert (again.commit, again.count, again.digest) == (
        tip,
        2,
        expected_digest(["img0", "img1"], r2),
    )
    assert pinned_of(cli_cite(runner, site, *prov, "--run", "r1")).digest == pinned_of(named).digest

    # the same images through different records: the digests differ
    classify(a, "r3", {"img0": 0.97, "img1": 0.99})
    r2_cite = pinned_of(cli_cite(runner, site, *prov, "--run", "r2"))
    r3_cite = pinned_of(cli_cite(runner, site, *prov, "--run", "r3"))
    assert r2_cite.count == r3_cite.count == 2
    assert r2_cite.digest == expected_digest(["img0", "img1"], r2)
    assert r3_cite.digest == expected_digest(
        ["img0", "img1"], record_ids(a, a.resolve(), ("r3", "img0"), ("r3", "img1"))
    )
    assert r2_cite.digest != r3_cite.digest

    # the old citation exports exactly the record it used
    cite.export(a, pinned_of(latest), tmp_path / "out")
    exported = pq.read_table(tmp_path / "out" / "provenance" / "classification.parquet").to_pylist()
    assert [(r["record_id"], r["run_id"], r["image_id"], r["score"]) for r in exported] == [
        (r1_img0[0], "r1", "img0", 0.95)
    ]


# -- 5. datasets and releases ----------------------------------------------------------


def test_a_dataset_citation_carries_its_spans(runner, tmp_path):
    site = tmp_path / "a"
    a = make_site(site)
    add_dataset_span(a, "cruise", "CAM1", at_hour(0), at_hour(2))
    add_dataset_span(a, "cruise", "CAM1", at_hour(4), at_hour(5))
    data = cli_cite(runner, site, "--dataset", "cruise")
    spans = [
        Span(instrument="CAM1", start=at_hour(0), end=at_hour(2)),
        Span(instrument="CAM1", start=at_hour(4), end=at_hour(5)),
    ]
    assert [Span.model_validate(s) for s in data["dataset_spans"]] == spans
    assert pinned_of(data).query == {"dataset": "cruise"}
    assert pinned_of(data).count == 3 and pinned_of(data).digest == expected_digest(
        ["img0", "img1", "img4"]
    )

    remove_dataset_span(a, "cruise", "CAM1", at_hour(4), at_hour(5))
    add_dataset_span(a, "cruise", "CAM1", at_hour(5), at_hour(6))
    assert cite.verify(a, pinned_of(data)) == verification(
        pinned_of(data), ["img0", "img1", "img4"]
    )
    later = cli_cite(runner, site, "--dataset", "cruise")
    assert [Span.model_validate(s) for s in later["dataset_spans"]] == [
        spans[0],
        Span(instrument="CAM1", start=at_hour(5), end=at_hour(6)),
    ]
    assert pinned_of(later).digest == expected_digest(["img0", "img1", "img5"])
    assert_error(invoke(runner, "--repo", site, "cite", "--dataset", "nope"), 3, "nope")


def test_a_release_tag_carries_its_metadata_and_never_moves(runner, tmp_path):
    site = tmp_path / "a"
    a = make_site(site)
    released = a.resolve()
    release = {
        "title": "Plankton images, spring 2024",
        "authors": ("Ada Lovelace", "Hopper, Grace"),
        "license": "CC-BY-4.0",
        "description": "Six images",
        "doi": "10.1234/x",
    }
    assert a.create_tag("v1", message="First release", **release) == released
    add_images(a, {"img9": 9})
    data = cli_cite(runner, site, "--tag", "v1")
    assert {k: data[k] for k in (*release, "version", "ref")} == {
        **release,
        "authors": list(release["authors"]),
        "version": "v1",
        "ref": "v1",
    }
    assert pinned_of(data).commit == released and pinned_of(data).count == 6
    assert data["pinned"] == a.snapshot("v1").cite(tag="v1").pinned.model_dump(mode="json")
    overridden = cli_cite(runner, site, "--tag", "v1", "--title", "My subset", "--start", iso(2))
    assert overridden["title"] == "My subset" and overridden["doi"] == "10.1234/x"
    assert overridden["authors"] == list(release["authors"]) and pinned_of(overridden).count == 4
    text = ok(invoke(runner, "--repo", site, "cite", "--tag", "v1")).stdout
    assert text.startswith("Ada Lovelace; Hopper, Grace (") and "Release v1." in text
    assert "https://doi.org/10.1234/x" in text and "License: CC-BY-4.0." in text
    assert_error(invoke(runner, "--repo", site, "cite", "main", "--tag", "v1"), 2, "--tag")
    ok(invoke(runner, "--repo", site, "tag", "v0", released, "-m", "Plain annotated tag"))
    plain = cli_cite(runner, site, "--tag", "v0")
    assert (plain["title"], plain["authors"], plain["doi"], plain["version"]) == (
        "Image data snapshot",
        [],
        None,
        "v0",
    )
    assert plain["pinned"] == data["pinned"]

    # tags never move, through the API or the CLI, with or without a message
    with pytest.raises(ReadOnlyError):
        a.create_tag("v1", message="Moved", title="Other")
    with pytest.raises(ReadOnlyError):
        a.create_tag("v1")
    assert_error(invoke(runner, "--repo", site, "tag", "v1", "-m", "again"), 6, "v1")
    assert a.tags()["v1"] == released and a.tag_object("v1").title == release["title"]

    # an invalid DOI is refused and creates nothing
    with pytest.raises(InvalidInputError, match="doi"):
        a.create_tag("v2", message="Second", doi="not-a-doi")
    assert "v2" not in a.tags()

    # the release cites the same at a site it was pushed to
    a.remotes.add("mirror", str(tmp_path / "b"))
    push(a, "mirror", tags=True)
    b = Repository.open(tmp_path / "b")
    there = b.snapshot("v1").cite(tag="v1")
    assert (
        there.pinned == pinned_of(data)
        and there.doi == "10.1234/x"
        and there.authors == release["authors"]
    )


def test_cite_refuses_an_invalid_doi(runner, tmp_path):
    site = tmp_path / "a"
    a = make_site(site, 1)
    with pytest.raises(InvalidInputError, match="doi"):
        a.snapshot().cite(doi="not-a-doi")
    assert_error(invoke(runner, "--repo", site, "cite", "--doi", "not-a-doi"), 2, "doi")


# -- 6. renderings --------------------------------------------------------------------

DATACITE_SCHEMA = {
    "type": "object",
    "required": ["identifiers", "creators", "titles", "publisher", "publicationYear", "types"],
    "properties": {
        "identifiers": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["identifier", "identifierType"],
                "properties": {
                    "identifier": {"type": "string", "minLength": 1},
                    "identifierType": {"type": "string"},
                },
            },
        },
        "creators": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "nameType": {"enum": ["Personal", "Organizational"]},
                },
            },
        },
        "titles": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["title"],
                "properties": {"title": {"type": "string", "minLength": 1}},
            },
        },
        "publisher": {"type": "string", "minLength": 1},
        "publicationYear": {"type": "string", "pattern": "^[0-9]{4}$"},
        "types": {
            "type": "object",
            "required": ["resourceTypeGeneral"],
            "properties": {"resourceTypeGeneral": {"const": "Dataset"}},
        },
        "rightsList": {"type": "array", "items": {"type": "object", "required": ["rights"]}},
        "alternateIdentifiers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["alternateIdentifier", "alternateIdentifierType"],
            },
        },
    },
}
CSL_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["id", "type", "title", "author", "issued"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "type": {"const": "dataset"},
            "title": {"type": "string"},
            "author": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {
                            "type": "object",
                            "required": ["family", "given"],
                            "additionalProperties": False,
                            "properties": {
                                "family": {"type": "string"},
                                "given": {"type": "string"},
                            },
                        },
                        {
                            "type": "object",
                            "required": ["literal"],
                            "additionalProperties": False,
                            "properties": {"literal": {"type": "string"}},
                        },
                    ]
                },
            },
            "issued": {
                "type": "object",
                "required": ["date-parts"],
                "properties": {
                    "date-parts": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 2,
                        "items": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 3,
                            "items": {"type": "integer"},
                        },
                    }
                },
            },
            "DOI": {"type": "string", "pattern": "^10\\."},
        },
    },
}


def _citation(tmp_path: Path, **metadata) -> tuple[Repository, Citation]:
    a = make_site(tmp_path / "a", 3)
    return a, a.snapshot().cite(
        start=at_hour(1),
        authors=("Ada Lovelace", "Hopper, Grace", "Plato"),
        title="Plankton images",
        license="CC-BY-4.0",
        **metadata,
    )


@pytest.mark.parametrize("doi", [None, "10.1234/x"], ids=["no-doi", "doi"])
def test_bibtex_reads_back_with_a_real_parser(tmp_path, doi):
    bibtexparser = pytest.importorskip("bibtexparser", minversion="2")
    a, citation = _citation(tmp_path, doi=doi)
    pinned, created = citation.pinned, citation.created
    rendered = citation.render("bibtex")
    library = bibtexparser.parse_string(
        rendered,
        append_middleware=[
            bibtexparser.middlewares.SeparateCoAuthors(),
            bibtexparser.middlewares.SplitNameParts(),
        ],
    )
    assert not library.failed_blocks and len(library.entries) == 1
    [entry] = library.entries
    fields = {name: field.value for name, field in entry.fields_dict.items()}
    assert entry.entry_type == "misc" and entry.key == f"improv{created.year}{pinned.commit[:8]}"
    assert fields["title"] == "Plankton images" and fields["year"] == str(created.year)
    assert [(n.first, n.last) for n in fields["author"]] == [
        (["Ada"], ["Lovelace"]),
        (["Grace"], ["Hopper"]),
        ([], ["Plato"]),
    ]
    assert citation.identifier in fields["note"] and "2 images" in fields["note"]
    assert pinned.commit in fields["howpublished"] and fields.get("doi") == doi
    assert fields["copyright"] == "CC-BY-4.0" and fields["url"] == a.url
    path = tmp_path / "citation.bib"
    path.write_text(rendered)
    assert cite.load(str(path)) == pinned


@pytest.mark.parametrize("doi", [None, "10.1234/x"], ids=["no-doi", "doi"])
def test_every_rendering_reads_back_with_a_standard_reader(tmp_path, doi):
    try:
        import jsonschema
    except ImportError:  # only moto's dependencies bring it: the key checks below still run
        jsonschema = None
    a, citation = _citation(tmp_path, doi=doi, description="Two images")
    pinned, identifier, created = citation.pinned, citation.identifier, citation.created
    assert pinned.count == 2

    csl = json.loads(citation.render("csl-json"))
    if jsonschema:
        jsonschema.validate(csl, CSL_SCHEMA)
    [item] = csl
    assert {"id", "type", "title", "author", "issued"} <= set(item) and item[
        "id"
    ] == f"improv-{pinned.commit[:12]}"
    assert item["title"] == "Plankton images" and item["type"] == "dataset"
    assert item["author"] == [
        {"family": "Lovelace", "given": "Ada"},
        {"family": "Hopper", "given": "Grace"},
        {"literal": "Plato"},
    ]
    assert item["issued"]["date-parts"] == [[created.year, created.month, created.day]]
    assert (
        identifier in item["note"] and item.get("DOI") == doi and item["abstract"] == "Two images"
    )

    datacite = json.loads(citation.render("datacite"))
    if jsonschema:
        jsonschema.validate(datacite, DATACITE_SCHEMA)
    assert {k for k in DATACITE_SCHEMA["required"] if datacite.get(k)} == set(
        DATACITE_SCHEMA["required"]
    )
    assert (
        datacite["types"]["resourceTypeGeneral"] == "Dataset"
        and datacite["publisher"] == "improv_vcs"
    )
    expected_id = (
        {"identifier": doi, "identifierType": "DOI"}
        if doi
        else {"identifier": identifier, "identifierType": "improv"}
    )
    assert datacite["identifiers"] == [expected_id]
    assert [c["name"] for c in datacite["creators"]] == ["Ada Lovelace", "Hopper, Grace", "Plato"]
    assert datacite["titles"] == [{"title": "Plankton images"}] and datacite[
        "publicationYear"
    ] == str(created.year)
    assert datacite["rightsList"] == [{"rights": "CC-BY-4.0"}]
    assert {"alternateIdentifier": identifier, "alternateIdentifierType": "improv"} in datacite[
        "alternateIdentifiers"
    ]

    as_json = json.loads(citation.render("json"))
    assert (
        as_json["identifier"] == identifier
        and Citation.model_validate({k: v for k, v in as_json.items() if k != "identifier"})
        == citation
    )

    text = citation.render("text")
    assert text.startswith(f"Ada Lovelace; Hopper, Grace; Plato ({created.year}). Plankton images.")
    assert text.endswith(f"\nIdentifier: {identifier}\n")

    for style in FORMATS:
        rendered = citation.render(style)
        assert rendered.count(identifier) == (2 if style == "datacite" and not doi else 1), style
        path = tmp_path / f"citation-{style}"
        path.write_text(rendered)
        assert cite.load(str(path)) == pinned, style
        assert cite.verify(a, cite.load(str(path))) == verification(pinned, ["img1", "img2"])
    with pytest.raises(InvalidInputError, match="unknown citation format"):
        citation.render("ris")


@pytest.mark.parametrize("style", FORMATS)
def test_load_reads_a_rendering_given_as_text(runner, tmp_path, style):
    a, citation = _citation(tmp_path)
    rendered = citation.render(style)
    assert len(rendered) < 4096
    assert cite.load(rendered) == citation.pinned
    ok(invoke(runner, "--repo", a.url, "cite", "verify", rendered))


def test_bibtex_escapes_a_backslash_once(tmp_path):
    bibtexparser = pytest.importorskip("bibtexparser", minversion="2")
    pinned = Pinned(repository="r", commit="a" * 64, query={}, count=0, digest=expected_digest([]))
    for title in ("Data {v1}", "Data {v1", "A \\ B"):
        citation = Citation(pinned=pinned, title=title, created=T0)
        library = bibtexparser.parse_string(
            citation.to_bibtex(),
            append_middleware=[bibtexparser.middlewares.LatexDecodingMiddleware()],
        )
        assert library.entries[0].fields_dict["title"].value == title


# -- 7. export -------------------------------------------------------------------------


def _mask(box: tuple[int, int, int, int]) -> bytes:
    pixels = np.zeros((16, 16), np.uint8)
    x, y, w, h = box
    pixels[y : y + h, x : x + w] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_export_writes_exactly_the_cited_images_rows_records_and_masks(runner, tmp_path):
    site = tmp_path / "a"
    a = make_site(site)
    classify(a, "r1", {"img0": 0.95, "img1": 0.5, "img2": 0.99, "img3": 0.99})
    classify(a, "r2", {"img3": 0.1, "img4": 0.93})
    masks = {"img1": _mask((2, 3, 4, 5)), "img2": _mask((0, 0, 1, 1)), "img4": _mask((0, 0, 5, 5))}
    add_provenance(
        a,
        "segmentation",
        [{"image_id": i, "method": "otsu"} for i in masks],
        source="seg",
        run_id="otsu",
        masks=masks,
    )
    commit = a.resolve()
    add_images(a, {"img7": 0.5})  # after the citations: must not be exported
    classify(a, "r3", {"img1": 0.99})

    # classification, latest run: img0 (r1), img2 (r1), img4 (r2); img3's latest (r2) is low
    path = tmp_path / "prov.json"
    ok(
        invoke(
            runner,
            "--repo",
            site,
            "cite",
            commit,
            "--prov",
            "classification.score > 0.9",
            "--run",
            "latest",
            "-f",
            "json",
            "-o",
            path,
        )
    )
    out = tmp_path / "prov"
    result = ok(invoke(runner, "--repo", site, "cite", "export", path, out, "-q"))
    assert result.stdout.startswith(f"Exported the 3 cited image(s) to {out} (3 written")
    cited = ["img0", "img2", "img4"]
    assert _files(out) == {
        *(f"{i}.png" for i in cited),
        "metadata.parquet",
        "provenance/classification.parquet",
    }
    for image in cited:
        assert (
            (out / f"{image}.png").read_bytes()
            == a.snapshot(commit).read_image(image)
            == image_bytes(image)
        )
    metadata = pq.read_table(out / "metadata.parquet").to_pylist()
    assert [(r["image_id"], r["blob_id"], r["file"]) for r in metadata] == [
        (i, blob(i), f"{i}.png") for i in cited
    ]
    expected_rows = a.snapshot(commit).query(provenance=HIGH, runs=LATEST).to_pylist()
    assert [{k: v for k, v in r.items() if k != "file"} for r in metadata] == expected_rows
    records = pq.read_table(out / "provenance" / "classification.parquet").to_pylist()
    used = record_ids(a, commit, ("r1", "img0"), ("r1", "img2"), ("r2", "img4"))
    assert sorted(r["record_id"] for r in records) == sorted(used)
    assert {r["image_id"]: (r["run_id"], r["score"]) for r in records} == {
        "img0": ("r1", 0.95),
        "img2": ("r1", 0.99),
        "img4": ("r2", 0.93),
    }

    # a segmentation query: images, their records, and their masks
    seg = tmp_path / "seg.txt"
    ok(
        invoke(
            runner, "--repo", site, "cite", commit, "--prov", "segmentation.area > 10", "-o", seg
        )
    )
    out = tmp_path / "seg"
    ok(invoke(runner, "--repo", site, "cite", "export", seg, out, "-q"))
    segmented = ["img1", "img4"]  # areas 20 and 25; img2's is 1
    seg_ids = dict(
        zip(
            segmented,
            record_ids(a, commit, ("otsu", "img1"), ("otsu", "img4"), kind="segmentation"),
        )
    )
    assert _files(out) == {
        *(f"{i}.png" for i in segmented),
        "metadata.parquet",
        "provenance/segmentation.parquet",
        *(f"masks/{i}.{seg_ids[i][:12]}.png" for i in segmented),
    }
    for image in segmented:
        assert (out / f"{image}.png").read_bytes() == a.snapshot(commit).read_image(image)
        assert (out / "masks" / f"{image}.{seg_ids[image][:12]}.png").read_bytes() == masks[image]
        assert a.snapshot(commit).read_mask(image) == masks[image]
    assert [r["image_id"] for r in pq.read_table(out / "metadata.parquet").to_pylist()] == segmented
    seg_records = pq.read_table(out / "provenance" / "segmentation.parquet").to_pylist()
    assert {r["image_id"]: (r["record_id"], r["area"]) for r in seg_records} == {
        "img1": (seg_ids["img1"], 20),
        "img4": (seg_ids["img4"], 25),
    }

    # exported again at another site: the same bytes
    a.remotes.add("mirror", str(tmp_path / "b"))
    push(a, "mirror")
    again = tmp_path / "seg-b"
    cite.export(Repository.open(tmp_path / "b"), cite.load(str(seg)), again)
    assert {f: (again / f).read_bytes() for f in _files(again) if not f.endswith(".parquet")} == {
        f: (out / f).read_bytes() for f in _files(out) if not f.endswith(".parquet")
    }


# -- 8. errors -----------------------------------------------------------------------


def test_verify_errors_name_what_is_wrong(runner, tmp_path):
    site = tmp_path / "a"
    a = make_site(site, 3)
    pinned = a.snapshot().cite(start=at_hour(1)).pinned
    identifier = encode_identifier(pinned)
    body = len("improv:1:")

    # damaged: the zstd magic number no longer reads
    damaged = identifier[:body] + ("L" if identifier[body] != "L" else "M") + identifier[body + 1 :]
    with pytest.raises(InvalidInputError, match="damaged"):
        cite.load(damaged)
    assert_error(invoke(runner, "--repo", site, "cite", "verify", damaged), 2, "damaged")
    assert_error(invoke(runner, "--repo", site, "cite", "verify", identifier[:-40]), 2, "damaged")
    assert_error(
        invoke(runner, "--repo", site, "cite", "verify", tmp_path / "none.txt"),
        2,
        "no improv citation identifier",
    )
    assert_error(invoke(runner, "--repo", site, "cite", "verify"), 2, "usage")
    assert_error(invoke(runner, "--repo", site, "cite", "-f", "ris"), 2, "unknown citation format")

    # tampered: a digest or a count that the selection does not give
    for changed in ({"digest": expected_digest(["img1"])}, {"count": 3}):
        tampered = encode_identifier(pinned.model_copy(update=changed))
        with pytest.raises(IntegrityError, match="digest"):
            cite.verify(a, decode_identifier(tampered))
        assert_error(
            invoke(runner, "--repo", site, "cite", "verify", tampered), 5, "digest", "improv fsck"
        )

    # another repository
    other = make_site(tmp_path / "other", 3)
    foreign = other.snapshot().cite(start=at_hour(1)).pinned
    assert (
        foreign.digest == pinned.digest and foreign.repository != a.id
    )  # same content, other identity
    with pytest.raises(ConflictError, match=foreign.repository):
        cite.verify(a, foreign)
    assert_error(
        invoke(runner, "--repo", site, "cite", "verify", encode_identifier(foreign)),
        4,
        a.id,
        foreign.repository,
    )

    # a commit this site never received: the message says where to pull from
    clone(a.url, tmp_path / "c")
    a.remotes.add("mirror", str(tmp_path / "b"))
    push(a, "mirror")
    add_images(a, {"img5": 1.5})
    newer = a.snapshot().cite(start=at_hour(1)).pinned
    assert newer.count == 3
    c = Repository.open(tmp_path / "c")
    with pytest.raises(NotFoundError, match=newer.commit[:12]) as info:
        cite.verify(c, newer)
    assert f"pull it from origin ({a.url})" in str(info.value)
    assert_error(
        invoke(runner, "--repo", c.url, "cite", "verify", encode_identifier(newer)),
        3,
        newer.commit[:12],
        "origin",
        a.url,
    )
    b = Repository.open(tmp_path / "b")  # pushed to: it has no remote of its own
    assert_error(
        invoke(runner, "--repo", b.url, "cite", "verify", encode_identifier(newer)),
        3,
        "improv pull URL",
    )
    assert cite.verify(c, pinned).count == 2  # what it has still verifies
    pull(c)
    assert cite.verify(c, newer) == verification(newer, ["img1", "img5", "img2"])


@pytest.mark.parametrize("query", [{"start": "2024-05-01T60:00:00Z"}, {"colour": "red"}])
def test_an_identifier_with_an_invalid_query_is_refused(runner, tmp_path, query):
    site = tmp_path / "a"
    a = make_site(site, 1)
    pinned = Pinned(
        repository=a.id, commit=a.resolve(), query=query, count=1, digest=expected_digest(["img0"])
    )
    with pytest.raises(InvalidInputError):
        cite.verify(a, pinned)
    assert_error(invoke(runner, "--repo", site, "cite", "verify", encode_identifier(pinned)), 2)


def test_any_one_character_damage_is_reported_as_damage(tmp_path):
    a = make_site(tmp_path / "a", 3)
    pinned = a.snapshot().cite(start=at_hour(1), end=at_hour(3)).pinned
    identifier = encode_identifier(pinned)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    wrong = {}
    for i in range(len("improv:1:"), len(identifier)):
        if identifier[i] not in alphabet:
            continue  # the separator before the checksum
        damaged = (
            identifier[:i]
            + alphabet[(alphabet.index(identifier[i]) + 1) % 64]
            + identifier[i + 1 :]
        )
        try:
            decoded = cite.load(damaged)
            if decoded == pinned:
                continue  # the change fell on bits the decoder ignores: the same citation
            cite.verify(a, decoded)
            wrong[i] = "verified"
        except InvalidInputError as exc:
            if "damaged" not in str(exc):
                wrong[i] = str(exc)
        except IntegrityError as exc:
            if "digest" not in str(exc):
                wrong[i] = str(exc)
        except (ImprovError, ValueError) as exc:
            wrong[i] = f"{type(exc).__name__}: {str(exc)[:60]}"
    assert wrong == {}
