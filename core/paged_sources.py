"""Paged sources: PDFs through pdfplumber (text layer, tables as Markdown, page numbers) and images and scans through
OCR, with the vision model for pages OCR cannot read and for figures."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

from core.parsed_document import ParsedDocument, Quarantine, Section, normalize_text


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
