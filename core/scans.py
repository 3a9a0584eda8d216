"""A generated test set for document processing, made from the real corpus.

Abstracts are rendered to pages the way a scanner or a phone would deliver them (a serif font at 150-300 dpi, a few
degrees of rotation, noise, blur, JPEG artifacts) and saved as image-only PDFs or images, with the exact text they
show; tables are rendered from known data into digital PDFs. bench_ocr and the tests measure OCR and table extraction
against them.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF")
PAGE_IN = (8.5, 11.0)  # US letter
MARGIN_IN = 0.9


def _font(size_px: int, bold: bool = False) -> ImageFont.ImageFont:
    name = "DejaVuSerif-Bold.ttf" if bold else "DejaVuSerif.ttf"
    for d in FONT_DIRS:
        if (Path(d) / name).exists():
            return ImageFont.truetype(str(Path(d) / name), size_px)
    return ImageFont.load_default(size=size_px)  # Pillow's own scalable font, where DejaVu is not installed


@dataclass
class RenderedDoc:
    pages: list[Image.Image]
    dpi: int
    text: str  # everything the pages show, in reading order (the OCR reference)
    page_texts: list[str]


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width_px: int) -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        words, line = para.split(), ""
        for w in words:
            cand = f"{line} {w}".strip()
            if draw.textlength(cand, font=font) <= width_px or not line:
                line = cand
            else:
                lines.append(line)
                line = w
        lines.append(line)
    return lines


def render_document(
    title: str, header: str, paragraphs: list[str], dpi: int = 300, font_pt: float = 11.0
) -> RenderedDoc:
    """Pages of a typeset document: the title in bold, a header line (journal, year), then the paragraphs."""
    w, h = int(PAGE_IN[0] * dpi), int(PAGE_IN[1] * dpi)
    margin = int(MARGIN_IN * dpi)
    body, bold = _font(int(font_pt * dpi / 72)), _font(int(font_pt * 1.3 * dpi / 72), bold=True)
    line_h, title_h = int(font_pt * 1.45 * dpi / 72), int(font_pt * 1.3 * 1.4 * dpi / 72)
    pages: list[Image.Image] = []
    page_texts: list[list[str]] = []

    def new_page():
        img = Image.new("L", (w, h), 255)
        pages.append(img)
        page_texts.append([])
        return ImageDraw.Draw(img), margin

    draw, y = new_page()
    blocks: list[tuple[str, object, int, int]] = [(title, bold, title_h, int(0.5 * line_h))]
    if header:
        blocks.append((header, body, line_h, line_h))
    blocks += [(p, body, line_h, int(0.6 * line_h)) for p in paragraphs]
    for text, font, lh, gap in blocks:
        lines = _wrap(draw, text, font, w - 2 * margin)
        shown: list[str] = []
        for line in lines:
            if y + lh > h - margin:
                if shown:
                    page_texts[-1].append(" ".join(shown))
                    shown = []
                draw, y = new_page()
            draw.text((margin, y), line, font=font, fill=0)
            shown.append(line)
            y += lh
        if shown:
            page_texts[-1].append(" ".join(shown))
        y += gap
    texts = ["\n".join(t) for t in page_texts]
    return RenderedDoc(pages, dpi, "\n".join(texts), texts)


def degrade(
    image: Image.Image, seed: int, rotate_deg: float = 2.0, noise: float = 0.04, blur: float = 0.6
) -> Image.Image:
    """A scanned or photographed look: rotated by up to ``rotate_deg`` either way, speckle noise on a fraction
    ``noise`` of pixels, a slight blur, a grey paper tone."""
    rng = random.Random(seed)
    angle = rng.uniform(-rotate_deg, rotate_deg)
    img = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    px = img.load()
    n = int(img.width * img.height * noise)
    for _ in range(n):
        x, y = rng.randrange(img.width), rng.randrange(img.height)
        px[x, y] = rng.choice((0, 60, 200, 255))
    return img.point(lambda v: int(25 + v * 0.85))  # grey paper, not pure white; ink not pure black


def image_bytes(image: Image.Image, fmt: str, dpi: int, quality: int = 80) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.convert("L").save(buf, format="JPEG", quality=quality, dpi=(dpi, dpi))
    elif fmt == "tiff":
        image.save(buf, format="TIFF", compression="tiff_deflate", dpi=(dpi, dpi))
    else:
        image.save(buf, format="PNG", dpi=(dpi, dpi))
    return buf.getvalue()


def tiff_bytes(pages: list[Image.Image], dpi: int) -> bytes:
    buf = io.BytesIO()
    pages[0].save(
        buf, format="TIFF", save_all=True, append_images=pages[1:], compression="tiff_deflate", dpi=(dpi, dpi)
    )
    return buf.getvalue()


def scan_pdf(pages: list[Image.Image], dpi: int) -> bytes:
    """An image-only PDF (no text layer), as a scanner writes one."""
    buf = io.BytesIO()
    rgb = [p.convert("L") for p in pages]
    rgb[0].save(buf, format="PDF", save_all=True, append_images=rgb[1:], resolution=float(dpi))
    return buf.getvalue()


# ---------------------------------------------------------------- tables


def generated_table(seed: int, rows: int = 8) -> tuple[str, list[str], list[list[str]]]:
    """A caption, a header and rows of known data (a baseline-characteristics table of a trial)."""
    rng = random.Random(seed)
    header = ["Characteristic", "Intervention (n={})", "Control (n={})", "P value"]
    n1, n2 = rng.randint(40, 900), rng.randint(40, 900)
    header = [header[0], header[1].format(n1), header[2].format(n2), header[3]]
    names = [
        "Age, years",
        "Female sex, %",
        "Body-mass index",
        "Systolic BP, mm Hg",
        "Diastolic BP, mm Hg",
        "HbA1c, %",
        "LDL cholesterol, mg/dL",
        "Current smoker, %",
        "eGFR, mL/min",
        "Heart rate, bpm",
        "Diabetes, %",
        "Prior stroke, %",
    ]
    rng.shuffle(names)
    body = []
    for name in names[:rows]:
        a, b = rng.uniform(5, 150), rng.uniform(5, 150)
        body.append(
            [
                name,
                f"{a:.1f} ({rng.uniform(1, 20):.1f})",
                f"{b:.1f} ({rng.uniform(1, 20):.1f})",
                f"{rng.uniform(0.001, 0.99):.3f}",
            ]
        )
    caption = f"Table {rng.randint(1, 4)}. Baseline characteristics of the {n1 + n2} participants"
    return caption, header, body


def table_pdf(title: str, before: str, tables: list[tuple[str, list[str], list[list[str]]]], after: str) -> bytes:
    """A digital PDF (text layer) with a title, a paragraph, captioned ruled tables, and a closing paragraph."""
    from fpdf import FPDF

    pdf = FPDF(format="letter")
    pdf.set_title(title)
    pdf.add_page()
    pdf.set_font("helvetica", "B", 14)
    pdf.multi_cell(0, 7, title)
    pdf.ln(2)
    pdf.set_font("helvetica", size=10)
    pdf.multi_cell(0, 5, before)
    for caption, header, rows in tables:
        pdf.ln(3)
        pdf.multi_cell(0, 5, caption)
        pdf.ln(1)
        with pdf.table(first_row_as_headings=True) as t:
            for row in [header, *rows]:
                r = t.row()
                for cell in row:
                    r.cell(cell)
    pdf.ln(3)
    pdf.multi_cell(0, 5, after)
    return bytes(pdf.output())


def cell_accuracy(expected: list[list[str]], got: list[list[str]]) -> float:
    """Share of expected cells found at the same row and column (whitespace-normalized)."""
    total = sum(len(r) for r in expected)
    right = 0
    for i, row in enumerate(expected):
        for j, cell in enumerate(row):
            if i < len(got) and j < len(got[i]) and " ".join(got[i][j].split()) == " ".join(cell.split()):
                right += 1
    return right / max(total, 1)


def latin1_safe(text: str) -> str:
    """fpdf2's core fonts are Latin-1: anything else is replaced (the tables' data is ASCII anyway)."""
    return text.encode("latin-1", "replace").decode("latin-1")


def abstract_paragraphs(sections: list[tuple[str, str]]) -> list[str]:
    return [f"{label}: {text}" if label else text for label, text in sections if text]
