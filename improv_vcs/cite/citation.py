"""Citations of a snapshot: the pinned selection, its digest, and renderings.

This module is pure: it describes, encodes and renders citations; making
and verifying one against a repository is :mod:`improv_vcs.cite.citing`.

A citation pins the repository id, the commit, the selection (a dataset name
and/or the canonical query, provenance filters and runs included), the row
count and a digest of the result. Its *identifier* —
``improv:1:<base64url(zstd(canonical JSON))>`` — carries exactly what
verification needs, so it can be verified on its own; every rendering embeds
it, so any rendering can be verified too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Literal

import zstandard
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core import canonical
from ..core.errors import InvalidInputError
from ..core.model import Oid, Span, UtcDatetime

PREFIX = "improv:1:"
_IDENTIFIER = re.compile(r"improv:1:[A-Za-z0-9_.-]+")
DOI_PATTERN = r"^10\.\d{4,9}/\S+$"
DIGEST_METHOD = "sha256-v1"
"""SHA-256 over ``image_id TAB blob_id LF`` for every cited image, sorted by
image id, then ``record TAB record_id LF`` for every provenance record the
selection used, sorted."""


class Pinned(BaseModel):
    """What a citation pins; the identifier encodes exactly this."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    repository: str
    commit: Oid
    query: dict[str, Any]
    count: int = Field(ge=0)
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    method: Literal["sha256-v1"] = DIGEST_METHOD


class Citation(BaseModel):
    """A citable, verifiable snapshot selection with its bibliographic metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["improv-citation"] = "improv-citation"
    format: Literal[1] = 1
    pinned: Pinned
    urls: tuple[str, ...] = ()
    ref: str | None = Field(default=None, description="the revision as given (branch, tag …)")
    dataset_spans: tuple[Span, ...] = ()
    title: str = "Image data snapshot"
    authors: tuple[str, ...] = ()
    license: str | None = None
    description: str | None = None
    doi: str | None = Field(default=None, pattern=DOI_PATTERN)
    version: str | None = Field(default=None, description="a release tag name")
    created: UtcDatetime

    @property
    def identifier(self) -> str:
        return encode_identifier(self.pinned)

    # -- renderings ----------------------------------------------------------
    def _year(self) -> int:
        return self.created.year

    def _what(self) -> str:
        return describe_query(self.pinned.query)

    def to_text(self) -> str:
        """A reference for a paper's bibliography, then the identifier."""
        who = "; ".join(self.authors) or "Anonymous"
        parts = [f"{who} ({self._year()}). {self.title}."]
        if self.version:
            parts.append(f"Release {self.version}.")
        parts.append(
            f"improv_vcs repository {self.pinned.repository}, commit {self.pinned.commit[:12]}, "
            f"{self._what()}; {self.pinned.count} images."
        )
        if self.doi:
            parts.append(f"https://doi.org/{self.doi}")
        if self.license:
            parts.append(f"License: {self.license}.")
        return " ".join(parts) + f"\nIdentifier: {self.identifier}\n"

    def to_bibtex(self) -> str:
        key = f"improv{self._year()}{self.pinned.commit[:8]}"
        fields = {
            "title": self.title,
            "author": " and ".join(self.authors) or "Anonymous",
            "year": str(self._year()),
            "publisher": "improv_vcs",
            "version": self.version or self.pinned.commit[:12],
            "howpublished": f"improv_vcs repository {self.pinned.repository}, commit "
            f"{self.pinned.commit}",
            "note": f"{self._what()}, {self.pinned.count} images; identifier {self.identifier}",
        }
        if self.doi:
            fields["doi"] = self.doi
        if self.license:
            fields["copyright"] = self.license
        if self.urls:
            fields["url"] = self.urls[0]
        body = ",\n".join(
            f"  {name} = {{{_bibtex_escape(value)}}}" for name, value in fields.items()
        )
        return f"@misc{{{key},\n{body}\n}}\n"

    def to_csl_json(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {
            "id": f"improv-{self.pinned.commit[:12]}",
            "type": "dataset",
            "title": self.title,
            "author": [_csl_name(a) for a in self.authors],
            "issued": {"date-parts": [[self.created.year, self.created.month, self.created.day]]},
            "publisher": "improv_vcs",
            "version": self.version or self.pinned.commit,
            "note": f"{self._what()}, {self.pinned.count} images; identifier {self.identifier}",
        }
        if self.doi:
            item["DOI"] = self.doi
        if self.urls:
            item["URL"] = self.urls[0]
        if self.description:
            item["abstract"] = self.description
        return [item]

    def to_datacite(self) -> dict[str, Any]:
        """DataCite metadata (the JSON form of schema 4): the mandatory
        identifier, creators, titles, publisher, publicationYear and
        resourceType, plus rights and alternate identifiers."""
        identifier = (
            {"identifier": self.doi, "identifierType": "DOI"}
            if self.doi
            else {"identifier": self.identifier, "identifierType": "improv"}
        )
        return {
            "identifiers": [identifier],
            "creators": [{"name": a, "nameType": "Personal"} for a in self.authors]
            or [{"name": "Anonymous"}],
            "titles": [{"title": self.title}],
            "publisher": "improv_vcs",
            "publicationYear": str(self._year()),
            "types": {"resourceTypeGeneral": "Dataset", "resourceType": "Image data snapshot"},
            "version": self.version or self.pinned.commit,
            "rightsList": [{"rights": self.license}] if self.license else [],
            "descriptions": [{"description": self.description, "descriptionType": "Abstract"}]
            if self.description
            else [],
            "alternateIdentifiers": [
                {"alternateIdentifier": self.identifier, "alternateIdentifierType": "improv"},
                {
                    "alternateIdentifier": self.pinned.commit,
                    "alternateIdentifierType": "improv-commit",
                },
            ],
            "schemaVersion": "http://datacite.org/schema/kernel-4",
        }

    def render(self, style: str) -> str:
        if style == "text":
            return self.to_text()
        if style == "bibtex":
            return self.to_bibtex()
        if style == "csl-json":
            return json.dumps(self.to_csl_json(), indent=2) + "\n"
        if style == "datacite":
            return json.dumps(self.to_datacite(), indent=2) + "\n"
        if style == "json":
            return (
                json.dumps(
                    {**self.model_dump(mode="json"), "identifier": self.identifier}, indent=2
                )
                + "\n"
            )
        raise InvalidInputError(
            f"unknown citation format {style!r}; use one of {', '.join(STYLES)}"
        )


STYLES = ("text", "bibtex", "csl-json", "datacite", "json")


def describe_query(query: dict[str, Any]) -> str:
    """A short human reading of a canonical query."""
    parts = []
    if query.get("dataset"):
        parts.append(f"dataset {query['dataset']}")
    if query.get("instruments"):
        parts.append("instrument " + ", ".join(query["instruments"]))
    if query.get("start") or query.get("end"):
        parts.append(f"time {query.get('start') or '…'} to {query.get('end') or '…'}")
    if query.get("bbox"):
        parts.append("box " + ",".join(f"{v:g}" for v in query["bbox"]))
    if query.get("samples"):
        parts.append("sample " + ", ".join(query["samples"]))
    for condition in query.get("where", ()):
        parts.append(f"{condition['column']} {condition['op']} {condition['value']}")
    for kind in query.get("kinds", ()):
        parts.append(f"with {kind} records")
    for condition in query.get("provenance", ()):
        parts.append(
            f"{condition['kind']}.{condition['column']} {condition['op']} {condition['value']}"
        )
    for run in query.get("runs", ()):
        parts.append(f"run {run['run']}" + (f" of {run['kind']}" if run.get("kind") else ""))
    return "; ".join(parts) or "all images"


_BIBTEX_SPECIAL = {"\\": "\\textbackslash{}", "{": "\\{", "}": "\\}"}


def _bibtex_escape(value: str) -> str:
    return "".join(_BIBTEX_SPECIAL.get(c, c) for c in value)


def _csl_name(author: str) -> dict[str, str]:
    if "," in author:
        family, given = (p.strip() for p in author.split(",", 1))
        return {"family": family, "given": given}
    parts = author.rsplit(" ", 1)
    return {"family": parts[-1], "given": parts[0]} if len(parts) == 2 else {"literal": author}


def encode_identifier(pinned: Pinned) -> str:
    payload = canonical.encode(pinned.model_dump(mode="json"))
    packed = zstandard.ZstdCompressor(level=19).compress(payload)
    body = base64.urlsafe_b64encode(packed).decode().rstrip("=")
    return f"{PREFIX}{body}.{_check(body)}"


def _check(body: str) -> str:
    """A checksum that tells a damaged identifier from a different one."""
    return hashlib.sha256(body.encode()).hexdigest()[:8]


def decode_identifier(identifier: str) -> Pinned:
    """The pinned selection an identifier names."""
    text = identifier.strip()
    if not _IDENTIFIER.fullmatch(text):
        raise InvalidInputError(f"not an improv citation identifier: {text[:40]!r}")
    body, dot, check = text[len(PREFIX) :].rpartition(".")
    if not dot or _check(body) != check:
        raise InvalidInputError("the citation identifier is damaged (its checksum does not match)")
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        payload = zstandard.ZstdDecompressor().decompress(packed, max_output_size=1 << 20)
        return Pinned.model_validate_json(payload)
    except (ValueError, zstandard.ZstdError, ValidationError):
        raise InvalidInputError("the citation identifier is damaged (it does not decode)") from None


def find_identifier(text: str) -> Pinned:
    """The pinned selection of a citation in any rendering (or a bare identifier)."""
    found = [f.rstrip(".") for f in _IDENTIFIER.findall(text)]  # a sentence's full stop
    if not found:
        raise InvalidInputError("no improv citation identifier (improv:1:…) found")
    pinned = [decode_identifier(f) for f in found]
    if any(p != pinned[0] for p in pinned[1:]):
        raise InvalidInputError("the text holds several different citation identifiers")
    return pinned[0]
