"""OCR for scans and images: Tesseract 5, one interface, two installations.

- ``CachedTesseractOcr`` (local profile): the Debian packages setup unpacks into the user cache (no root needed).
- ``SystemTesseractOcr`` (eks): the ``tesseract-ocr`` package the platform image installs, found on PATH.

Tesseract was chosen over RapidOCR's PP-OCR models by measurement (benchmarks/bench_ocr.py, docs/knowledge.md). A Ray worker
reopens the resource from its fields (resources.data_path.resource_spec): it holds no secret.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from core.documents import OcrOptions
from core.ocr import TesseractEngine

TESSERACT_DEBIAN_VERSION = "5.3.0-2"  # scripts/setup.sh unpacks this version into <cache>/tesseract-<version>


def cached_tesseract_root(cache: Path) -> Path:
    return cache / f"tesseract-{TESSERACT_DEBIAN_VERSION}" / "root"


class OcrResource(dg.ConfigurableResource):
    """How the knowledge pipeline reads pages without a text layer."""

    lang: str = "eng"
    min_confidence: float = 60.0  # mean word confidence (0-100) below which a page is unreadable (quarantined)
    render_dpi: int = 300  # PDF pages without a text layer are rendered at this resolution
    max_pages: int = 300  # a longer scan is quarantined rather than tying up a worker

    def engine(self) -> TesseractEngine:
        raise NotImplementedError

    def options(self) -> OcrOptions:
        return OcrOptions(
            self.engine(), min_confidence=self.min_confidence, render_dpi=self.render_dpi, max_pages=self.max_pages
        )


class CachedTesseractOcr(OcrResource):
    root: str  # the unpacked Debian tree: usr/bin/tesseract, usr/lib/<arch>, usr/share/tesseract-ocr/5/tessdata

    def engine(self) -> TesseractEngine:
        return TesseractEngine(root=self.root, lang=self.lang)


class SystemTesseractOcr(OcrResource):
    def engine(self) -> TesseractEngine:
        return TesseractEngine(root="", lang=self.lang)
