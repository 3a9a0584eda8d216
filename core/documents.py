"""Document parsing: one parser per format, format detected from content (not only the extension).

``parse_document`` either returns a :class:`ParsedDocument` or raises :class:`Quarantine`
with a human-readable reason. It never returns an empty or garbage document: a file that
yields no text is quarantined, so it can never become a random vector downstream.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

# v2: PDFs through pdfplumber (tables as Markdown, page numbers), images and scans through OCR, document types
PARSER_VERSION = "parsers-v2"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MIN_TEXT_CHARS = 20


class Quarantine(Exception):
    """A document that cannot be indexed, with the reason why."""

    def __init__(self, reason: str, ocr: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.ocr = ocr  # raised reading a scan: worth another try when the OCR engine changes


@dataclass
class Section:
    label: str  # "" for unlabelled text
    text: str
    page: int | None = None  # 1-based page of a paged source (PDF, scan, TIFF); None for XML, HTML, text
    kind: str = "text"  # "text", or "table": a Markdown table whose rows the chunker never splits


@dataclass
class ParsedDocument:
    key: str
    source_format: str
    title: str
    sections: list[Section]
    doc_id: str = ""  # PMID for PubMed / JATS, else the key
    journal: str = ""
    year: int | None = None
    mesh_terms: list[str] = field(default_factory=list)
    mesh_ids: list[str] = field(default_factory=list)
    doc_type: str = ""  # article, clinical_note, form, table_report (core.doctypes)
    pages: int = 0  # pages of a paged source
    ocr_pages: int = 0  # pages whose text came from OCR
    ocr_confidence: float | None = None  # mean OCR confidence (0-100) over those pages
    ocr_version: str = ""  # the engine that read them: a new engine re-reads them
    form_fields: int = 0  # fillable fields of a PDF form (AcroForm)
    vision_pages: int = 0  # pages OCR could not read that the vision model transcribed
    figures: int = 0  # embedded figures the vision model described

    @property
    def text(self) -> str:
        return "\n\n".join(f"{s.label}: {s.text}" if s.label else s.text for s in self.sections if s.text)


_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return _WS.sub(" ", text).strip()


def _itertext(el: ET.Element | None) -> str:
    return normalize_text("".join(el.itertext())) if el is not None else ""


def _year(text: str) -> int | None:
    m = re.search(r"(1[89]\d\d|20\d\d)", text or "")
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- decoding


def decode_text(data: bytes) -> str:
    """Decode bytes as text, repairing the usual encodings; raise Quarantine for binary data."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise Quarantine(f"invalid UTF-16 text: {exc}") from exc
    head = data[:8192]
    if b"\x00" in head:
        raise Quarantine("binary content (NUL bytes) in an unsupported format")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: accept a legacy 8-bit encoding only when it reads as text.
    text = data.decode("cp1252", errors="replace")
    sample = text[:8192]
    bad = sum(1 for ch in sample if ch == "\ufffd" or (unicodedata.category(ch) == "Cc" and ch not in "\r\n\t"))
    if sample and bad / len(sample) > 0.01:
        raise Quarantine("binary content: bytes are neither UTF-8 nor legible 8-bit text")
    return text


# ---------------------------------------------------------------- detection


def detect_format(key: str, data: bytes) -> str:
    head = data[:4096].lstrip()
    lower_key = key.lower()
    if head.startswith(b"%PDF-"):
        return "pdf"
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:4] in (b"PK\x03\x04",):
        return "zip"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    low = head.lower()
    if low.startswith(b"<?xml") or low.startswith(b"<!doctype") or low.startswith(b"<"):
        if b"<pubmedarticle" in low:
            return "pubmed-xml"
        if b"<article" in low and (b"jats" in low or b"<front" in data[:65536].lower() or lower_key.endswith(".nxml")):
            return "jats-xml"
        if b"<html" in low or low.startswith(b"<!doctype html") or lower_key.endswith((".html", ".htm")):
            return "html"
        return "xml"
    if low.startswith((b"{", b"[")) or lower_key.endswith(".json"):
        return "json"
    if lower_key.endswith(".csv"):
        return "csv"
    if lower_key.endswith((".md", ".markdown")):
        return "markdown"
    return "text"


# ---------------------------------------------------------------- parsers


def parse_pubmed_article(article: ET.Element, key: str) -> ParsedDocument:
    citation = article.find("MedlineCitation")
    if citation is None:
        raise Quarantine("PubMed XML without MedlineCitation")
    pmid = _itertext(citation.find("PMID"))
    art = citation.find("Article")
    if art is None:
        raise Quarantine("PubMed XML without Article")
    title = _itertext(art.find("ArticleTitle"))
    sections = []
    for at in art.findall("Abstract/AbstractText"):
        label = (at.get("Label") or "").strip().upper()
        text = _itertext(at)
        if text:
            sections.append(Section(label=label, text=text))
    journal = _itertext(art.find("Journal/Title"))
    pub = art.find("Journal/JournalIssue/PubDate")
    year = None
    if pub is not None:
        year = _year(_itertext(pub.find("Year"))) or _year(_itertext(pub.find("MedlineDate")))
    mesh_terms, mesh_ids = [], []
    for d in citation.findall("MeshHeadingList/MeshHeading/DescriptorName"):
        mesh_terms.append(_itertext(d))
        mesh_ids.append(d.get("UI", ""))
    return ParsedDocument(
        key=key,
        source_format="pubmed-xml",
        title=title,
        sections=sections,
        doc_id=pmid or key,
        journal=journal,
        year=year,
        mesh_terms=mesh_terms,
        mesh_ids=mesh_ids,
    )


def _xml_root(data: bytes) -> ET.Element:
    try:
        parser = ET.XMLParser()
        return ET.fromstring(data, parser=parser)
    except ET.ParseError as exc:
        raise Quarantine(f"malformed XML: {exc}") from exc


def parse_pubmed_xml(key: str, data: bytes) -> ParsedDocument:
    root = _xml_root(data)
    articles = [root] if root.tag == "PubmedArticle" else root.findall("PubmedArticle")
    if len(articles) != 1:
        raise Quarantine(f"expected one PubmedArticle per document, found {len(articles)}")
    return parse_pubmed_article(articles[0], key)


def _strip_ns(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def parse_jats_xml(key: str, data: bytes) -> ParsedDocument:
    # JATS files often declare a DTD with entities; drop the DOCTYPE so expat does not need it.
    data = re.sub(rb"<!DOCTYPE[^>]*>", b"", data, count=1)
    root = _strip_ns(_xml_root(data))
    meta = root.find(".//article-meta")
    title = _itertext(meta.find(".//article-title")) if meta is not None else ""
    sections: list[Section] = []
    abstract = meta.find("abstract") if meta is not None else None
    if abstract is not None:
        secs = abstract.findall("sec")
        if secs:
            for s in secs:
                sections.append(
                    Section(_itertext(s.find("title")).upper(), " ".join(_itertext(p) for p in s.findall(".//p")))
                )
        else:
            sections.append(
                Section("ABSTRACT", " ".join(_itertext(p) for p in abstract.findall(".//p")) or _itertext(abstract))
            )
    body = root.find("body")
    if body is not None:
        for s in body.findall("sec"):
            label = _itertext(s.find("title")).upper()
            text = " ".join(_itertext(p) for p in s.findall(".//p"))
            if text:
                sections.append(Section(label, text))
        loose = " ".join(_itertext(p) for p in body.findall("p"))
        if loose:
            sections.append(Section("", loose))
    pmid = ""
    if meta is not None:
        for aid in meta.findall("article-id"):
            if aid.get("pub-id-type") == "pmid":
                pmid = _itertext(aid)
    journal = _itertext(root.find(".//journal-meta//journal-title"))
    year = _year(_itertext(meta.find(".//pub-date/year"))) if meta is not None else None
    kwds = [_itertext(k) for k in root.findall(".//kwd-group/kwd")]
    return ParsedDocument(key, "jats-xml", title, [s for s in sections if s.text], pmid or key, journal, year, kwds, [])


def parse_generic_xml(key: str, data: bytes) -> ParsedDocument:
    root = _strip_ns(_xml_root(data))
    title = ""
    for tag in ("title", "article-title", "ArticleTitle"):
        el = root.find(f".//{tag}")
        if el is not None:
            title = _itertext(el)
            break
    return ParsedDocument(key, "xml", title, [Section("", _itertext(root))], key)


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    BLOCK = {
        "p",
        "div",
        "li",
        "br",
        "tr",
        "section",
        "article",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "td",
        "th",
        "pre",
        "blockquote",
    }
    HEAD = {"h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.skip = 0
        self.title = ""
        self.in_title = False
        self.in_heading = False
        self.heading = ""
        self.sections: list[Section] = [Section("", "")]
        self._buf: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        if tag in self.SKIP:
            self.skip += 1
        if tag in self.HEAD and not self.skip:
            self._flush()
            self.in_heading = True
            self.heading = ""
        elif tag in self.BLOCK:
            self._buf.append("\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        if tag in self.HEAD and self.in_heading:
            self.in_heading = False
            self.sections.append(Section(normalize_text(self.heading).upper(), ""))

    def handle_data(self, data):
        if self.in_title:
            self.title += data
            return
        if self.skip:
            return
        if self.in_heading:
            self.heading += data
        else:
            self._buf.append(data)

    def _flush(self):
        text = normalize_text("".join(self._buf))
        self._buf = []
        if text:
            cur = self.sections[-1]
            cur.text = f"{cur.text} {text}".strip()

    def close(self):
        super().close()
        self._flush()


def parse_html(key: str, text: str) -> ParsedDocument:
    p = _HTMLText()
    p.feed(text)
    p.close()
    sections = [s for s in p.sections if s.text]
    title = normalize_text(p.title) or next((s.label.title() for s in p.sections if s.label), "")
    return ParsedDocument(key, "html", title, sections, key)


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def _markdown_inline(text: str) -> str:
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[*_`~]{1,3}", "", text)
    return text


def parse_markdown(key: str, text: str) -> ParsedDocument:
    title = ""
    sections: list[Section] = [Section("", "")]
    buf: list[str] = []

    def flush():
        if buf:
            sections[-1].text = normalize_text(" ".join(buf))
            buf.clear()

    in_front_matter = text.startswith("---\n")
    for i, line in enumerate(text.splitlines()):
        if in_front_matter:
            if i > 0 and line.strip() == "---":
                in_front_matter = False
            continue
        m = _MD_HEADING.match(line)
        if m:
            flush()
            heading = normalize_text(_markdown_inline(m.group(2)))
            if len(m.group(1)) == 1 and not title:
                title = heading
                continue
            sections.append(Section(heading.upper(), ""))
        else:
            buf.append(_markdown_inline(line))
    flush()
    return ParsedDocument(key, "markdown", title, [s for s in sections if s.text], key)


def parse_plain_text(key: str, text: str) -> ParsedDocument:
    paragraphs = [normalize_text(p) for p in re.split(r"\n\s*\n", text)]
    paragraphs = [p for p in paragraphs if p]
    title = paragraphs[0] if paragraphs and len(paragraphs[0]) <= 200 and len(paragraphs) > 1 else ""
    body = paragraphs[1:] if title else paragraphs
    return ParsedDocument(key, "text", title, [Section("", " ".join(body))], key)


def parse_json(key: str, text: str) -> ParsedDocument:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Quarantine(f"malformed JSON: {exc}") from exc
    if isinstance(obj, dict) and ("abstract" in obj or "text" in obj or "body" in obj):
        sections_field = obj.get("sections")
        sections: list[Section] = []
        if isinstance(sections_field, list):
            for s in sections_field:
                if isinstance(s, dict) and s.get("text"):
                    sections.append(Section(str(s.get("label", "")).upper(), normalize_text(str(s["text"]))))
        if not sections:
            for field_name in ("abstract", "text", "body"):
                if isinstance(obj.get(field_name), str) and obj[field_name].strip():
                    sections.append(Section("", normalize_text(obj[field_name])))
        mesh = obj.get("mesh_terms") or obj.get("mesh") or []
        return ParsedDocument(
            key,
            "json",
            normalize_text(str(obj.get("title", ""))),
            sections,
            str(obj.get("pmid") or obj.get("id") or key),
            normalize_text(str(obj.get("journal", ""))),
            _year(str(obj.get("year", ""))),
            [str(m) for m in mesh] if isinstance(mesh, list) else [],
            [],
        )
    # Any other JSON: index its string leaves as "path: value" lines.
    lines: list[str] = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, path)
        elif isinstance(node, str | int | float) and not isinstance(node, bool):
            lines.append(f"{path}: {node}" if path else str(node))

    walk(obj, "")
    return ParsedDocument(key, "json", "", [Section("", normalize_text(". ".join(lines)))], key)


def parse_csv(key: str, text: str) -> ParsedDocument:
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        raise Quarantine("empty CSV")
    header, body = rows[0], rows[1:]
    lines = ["; ".join(f"{h}: {v}" for h, v in zip(header, r) if v.strip()) for r in body]
    return ParsedDocument(key, "csv", "", [Section("", normalize_text(". ".join(x for x in lines if x)))], key)


# ---------------------------------------------------------------- paged sources: PDF, images, scans


@dataclass
class OcrOptions:
    """How scans are read: the engine (core.ocr) and when a page counts as unreadable."""

    engine: Any
    min_confidence: float = 60.0  # mean word confidence (0-100) below which a page is unreadable
    min_words: int = 3  # fewer words: a blank page (skipped), not an unreadable one
    render_dpi: int = 300  # PDF pages without a text layer are rendered at this resolution for OCR
    max_pages: int = 300
    # a vision-language model (resources.vision, eks): reads the pages OCR cannot and describes figures; None: OCR alone
    vision: Any = None
    min_figure_area: float = 0.08  # share of a page an embedded image must cover to be described as a figure

    @property
    def version(self) -> str:
        v = f"{self.engine.version}:conf{self.min_confidence:g}:dpi{self.render_dpi}"
        return f"{v}+{getattr(self.vision, 'name', 'vision')}" if self.vision is not None else v


TRANSCRIBE_PROMPT = (
    "Transcribe all the text on this scanned page exactly, in reading order, as plain text. Keep numbers and units "
    "exactly as printed. Write nothing else; if no text can be read, answer with an empty reply."
)
FIGURE_PROMPT = (
    "Describe this figure from a medical document for someone who cannot see it: what kind of figure it is, what it "
    "shows (axes, groups, trends, values that are legible) and any caption or labels. Two to five sentences."
)


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


MIN_PAGE_CHARS = 20  # a PDF page with less text than this (and no table) is treated as a scan
_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")


def _page_text(raw: str) -> str:
    """Lines of a page as one paragraph of text: words broken at a line end ("treat-\\nment") joined again."""
    raw = _HYPHEN_BREAK.sub(lambda m: m.group(1) + m.group(2) if m.group(2).islower() else m.group(0), raw or "")
    return normalize_text(raw)


def table_markdown(rows: list[list[str | None]]) -> str:
    """A table as Markdown: the first row is the header; a cell keeps its text on one line, "|" escaped."""
    cells = [[normalize_text(c or "").replace("|", "\\|") for c in row] for row in rows if row]
    cells = [r for r in cells if any(r)]
    if not cells:
        return ""
    width = max(len(r) for r in cells)
    cells = [r + [""] * (width - len(r)) for r in cells]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines)


def markdown_cells(markdown: str) -> list[list[str]]:
    """The inverse of :func:`table_markdown`: rows of cells (header first, the rule line dropped)."""
    rows = []
    for line in markdown.splitlines():
        line = line.strip()
        if not line.startswith("|") or re.fullmatch(r"\|(?:-+\|)+", line):
            continue
        parts = re.split(r"(?<!\\)\|", line.strip("|"))
        rows.append([p.strip().replace("\\|", "|") for p in parts])
    return rows


class _Pages:
    """Sections of a paged document as they are read, page by page, with the OCR statistics."""

    def __init__(self, ocr: OcrOptions | None):
        self.ocr = ocr
        self.sections: list[Section] = []
        self.pages = self.ocr_pages = self.tables = self.unreadable = self.vision_pages = self.figures = 0
        self.blank = 0
        self.confidences: list[float] = []
        self.worst: tuple[float, int] | None = None
        self.title = ""

    def text(self, text: str, page: int) -> None:
        if text:
            self.sections.append(Section("", text, page))

    def table(self, rows: list[list[str | None]], page: int) -> None:
        md = table_markdown(rows)
        if md:
            self.tables += 1
            self.sections.append(Section(f"TABLE {self.tables}", md, page, "table"))

    def scan(self, image, page: int, dpi: int | None) -> None:
        """OCR one page image; an unreadable page is counted (the document is quarantined if no page was readable)."""
        if self.ocr is None:
            raise Quarantine(f"page {page} is a scan (no text layer) and no OCR engine is available", ocr=True)
        result = self.ocr.engine.read(image, dpi)
        if result.words < self.ocr.min_words:
            self.blank += 1
            return
        self.ocr_pages += 1
        if result.confidence < self.ocr.min_confidence and self.read_by_vision(image, page):
            return
        if result.confidence < self.ocr.min_confidence:
            self.unreadable += 1
            if self.worst is None or result.confidence < self.worst[0]:
                self.worst = (result.confidence, page)
            return
        self.confidences.append(result.confidence)
        paragraphs = [p for p in result.text.split("\n\n") if p.strip()]
        if not self.sections and not self.title and len(paragraphs) > 1:
            # a scan has no metadata: a short first paragraph of the first page is its title
            first = _page_text(paragraphs[0])
            if 3 <= len(first.split()) and len(first) <= 250 and not first.endswith(":"):
                self.title, paragraphs = first, paragraphs[1:]
        self.text(_page_text("\n".join(paragraphs)), page)

    def read_by_vision(self, image, page: int) -> bool:
        """A page OCR could not read, transcribed by the vision model where there is one."""
        if self.ocr is None or self.ocr.vision is None:
            return False
        try:
            text = _page_text(self.ocr.vision.describe(_png(image.convert("RGB")), TRANSCRIBE_PROMPT))
        except Exception:  # noqa: BLE001 - the model's failure leaves the page unreadable, with OCR's reason
            return False
        if len(text.split()) < self.ocr.min_words:
            return False
        self.vision_pages += 1
        self.text(text, page)
        return True

    def figure(self, image, page: int) -> None:
        """An embedded figure described by the vision model (OCR alone has nothing to say about a plot)."""
        if self.ocr is None or self.ocr.vision is None:
            return
        try:
            text = normalize_text(self.ocr.vision.describe(_png(image.convert("RGB")), FIGURE_PROMPT))
        except Exception:  # noqa: BLE001 - an undescribed figure loses nothing the text layer had
            return
        if text:
            self.figures += 1
            self.sections.append(Section(f"FIGURE {self.figures}", text, page))

    def finish(self, doc: ParsedDocument) -> ParsedDocument:
        if self.unreadable and not self.confidences:
            conf, page = self.worst or (0.0, 0)
            raise Quarantine(
                f"unreadable scan: OCR confidence {conf:.0f}% on page {page} (minimum {self.ocr.min_confidence:g}%), "
                f"no readable page of {self.pages}",
                ocr=True,
            )
        doc.sections, doc.pages, doc.ocr_pages = self.sections, self.pages, self.ocr_pages
        doc.title = doc.title or self.title
        doc.vision_pages, doc.figures = self.vision_pages, self.figures
        if self.ocr_pages:
            doc.ocr_confidence = round(sum(self.confidences) / len(self.confidences), 2) if self.confidences else None
            doc.ocr_version = self.ocr.version
        return doc


def _inside(obj: dict, bbox: tuple[float, float, float, float]) -> bool:
    cx, cy = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
    return bbox[0] <= cx <= bbox[2] and bbox[1] <= cy <= bbox[3]


def parse_pdf(key: str, data: bytes, ocr: OcrOptions | None = None) -> ParsedDocument:
    """Text layer page by page, tables as Markdown in reading order, pages without a text layer through OCR."""
    import pdfplumber
    from pdfminer.pdfparser import PDFSyntaxError

    try:
        pdf = pdfplumber.open(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pdfminer raises many kinds for a broken file
        if "password" in str(exc).lower() or type(exc).__name__ in ("PDFPasswordIncorrect", "PDFEncryptionError"):
            raise Quarantine("encrypted PDF") from exc
        raise Quarantine(f"corrupt PDF: {type(exc).__name__}: {exc}") from exc
    out = _Pages(ocr)
    with pdf:
        try:
            meta = pdf.metadata or {}
            title = normalize_text(str(meta.get("Title") or "")) if not isinstance(meta.get("Title"), bytes) else ""
            if ocr is not None and len(pdf.pages) > ocr.max_pages:
                raise Quarantine(f"too many pages to read: {len(pdf.pages)} > {ocr.max_pages}")
            from pdfminer.pdftypes import resolve1

            acro = resolve1(pdf.doc.catalog.get("AcroForm"))
            form_fields = len(resolve1(acro.get("Fields")) or []) if isinstance(acro, dict) else 0
            for number, page in enumerate(pdf.pages, 1):
                out.pages += 1
                tables = sorted(page.find_tables(), key=lambda t: t.bbox[1])
                boxes = [t.bbox for t in tables]
                if boxes:
                    rest = page.filter(lambda o, b=boxes: not any(_inside(o, bb) for bb in b) if "x0" in o else True)
                else:
                    rest = page
                # text above each table, the table, and the text after the last one: reading order
                top = 0.0
                for t in tables:
                    region = (
                        rest.crop((0, top, page.width, max(t.bbox[1], top)), strict=False) if t.bbox[1] > top else None
                    )
                    if region is not None:
                        out.text(_page_text(region.extract_text() or ""), number)
                    out.table(t.extract(), number)
                    top = t.bbox[3]
                tail = rest.crop((0, top, page.width, page.height), strict=False) if top else rest
                text = _page_text(tail.extract_text() or "")
                if len(text) >= MIN_PAGE_CHARS or tables:
                    out.text(text, number)
                    if ocr is not None and ocr.vision is not None:
                        for im in page.images:
                            box = (
                                max(im["x0"], 0),
                                max(im["top"], 0),
                                min(im["x1"], page.width),
                                min(im["bottom"], page.height),
                            )
                            area = (box[2] - box[0]) * (box[3] - box[1]) / (page.width * page.height)
                            if area >= ocr.min_figure_area:
                                out.figure(page.crop(box).to_image(resolution=150).original, number)
                elif page.images:
                    rendered = page.to_image(resolution=ocr.render_dpi if ocr else 300).original
                    out.scan(rendered, number, ocr.render_dpi if ocr else 300)
                else:
                    out.text(text, number)
        except Quarantine:
            raise
        except (PDFSyntaxError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
            raise Quarantine(f"corrupt PDF: {type(exc).__name__}: {exc}") from exc
    doc = out.finish(ParsedDocument(key, "pdf" if not out.ocr_pages else "pdf-scan", title, [], key))
    doc.form_fields = form_fields
    return doc


IMAGE_FORMATS = {"png", "jpeg", "tiff"}


def parse_image(key: str, data: bytes, fmt: str, ocr: OcrOptions | None = None) -> ParsedDocument:
    """A photo or scan of pages (PNG, JPEG, TIFF; every frame of a multi-page TIFF is a page) through OCR."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    from core.ocr import image_dpi

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise Quarantine(f"corrupt {fmt.upper()} image: {exc}") from exc
    if image.width * image.height > 80_000_000:
        raise Quarantine(f"image too large to read: {image.width}x{image.height} pixels")
    out = _Pages(ocr)
    for number, frame in enumerate(ImageSequence.Iterator(image), 1):
        if ocr is not None and number > ocr.max_pages:
            raise Quarantine(f"too many pages to read: more than {ocr.max_pages}")
        out.pages += 1
        out.scan(frame.copy(), number, image_dpi(image))
    return out.finish(ParsedDocument(key, f"image-{fmt}", "", [], key))


def parse_document(
    key: str, data: bytes, max_bytes: int = DEFAULT_MAX_BYTES, ocr: OcrOptions | None = None
) -> ParsedDocument:
    """Parse one stored document or raise Quarantine with the reason. The intake picks the parser from the content
    (format, then per PDF page: text layer, tables, or a scan for OCR) and classifies the document's type."""
    if len(data) == 0:
        raise Quarantine("empty file")
    if len(data) > max_bytes:
        raise Quarantine(f"oversized: {len(data)} bytes > limit {max_bytes}")
    fmt = detect_format(key, data)
    if fmt in ("gzip", "zip"):
        raise Quarantine(f"compressed archive ({fmt}) is not a document; upload its files instead")
    if fmt == "pdf":
        doc = parse_pdf(key, data, ocr)
    elif fmt in IMAGE_FORMATS:
        doc = parse_image(key, data, fmt, ocr)
    elif fmt == "pubmed-xml":
        doc = parse_pubmed_xml(key, data)
    elif fmt == "jats-xml":
        doc = parse_jats_xml(key, data)
    elif fmt == "xml":
        doc = parse_generic_xml(key, data)
    else:
        text = decode_text(data)
        if fmt == "html":
            doc = parse_html(key, text)
        elif fmt == "json":
            doc = parse_json(key, text)
        elif fmt == "csv":
            doc = parse_csv(key, text)
        elif fmt == "markdown":
            doc = parse_markdown(key, text)
        else:
            doc = parse_plain_text(key, text)
    body = doc.text
    if len(body) < MIN_TEXT_CHARS:
        raise Quarantine(f"no extractable text ({len(body)} characters after parsing {fmt})")
    from core.doctypes import classify_document

    doc.doc_type = classify_document(doc)
    return doc
