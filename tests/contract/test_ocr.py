"""Documents that are not plain text, on real components: Tesseract on pages rendered from real abstracts, tables
in real PDFs (pdfplumber), page provenance through the chunker, document types, quarantine of what cannot be read."""

from __future__ import annotations

import io
import json
import os
import random

import pyarrow as pa
import pytest
from PIL import Image

from core import scans
from core.chunking import Chunker
from core.documents import OcrOptions, Quarantine, Section, markdown_cells, parse_document
from core.knowledge import CHUNKS, DOCUMENTS, QUARANTINE, chunk_shard, doc_row, parse_shard
from core.ocr import cer, wer
from resources.ocr import CachedTesseractOcr, SystemTesseractOcr, cached_tesseract_root


@pytest.fixture(scope="module")
def tesseract_root(base_settings):
    root = cached_tesseract_root(base_settings.cache)
    if not (root / "usr" / "bin" / "tesseract").exists():
        pytest.fail(f"Tesseract is missing from {root}: run `make setup` (make test does it)")
    return root


@pytest.fixture(scope="module")
def ocr(tesseract_root) -> OcrOptions:
    return CachedTesseractOcr(root=str(tesseract_root)).options()


@pytest.fixture(scope="module")
def abstracts(pubmed_sample):
    out = []
    for pmid, data in pubmed_sample[100:140]:
        d = parse_document(f"pubmed/{pmid}.xml", data)
        if d.title and 600 < len(d.text) < 1800:
            out.append((pmid, d))
    return out[:4]


def _render(doc, dpi: int, seed: int | None = None, **degrade):
    paras = scans.abstract_paragraphs([(s.label, s.text) for s in doc.sections])
    r = scans.render_document(doc.title, f"{doc.journal}. {doc.year}.", paras, dpi=dpi)
    pages = [scans.degrade(p, seed + i, **degrade) for i, p in enumerate(r.pages)] if seed is not None else r.pages
    return r, pages


def test_scanned_pdf_and_photo_are_read_within_the_error_goals(abstracts, ocr):
    """Clean 300 dpi image-only PDF: CER <= 2%; a degraded 200 dpi JPEG (rotated, speckled, blurred): CER <= 5%."""
    pmid, doc = abstracts[0]
    r, pages = _render(doc, 300)
    parsed = parse_document(f"scans/{pmid}.pdf", scans.scan_pdf(pages, 300), ocr=ocr)
    got = f"{parsed.title}\n{parsed.text}"
    assert cer(r.text, got) <= 0.02 and wer(r.text, got) <= 0.05, (cer(r.text, got), got[:300])
    assert parsed.source_format == "pdf-scan" and parsed.pages == 1 and parsed.ocr_pages == 1
    assert parsed.title == doc.title and parsed.doc_type == "article"
    assert all(s.page == 1 for s in parsed.sections) and parsed.ocr_confidence > 80

    r, pages = _render(doc, 200, seed=5, rotate_deg=3.0, noise=0.01, blur=0.5)
    photo = parse_document(f"photos/{pmid}.jpg", scans.image_bytes(pages[0], "jpeg", 200, quality=75), ocr=ocr)
    assert photo.source_format == "image-jpeg"
    assert cer(r.text, f"{photo.title}\n{photo.text}") <= 0.05


def test_multipage_tiff_keeps_page_numbers_into_the_chunks(abstracts, ocr):
    pages, texts = [], []
    for _, doc in abstracts[:3]:
        r, p = _render(doc, 200)
        pages += p
        texts.append(r.text)
    parsed = parse_document("scans/bundle.tiff", scans.tiff_bytes(pages, 200), ocr=ocr)
    assert parsed.source_format == "image-tiff" and parsed.pages == 3
    assert sorted({s.page for s in parsed.sections}) == [1, 2, 3]
    for page, text in enumerate(texts[1:], 2):  # page 2's text is on page 2, not elsewhere
        on_page = " ".join(s.text for s in parsed.sections if s.page == page)
        assert cer(text, on_page) < 0.05
    chunker = Chunker(lambda t: [len(x.split()) * 2 for x in t], max_tokens=120, overlap_tokens=20)
    chunks = chunker.chunk(parsed.sections)
    assert {c.page for c in chunks} == {1, 2, 3} and all(c.page <= c.page_end for c in chunks)
    for c in chunks:  # a chunk's pages are the pages its sentences came from
        assert all(s.page in range(c.page, c.page_end + 1) for s in parsed.sections if c.text[:40] in s.text)


def _smudge() -> Image.Image:
    """Glyph-like blobs in text-like rows: the engine finds "words" but cannot read them."""
    rng = random.Random(3)
    img = Image.new("L", (1700, 2200), 235)
    px = img.load()
    for row in range(200, 2000, 45):
        x = 150
        while x < 1550:
            w = rng.randint(8, 60)
            for dx in range(w):
                for dy in range(rng.randint(8, 26)):
                    if rng.random() < 0.55:
                        px[x + dx, row + dy] = rng.randint(0, 90)
            x += w + rng.randint(6, 30)
    return img


def test_unreadable_and_blank_scans_are_quarantined_with_a_reason(ocr):
    img = _smudge()
    buf = io.BytesIO()
    img.save(buf, format="PNG", dpi=(200, 200))
    with pytest.raises(Quarantine) as q:
        parse_document("scans/smudge.png", buf.getvalue(), ocr=ocr)
    assert q.value.ocr and q.value.reason.startswith("unreadable scan: OCR confidence"), q.value.reason

    blank = scans.scan_pdf([Image.new("L", (1275, 1650), 255)], 150)
    with pytest.raises(Quarantine, match="no extractable text"):
        parse_document("scans/blank.pdf", blank, ocr=ocr)
    with pytest.raises(Quarantine, match="no OCR engine is available") as q:
        parse_document("scans/blank.pdf", scans.scan_pdf([img], 200), ocr=None)
    assert q.value.ocr
    with pytest.raises(Quarantine, match="corrupt PNG"):
        parse_document("scans/cut.png", buf.getvalue()[:200], ocr=ocr)


def test_a_scan_quarantined_for_ocr_is_read_again_when_the_engine_comes(abstracts, ocr):
    pmid, doc = abstracts[1]
    _, pages = _render(doc, 200)
    data = scans.scan_pdf(pages, 200)
    inventory = pa.table({"key": ["scans/a.pdf"], "etag": ["e1"], "size": [len(data)]})
    docs, quarantine, _ = parse_shard(
        inventory, DOCUMENTS.empty_table(), QUARANTINE.empty_table(), lambda k: data, 10**7
    )
    assert docs.num_rows == 0 and "no OCR engine is available" in quarantine.column("reason")[0].as_py()
    # same object, no engine: stays quarantined without being read again
    reads = []
    docs2, q2, stats = parse_shard(inventory, docs, quarantine, lambda k: reads.append(k) or data, 10**7, None)
    assert q2.num_rows == 1 and not reads
    # an engine now: read again, parsed, with its pages
    docs3, q3, stats = parse_shard(inventory, docs2, q2, lambda k: data, 10**7, ocr)
    assert q3.num_rows == 0 and docs3.num_rows == 1 and stats["ocr_pages"] == 1
    row = docs3.to_pylist()[0]
    assert row["title"] == doc.title and row["pages"] == 1 and row["parser_version"].endswith(ocr.version)
    assert all(s[2] == 1 for s in json.loads(row["sections"]))


def test_tables_come_out_as_tables_and_are_never_split_mid_row(embedder_resource):
    accs = []
    for seed in range(6):
        specs = [scans.generated_table(seed * 3 + j, rows=5 + seed) for j in range(2)]
        data = scans.table_pdf(f"Trial report {seed}", "Participants were enrolled at four centres.", specs, "Done.")
        doc = parse_document(f"reports/{seed}.pdf", data)
        tables = [s for s in doc.sections if s.kind == "table"]
        assert [t.label for t in tables] == ["TABLE 1", "TABLE 2"] and all(t.page == 1 for t in tables)
        for (_, header, body), t in zip(specs, tables):
            accs.append(scans.cell_accuracy([header, *body], markdown_cells(t.text)))
        # the caption is text before its table, in reading order
        texts = [s for s in doc.sections if s.kind == "text"]
        assert specs[0][0].split(".")[0] in texts[0].text + " ".join(t.text for t in texts)
    assert min(accs) == 1.0, accs

    # a long table in a small chunk budget: every chunk is the header plus whole rows
    caption, header, body = scans.generated_table(99, rows=12)
    doc = parse_document(
        "reports/long.pdf", scans.table_pdf("Long", "Intro text here.", [(caption, header, body)], "End.")
    )
    assert doc.doc_type == "table_report"
    tok = embedder_resource.runtime()
    chunker = Chunker(lambda texts: [len(tok.tokenizer.encode(t).ids) for t in texts], max_tokens=90, overlap_tokens=10)
    chunks = chunker.chunk(doc.sections)
    table_chunks = [c for c in chunks if c.section == "TABLE 1"]
    assert len(table_chunks) >= 3
    rows_seen = []
    for c in table_chunks:
        lines = c.text.split("\n")
        assert lines[0] == "TABLE 1:" and lines[1].startswith("| Characteristic") and set(lines[2]) <= set("|-")
        assert all(ln.startswith("| ") and ln.endswith(" |") for ln in lines[3:])
        rows_seen += [r for r in markdown_cells("\n".join(lines[1:]))[1:]]
        assert c.page == 1 and c.n_tokens <= 90
    assert rows_seen == body  # every row once, whole, in order


def test_document_types():
    note = (
        "Patient: 67-year-old man\n\nCHIEF COMPLAINT: chest pain for two days.\n\nHISTORY OF PRESENT ILLNESS: pain on "
        "exertion, relieved by rest.\n\nMEDICATIONS: aspirin, atorvastatin.\n\nASSESSMENT AND PLAN: stable angina; "
        "stress test and follow-up in two weeks."
    )
    assert parse_document("notes/n1.txt", note.encode()).doc_type == "clinical_note"
    form = "Patient intake form\n\n" + "\n".join(
        f"{f}: ________" for f in ("Name", "Date of birth", "Insurance", "Allergies", "Signature", "Date")
    )
    assert parse_document("forms/f1.txt", form.encode()).doc_type == "form"
    article = "BACKGROUND: We studied X.\n\nMETHODS: A trial.\n\nRESULTS: It worked.\n\nCONCLUSIONS: X helps."
    assert parse_document("a.md", f"# A trial of X\n\n{article}".encode()).doc_type == "article"


def test_chunk_ids_change_with_the_parser_so_no_stale_vector_is_reused():
    """Bug: chunk ids hashed (key, content hash, chunker version) only, so a new parser that reads the same bytes
    differently (a PDF's tables) kept the old ids and with them the old text's vectors."""
    chunker = Chunker(lambda t: [len(x.split()) for x in t], max_tokens=50, overlap_tokens=5)
    row = {c: None for c in DOCUMENTS.names} | {
        "key": "r.pdf",
        "content_hash": "h",
        "doc_id": "r.pdf",
        "title": "T",
        "sections": json.dumps([["", "Some text of the report here."]]),
        "mesh_terms": [],
        "source_format": "pdf",
    }
    a, _ = chunk_shard(
        pa.Table.from_pylist([row | {"parser_version": "parsers-v1"}], schema=DOCUMENTS), CHUNKS.empty_table(), chunker
    )
    b, stats = chunk_shard(pa.Table.from_pylist([row | {"parser_version": "parsers-v2"}], schema=DOCUMENTS), a, chunker)
    assert stats["rechunked"] == 1 and set(a.column("chunk_id").to_pylist()).isdisjoint(
        b.column("chunk_id").to_pylist()
    )
    _, same = chunk_shard(pa.Table.from_pylist([row | {"parser_version": "parsers-v2"}], schema=DOCUMENTS), b, chunker)
    assert same["rechunked"] == 0


@pytest.mark.contract
def test_both_tesseract_installations_read_alike(tesseract_root, abstracts, monkeypatch):
    """The eks implementation finds the image's tesseract on PATH (here: the cached Debian tree put on PATH, as the
    image's package is); the local one is given the tree. Same page, same text."""
    _, doc = abstracts[2]
    _, pages = _render(doc, 300)
    cached = CachedTesseractOcr(root=str(tesseract_root)).engine().read(pages[0], 300)
    libs = [str(p) for p in (tesseract_root / "usr" / "lib").glob("*-linux-gnu")]
    monkeypatch.setenv("PATH", f"{tesseract_root / 'usr' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LD_LIBRARY_PATH", os.pathsep.join(libs))
    monkeypatch.setenv("TESSDATA_PREFIX", str(next((tesseract_root / "usr/share/tesseract-ocr").glob("*/tessdata"))))
    system = SystemTesseractOcr()
    assert system.engine().version == CachedTesseractOcr(root=str(tesseract_root)).engine().version
    assert system.engine().read(pages[0], 300).text == cached.text and cached.confidence > 80
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises((RuntimeError, FileNotFoundError)):
        SystemTesseractOcr().engine().version  # noqa: B018 - a missing engine is an error, not empty text


def test_stored_sections_keep_pages_and_kinds():
    from core.documents import ParsedDocument

    sections = [Section("", "a text", 1), Section("TABLE 1", "| a |\n|---|\n| 1 |", 2, "table"), Section("X", "b")]
    row = doc_row(ParsedDocument("k", "pdf", "T", sections, "k"), {"etag": "e", "size": 1}, "h")
    assert [Section(*x) for x in json.loads(row["sections"])] == sections and row["tables"] == 1


@pytest.mark.e2e
def test_scans_in_the_store_are_searchable_and_cited_with_their_page(serving_stack):
    """Two scanned abstracts seeded into the serving stack's store: `agentic search` finds each by its title in the
    top 3, and `agentic ask` cites it as "<key>, page 1"."""
    import subprocess

    from tests.helpers import stack_cli

    agentic, env = stack_cli(serving_stack)
    for key, title in serving_stack.scanned:
        out = subprocess.run(
            [agentic, "search", title, "--k", "3", "--json"], env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-2000:]
        hits = json.loads(out.stdout)["hits"]
        found = [h for h in hits if h["doc_key"] == key]
        assert found and found[0]["page"] == 1 and found[0]["title"] == title, (title, hits)
    key, title = serving_stack.scanned[0]
    out = subprocess.run(
        [agentic, "ask", f"What did the study {title.rstrip('.')!r} find?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{key}, page 1" in out.stdout, out.stdout


def test_the_vision_model_reads_what_ocr_cannot_and_describes_figures(ocr, abstracts):
    """eks: the gateway's vision route (here an OpenAI-compatible server at the protocol boundary, since no
    vision-language model can run here) transcribes a page OCR cannot read and describes an embedded figure."""
    from dataclasses import replace

    from fpdf import FPDF

    from resources.vision import GatewayVision
    from tests.fixtures_http import OpenAIVisionFixture

    server = OpenAIVisionFixture(key="k" * 24, model="vision")
    try:
        with_vision = replace(ocr, vision=GatewayVision(url=server.url, api_key="k" * 24))
        assert with_vision.version != ocr.version  # a new reader re-reads the scans
        buf = io.BytesIO()
        _smudge().save(buf, format="PNG", dpi=(200, 200))
        doc = parse_document("scans/smudge.png", buf.getvalue(), ocr=with_vision)
        assert doc.vision_pages == 1 and doc.sections[0].page == 1
        assert "A PNG image of 1700x2200 pixels" in doc.text  # the page went whole to the model
        assert "Transcribe" in server.requests[-1]["body"]["messages"][0]["content"][0]["text"]

        # a digital PDF with a chart: its text from the text layer, the chart described as FIGURE 1 on its page
        _, d = abstracts[0]
        pdf = FPDF(format="letter")
        pdf.add_page()
        pdf.set_font("helvetica", size=11)
        pdf.multi_cell(0, 6, scans.latin1_safe(d.sections[-1].text))
        pdf.add_page()
        pdf.multi_cell(0, 6, "Figure 1 shows the primary outcome by group over time.")
        pdf.image(Image.new("RGB", (600, 400), (40, 90, 160)), x=20, y=40, w=150)
        doc = parse_document("reports/chart.pdf", bytes(pdf.output()), ocr=with_vision)
        figures = [s for s in doc.sections if s.label == "FIGURE 1"]
        assert doc.figures == 1 and figures and figures[0].page == 2 and "A PNG image of" in figures[0].text
        assert doc.ocr_pages == 0  # the text layer was read, not OCR'd

        # the model failing (a wrong key: 401) leaves the page unreadable: quarantined, with OCR's reason
        broken = replace(ocr, vision=GatewayVision(url=server.url, api_key="wrong"))
        with pytest.raises(Quarantine, match="unreadable scan"):
            parse_document("scans/smudge.png", buf.getvalue(), ocr=broken)
    finally:
        server.close()
