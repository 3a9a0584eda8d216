"""Document types beyond the medical specialty: what kind of document this is, from its parsed form.

The intake picks the parser from the content (PDF text layer, tables, or a scan for OCR; see core.documents); this is
the second look, on what came out: an ``article``, a ``clinical_note``, a ``form`` or a ``table_report``. Whether it
was scanned is its ``source_format`` (``pdf-scan``, ``image-png``...), not a type: a scanned note is still a note.
"""

from __future__ import annotations

import re

from core.parsed_document import ParsedDocument

DOC_TYPES = ("article", "clinical_note", "form", "table_report")

# Headings of a clinical note (SOAP, H&P, discharge summary): two or more make a note.
_NOTE_HEADINGS = re.compile(
    r"\b(chief complaint|history of present illness|hpi|past medical history|review of systems|physical exam(?:ination)?|"
    r"vital signs|assessment and plan|assessment|plan|subjective|objective|medications|allergies|"
    r"discharge diagnos[ie]s|hospital course|follow-up instructions)\s*:",
    re.IGNORECASE,
)
# Blanks and boxes to fill in: a form has many.
_FORM_BLANKS = re.compile(r"_{4,}|\[\s?\]|\[[xX]\]|[☐☑☒]|\(\s\)")
# An article's structure: the labels of a structured abstract or paper.
_ARTICLE_LABELS = {"BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS", "CONCLUSION", "OBJECTIVE", "INTRODUCTION"}


def classify_document(doc: ParsedDocument) -> str:
    text = doc.text
    n = max(len(text), 1)
    table_chars = sum(len(s.text) for s in doc.sections if s.kind == "table")
    if doc.form_fields >= 3 or len(_FORM_BLANKS.findall(text)) >= 5:
        return "form"
    if table_chars / n >= 0.4 or (table_chars / n >= 0.25 and sum(s.kind == "table" for s in doc.sections) >= 2):
        return "table_report"
    labels = {s.label for s in doc.sections} & _ARTICLE_LABELS
    headings = {m.group(1).lower() for m in _NOTE_HEADINGS.finditer(text[:20000])}
    if len(headings) >= 3 and len(labels) < 2 and not doc.mesh_terms:
        return "clinical_note"
    return "article"
