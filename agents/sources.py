"""A source as the answer sees it (numbered, with its id, title, passage and page), and the citations an answer's
``[n]`` markers make of it."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CITE = re.compile(r"\[(\d{1,2})\]")


@dataclass
class Source:
    n: int
    id: str  # "PMID:123" or the document key, or the URL for web results
    title: str
    text: str
    origin: str  # "knowledge_base" | "web"
    url: str = ""
    score: float = 0.0
    doc_key: str = ""
    page: str = ""  # "3" or "3-4": where in a paged source (PDF, scan) the passage is; "" otherwise
    dense: float = 0.0  # the document's best dense cosine similarity to the question
    reading: str = ""  # what a yes/no verdict reads of it (``core.verdict.reading``); "" for web results

    def citation(self) -> dict:
        c = {"n": self.n, "id": self.id, "title": self.title, "origin": self.origin, "url": self.url}
        if self.page:
            c["page"] = self.page
        return c


def page_label(hit) -> str:
    """The page(s) a hit's text is on, "3" or "3-4"; "" for a source without pages."""
    first, last = getattr(hit, "page", None), getattr(hit, "page_end", None)
    if not first:
        return ""
    return str(first) if not last or last == first else f"{first}-{last}"


def cite_label(citation: dict) -> str:
    """How a citation is shown: "PMID:123", or "scans/x.pdf, page 2" for a paged source."""
    page = citation.get("page") or ""
    return f"{citation['id']}, {'pages' if '-' in page else 'page'} {page}" if page else citation["id"]


def source_id(hit) -> str:
    key = hit.doc_key or ""
    if key.startswith("pubmed/") and key.endswith(".xml"):
        return "PMID:" + key[len("pubmed/") : -4]
    return key or hit.doc_id


def doc_key_of(cited_id: str) -> str:
    """The document key behind a citation's id (the inverse of ``source_id``): "PMID:123" -> "pubmed/123.xml"."""
    return f"pubmed/{cited_id[5:]}.xml" if cited_id.startswith("PMID:") else cited_id


def citations_for(answer: str, sources: list[Source], notes: list[str]) -> list[dict]:
    """The sources the answer cites by ``[n]``; when it cites none, every source it was given (with a note)."""
    found = cited(answer, sources)
    if found or not sources:
        return found
    notes.append("The model cited no source by number; the sources it was given are listed.")
    return [s.citation() for s in sources]


def cited(answer: str, sources: list[Source]) -> list[dict]:
    by_n = {s.n: s for s in sources}
    seen, out = set(), []
    for m in _CITE.finditer(answer):
        n = int(m.group(1))
        if n in by_n and n not in seen:
            seen.add(n)
            out.append(by_n[n].citation())
    return out
