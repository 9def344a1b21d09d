"""``eml.xml``: a Darwin Core Archive's dataset metadata (EML 2.1.1, GBIF
profile) from a selection's citation and what the archive covers."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone

from .selection import Selection

EML = "eml://ecoinformatics.org/eml-2.1.1"
LICENCES = {
    "CC0-1.0": (
        "Public Domain (CC0 1.0)",
        "http://creativecommons.org/publicdomain/zero/1.0/legalcode",
    ),
    "CC-BY-4.0": (
        "Creative Commons Attribution (CC-BY) 4.0 License",
        "http://creativecommons.org/licenses/by/4.0/legalcode",
    ),
    "CC-BY-NC-4.0": (
        "Creative Commons Attribution Non Commercial (CC-BY-NC) 4.0 License",
        "http://creativecommons.org/licenses/by-nc/4.0/legalcode",
    ),
}


@dataclass(frozen=True)
class Coverage:
    """Where, when and what the archive's samples cover."""

    samples: int
    lats: tuple[float, ...] = ()
    lons: tuple[float, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    taxa: tuple[str, ...] = ()


def number(value: float | None, digits: int = 9) -> str:
    if value is None or not math.isfinite(value):
        return ""
    value = round(float(value), digits)
    return str(int(value)) if value.is_integer() else repr(value)


def xml_bytes(root: ET.Element) -> bytes:
    ET.indent(root, "  ")
    for link in root.iter("ulink"):  # inline in a paragraph: no layout inside
        link.text = None
        for child in link:
            child.tail = None
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def eml_xml(selection: Selection, coverage: Coverage) -> bytes:
    """Dataset metadata (EML 2.1.1, GBIF profile): title, creators, abstract,
    licence, publication date, identifiers, coverage and method."""
    citation = selection.citation
    lang = "{http://www.w3.org/XML/1998/namespace}lang"
    ET.register_namespace("eml", EML)
    root = ET.Element(
        f"{{{EML}}}eml",
        {
            "packageId": citation.identifier,
            "system": "improv_vcs",
            "scope": "system",
            lang: "en",
        },
    )
    dataset = ET.SubElement(root, "dataset")
    for identifier in (
        citation.identifier,
        f"https://doi.org/{citation.doi}" if citation.doi else None,
    ):
        if identifier:
            ET.SubElement(dataset, "alternateIdentifier").text = identifier
    ET.SubElement(dataset, "title", {lang: "en"}).text = citation.title
    people = [_person(a) for a in citation.authors] or [_person("Anonymous")]
    for role in ("creator", "metadataProvider"):
        for person in people:
            dataset.append(_party(role, person))
    ET.SubElement(dataset, "pubDate").text = citation.created.date().isoformat()
    ET.SubElement(dataset, "language").text = "en"
    abstract = citation.description or (
        f"{citation.title}: counts per class of {citation.pinned.count} images, "
        f"{coverage.samples} samples."
    )
    _paragraph(ET.SubElement(dataset, "abstract"), abstract)
    cited = citation.to_text().splitlines()[0]
    additional = ET.SubElement(dataset, "additionalInfo")
    if citation.version:
        _paragraph(additional, f"Version: {citation.version} (a release of the repository).")
    _paragraph(additional, f"Cite as: {cited}")
    if citation.license:
        rights = ET.SubElement(dataset, "intellectualRights")
        para = ET.SubElement(rights, "para")
        known = LICENCES.get(citation.license)
        if known is None:
            para.text = citation.license
        else:
            para.text = "This work is licensed under a "
            link = ET.SubElement(para, "ulink", {"url": known[1]})
            ET.SubElement(link, "citetitle").text = known[0]
            link.tail = "."
    _coverage(dataset, coverage)
    dataset.append(_party("contact", people[0]))
    methods = ET.SubElement(dataset, "methods")
    step = ET.SubElement(ET.SubElement(methods, "methodStep"), "description")
    labels = selection.labels
    assert labels is not None
    _paragraph(
        step,
        f"Images selected from improv_vcs repository {citation.pinned.repository} at commit "
        f"{citation.pinned.commit}, labelled by the {labels.kind} run {labels.run} "
        f"({labels.verification}); each sample's images are counted per class and divided by "
        "the volume analysed. The archive's MANIFEST.json lists every image's blob id so the "
        f"selection can be verified against the citation {citation.identifier}.",
    )
    gbif = ET.SubElement(
        ET.SubElement(ET.SubElement(root, "additionalMetadata"), "metadata"), "gbif"
    )
    ET.SubElement(gbif, "dateStamp").text = citation.created.isoformat()
    ET.SubElement(gbif, "hierarchyLevel").text = "dataset"
    ET.SubElement(gbif, "citation", {"identifier": citation.identifier}).text = cited
    return xml_bytes(root)


def _person(author: str) -> tuple[str, str]:
    """(given name, surname) from ``Surname, Given`` or ``Given Surname``."""
    if "," in author:
        surname, given = (p.strip() for p in author.split(",", 1))
    else:
        given, _, surname = author.strip().rpartition(" ")
    return given.strip(), surname.strip() or author.strip()


def _party(role: str, person: tuple[str, str]) -> ET.Element:
    party = ET.Element(role)
    name = ET.SubElement(party, "individualName")
    if person[0]:
        ET.SubElement(name, "givenName").text = person[0]
    ET.SubElement(name, "surName").text = person[1]
    return party


def _paragraph(parent: ET.Element, text: str) -> None:
    ET.SubElement(parent, "para").text = text


def _coverage(dataset: ET.Element, covered: Coverage) -> None:
    coverage = ET.SubElement(dataset, "coverage")
    if covered.lats and covered.lons:
        geographic = ET.SubElement(coverage, "geographicCoverage")
        ET.SubElement(geographic, "geographicDescription").text = "Where the samples were imaged"
        box = ET.SubElement(geographic, "boundingCoordinates")
        for tag, value in (
            ("westBoundingCoordinate", min(covered.lons)),
            ("eastBoundingCoordinate", max(covered.lons)),
            ("northBoundingCoordinate", max(covered.lats)),
            ("southBoundingCoordinate", min(covered.lats)),
        ):
            ET.SubElement(box, tag).text = number(value, 6)
    if covered.start is not None and covered.end is not None:
        dates = ET.SubElement(ET.SubElement(coverage, "temporalCoverage"), "rangeOfDates")
        for tag, moment in (("beginDate", covered.start), ("endDate", covered.end)):
            ET.SubElement(ET.SubElement(dates, tag), "calendarDate").text = (
                moment.astimezone(timezone.utc).date().isoformat()
            )
    if covered.taxa:
        taxonomic = ET.SubElement(coverage, "taxonomicCoverage")
        for taxon in covered.taxa:
            classification = ET.SubElement(taxonomic, "taxonomicClassification")
            ET.SubElement(classification, "taxonRankValue").text = taxon
    if not len(coverage):
        dataset.remove(coverage)
