"""Document parsing: one parser per format, format detected from content (not only the extension).

``parse_document`` either returns a :class:`ParsedDocument` or raises :class:`Quarantine`
with a human-readable reason. It never returns an empty or garbage document: a file that
yields no text is quarantined, so it can never become a random vector downstream.
"""

from __future__ import annotations

from core.doctypes import classify_document
from core.paged_sources import IMAGE_FORMATS, OcrOptions, markdown_cells, parse_image, parse_pdf
from core.parsed_document import (
    DEFAULT_MAX_BYTES,
    MIN_TEXT_CHARS,
    PARSER_VERSION,
    ParsedDocument,
    Quarantine,
    Section,
    decode_text,
)
from core.text_formats import (
    parse_csv,
    parse_generic_xml,
    parse_html,
    parse_jats_xml,
    parse_json,
    parse_markdown,
    parse_plain_text,
    parse_pubmed_xml,
)

# what callers import from here: the parser's entry point and the types it returns
__all__ = [
    "DEFAULT_MAX_BYTES",
    "PARSER_VERSION",
    "OcrOptions",
    "ParsedDocument",
    "Quarantine",
    "Section",
    "detect_format",
    "markdown_cells",
    "parse_document",
    "parse_pubmed_xml",
]


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

    doc.doc_type = classify_document(doc)
    return doc
