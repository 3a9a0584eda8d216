"""Token-aware, section-aware chunking with overlap.

Sizes are counted in the embedding model's own word pieces (a ``TokenCounter``), so a
chunk never silently overflows the model's window. Sentences are the unit of packing;
a section boundary is the preferred place to cut, and overlap never crosses a section.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.documents import Section

TokenCounter = Callable[[Sequence[str]], list[int]]

# Split after . ! ? when followed by whitespace and an upper-case letter, digit or bracket.
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|et al|vs|Fig|Figs|No|approx|ca|cf|Dr|Mr|Mrs|Ms|St)\.$")


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE.split(text) if p.strip()]
    merged: list[str] = []
    for p in parts:
        if merged and _ABBREV.search(merged[-1]):
            merged[-1] = f"{merged[-1]} {p}"
        else:
            merged.append(p)
    return merged


@dataclass(frozen=True)
class Chunk:
    seq: int
    text: str
    section: str  # labels covered, "|" separated ("" for unlabelled text)
    n_tokens: int
    page: int | None = None  # first and last page the chunk's text is on (paged sources only)
    page_end: int | None = None


@dataclass
class _Piece:
    label: str
    text: str
    n_tokens: int
    page: int | None = None


class Chunker:
    def __init__(
        self, count_tokens: TokenCounter, max_tokens: int = 200, overlap_tokens: int = 40, label_cost: int = 3
    ):
        if max_tokens <= 0 or overlap_tokens < 0 or overlap_tokens >= max_tokens:
            raise ValueError("need max_tokens > overlap_tokens >= 0")
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.label_cost = label_cost

    @property
    def version(self) -> str:
        # v3: tables are chunked by whole rows under their header; chunks keep their pages
        return f"section-aware-v3:max{self.max_tokens}:overlap{self.overlap_tokens}"

    def _table_chunks(self, section: Section) -> list[list[_Piece]]:
        """A Markdown table as chunks of whole rows, each under the table's label and header (header + rule line),
        so a chunk never ends mid-row and every chunk reads as a table on its own. A row longer than a chunk is a
        chunk of its own (the embedder truncates it; its text stays whole)."""
        lines = [ln for ln in section.text.split("\n") if ln.strip()]
        head, rows = lines[:2], lines[2:] or []
        if not rows:
            head, rows = lines[:1], lines[1:]
        label = section.label
        head_text = "\n".join(head)
        head_n = self.count_tokens([head_text])[0] + (self.label_cost if label else 0)
        counts = self.count_tokens(rows) if rows else []
        out: list[list[_Piece]] = []
        current: list[_Piece] = []
        used = head_n
        for row, n in zip(rows, counts):
            if current and used + n > self.max_tokens:
                out.append(current)
                current, used = [], head_n
            if not current:
                current.append(_Piece(label, head_text, head_n - (self.label_cost if label else 0), section.page))
            current.append(_Piece(label, row, n, section.page))
            used += n
        if current or not rows:
            out.append(current or [_Piece(label, head_text, head_n, section.page)])
        return out

    def _pieces(self, section: Section) -> list[_Piece]:
        sentences = split_sentences(section.text)
        if not sentences:
            return []
        counts = self.count_tokens(sentences)
        limit = self.max_tokens - (self.label_cost if section.label else 0)
        pieces: list[_Piece] = []
        for sent, n in zip(sentences, counts):
            if n <= limit:
                pieces.append(_Piece(section.label, sent, n, section.page))
                continue
            # A sentence longer than a chunk (tables, lists): pack whole words up to the limit.
            # WordPiece tokenizes each whitespace-separated word on its own, so word counts add up.
            words = sent.split()
            window: list[str] = []
            used = 0
            for word, wn in zip(words, self.count_tokens(words)):
                if window and used + wn > limit:
                    pieces.append(_Piece(section.label, " ".join(window), used, section.page))
                    window, used = [], 0
                window.append(word)
                used += wn
            if window:
                pieces.append(_Piece(section.label, " ".join(window), used, section.page))
        return pieces

    @staticmethod
    def _render(pieces: list[_Piece], table: bool = False) -> tuple[str, str]:
        if table:  # label on its own line, then the header and the rows, one per line
            label = pieces[0].label
            body = "\n".join(p.text for p in pieces)
            return (f"{label}:\n{body}" if label else body), label
        out: list[str] = []
        labels: list[str] = []
        last = None
        for p in pieces:
            if p.label != last:
                if p.label:
                    out.append(f"{p.label}: {p.text}")
                else:
                    out.append(p.text)
                if p.label not in labels:
                    labels.append(p.label)
                last = p.label
            else:
                out.append(p.text)
        return " ".join(out), "|".join(labels)

    def chunk(self, sections: Sequence[Section]) -> list[Chunk]:
        budget = self.max_tokens
        chunks: list[list[_Piece]] = []
        tables: set[int] = set()  # indexes in ``chunks`` of table chunks
        current: list[_Piece] = []
        used = 0

        def cost(p: _Piece, cur: list[_Piece]) -> int:
            new_label = not cur or cur[-1].label != p.label
            return p.n_tokens + (self.label_cost if new_label and p.label else 0)

        def emit():
            nonlocal current, used
            if current:
                chunks.append(current)
            current, used = [], 0

        for section in sections:
            if section.kind == "table":
                emit()  # a table never shares a chunk with text: it is cut at its rows only
                for part in self._table_chunks(section):
                    tables.add(len(chunks))
                    chunks.append(part)
                continue
            pieces = self._pieces(section)
            if not pieces:
                continue
            section_total = sum(p.n_tokens for p in pieces) + (self.label_cost if section.label else 0)
            # Prefer to cut at a section boundary when the next section does not fit, unless the
            # chunk so far is a tiny fragment (then it is better merged than left alone).
            if current and used + section_total > budget and (section_total <= budget or used >= budget // 4):
                emit()
            for p in pieces:
                c = cost(p, current)
                if current and used + c > budget:
                    prev = current
                    emit()
                    # Overlap: carry trailing sentences of the same section, up to overlap_tokens and
                    # never so many that the next sentence would no longer fit the budget.
                    room = min(self.overlap_tokens, budget - p.n_tokens - (self.label_cost if p.label else 0))
                    carried: list[_Piece] = []
                    total = 0
                    for q in reversed(prev):
                        if q.label != p.label or total + q.n_tokens > room:
                            break
                        carried.insert(0, q)
                        total += q.n_tokens
                    for q in carried:
                        used += cost(q, current)
                        current.append(q)
                    c = cost(p, current)
                current.append(p)
                used += c
        emit()
        out = []
        for seq, pieces in enumerate(chunks):
            text, labels = self._render(pieces, seq in tables)
            pages = [p.page for p in pieces if p.page is not None]
            n_tokens = (
                sum(p.n_tokens for p in pieces) + (self.label_cost if pieces[0].label else 0)
                if seq in tables
                else sum(cost(p, pieces[:i]) for i, p in enumerate(pieces))
            )
            out.append(
                Chunk(
                    seq=seq,
                    text=text,
                    section=labels,
                    n_tokens=n_tokens,
                    page=min(pages) if pages else None,
                    page_end=max(pages) if pages else None,
                )
            )
        return out


_LABEL_PREFIX = re.compile(r"^[A-Z][A-Z &/,-]{2,40}:\s+")


def _bare(sentence: str) -> str:
    """A sentence without the "LABEL: " a chunk puts before its first sentence (overlap repeats it unlabelled)."""
    return _LABEL_PREFIX.sub("", sentence).strip()


def reassemble(chunks: Sequence[tuple[int, str, str]]) -> str:
    """One document's text from its chunks ((seq, section, text) in any order, as a search returns them): the inverse
    of :meth:`Chunker.chunk`. The overlap (trailing text of a chunk repeated at the start of the next) appears once,
    and a section's label once where the section begins, not again where a chunk continues it."""
    out, last_label = "", None
    for _, section, text in sorted(chunks, key=lambda c: c[0]):
        text, labels = (text or "").strip(), (section or "").split("|")
        if not text:
            continue
        if out and labels[0] and labels[0] == last_label and text.startswith(f"{labels[0]}: "):
            text = text[len(labels[0]) + 2 :]
        out = _join_overlapping(out, text)
        last_label = labels[-1]
    return out


def _join_overlapping(head: str, tail: str, min_overlap: int = 12, max_overlap: int = 2000) -> str:
    """``head`` + ``tail`` without the longest piece that ends ``head`` and begins ``tail`` (at word boundaries)."""
    if not head:
        return tail
    for n in range(min(len(head), len(tail), max_overlap), min_overlap - 1, -1):
        if (n == len(tail) or tail[n] == " ") and (n == len(head) or head[-n - 1] == " ") and head.endswith(tail[:n]):
            return head + tail[n:]
    return f"{head} {tail}"


def without_sentences(text: str, other: str) -> str:
    """``text`` without the sentences that ``other`` already holds whole (labels ignored): a document shown after its
    conclusions does not repeat them."""
    other = other or ""
    return " ".join(s for s in split_sentences(text or "") if _bare(s) not in other)
