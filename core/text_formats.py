"""Parsers of the text formats: PubMed and JATS XML, other XML, HTML, Markdown, JSON, CSV and plain text."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from core.parsed_document import ParsedDocument, Quarantine, Section, normalize_text


def _itertext(el: ET.Element | None) -> str:
    return normalize_text("".join(el.itertext())) if el is not None else ""


def _year(text: str) -> int | None:
    m = re.search(r"(1[89]\d\d|20\d\d)", text or "")
    return int(m.group(1)) if m else None


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
