"""The Darwin Core Archive export: an event core per sample, occurrences per
class with counts, measurements (count, concentration, volume), meta.xml and
eml.xml; checked against the selection it came from, by python-dwca-reader,
and by the manifest's verification."""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from dwca.read import DwCAReader

from improv_vcs import Query
from improv_vcs.cli.demo import build_demo
from improv_vcs.core.errors import IntegrityError, InvalidInputError
from improv_vcs.publish.export import ExportOptions, export
from improv_vcs.publish.manifest import verify
from improv_vcs.publish.selection import Labels, select

TEXT = "{http://rs.tdwg.org/dwc/text/}"
DWC = "http://rs.tdwg.org/dwc/terms/"
FILES = ("event.txt", "occurrence.txt", "extendedmeasurementorfact.txt")
NAMES = {
    "Diatom": ("Bacillariophyceae", "148899"),  # a bare AphiaID becomes the WoRMS LSID
    "Dinoflagellate": ("Dinophyceae", "urn:lsid:marinespecies.org:taxname:19542"),
    "Ciliate": ("Ciliophora", ""),
    "Detritus": ("", ""),  # left out on purpose: not an organism
    "Other": ("Biota", "urn:lsid:marinespecies.org:taxname:1"),
}
DOI = "10.5281/zenodo.1234567"


def _names_csv(path: Path, names: dict[str, tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["class", "scientificName", "scientificNameID"])
        out.writerows([c, *n] for c, n in names.items())
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("dwca")
    repo = build_demo(root / "repo", images_per_bin=20, quiet=True)
    repo.create_tag("v1.0", message="First release", doi=DOI)
    return root, repo


@pytest.fixture(scope="module")
def selection(demo):
    _, repo = demo
    return select(
        repo.snapshot(),
        Query(),
        Labels("classification", "demo-cnn-v1"),
        title="Demo plankton counts",
        authors=["Doe, Jane", "John Smith"],
        license="CC-BY-4.0",
        description="Counts per class of two IFCBs.",
        tag="v1.0",
    )


@pytest.fixture(scope="module")
def archive(demo, selection):
    root, _ = demo
    names = _names_csv(root / "names.csv", NAMES)
    exported = export(selection, root / "dwca.zip", "dwca", ExportOptions(names=names))
    assert exported.path == root / "dwca.zip" and exported.images == selection.rows.num_rows
    assert not (root / "dwca.zip.partial").exists()
    return exported.path


def _tables(path: Path) -> dict[str, list[dict[str, str]]]:
    with zipfile.ZipFile(path) as z:
        return {
            name: list(csv.DictReader(io.StringIO(z.read(name).decode("utf-8")), delimiter="\t"))
            for name in FILES
        }


def test_meta_xml_names_the_files_and_their_columns(archive):
    with zipfile.ZipFile(archive) as z:
        members = set(z.namelist())
        meta = ET.fromstring(z.read("meta.xml"))
        assert meta.tag == f"{TEXT}archive" and meta.get("metadata") in members
        ET.fromstring(z.read("eml.xml"))
        core = meta.findall(f"{TEXT}core")
        extensions = meta.findall(f"{TEXT}extension")
        assert len(core) == 1 and core[0].get("rowType") == DWC + "Event"
        assert core[0].find(f"{TEXT}id").get("index") == "0"
        assert [e.get("rowType") for e in extensions] == [
            DWC + "Occurrence",
            "http://rs.iobis.org/obis/terms/ExtendedMeasurementOrFact",
        ]
        for part in core + extensions:
            (location,) = [loc.text for loc in part.iter(f"{TEXT}location")]
            assert location in members
            assert part.get("fieldsTerminatedBy") == "\\t" and part.get("encoding") == "UTF-8"
            assert part.get("ignoreHeaderLines") == "1"
            header = z.read(location).decode().splitlines()[0].split("\t")
            fields = {int(f.get("index")): f.get("term") for f in part.findall(f"{TEXT}field")}
            assert sorted(fields) == list(range(len(header)))
            assert [fields[i].rsplit("/", 1)[1] for i in range(len(header))] == header
            assert fields[0] == DWC + "eventID"
            if part in extensions:
                assert part.find(f"{TEXT}coreid").get("index") == "0"


def test_rows_join_the_core_and_carry_the_required_terms(archive, selection):
    tables = _tables(archive)
    events, occurrences, facts = (tables[n] for n in FILES)
    event_ids = [e["eventID"] for e in events]
    assert (
        len(event_ids) == len(set(event_ids)) == len(set(selection.rows["sample_id"].to_pylist()))
    )
    occurrence_ids = [o["occurrenceID"] for o in occurrences]
    assert len(occurrence_ids) == len(set(occurrence_ids))
    assert {r["eventID"] for r in occurrences + facts} <= set(event_ids)
    assert {f["occurrenceID"] for f in facts} - {""} == set(occurrence_ids)
    for event in events:
        assert event["eventID"] and event["eventDate"]
    for occurrence in occurrences:
        for term in ("occurrenceID", "basisOfRecord", "scientificName", "occurrenceStatus"):
            assert occurrence[term], term
        assert occurrence["basisOfRecord"] == "MachineObservation"
        assert occurrence["occurrenceStatus"] == "present"
        assert occurrence["identificationVerificationStatus"] == "PredictedByMachine"
        references = occurrence["identificationReferences"].split(" | ")
        assert references == ["classifier demo-cnn v1", selection.citation.identifier]
        assert occurrence["associatedMedia"] == ""
        assert occurrence["organismQuantityType"] == "individuals"
    measurement_ids = [f["measurementID"] for f in facts]
    assert len(measurement_ids) == len(set(measurement_ids))


def test_counts_and_concentrations_are_the_selection_s(archive, selection):
    events, occurrences, facts = (_tables(archive)[n] for n in FILES)
    rows = selection.rows.select(["sample_id", "label", "lat", "lon"]).to_pylist()
    expected = Counter((r["sample_id"], r["label"]) for r in rows if r["label"] != "Detritus")
    counted = {(o["eventID"], o["verbatimIdentification"]): o for o in occurrences}
    assert {k: int(o["organismQuantity"]) for k, o in counted.items()} == dict(expected)
    for (_, label), occurrence in counted.items():
        name, identifier = NAMES[label]
        assert occurrence["scientificName"] == name
        assert occurrence["scientificNameID"] == (
            "urn:lsid:marinespecies.org:taxname:148899" if label == "Diatom" else identifier
        )
    samples = {s["sample_id"]: s for s in selection.snapshot.samples().to_pylist()}
    for event in events:
        sample = samples[event["eventID"]]
        start, end = event["eventDate"].split("/")
        assert start == sample["start"].strftime("%Y-%m-%dT%H:%M:%SZ")
        assert end == sample["end"].strftime("%Y-%m-%dT%H:%M:%SZ")
        mine = [r for r in rows if r["sample_id"] == event["eventID"]]
        assert float(event["decimalLatitude"]) == pytest.approx(
            statistics.fmean(r["lat"] for r in mine), abs=1e-6
        )
        assert float(event["decimalLongitude"]) == pytest.approx(
            statistics.fmean(r["lon"] for r in mine), abs=1e-6
        )
        assert (event["sampleSizeValue"], event["sampleSizeUnit"]) == ("5", "millilitre")
        assert event["samplingProtocol"] == "Imaging FlowCytobot"
        assert event["datasetName"] == "Demo plankton counts"
    by_occurrence: dict[str, dict[str, dict[str, str]]] = {}
    for fact in facts:
        kind = fact["measurementID"].rsplit(":", 1)[1]
        by_occurrence.setdefault(fact["occurrenceID"] or fact["eventID"], {})[kind] = fact
    for event in events:
        volume = by_occurrence[event["eventID"]]["volume"]
        assert (volume["measurementValue"], volume["measurementUnit"]) == ("5", "ml")
    for (sample, _), occurrence in counted.items():
        facts_of = by_occurrence[occurrence["occurrenceID"]]
        count = int(occurrence["organismQuantity"])
        assert int(facts_of["count"]["measurementValue"]) == count
        concentration = facts_of["concentration"]
        assert concentration["measurementUnit"] == "individuals per litre"
        assert float(concentration["measurementValue"]) == pytest.approx(count / 5.0 * 1000)
        assert concentration["eventID"] == sample


def test_python_dwca_reader_reads_the_archive(archive, selection):
    with DwCAReader(str(archive)) as dwca:
        assert dwca.core_file.file_descriptor.type == DWC + "Event"
        rows = list(dwca)
        assert len(rows) == len(set(selection.rows["sample_id"].to_pylist()))
        occurrences = facts = 0
        for row in rows:
            for extension in row.extensions:
                assert extension.data[DWC + "eventID"] == row.id
                if extension.rowtype == DWC + "Occurrence":
                    occurrences += 1
                else:
                    facts += 1
        tables = _tables(archive)
        assert occurrences == len(tables["occurrence.txt"])
        assert facts == len(tables["extendedmeasurementorfact.txt"])
        assert dwca.metadata is not None
        assert dwca.metadata.find("dataset/title").text == "Demo plankton counts"


def test_eml_carries_the_citation(archive, selection):
    citation = selection.citation
    with zipfile.ZipFile(archive) as z:
        eml = ET.fromstring(z.read("eml.xml"))
    dataset = eml.find("dataset")
    assert dataset.findtext("title") == "Demo plankton counts"
    assert [c.findtext("individualName/surName") for c in dataset.findall("creator")] == [
        "Doe",
        "Smith",
    ]
    assert dataset.findtext("abstract/para") == "Counts per class of two IFCBs."
    rights = ET.tostring(dataset.find("intellectualRights"), encoding="unicode")
    assert "creativecommons.org/licenses/by/4.0" in rights
    assert dataset.findtext("pubDate") == citation.created.date().isoformat()
    assert [a.text for a in dataset.findall("alternateIdentifier")] == [
        citation.identifier,
        f"https://doi.org/{DOI}",
    ]
    assert citation.version == "v1.0"
    assert "Version: v1.0" in "".join(dataset.find("additionalInfo").itertext())
    assert dataset.find("contact") is not None


def test_unmapped_classes_and_missing_labels_are_refused(demo, selection):
    root, repo = demo
    partial = {k: v for k, v in NAMES.items() if k not in ("Ciliate", "Other")}
    names = _names_csv(root / "partial.csv", partial)
    dest = root / "refused.zip"
    with pytest.raises(InvalidInputError) as refused:
        export(selection, dest, "dwca", ExportOptions(names=names))
    message = str(refused.value)
    assert "Ciliate" in message and "Other" in message and "Diatom" not in message
    assert "\n" not in message
    with pytest.raises(InvalidInputError, match="names CSV"):
        export(selection, dest, "dwca", ExportOptions())
    (root / "bad.csv").write_text("label,name\nDiatom,Bacillariophyceae\n")
    with pytest.raises(InvalidInputError, match="scientificName"):
        export(selection, dest, "dwca", ExportOptions(names=root / "bad.csv"))
    unlabelled = select(repo.snapshot(), Query(), title="T")
    with pytest.raises(InvalidInputError, match="labels"):
        export(unlabelled, dest, "dwca", ExportOptions(names=root / "names.csv"))
    assert not dest.exists()


def test_human_labels_are_human_observations(demo, selection):
    root, _ = demo
    annotated = dataclasses.replace(selection, labels=Labels("annotation", "expert-1", "winner"))
    path = export(
        annotated, root / "human.zip", "dwca", ExportOptions(names=root / "names.csv")
    ).path
    occurrences = _tables(path)["occurrence.txt"]
    assert {o["basisOfRecord"] for o in occurrences} == {"HumanObservation"}
    assert {o["identificationVerificationStatus"] for o in occurrences} == {"ValidatedByHuman"}


def _changed(src: Path, dest: Path, member: str) -> Path:
    """A copy of the zip ``src`` with one byte of ``member`` changed."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if info.filename == member:
                at = len(data) // 2
                data = data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]
            new.writestr(info, data)
    return dest


def test_the_archive_verifies_and_a_changed_byte_does_not(demo, archive, selection):
    root, repo = demo
    alone = verify(archive)
    assert alone.citation == selection.citation.identifier and alone.export == "dwca"
    assert alone.images == selection.rows.num_rows and not alone.against_repository
    assert verify(archive, repo).against_repository
    for member in ("event.txt", "meta.xml"):
        changed = _changed(archive, root / f"changed-{member}.zip", member)
        with pytest.raises(IntegrityError, match=member):
            verify(changed)
