"""What a parser returns (a document of sections, or a Quarantine with its reason), and the text clean-up every
parser shares."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

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
