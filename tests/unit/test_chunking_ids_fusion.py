"""Pure logic: chunking with the real tokenizer, deterministic ids, reciprocal-rank fusion."""

import pytest

from core.chunking import Chunker, reassemble, split_sentences, without_sentences
from core.documents import Section, parse_document
from core.fusion import reciprocal_rank_fusion
from core.ids import chunk_id, generation_id


@pytest.fixture(scope="module")
def chunker(embedder_resource):
    return Chunker(embedder_resource.count_tokens, max_tokens=64, overlap_tokens=16)


def test_sentences_respect_abbreviations():
    s = split_sentences("Patients (n = 12) improved, e.g. Dr. Smith's cohort. Results were robust. 3 died.")
    assert s == ["Patients (n = 12) improved, e.g. Dr. Smith's cohort.", "Results were robust.", "3 died."]


def test_chunks_fit_the_token_budget_and_cover_the_text(chunker, embedder_resource, pubmed_sample):
    for pmid, data in pubmed_sample[:30]:
        doc = parse_document(pmid, data)
        chunks = chunker.chunk(doc.sections)
        assert chunks
        for c in chunks:
            assert c.n_tokens <= 64
            assert embedder_resource.count_tokens([c.text])[0] <= 64 + 4  # label prefixes are budgeted approximately
        joined = " ".join(c.text for c in chunks)
        for s in doc.sections:
            for sent in split_sentences(s.text):
                assert sent[:40] in joined


def test_section_boundaries_are_preferred_and_overlap_stays_in_section(chunker):
    sections = [
        Section("BACKGROUND", "Sepsis is common. It kills many patients every year in intensive care units worldwide."),
        Section(
            "METHODS", " ".join(f"Sentence number {i} describes a step of the protocol in detail." for i in range(12))
        ),
        Section("CONCLUSIONS", "Early antibiotics save lives."),
    ]
    chunks = chunker.chunk(sections)
    assert chunks[0].section == "BACKGROUND"  # the small first section is not glued to a split METHODS
    methods = [c for c in chunks if c.section == "METHODS"]
    assert len(methods) >= 2
    # overlap: a sentence ending one METHODS chunk starts the next
    first_last = methods[0].text.split(". ")[-1].rstrip(".")
    assert first_last in methods[1].text
    assert not any(
        "BACKGROUND" in c.section and "METHODS" in c.section for c in chunks if c.section.startswith("METHODS")
    )
    assert chunks[-1].text.endswith("Early antibiotics save lives.")


def test_a_document_is_reassembled_from_its_chunks_in_any_order(chunker, pubmed_sample):
    """The inverse of chunking, for answering an open question from the whole document: every sentence once, in
    order, whatever order the search returned the chunks in (the overlap's repeated sentences appear once)."""
    checked = 0
    for pmid, data in pubmed_sample[:30]:
        doc = parse_document(pmid, data)
        chunks = chunker.chunk(doc.sections)
        if len(chunks) < 3:
            continue
        checked += 1
        shuffled = [(c.seq, c.section, c.text) for c in reversed(chunks)]
        text = reassemble(shuffled)
        expected = [sent for s in doc.sections for sent in split_sentences(s.text)]
        positions = [text.find(sent) for sent in expected]
        assert all(p >= 0 for p in positions), pmid
        assert positions == sorted(positions), pmid  # in document order
        assert all(text.count(sent) == 1 for sent in expected if len(sent) > 40), pmid  # the overlap is not repeated
        labels = [s.label for s in doc.sections if s.label]
        assert all(text.count(f"{label}: ") == labels.count(label) for label in labels), pmid
        # what follows a document's conclusions does not repeat them
        last = chunks[-1].text
        rest = without_sentences(text, last)
        held = [sent for sent in expected if sent in last]
        assert not any(sent in rest for sent in held), pmid
        assert all(sent in rest for sent in expected if sent not in last and sent not in held), pmid
    assert checked >= 5


def test_an_overlong_sentence_is_split(chunker, embedder_resource):
    words = " ".join(f"word{i}" for i in range(400))
    chunks = chunker.chunk([Section("", words)])
    assert len(chunks) > 2
    assert all(embedder_resource.count_tokens([c.text])[0] <= 64 for c in chunks)


def test_ids_are_deterministic_and_sensitive():
    a = chunk_id("pubmed/1.xml", "h1", "v1", 0)
    assert a == chunk_id("pubmed/1.xml", "h1", "v1", 0)
    assert (
        len(
            {
                a,
                chunk_id("pubmed/1.xml", "h2", "v1", 0),
                chunk_id("pubmed/1.xml", "h1", "v2", 0),
                chunk_id("pubmed/1.xml", "h1", "v1", 1),
                chunk_id("pubmed/2.xml", "h1", "v1", 0),
            }
        )
        == 5
    )
    assert generation_id("m", 384, "map1") == generation_id("m", 384, "map1") != generation_id("m", 384, "map2")


def test_rrf():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d", "a"]], k=60)
    scores = dict(fused)
    assert [d for d, _ in fused][:2] == ["b", "a"]  # b: 1/62 + 1/61 > a: 1/61 + 1/63
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["d"] == pytest.approx(1 / 62)
    assert reciprocal_rank_fusion([["x", "x", "y"]]) == [("x", 1 / 61), ("y", 1 / 62)]  # duplicates count once
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], k=0)
