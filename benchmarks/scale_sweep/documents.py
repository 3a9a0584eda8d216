"""The sweep's documents: real PubMed abstracts, and beyond them deterministic copies with a new PMID and one word
changed."""

from __future__ import annotations

import re

# ------------------------------------------------------------------ documents


_WORD = re.compile(rb"(?<=\s)[A-Za-z]{4,}(?=[\s.,;:])")
_ABSTRACT = re.compile(rb"<AbstractText[^>]*>(.*?)</AbstractText>", re.S)
_PMID = re.compile(rb"(<PMID[^>]*>)\s*\d+\s*(</PMID>)")
FILLER = [b"patients", b"results", b"clinical", b"therapy", b"outcomes", b"analysis", b"cohort", b"treatment"]


def change_word(data: bytes, salt: int, replacement: bytes | None = None) -> bytes:
    """The document with one word of its (first) abstract paragraph replaced, chosen by ``salt``."""
    m = _ABSTRACT.search(data)
    if not m:
        return data.replace(b"</ArticleTitle>", b" revised</ArticleTitle>", 1)
    words = list(_WORD.finditer(m.group(1)))
    if not words:
        return data[: m.end(1)] + b" revised" + data[m.end(1) :]
    w = words[salt % len(words)]
    new = replacement or FILLER[salt % len(FILLER)]
    if new.lower() == w.group(0).lower():
        new = FILLER[(salt + 1) % len(FILLER)]
    return data[: m.start(1) + w.start()] + new + data[m.start(1) + w.end() :]


def document(i: int, corpus: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """Document i of a sweep: a real abstract below len(corpus), else a copy of one with a new PMID and a changed word."""
    pmid, data = corpus[i % len(corpus)]
    copy = i // len(corpus)
    if copy == 0:
        return pmid, data
    new_pmid = str(copy * 100_000_000 + int(pmid))  # real PMIDs have at most 8 digits
    data = _PMID.sub(lambda m: m.group(1) + new_pmid.encode() + m.group(2), data, count=1)
    return new_pmid, change_word(data, int(pmid) * 31 + copy)
